"""The driver of the recorders whose programs speak one line protocol (``record_erlang.py``,
``record_tlslite.py``): a program that is server or client by its arguments and prints each
event on a line of its own (see ``captures/stacks/erlang/tlsnode.escript``). It runs the scenario
matrix of a ``Node`` against ``openssl`` and GnuTLS and against itself, judges each session from
both programs' reports, and checks the recording with tshark."""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import core, keylog, tools, truth, tshark
from .capture import DUMPCAP_LO, capture
from .cli import Recorded
from .core import FAILED, MUTUAL, NOT_SENT, ONE_WAY, PONG, TLS12, TLS13, RecordingError, check
from .pki import Pki
from .programs import Run, clean_env, run_program, serving, tool_versions, wind_down
from .tools import (
    Endpoint,
    gnutls_client_cmd,
    gnutls_client_port,
    gnutls_server_cmd,
    reply_of,
)
from .truth import Where, chain_sent, session_entry, verdict_of
from .tshark import Checked

NODE_REPLY = PONG
NONE, OPTIONAL, REQUIRED = "none", "optional", "required"
VERIFY_MODES = {NONE: ssl.CERT_NONE, OPTIONAL: ssl.CERT_OPTIONAL, REQUIRED: ssl.CERT_REQUIRED}
TOOLS = ("openssl", "gnutls")


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
    # an empty client Certificate counts as cert-requested-not-sent (verdict_of)
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

    def tool_scenario(self) -> Endpoint:
        return Endpoint(self.port, self.version, VERIFY_MODES[self.request])


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
        client_port=gnutls_client_port(log),
    )


def tool_client_report(client: str, run: Run, reply: bytes) -> ClientReport:
    return ClientReport(
        completed=reply in run.out.encode(), alert=tools.received_alert(client, run.text)
    )


# --------------------------------------------------------------------------------------------
# Running one session


def node_version(version: str) -> str:
    """The TLS version argument of the node programs."""
    return "tlsv1.3" if version == TLS13 else "tlsv1.2"


@dataclass(frozen=True)
class Node:
    """A stack whose programs speak the escript's line protocol."""

    name: str
    server_cmd: Callable[[Session, Pki], list[str]]
    client_cmd: Callable[[Session, Pki], list[str]]
    writes_keylog: bool = True
    """The node prints its key log lines itself (``keylog LINE``)."""


def _tool_server(s: Session, pki: Pki, keylog: Path) -> tuple[list[str], dict[str, str]]:
    sc = s.tool_scenario()
    if s.server == "openssl":
        cmd = tools.openssl_server_cmd(sc, pki) + ["-keylogfile", str(keylog)]
        return cmd + list(s.server_args), clean_env()
    cmd = gnutls_server_cmd(sc, pki)
    if s.compress:
        cmd.append(f"--compress-cert={s.compress}")
    return cmd + list(s.server_args), clean_env(keylog)


def _tool_client(s: Session, pki: Pki, keylog: Path) -> tuple[list[str], dict[str, str]]:
    sc = s.tool_scenario()
    identity = pki.client(s.client_id)
    if s.client == "openssl":
        cmd = tools.openssl_client_cmd(sc, pki, identity, keylog)
        if s.later:
            cmd.append("-enable_pha")
        return cmd + list(s.client_args), clean_env()
    cmd = gnutls_client_cmd(sc, pki, identity)
    extra = list(s.client_args)
    if s.later:
        extra.append("--post-handshake-auth")
    if s.compress:
        extra.append(f"--compress-cert={s.compress}")
    return [*cmd[:-1], *extra, cmd[-1]], clean_env(keylog)


def _reply(server: str) -> bytes:
    return reply_of(server) if server in TOOLS else NODE_REPLY


@dataclass
class Outcome:
    server: ServerReport
    client: ClientReport
    logs: str


def _run_client(
    s: Session, pki: Pki, nodes: dict[str, Node], keylog: Path, reply: bytes
) -> tuple[ClientReport, str]:
    if s.client in nodes:
        run = run_program(nodes[s.client].client_cmd(s, pki), clean_env(), 3 * core.TOOL_TIMEOUT)
        client = node_client_report(run.text, reply)
        if not nodes[s.client].writes_keylog:
            client.keylines = []
        return client, run.text
    cmd, env = _tool_client(s, pki, keylog)
    run = tools.run_client_tool(cmd, env, reply)
    return tool_client_report(s.client, run, reply), run.text


