#!/usr/bin/env python3
"""Record mutual-TLS sessions of wolfSSL against OpenSSL, GnuTLS and itself, with ground truth.

The companion of ``record.py`` (whose PKI, capture and tool functions it uses). A small C program,
``captures/stacks/wolfssl/peer.c``, is compiled with ``gcc`` into a temporary folder and linked
with the system's wolfSSL (Debian ``libwolfssl-dev`` 5.5.4). It is server or client by its
arguments and prints one line per thing it saw (``EVENT ...``). Every scenario of the matrix
runs with the wolfSSL peer as server against ``openssl s_client`` and ``gnutls-cli``, as client
against ``openssl s_server`` and ``gnutls-serv``, and against itself, in TLS 1.3 and TLS 1.2:
mutual, one-way, cert-requested-not-sent, required-without-cert, refused-unknown-ca,
refused-expired, and in TLS 1.3 post-handshake client authentication.

The truth comes from what both programs reported (the server's log of the client certificate it
got, the client's report of the reply it read or of the alert it received), never from the
capture. Afterwards every session is checked against tshark's dissection of the capture (with
the key log): a CertificateRequest must be there iff the server asked, and a client Certificate
with at least one certificate iff the client sent one.

This module also holds the machinery for ``record_mbedtls.py``: a stack is a ``Stack`` and the
recording is ``run(stack, argv)``.

Usage (as root)::

    python3 captures/record_wolfssl.py [--out DIR] [--verbose]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record as rec  # noqa: E402  (PKI, capture and tool functions)

TLS12, TLS13 = rec.TLS12, rec.TLS13
MUTUAL, ONE_WAY, NOT_SENT, FAILED = rec.MUTUAL, rec.ONE_WAY, rec.NOT_SENT, rec.FAILED
POST_HANDSHAKE = "post-handshake"
HOST = "127.0.0.1"
AFTER = b"after\n"
CERT_LINE = b"cert\n"
WAIT = rec.TOOL_TIMEOUT
EXPIRED = "erin"
"""The client whose certificate, issued by the right intermediate CA, expired yesterday."""
EC_SERVER = "ec-server"
"""Not a client: the server's ECDSA identity, kept among the clients of the ``rec.Pki``."""


# --------------------------------------------------------------------------------------------
# The stack under test and the matrix


@dataclass(frozen=True)
class Stack:
    name: str
    source: Path
    libs: tuple[str, ...]
    versions: tuple[str, ...]
    ports: range
    pha: bool
    """The stack does TLS 1.3 post-handshake client authentication."""
    tls12_ec_server: bool
    """As TLS 1.2 server the stack gets an ECDSA server certificate for the matrix (and the
    RSA one only in the ``RSA_SERVER_SCENARIOS``)."""
    recorded_by: str
    library_version: Callable[[], str]


@dataclass(frozen=True)
class Scenario:
    name: str
    verify: str  # what the server does: "none", "optional", "require", "pha"
    client_id: str | None
    expect: str
    rsa_server: bool = False
    """The stack's server has the RSA certificate even where ``Stack.tls12_ec_server``."""
    client_sends: bool | None = None
    """Whether the client sends its certificate, where that is not simply whether it has one:
    the one pairing (``only``) for which the scenario is made."""
    only: str | None = None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("mutual", "require", "alice", MUTUAL),
    Scenario("one-way", "none", None, ONE_WAY),
    Scenario("cert-requested-not-sent", "optional", None, NOT_SENT),
    # the client sends an empty Certificate; rec.verdict_of counts that as not sent
    Scenario("required-without-cert", "require", None, NOT_SENT),
    Scenario("refused-unknown-ca", "require", "mallory", FAILED),
    Scenario("refused-expired", "require", EXPIRED, FAILED),
)
PHA_SCENARIO = Scenario("post-handshake-mutual", "pha", "alice", MUTUAL)
RSA_SERVER_SCENARIOS: tuple[Scenario, ...] = (
    # wolfSSL's TLS 1.2 CertificateRequest behind an RSA suite offers only rsa_sign and RSA
    # signature schemes: s_client leaves its ECDSA certificate out (empty Certificate) ...
    Scenario("rsa-server-ec-client-declined", "require", "alice", NOT_SENT, True, False, "openssl"),
    # ... and gnutls-cli finds no signature scheme for it and aborts with handshake_failure
    # instead of a Certificate (its log says "Successfully sent 2 certificate(s)" all the same;
    # the server's report, no certificate, is what counts). No Certificate message at all, but a
    # fatal alert from the client: the handshake failed (an empty Certificate would be not-sent)
    Scenario("rsa-server-ec-client-aborts", "require", "alice", FAILED, True, False, "gnutls"),
)


