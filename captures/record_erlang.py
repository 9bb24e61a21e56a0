#!/usr/bin/env python3
"""Record client-authentication sessions of Erlang/OTP ``ssl`` against ``openssl`` and GnuTLS and
against itself, with their ground truth and key logs.

The companion of ``record.py`` (whose PKI, capture and tool helpers it uses). The Erlang side is
``captures/stacks/erlang/tlsnode.escript``, run by ``escript`` once per connection as server or
client; it reports each event on a line of its own (see the escript's header). The other side is
``openssl s_server``/``s_client`` or ``gnutls-serv``/``gnutls-cli``, or the escript again. The
scenario matrix runs each pairing in TLS 1.3 and TLS 1.2: mutual, one-way, certificate requested
and not sent, required without a certificate, a client certificate from an unknown CA and an
expired one.

The truth comes from what both programs reported (the server: whether and which client
certificate it got, or the error it stopped with; the client: whether the server's answer
arrived, or the alert it received), never from the capture. The recorder stops when a session
does not turn out as its scenario says. Afterwards each session is checked against ``tshark``'s
decryption of the capture with the key log: a CertificateRequest iff requested, a client
Certificate with at least one certificate iff sent.

The driver (``Session``, ``run_session``, ``record``) is shared with ``record_tlslite.py``.

Usage (as root)::

    python3 captures/record_erlang.py [--out DIR] [--verbose]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record as rec  # noqa: E402  (PKI, capture and tool helpers)

RECORDED_BY = "captures/record_erlang.py"
ESCRIPT = HERE / "stacks" / "erlang" / "tlsnode.escript"
TLS12, TLS13 = rec.TLS12, rec.TLS13
MUTUAL, ONE_WAY, NOT_SENT, FAILED = rec.MUTUAL, rec.ONE_WAY, rec.NOT_SENT, rec.FAILED
POST_HANDSHAKE = "post-handshake"
HOST = "127.0.0.1"
NODE_REPLY = rec.PONG
WAIT = rec.TOOL_TIMEOUT

NONE, OPTIONAL, REQUIRED = "none", "optional", "required"
VERIFY_MODES = {NONE: ssl.CERT_NONE, OPTIONAL: ssl.CERT_OPTIONAL, REQUIRED: ssl.CERT_REQUIRED}
TOOLS = ("openssl", "gnutls")


# --------------------------------------------------------------------------------------------
# PKI: the shared test PKI plus an expired client certificate


def build_pki(work: Path) -> rec.Pki:
    """``rec.build_pki`` plus client-erin: issued by the client intermediate CA, expired a year
    ago. The intermediate's key is taken from the ``rec._issue`` calls of ``build_pki``."""
    issued: list[rec._Issued] = []
    original = rec._issue

    def keep(*args: Any, **kwargs: Any) -> rec._Issued:
        made = original(*args, **kwargs)
        issued.append(made)
        return made

    rec._issue = keep
    try:
        pki = rec.build_pki(work, None)  # public certificates are not exported
    finally:
        rec._issue = original
    intermediate = next(i for i in issued if i.cn == "Test Client Intermediate CA")
    key = rec._new_key("ec")
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(rec._name("US", "Example Clients", "client-erin"))
        .issuer_name(intermediate.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=730))
        .not_valid_after(now - datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(intermediate.key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("spiffe://example.test/erin")]
            ),
            critical=False,
        )
        .sign(intermediate.key, hashes.SHA256())
    )
    leaf = cert.public_bytes(serialization.Encoding.PEM)
    extra = intermediate.cert.public_bytes(serialization.Encoding.PEM)
    stem = "client-erin"
    (work / f"{stem}.pem").write_bytes(leaf)
    (work / f"{stem}-extra.pem").write_bytes(extra)
    (work / f"{stem}-chain.pem").write_bytes(leaf + extra)
    (work / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    erin = rec.Identity(
        cn=stem,
        cert=work / f"{stem}.pem",
        key=work / f"{stem}.key",
        chain=work / f"{stem}-chain.pem",
        extra=work / f"{stem}-extra.pem",
        sent=(stem, intermediate.cn),
    )
    return rec.Pki(root=pki.root, server=pki.server, clients={**pki.clients, "erin": erin})


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Kind:
    """One row of the scenario matrix: what the server asks, who the client is, the outcome."""

    name: str
    request: str
    client_id: str | None
    expect: str


MATRIX = (
    Kind("mutual", REQUIRED, "alice", MUTUAL),
    Kind("one-way", NONE, None, ONE_WAY),
    Kind("cert-requested-not-sent", OPTIONAL, None, NOT_SENT),
    # an empty client Certificate counts as cert-requested-not-sent (rec.verdict_of)
    Kind("required-without-cert", REQUIRED, None, NOT_SENT),
    Kind("refused-unknown-ca", REQUIRED, "mallory", FAILED),
    Kind("refused-expired", REQUIRED, "erin", FAILED),
)


@dataclass(frozen=True)
class Session:
    """One connection: which program serves and which connects, and how it must turn out."""

    kind: str
    port: int
    version: str
    server: str
    client: str
    request: str
    client_id: str | None
    expect: str
    later: str | None = None
    """``post-handshake``: the server asks for the certificate after the handshake."""
    compress: str | None = None
    """RFC 8879 certificate compression algorithm both sides offer (TLS 1.3)."""
    server_args: tuple[str, ...] = ()
    client_args: tuple[str, ...] = ()
    note: str | None = None

    @property
    def stack(self) -> str:
        return f"{self.server}/{self.client}"

    @property
    def scenario(self) -> str:
        version = "tls13" if self.version == TLS13 else "tls12"
        extra = f"-{self.compress}" if self.compress else ""
        return f"{self.server}-{self.client}-{version}-{self.kind}{extra}"

    @property
    def requested(self) -> bool:
        return self.request != NONE or self.later is not None

    def tool_scenario(self) -> rec.ToolScenario:
        return rec.ToolScenario(
            self.scenario,
            self.port,
            self.version,
            self.stack,
            VERIFY_MODES[self.request],
            self.client_id,
            self.expect,
        )


def matrix(
    node: str,
    base: int,
    overrides: dict[tuple[str, str, str], tuple[str, str]] | None = None,
) -> list[Session]:
    """The matrix for ``node``: it serves openssl and gnutls clients, connects to openssl and
    gnutls servers, and talks to itself; one port per pairing and row (TLS 1.3 first, then TLS
    1.2 on the same port). ``overrides`` maps (stack, version, kind) to the verdict the stacks
    really produce and why, where that differs from the row's."""
    pairings = [(node, t) for t in TOOLS] + [(t, node) for t in TOOLS] + [(node, node)]
    sessions: list[Session] = []
    port = base
    for server, client in pairings:
        for kind in MATRIX:
            for version in (TLS13, TLS12):
                expect, note = kind.expect, None
                key = (f"{server}/{client}", version, kind.name)
                if overrides and key in overrides:
                    expect, note = overrides[key]
                sessions.append(
                    Session(
                        kind.name,
                        port,
                        version,
                        server,
                        client,
                        kind.request,
                        kind.client_id,
                        expect,
                        note=note,
                    )
                )
            port += 1
    return sessions


# --------------------------------------------------------------------------------------------
# What the programs reported


@dataclass
class ServerReport:
    established: bool = False
    cert: bool = False
    """A client Certificate with at least one certificate reached the server."""
    cn: str | None = None
    error: str | None = None
    client_port: int | None = None
    pha: bool = False


@dataclass
class ClientReport:
    completed: bool = False
    """The server's answer arrived."""
    alert: str | None = None
    local_port: int | None = None
    keylines: list[str] = field(default_factory=list)


_ALERT_TERM = re.compile(r"\{tls_alert,\{(\w+),")
_RECEIVED_ALERT = re.compile(r"received SERVER ALERT: Fatal - ([A-Za-z ]+?)\s*$", re.M)
_CERT_ALERTS = {
    "bad_certificate",
    "unsupported_certificate",
    "certificate_revoked",
    "certificate_expired",
    "certificate_unknown",
    "unknown_ca",
    "access_denied",
}
"""Alerts a server sends about a certificate it received (not about a missing one)."""


def _lines(text: str, tag: str) -> list[str]:
    return [line[len(tag) + 1 :] for line in text.splitlines() if line.startswith(tag + " ")]


def _int(values: list[str]) -> int | None:
    return int(values[0]) if values else None


def node_server_report(log: str) -> ServerReport:
    """The escript's (or another node's) server log."""
    errors = _lines(log, "handshake_error")
    certs = [c for c in _lines(log, "peer_cert") if c != "none"]
    alert = _ALERT_TERM.search(errors[0]) if errors else None
    return ServerReport(
        established=bool(_lines(log, "handshake")),
        cert=bool(certs) or (alert is not None and alert.group(1) in _CERT_ALERTS),
        cn=certs[-1] if certs else None,
        error=errors[0] if errors else None,
        client_port=_int(_lines(log, "peer_port")),
        pha=bool(_lines(log, "pha")),
    )


def node_client_report(log: str, reply: bytes) -> ClientReport:
    received = _lines(log, "recv")
    problems = _lines(log, "handshake_error") + _lines(log, "recv_error")
    alerts = [m.group(1) for p in problems if (m := _ALERT_TERM.search(p))]
    # the alert that ended the connection while no call was waiting is only in the logger's report
    alerts += [m.group(1).lower().replace(" ", "_") for m in _RECEIVED_ALERT.finditer(log)]
    return ClientReport(
        completed=reply.decode().strip() in received,
        alert=alerts[0] if alerts else None,
        local_port=_int(_lines(log, "local_port")),
        keylines=_lines(log, "keylog"),
    )


_OPENSSL_PEER = re.compile(r"^Peer certificate: .*CN ?= ?([^,\n]+)$", re.M)
_OPENSSL_DEPTH0 = re.compile(r"^depth=0 .*?CN ?= ?([^,\n]+)$", re.M)
_OPENSSL_FAILURE = re.compile(r"^CONNECTION FAILURE\n(.*)$", re.M)
_GNUTLS_SUBJECT = re.compile(r"^\tSubject: CN=([^,\n]+)", re.M)
_GNUTLS_ERROR = re.compile(r"^Error in handshake: (.*)$", re.M)


def tool_server_report(server: str, log: str) -> ServerReport:
    if server == "openssl":
        cns = _OPENSSL_PEER.findall(log) or _OPENSSL_DEPTH0.findall(log)
        failure = _OPENSSL_FAILURE.search(log)
        return ServerReport(
            established="CONNECTION ESTABLISHED" in log,
            cert="Peer certificate:" in log or "depth=" in log,
            cn=cns[-1].strip() if cns else None,
            error=failure.group(1).strip() if failure else None,
        )
    error = _GNUTLS_ERROR.search(log)
    received = "Got a certificate list of" in log or "The certificate is NOT trusted" in log
    cns = _GNUTLS_SUBJECT.findall(log)
    return ServerReport(
        established=error is None and "- Version:" in log,
        cert=received,
        cn=cns[0] if received and cns else None,
        error=error.group(1) if error else None,
        client_port=rec._gnutls_client_port(rec.ToolRun(None, log, "")),
    )


def tool_client_report(client: str, run: rec.ToolRun, reply: bytes) -> ClientReport:
    return ClientReport(completed=reply in run.out.encode(), alert=rec._received_alert(client, run))


# --------------------------------------------------------------------------------------------
# Running one session


@dataclass(frozen=True)
class Node:
    """A stack whose programs speak the escript's line protocol."""

    name: str
    server_cmd: Callable[[Session, rec.Pki], list[str]]
    client_cmd: Callable[[Session, rec.Pki], list[str]]
    writes_keylog: bool = True
    """The node prints its key log lines itself (``keylog LINE``)."""


def _erlang_version(version: str) -> str:
    return "tlsv1.3" if version == TLS13 else "tlsv1.2"


def erlang_server_cmd(s: Session, pki: rec.Pki) -> list[str]:
    server = pki.server
    cmd = ["escript", str(ESCRIPT), "server", str(s.port), _erlang_version(s.version), s.request]
    return cmd + [str(server.chain), str(server.key), str(pki.root), *s.server_args]


def erlang_client_cmd(s: Session, pki: rec.Pki) -> list[str]:
    identity = pki.client(s.client_id)
    cmd = ["escript", str(ESCRIPT), "client", str(s.port), _erlang_version(s.version)]
    cmd += [str(pki.root), rec.SERVER_NAME]
    if identity is None:
        return [*cmd, "-", "-"]
    return [*cmd, str(identity.chain), str(identity.key)]


ERLANG = Node("erlang", erlang_server_cmd, erlang_client_cmd)


def _clean_env(keylog: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if keylog is not None:
        env["SSLKEYLOGFILE"] = str(keylog)
    return env


def _tool_server(s: Session, pki: rec.Pki, keylog: Path) -> tuple[list[str], dict[str, str]]:
    sc = s.tool_scenario()
    if s.server == "openssl":
        cmd = rec._openssl_server_cmd(sc, pki) + ["-keylogfile", str(keylog)]
        return cmd + list(s.server_args), _clean_env(None)
    cmd = rec._gnutls_server_cmd(sc, pki)
    if s.compress:
        cmd.append(f"--compress-cert={s.compress}")
    return cmd + list(s.server_args), _clean_env(keylog)


def _tool_client(s: Session, pki: rec.Pki, keylog: Path) -> tuple[list[str], dict[str, str]]:
    sc = s.tool_scenario()
    identity = pki.client(s.client_id)
    if s.client == "openssl":
        cmd = rec._openssl_client_cmd(sc, pki, identity, keylog)
        if s.later:
            cmd.append("-enable_pha")
        return cmd + list(s.client_args), _clean_env(None)
    cmd = rec._gnutls_client_cmd(sc, pki, identity)
    extra = list(s.client_args)
    if s.later:
        extra.append("--post-handshake-auth")
    if s.compress:
        extra.append(f"--compress-cert={s.compress}")
    return [*cmd[:-1], *extra, cmd[-1]], _clean_env(keylog)


def _reply(server: str) -> bytes:
    return rec._reply_of(server) if server in TOOLS else NODE_REPLY


@dataclass
class Outcome:
    server: ServerReport
    client: ClientReport
    logs: str


def run_session(
    s: Session,
    pki: rec.Pki,
    nodes: dict[str, Node],
    keylog: Path,
    run_custom: Callable[[Session, rec.Pki, Path], Outcome] | None = None,
) -> Outcome:
    """Start the server, wait until it listens, run the client, and collect both reports."""
    if run_custom is not None:
        return run_custom(s, pki, keylog)
    if rec._listening(s.port):
        raise rec.RecordingError(f"port {s.port} is already in use")
    if s.server in nodes:
        server_cmd, server_env = nodes[s.server].server_cmd(s, pki), _clean_env(None)
    else:
        server_cmd, server_env = _tool_server(s, pki, keylog)
    proc = subprocess.Popen(
        server_cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=server_env,
    )
    out = rec._Drain(proc.stdout)
    reply = _reply(s.server)
    try:
        rec._wait_listening(s.port, proc)
        if s.client in nodes:
            done = subprocess.run(
                nodes[s.client].client_cmd(s, pki),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=3 * WAIT,
                env=_clean_env(None),
            )
            client_log = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
            client = node_client_report(client_log, reply)
            if not nodes[s.client].writes_keylog:
                client.keylines = []
        else:
            cmd, env = _tool_client(s, pki, keylog)
            run = rec._run_client_tool(cmd, env, reply)
            client_log = run.text
            client = tool_client_report(s.client, run, reply)
        rec._wait_until(lambda: rec._connections_closed(s.port), 2.0)
        if s.server != "gnutls":
            rec._wait_until(lambda: proc.poll() is not None, 3.0)
    finally:
        rec._stop(proc)
    server_log = out.join()
    if s.server in nodes:
        server = node_server_report(server_log)
        if nodes[s.server].writes_keylog:
            client.keylines += _lines(server_log, "keylog")
    else:
        server = tool_server_report(s.server, server_log)
    logs = f"--- server {server_cmd}\n{server_log}\n--- client\n{client_log}"
    return Outcome(server, client, logs)


# --------------------------------------------------------------------------------------------
# Ground truth


_KEY_LABEL = {TLS13: "CLIENT_HANDSHAKE_TRAFFIC_SECRET", TLS12: "CLIENT_RANDOM"}


def _keylog_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="ascii").splitlines() if line.strip()]