def run_session(s: Session, pki: Pki, nodes: dict[str, Node], keylog: Path) -> Outcome:
    """Start the server, wait until it listens, run the client, and collect both reports."""
    if s.server in nodes:
        server_cmd, server_env = nodes[s.server].server_cmd(s, pki), clean_env()
    else:
        server_cmd, server_env = _tool_server(s, pki, keylog)
    with serving(server_cmd, s.port, server_env) as program:
        client, client_log = _run_client(s, pki, nodes, keylog, _reply(s.server))
        wind_down(program, s.port, exits=s.server != "gnutls", timeout=3.0)
    server_log = program.stop()
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


def judge(s: Session, pki: Pki, o: Outcome, new_keys: list[str]) -> dict[str, Any]:
    """The truth entry of one session from both reports, checked against the scenario."""
    name = s.scenario
    identity = pki.client(s.client_id)
    completed = o.client.completed and o.server.established
    cert_sent = s.requested and o.server.cert
    verdict = verdict_of(
        requested=s.requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    try:
        check(name, "verdict", verdict, s.expect)
        if cert_sent:
            check(name, "client with a certificate", identity is not None, True)
        if verdict == MUTUAL:
            check(name, "client certificate the server got", o.server.cn, identity.cn)
        if verdict in (MUTUAL, ONE_WAY) or (verdict == NOT_SENT and s.request == OPTIONAL):
            check(name, "server error", o.server.error, None)
            check(name, "client completed", o.client.completed, True)
        if verdict == FAILED or (verdict == NOT_SENT and s.request == REQUIRED):
            check(name, "server refused", o.server.error is not None, True)
        if s.later:
            check(name, "post-handshake request", o.server.pha, True)
    except RecordingError as exc:
        raise RecordingError(f"{exc}\n{o.logs}") from None
    client_port = o.client.local_port or o.server.client_port
    if client_port is None:
        raise RecordingError(f"{name}: neither program reported the client port\n{o.logs}")
    label = _KEY_LABEL[s.version]
    where = Where(name, s.stack, s.port, s.version, client_port)
    chain = chain_sent(s.requested, cert_sent, identity)
    entry = session_entry(where, verdict, chain, pki.server.sent, alert=o.client.alert)
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


TSHARK_STATES = {tshark.AGREE: "ok", tshark.NO_KEY: "no keys", tshark.MISMATCH: "mismatch"}


def tshark_check(pcap: Path, keylog_path: Path, sessions: list[dict[str, Any]]) -> list[Checked]:
    """``tshark.check``; each entry notes its outcome as ``tshark_check``."""
    checks = tshark.check(pcap, keylog_path, sessions)
    for entry, checked in zip(sessions, checks, strict=True):
        state = TSHARK_STATES[checked.state]
        entry["tshark_check"] = f"{state}: {checked.detail}" if checked.detail else state
    return checks


# --------------------------------------------------------------------------------------------
# Recording


def node_tool_versions(extra: dict[str, str]) -> dict[str, str]:
    tools = tool_versions()
    tools.pop("tcpdump", None)
    tools.pop("python_ssl", None)
    return {**tools, **extra}


def record(
    name: str,
    sessions: Sequence[Session],
    nodes: dict[str, Node],
    out: Path,
    pki: Pki,
    tools: dict[str, str],
    recorded_by: str,
    verbose: bool,
) -> Iterator[Recorded]:
    """Record ``NAME.pcapng`` with its key log and truth in ``out``."""
    pcap, keylog_path = out / f"{name}.pcapng", keylog.fresh(out / f"{name}.keylog")
    entries: list[dict[str, Any]] = []
    with capture(DUMPCAP_LO, pcap, sorted({s.port for s in sessions})):
        for s in sessions:
            before = set(keylog.lines(keylog_path))
            outcome = run_session(s, pki, nodes, keylog_path)
            keylog.append(keylog_path, outcome.client.keylines)
            new_keys = [line for line in keylog.lines(keylog_path) if line not in before]
            if verbose:
                print(f"=== {s.scenario} port {s.port}\n{outcome.logs}")
            entry = judge(s, pki, outcome, new_keys)
            entries.append(entry)
            keyed = "" if entry["keyed"] else " (no keys)"
            print(f"  {s.port} {s.scenario}: {entry['verdict']}{keyed}", flush=True)
    keylog.dedupe(keylog_path)
    checks = tshark_check(pcap, keylog_path, entries)
    truth.write_recording(out, name, recorded_by, tools, entries)
    yield Recorded(pcap, len(entries), checks)