@dataclass(frozen=True)
class Case:
    scenario: Scenario
    version: str
    server: str  # the stack's name, "openssl" or "gnutls"
    client: str
    port: int
    ec_server_default: bool = False

    @property
    def ec_server(self) -> bool:
        """The server is the stack's program with the ECDSA server certificate."""
        return (
            self.ec_server_default
            and self.version == TLS12
            and self.server not in ("openssl", "gnutls")
            and not self.scenario.rsa_server
        )

    @property
    def name(self) -> str:
        v = "tls13" if self.version == TLS13 else "tls12"
        return f"{v}-{self.scenario.name}-{self.server}-server-{self.client}-client"

    @property
    def stack(self) -> str:
        return f"{self.server}/{self.client}"

    @property
    def pha(self) -> bool:
        return self.scenario.verify == "pha"

    @property
    def requested(self) -> bool:
        return self.scenario.verify != "none"


def cases(stack: Stack) -> list[Case]:
    """The matrix: per version and scenario one port, and on it the five pairings in turn."""
    me = stack.name
    pairings = [(me, "openssl"), (me, "gnutls"), ("openssl", me), ("gnutls", me), (me, me)]
    out: list[Case] = []
    for version in (TLS13, TLS12):
        if version not in stack.versions:
            continue
        base = stack.ports.start + (1 if version == TLS13 else 11)
        scenarios = list(SCENARIOS)
        if version == TLS13 and stack.pha:
            scenarios.append(PHA_SCENARIO)
        if version == TLS12 and stack.tls12_ec_server:
            scenarios += RSA_SERVER_SCENARIOS
        for i, sc in enumerate(scenarios):
            port = base + i
            if port not in stack.ports:
                raise SystemExit(f"port {port} is outside {stack.ports}")
            for server, client in pairings:
                if sc.verify == "pha" and server == "gnutls":
                    continue  # gnutls-serv has no way to ask for a certificate later
                if sc.only is not None and (server, client) != (me, sc.only):
                    continue
                out.append(Case(sc, version, server, client, port, stack.tls12_ec_server))
    return out


# --------------------------------------------------------------------------------------------
# PKI: record.py's, plus a client certificate that has expired