def judge(s: Session, pki: rec.Pki, o: Outcome, new_keys: list[str]) -> dict[str, Any]:
    """The truth entry of one session from both reports, checked against the scenario."""
    name = s.scenario
    identity = pki.client(s.client_id)
    completed = o.client.completed and o.server.established
    cert_sent = s.requested and o.server.cert
    verdict = rec.verdict_of(
        requested=s.requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    try:
        rec.check(name, "verdict", verdict, s.expect)
        if cert_sent:
            rec.check(name, "client with a certificate", identity is not None, True)
        if verdict == MUTUAL:
            rec.check(name, "client certificate the server got", o.server.cn, identity.cn)
        if verdict in (MUTUAL, ONE_WAY) or (verdict == NOT_SENT and s.request == OPTIONAL):
            rec.check(name, "server error", o.server.error, None)
            rec.check(name, "client completed", o.client.completed, True)
        if verdict == FAILED or (verdict == NOT_SENT and s.request == REQUIRED):
            rec.check(name, "server refused", o.server.error is not None, True)
        if s.later:
            rec.check(name, "post-handshake request", o.server.pha, True)
    except rec.RecordingError as exc:
        raise rec.RecordingError(f"{exc}\n{o.logs}") from None
    client_port = o.client.local_port or o.server.client_port
    if client_port is None:
        raise rec.RecordingError(f"{name}: neither program reported the client port\n{o.logs}")
    label = _KEY_LABEL[s.version]
    entry = rec.session_entry(
        scenario=name,
        stack=s.stack,
        ip=HOST,
        client_port=client_port,
        server_port=s.port,
        version=s.version,
        sni=rec.SERVER_NAME,
        verdict=verdict,
        resumed_from_mutual=None,
        alert=o.client.alert,
        client_chain=None if not s.requested else (identity.sent if cert_sent else ()),
        server_chain=pki.server.sent,
    )
    entry.update(
        keyed=any(line.startswith(label + " ") for line in new_keys),
        later_auth=s.later,
        cert_requested=s.requested,
        client_cert_sent=cert_sent,
        client_cert_configured=identity.cn if identity else None,
        server_verify=s.request,
        certificate_compression=s.compress,
        server_error=o.server.error,
        client_completed=o.client.completed,
        note=s.note,
    )
    return entry


# --------------------------------------------------------------------------------------------
# Check against tshark


def tshark_check(pcap: Path, keylog: Path, sessions: list[dict[str, Any]]) -> list[str]:
    """Per session, the decrypted handshake must show a CertificateRequest iff requested and a
    client Certificate with at least one certificate iff sent. Sessions without keys are
    checked only in TLS 1.2 (whose handshake is readable anyway). Returns the mismatches."""
    cmd = ["tshark", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-Y", "tls.handshake"]
    cmd += ["-T", "fields", "-E", "separator=|"]
    for port in sorted({e["server_port"] for e in sessions}):
        cmd += ["-d", f"tcp.port=={port},tls"]  # 9300 is Elasticsearch's to Wireshark
    for f in ("tcp.srcport", "tcp.dstport", "tls.handshake.type"):
        cmd += ["-e", f]
    cmd += ["-e", "tls.handshake.certificate_length"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    seen: dict[tuple[int, int], dict[str, bool]] = {}
    for line in done.stdout.splitlines():
        src, dst, types, lengths = (line.split("|") + ["", "", "", ""])[:4]
        types_set = {int(t) for t in types.split(",") if t}
        for client, server, from_client in (
            (int(src), int(dst), True),
            (int(dst), int(src), False),
        ):
            key = (client, server)
            flags = seen.setdefault(key, {"request": False, "cert": False, "server": False})
            if not from_client and 2 in types_set:
                flags["server"] = True
            if not from_client and 13 in types_set:
                flags["request"] = True
            if from_client and 11 in types_set and lengths.strip():
                flags["cert"] = True
            if from_client and 25 in types_set:  # CompressedCertificate (RFC 8879)
                flags["cert"] = True
    problems: list[str] = []
    for entry in sessions:
        flags = seen.get((entry["client_port"], entry["server_port"]))
        if entry["tls_version"] == TLS13 and not entry["keyed"]:
            entry["tshark_check"] = "no keys"
            continue
        if flags is None:
            flags = {"request": False, "cert": False, "server": False}
        got = (flags["request"], flags["cert"])
        want = (entry["cert_requested"], entry["client_cert_sent"])
        entry["tshark_check"] = "ok" if got == want else f"mismatch {got} != {want}"
        if got != want:
            problems.append(
                f"{entry['scenario']} (port {entry['client_port']}): tshark saw "
                f"CertificateRequest={got[0]} client Certificate={got[1]}, truth {want}"
            )
    return problems


# --------------------------------------------------------------------------------------------
# Recording


def tool_versions(extra: dict[str, str]) -> dict[str, str]:
    tools = rec.tool_versions()
    tools.pop("tcpdump", None)
    tools.pop("python_ssl", None)
    return {**tools, **extra}


def _dedupe(path: Path) -> None:
    lines = _keylog_lines(path)
    path.write_text("".join(f"{line}\n" for line in dict.fromkeys(lines)), encoding="ascii")


def record(
    name: str,
    sessions: Sequence[Session],
    nodes: dict[str, Node],
    out: Path,
    pki: rec.Pki,
    tools: dict[str, str],
    recorded_by: str,
    verbose: bool,
    run_custom: Callable[[Session], Callable[[Session, rec.Pki, Path], Outcome] | None]
    | None = None,
) -> tuple[int, list[str]]:
    pcap, keylog = out / f"{name}.pcapng", out / f"{name}.keylog"
    keylog.unlink(missing_ok=True)
    keylog.touch()
    entries: list[dict[str, Any]] = []
    ports = sorted({s.port for s in sessions})
    with rec.capture(rec.DUMPCAP_LO, pcap, ports):
        for s in sessions:
            before = set(_keylog_lines(keylog))
            custom = run_custom(s) if run_custom else None
            outcome = run_session(s, pki, nodes, keylog, custom)
            if outcome.client.keylines:
                with keylog.open("a", encoding="ascii") as fh:
                    fh.writelines(f"{line}\n" for line in outcome.client.keylines)
            new_keys = [line for line in _keylog_lines(keylog) if line not in before]
            if verbose:
                print(f"=== {s.scenario} port {s.port}\n{outcome.logs}")
            entry = judge(s, pki, outcome, new_keys)
            entries.append(entry)
            print(
                f"  {s.port} {s.scenario}: {entry['verdict']}"
                f"{'' if entry['keyed'] else ' (no keys)'}",
                flush=True,
            )
    _dedupe(keylog)
    problems = tshark_check(pcap, keylog, entries)
    doc = {
        "capture": pcap.name,
        "keylog": keylog.name,
        "recorded_by": recorded_by,
        "captured_with": "dumpcap -i lo",
        "tools": tools,
        "sessions": entries,
    }
    truth = out / f"{name}.truth.json"
    truth.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for path in (pcap, keylog, truth):
        path.chmod(0o644)
    return len(entries), problems


# The Erlang client offers its certificate in TLS 1.3 only when its chain leads to one of the
# server's certificate_authorities (s_server and gnutls-serv list the root CA): it answers with
# an empty Certificate when it holds client-mallory of the rogue CA.
_EMPTY = (
    "the Erlang TLS 1.3 client sends an empty Certificate: its chain does not lead to a CA "
    "in the server's certificate_authorities"
)
ERLANG_OVERRIDES: dict[tuple[str, str, str], tuple[str, str]] = {
    (f"{server}/erlang", TLS13, "refused-unknown-ca"): (NOT_SENT, _EMPTY)
    for server in ("openssl", "gnutls", "erlang")
}


def erlang_sessions() -> list[Session]:
    """The matrix on ports 9300-9329, and the TLS 1.3 unknown-CA refusal once more with servers
    that name no CA in their CertificateRequest, so that the Erlang client sends client-mallory
    (gnutls-serv has no such option)."""
    no_names = "refused-unknown-ca-no-ca-names"
    return [
        *matrix("erlang", 9300, ERLANG_OVERRIDES),
        Session(
            no_names,
            9330,
            TLS13,
            "openssl",
            "erlang",
            REQUIRED,
            "mallory",
            FAILED,
            server_args=("-no_ca_names",),
        ),
        Session(
            no_names,
            9331,
            TLS13,
            "erlang",
            "erlang",
            REQUIRED,
            "mallory",
            FAILED,
            server_args=("no_ca_names",),
        ),
    ]


def erlang_version() -> str:
    done = subprocess.run(
        [
            "erl",
            "-noshell",
            "-eval",
            "application:load(ssl), {ok, V} = application:get_key(ssl, vsn), "
            'io:format("OTP ~s, ssl ~s", [erlang:system_info(otp_release), V]), halt().',
        ],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    return done.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the programs' output")
    args = parser.parse_args(argv)
    needed = ("dumpcap", "tshark", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf", "escript")
    missing = [p for p in needed if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise SystemExit("capturing on loopback needs root")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tools = tool_versions({"erlang": erlang_version()})
    with tempfile.TemporaryDirectory(prefix="tls-erlang-") as tmp:
        pki = build_pki(Path(tmp) / "pki")
        try:
            count, problems = record(
                "stack_erlang",
                erlang_sessions(),
                {"erlang": ERLANG},
                out,
                pki,
                tools,
                RECORDED_BY,
                args.verbose,
            )
        except (rec.RecordingError, OSError, subprocess.SubprocessError) as exc:
            print(f"stack_erlang: {exc}", file=sys.stderr)
            return 1
    size = (out / "stack_erlang.pcapng").stat().st_size
    print(f"stack_erlang.pcapng: {count} sessions, {size} bytes")
    for problem in problems:
        print(f"tshark check: {problem}", file=sys.stderr)
    print(f"total {time.monotonic() - started:.1f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