def build_pki(work: Path) -> rec.Pki:
    """``rec.build_pki`` plus client-erin, issued by the client intermediate CA, valid from 30
    days ago until yesterday, and a server certificate with a P-256 key (same name, same
    root)."""
    issued: list[Any] = []
    original = rec._issue

    def keep(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        issued.append(result)
        return result

    rec._issue = keep  # to get hold of the intermediate CA's key
    try:
        pki = rec.build_pki(work, None)
    finally:
        rec._issue = original
    intermediate = next(i for i in issued if i.cn == "Test Client Intermediate CA")
    leaf = rec._issue(
        rec._name("US", "Example Clients", f"client-{EXPIRED}"),
        "ec",
        intermediate,
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        san=[x509.UniformResourceIdentifier(f"spiffe://example.test/{EXPIRED}")],
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.cert.subject)
        .issuer_name(leaf.cert.issuer)
        .public_key(leaf.key.public_key())
        .serial_number(leaf.cert.serial_number)
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
    )
    for ext in leaf.cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    cert = builder.sign(intermediate.key, hashes.SHA256())
    stem = leaf.cn
    pem = cert.public_bytes(serialization.Encoding.PEM)
    extra = intermediate.cert.public_bytes(serialization.Encoding.PEM)
    (work / f"{stem}.pem").write_bytes(pem)
    (work / f"{stem}-extra.pem").write_bytes(extra)
    (work / f"{stem}-chain.pem").write_bytes(pem + extra)
    (work / f"{stem}.key").write_bytes(
        leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    identity = rec.Identity(
        cn=stem,
        cert=work / f"{stem}.pem",
        key=work / f"{stem}.key",
        chain=work / f"{stem}-chain.pem",
        extra=work / f"{stem}-extra.pem",
        sent=(stem, intermediate.cn),
    )
    root = next(i for i in issued if i.cn == "Test Root CA")
    server = rec._issue(
        rec._name("US", "Example Servers", rec.SERVER_NAME),
        "ec",
        root,
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[
            x509.DNSName(rec.SERVER_NAME),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address(HOST)),
        ],
    )
    ec = work / "ec-server"
    ec.mkdir()
    spem = server.cert.public_bytes(serialization.Encoding.PEM)
    rpem = root.cert.public_bytes(serialization.Encoding.PEM)
    (ec / "server.pem").write_bytes(spem)
    (ec / "server-extra.pem").write_bytes(rpem)
    (ec / "server-chain.pem").write_bytes(spem + rpem)
    (ec / "server.key").write_bytes(
        server.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ec_server = rec.Identity(
        cn=rec.SERVER_NAME,
        cert=ec / "server.pem",
        key=ec / "server.key",
        chain=ec / "server-chain.pem",
        extra=ec / "server-extra.pem",
        sent=(rec.SERVER_NAME, root.cn),
    )
    return replace(pki, clients={**pki.clients, EXPIRED: identity, EC_SERVER: ec_server})


# --------------------------------------------------------------------------------------------
# Programs


def compile_peer(stack: Stack, work: Path) -> Path:
    binary = work / f"{stack.name}-peer"
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(binary), str(stack.source), *stack.libs]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise rec.RecordingError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return binary


class Proc:
    """A program with its stdin on a pipe and its stdout and stderr collected together."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self.out = rec._Drain(self.proc.stdout)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the program has ended; the judging tells what that means

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def has(self, data: bytes) -> bool:
        return data in bytes(self.out.data)

    def ended(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> str:
        rec._stop(self.proc)
        return self.out.join()


def _env(keylog: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if keylog is not None:
        env["SSLKEYLOGFILE"] = str(keylog)
    return env


def _tool_scenario(case: Case) -> rec.ToolScenario:
    request = {"none": rec.NONE, "optional": rec.OPT, "require": rec.REQ, "pha": rec.NONE}
    return rec.ToolScenario(
        case.name,
        case.port,
        case.version,
        case.stack,
        request[case.scenario.verify],
        case.scenario.client_id,
        case.scenario.expect,
    )


def _version_arg(version: str) -> str:
    return "1.3" if version == TLS13 else "1.2"


def server_cmd(case: Case, binary: Path, pki: rec.Pki, keylog: Path) -> list[str]:
    if case.server == "openssl":
        cmd = rec._openssl_server_cmd(_tool_scenario(case), pki)
        if case.pha:
            cmd.remove("-rev")  # the server's lines come from its stdin; "c" asks for the cert
        return [*cmd, "-keylogfile", str(keylog)]
    if case.server == "gnutls":
        return rec._gnutls_server_cmd(_tool_scenario(case), pki)
    cmd = [str(binary), "server", str(case.port), _version_arg(case.version), str(pki.root)]
    identity = pki.clients[EC_SERVER] if case.ec_server else pki.server
    cmd += ["--cert", str(identity.chain), "--key", str(identity.key)]
    cmd += ["--pha"] if case.pha else ["--verify", case.scenario.verify]
    return [*cmd, "--keylog", str(keylog)]


def client_cmd(case: Case, binary: Path, pki: rec.Pki, keylog: Path) -> list[str]:
    identity = pki.client(case.scenario.client_id)
    if case.client == "openssl":
        cmd = rec._openssl_client_cmd(_tool_scenario(case), pki, identity, keylog)
        return [*cmd, "-enable_pha"] if case.pha else cmd
    if case.client == "gnutls":
        cmd = rec._gnutls_client_cmd(_tool_scenario(case), pki, identity)
        return [*cmd[:-1], "--post-handshake-auth", cmd[-1]] if case.pha else cmd
    cmd = [str(binary), "client", str(case.port), _version_arg(case.version), str(pki.root)]
    if identity is not None:
        cmd += ["--cert", str(identity.chain), "--key", str(identity.key)]
    cmd += ["--sni", rec.SERVER_NAME, "--keylog", str(keylog)]
    return [*cmd, "--pha"] if case.pha else cmd


def _reply(case: Case) -> bytes:
    """The line the server answers the ping with."""
    if case.server == "openssl":
        return rec.PONG if case.pha else b"gnip\n"
    if case.server == "gnutls":
        return rec.PING  # gnutls-serv --echo
    return rec.PONG


def converse(case: Case, stack: Stack, server: Proc, client: Proc) -> None:
    """Drive the tools' stdin: the stack's own program needs nothing, ``s_client`` and
    ``gnutls-cli`` get the client's lines, ``s_server`` (post-handshake case) the server's."""

    def wait(ready: Callable[[], bool]) -> bool:
        return rec._wait_until(ready, WAIT)

    def client_done() -> bool:
        return client.ended()

    if case.client != stack.name:
        client.send(rec.PING)
        if case.pha:
            wait(lambda: client.has(CERT_LINE) or client_done())
            client.send(AFTER)
        wait(lambda: client.has(_reply(case)) or client_done())
        time.sleep(0.1)  # a TLS 1.3 session ticket may still be on its way
        client.close_stdin()
    elif case.server == "openssl" and case.pha:
        if wait(lambda: server.has(rec.PING) or client_done()) and not client_done():
            server.send(b"c\n")
            time.sleep(0.2)
            server.send(CERT_LINE)
            wait(lambda: server.has(AFTER) or client_done())
            server.send(rec.PONG)
    wait(client_done)
    rec._wait_until(lambda: rec._connections_closed(case.port), 2.0)
    if case.server != "gnutls":
        rec._wait_until(server.ended, 2.0)


# --------------------------------------------------------------------------------------------
# What the programs reported


_EVENT = re.compile(r"^EVENT (\w+)(.*)$", re.M)
_FIELD = re.compile(r"(\w+)=(.*?)(?= \w+=|$)")


def events(text: str) -> list[tuple[str, dict[str, str]]]:
    return [(m.group(1), dict(_FIELD.findall(m.group(2).strip()))) for m in _EVENT.finditer(text)]


@dataclass
class Report:
    """One end of the connection as its program reported it."""

    program: str
    completed: bool = False
    """Server: read the ping (and the line after the later authentication) and answered;
    client: read the answer."""
    peer_cn: str | None = None
    """Server: the client certificate it accepted (``None``: none)."""
    offered_cn: str | None = None
    """Server: the client certificate it got, accepted or not (where its log tells)."""
    later_request: bool = False
    alert: str | None = None
    """Client: the fatal alert it received."""
    client_port: int | None = None
    error: str | None = None
    version: str | None = None
    notes: list[str] = field(default_factory=list)


_VERSIONS = {"TLSv1.2": TLS12, "TLSv1.3": TLS13}


def own_report(case: Case, role: str, text: str) -> Report:
    rep = Report(program=case.server if role == "server" else case.client)
    lines = []
    for kind, f in events(text):
        if kind in ("connected", "accepted"):
            rep.client_port = int(f["client_port"])
        elif kind == "handshake" and "version" in f:
            rep.version = _VERSIONS.get(f["version"])
        elif kind.endswith("_failed") or kind == "fatal":
            rep.error = rep.error or f"{kind}: {f.get('reason') or f.get('what')}"
        elif kind == "alert_received" and f.get("level") == "2" and rep.alert is None:
            rep.alert = rec.ALERTS.get(int(f["code"]), f"alert {f['code']}")
        elif kind == "peer_cert":
            rep.offered_cn = f.get("cn")
            if "handshake_failed" not in {k for k, _ in events(text)}:
                rep.peer_cn = f.get("cn")
        elif kind == "certificate_requested":
            rep.later_request = True
        elif kind == "read":
            lines.append(f.get("line", ""))
        elif kind == "keylog" and "unavailable" in f:
            rep.notes.append("no key")
    if role == "server":
        want = ["ping", "after"] if case.pha else ["ping"]
        rep.completed = lines[: len(want)] == want and "wrote line=pong" in text
    else:
        want = ["cert", "pong"] if case.pha else [_reply(case).decode().strip()]
        rep.completed = lines[: len(want)] == want
    return rep


_OPENSSL_PEER = re.compile(r"^(?:Peer certificate: |depth=0 ).*?CN ?= ?([^,\n]+)$", re.M)
_GNUTLS_PEER = re.compile(r"Subject: CN=([^,\n]+),")


def tool_report(case: Case, role: str, text: str) -> Report:
    program = case.server if role == "server" else case.client
    rep = Report(program=program)
    if role == "client":
        rep.completed = _reply(case).decode() in text
        if case.pha:
            rep.completed = rep.completed and CERT_LINE.decode() in text
        rep.alert = rec._received_alert(program, rec.ToolRun(None, text, ""))
        if not rep.completed:
            rep.error = _last_error(text)
        return rep
    if program == "openssl":
        found = _OPENSSL_PEER.findall(text)
        rep.offered_cn = found[-1].strip() if found else None  # the last leaf verified
    else:
        found = _GNUTLS_PEER.findall(text)
        rep.offered_cn = found[0].strip() if found else None  # the leaf is printed first
    failed = (
        "CONNECTION FAILURE" in text or "verify error" in text
        if program == "openssl"
        else bool(re.search(r"Error in handshake|Error while|\*\*\* .*error", text, re.I))
    )
    if failed:
        rep.error = _last_error(text)
    else:
        rep.peer_cn = rep.offered_cn
    if case.pha:
        rep.later_request = rep.peer_cn is not None
    rep.completed = not failed  # the client's report tells whether the lines crossed
    return rep


def _last_error(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        if re.search(r"error|alert|fail", line, re.I):
            return line.strip()[:200]
    return None


# --------------------------------------------------------------------------------------------
# Running and judging one case


def _keylog_lines(keylog: Path) -> set[str]:
    return {line for line in keylog.read_text().splitlines() if line.strip()}


def run_case(
    case: Case, stack: Stack, binary: Path, pki: rec.Pki, keylog: Path, verbose: bool
) -> dict[str, Any]:
    if rec._listening(case.port):
        raise rec.RecordingError(f"port {case.port} is already in use")
    before = _keylog_lines(keylog)
    server_keylog = keylog if case.server == "gnutls" else None
    client_keylog = keylog if case.client == "gnutls" else None
    server = Proc(server_cmd(case, binary, pki, keylog), _env(server_keylog))
    try:
        rec._wait_listening(case.port, server.proc)
        client = Proc(client_cmd(case, binary, pki, keylog), _env(client_keylog))
        try:
            converse(case, stack, server, client)
        finally:
            client_log = client.stop()
    finally:
        server_log = server.stop()
    logs = f"--- server\n{server_log}\n--- client\n{client_log}"
    if verbose:
        print(f"=== {case.name} (port {case.port})\n{logs}")
    own = stack.name
    srv = (own_report if case.server == own else tool_report)(case, "server", server_log)
    cli = (own_report if case.client == own else tool_report)(case, "client", client_log)
    keyed = bool(_keylog_lines(keylog) - before)
    try:
        return judge(case, pki, srv, cli, keyed)
    except rec.RecordingError as exc:
        raise rec.RecordingError(f"{exc}\n{logs}") from None


def judge(case: Case, pki: rec.Pki, srv: Report, cli: Report, keyed: bool) -> dict[str, Any]:
    name = case.name
    sc = case.scenario
    identity = pki.client(sc.client_id)
    requested = case.requested
    cert_sent = requested and identity is not None
    if sc.client_sends is not None:
        cert_sent = requested and sc.client_sends
    completed = srv.completed and cli.completed
    for rep in (srv, cli):
        if rep.version is not None:
            rec.check(name, f"{rep.program} version", rep.version, case.version)
    if completed:
        expected_cn = identity.cn if cert_sent and identity else None
        rec.check(name, "client certificate accepted by the server", srv.peer_cn, expected_cn)
    else:
        rec.check(name, "a failure reported", bool(srv.error or cli.error or cli.alert), True)
        if cert_sent and identity is not None and srv.offered_cn is not None:
            rec.check(name, "client certificate the server got", srv.offered_cn, identity.cn)
    if srv.program == case.server and case.server not in ("openssl", "gnutls"):
        want = identity.cn if cert_sent and identity else None
        rec.check(name, "client certificate the server reported", srv.offered_cn, want)
    if case.pha:
        rec.check(name, "post-handshake CertificateRequest sent", srv.later_request, True)
    verdict = rec.verdict_of(
        requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    if sc.name == "rsa-server-ec-client-aborts":
        verdict = FAILED  # the client answered the request with an alert, not a Certificate
    rec.check(name, "verdict", verdict, sc.expect)
    client_port = cli.client_port or srv.client_port
    if client_port is None:
        raise rec.RecordingError(f"{name}: no program reported the client port")
    entry = rec.session_entry(
        scenario=name,
        stack=case.stack,
        ip=HOST,
        client_port=client_port,
        server_port=case.port,
        version=case.version,
        sni=rec.SERVER_NAME,
        verdict=verdict,
        resumed_from_mutual=None,
        alert=cli.alert,
        client_chain=None if not requested else (identity.sent if identity and cert_sent else ()),
        server_chain=pki.server.sent,
    )
    entry.update(
        keyed=keyed,
        later_auth=POST_HANDSHAKE if case.pha else None,
        server_key="ECDSA P-256" if case.ec_server else "RSA 2048",
        server_report=_summary(srv),
        client_report=_summary(cli),
    )
    return entry


def _summary(rep: Report) -> str:
    parts = [rep.program, "completed" if rep.completed else "not completed"]
    if rep.peer_cn or rep.offered_cn:
        parts.append(f"client certificate {rep.offered_cn or rep.peer_cn}")
        if rep.offered_cn and rep.peer_cn is None:
            parts[-1] += " (refused)"
    if rep.alert:
        parts.append(f"received alert {rep.alert}")
    if rep.error:
        parts.append(rep.error)
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Checking the truth against tshark's view of the capture


def tshark_check(pcap: Path, keylog: Path, sessions: list[dict[str, Any]]) -> list[str]:
    """Per session: a CertificateRequest iff requested, a client Certificate with at least one
    certificate iff sent. Returns one line per session, ``MISMATCH`` where they differ."""
    cmd = ["tshark", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-Y", "tls.handshake"]
    cmd += ["-T", "fields", "-E", "separator=|", "-e", "tcp.srcport", "-e", "tcp.dstport"]
    cmd += ["-e", "tls.handshake.type", "-e", "tls.handshake.certificate_length"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seen: dict[tuple[int, int], dict[str, int]] = {}
    for line in done.stdout.splitlines():
        src, dst, types, lengths = line.split("|")
        for key, sender in (((int(src), int(dst)), "client"), ((int(dst), int(src)), "server")):
            counts = seen.setdefault(key, {"cr": 0, "client_certs": 0, "client_cert_msgs": 0})
            kinds = types.split(",")
            if sender == "server" and "13" in kinds:
                counts["cr"] += kinds.count("13")
            if sender == "client" and "11" in kinds:
                counts["client_cert_msgs"] += kinds.count("11")
                counts["client_certs"] += len([n for n in lengths.split(",") if n])
    out: list[str] = []
    for s in sessions:
        key = (s["client_port"], s["server_port"])
        counts = seen.get(key, {"cr": 0, "client_certs": 0, "client_cert_msgs": 0})
        requested = s["client_chain"] is not None
        sent = bool(s["client_chain"])
        got_requested = counts["cr"] > 0
        got_sent = counts["client_certs"] > 0
        visible = s["keyed"] or s["tls_version"] == TLS12
        state = "ok"
        if not visible:
            state = "no key (TLS 1.3 handshake not visible)"
        elif (got_requested, got_sent) != (requested, sent):
            state = (
                f"MISMATCH: CertificateRequest {got_requested} (truth {requested}), "
                f"client certificates {counts['client_certs']} (truth sent {sent})"
            )
        out.append(f"{s['scenario']} {s['client_port']}->{s['server_port']}: {state}")
    return out


# --------------------------------------------------------------------------------------------
# Recording


def tool_versions(stack: Stack) -> dict[str, str]:
    tools = rec.tool_versions()
    tools[stack.name] = stack.library_version()
    tools["gcc"] = rec._version_of(["gcc", "--version"])
    return tools


def _dedupe(keylog: Path) -> None:
    seen: dict[str, None] = {}
    for line in keylog.read_text().splitlines():
        if line.strip():
            seen.setdefault(line, None)
    keylog.write_text("".join(f"{line}\n" for line in seen))


def record(stack: Stack, out: Path, work: Path, verbose: bool) -> tuple[int, list[str]]:
    pki = build_pki(work / "pki")
    binary = compile_peer(stack, work)
    stem = f"stack_{stack.name}"
    pcap, keylog = out / f"{stem}.pcapng", out / f"{stem}.keylog"
    keylog.unlink(missing_ok=True)
    keylog.touch()
    todo = cases(stack)
    sessions: list[dict[str, Any]] = []
    with rec.capture(rec.DUMPCAP_LO, pcap, sorted({c.port for c in todo})):
        for case in todo:
            entry = run_case(case, stack, binary, pki, keylog, verbose)
            sessions.append(entry)
            if verbose:
                print(f"{case.name}: {entry['verdict']}, keyed {entry['keyed']}")
    _dedupe(keylog)
    doc = {
        "capture": pcap.name,
        "keylog": keylog.name,
        "recorded_by": stack.recorded_by,
        "captured_with": "dumpcap -i lo",
        "tools": tool_versions(stack),
        "sessions": sessions,
    }
    truth = out / f"{stem}.truth.json"
    truth.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for path in (pcap, keylog, truth):
        path.chmod(0o644)
    return len(sessions), tshark_check(pcap, keylog, sessions)


def run(stack: Stack, argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Record {stack.name} sessions with truth.")
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the programs' output")
    args = parser.parse_args(argv)
    needed = ("dumpcap", "tshark", "gcc", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf")
    missing = [p for p in needed if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise SystemExit("capturing on loopback needs root")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"tls-{stack.name}-") as tmp:
        try:
            count, checks = record(stack, out, Path(tmp), args.verbose)
        except (rec.RecordingError, OSError, subprocess.CalledProcessError) as exc:
            print(f"stack_{stack.name}: {exc}", file=sys.stderr)
            return 1
    pcap = out / f"stack_{stack.name}.pcapng"
    for line in checks:
        if args.verbose or not line.endswith(": ok"):
            print(line)
    bad = [line for line in checks if "MISMATCH" in line]
    agree = [line for line in checks if line.endswith(": ok")]
    print(
        f"{pcap.name}: {count} sessions, {pcap.stat().st_size} bytes, "
        f"{time.monotonic() - started:.1f} s; tshark check: {len(agree)} agree, "
        f"{len(bad)} mismatches, {len(checks) - len(agree) - len(bad)} without key"
    )
    return 1 if bad else 0


def _wolfssl_version() -> str:
    header = Path("/usr/include/wolfssl/version.h")
    match = re.search(r'LIBWOLFSSL_VERSION_STRING "([^"]+)"', header.read_text())
    return f"wolfSSL {match.group(1)}" if match else "unknown"


WOLFSSL = Stack(
    name="wolfssl",
    source=HERE / "stacks" / "wolfssl" / "peer.c",
    libs=("-lwolfssl",),
    versions=(TLS13, TLS12),
    ports=range(9500, 9550),
    pha=True,
    tls12_ec_server=True,
    recorded_by="captures/record_wolfssl.py",
    library_version=_wolfssl_version,
)


if __name__ == "__main__":
    sys.exit(run(WOLFSSL))
