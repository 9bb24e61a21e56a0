#!/usr/bin/env python3
"""Record TLS sessions whose client authentication comes late, or whose handshake takes a
detour, with their ground truth and key logs.

The companion of ``record.py`` (whose PKI, capture and tool commands, in ``captures/recording/``,
it shares) for:

- TLS 1.2 renegotiation that asks for the client certificate only after the first handshake,
  the classic web-server pattern: ``openssl s_server`` is told ``R`` on its stdin after a line
  of data and sends HelloRequest; the renegotiated handshake carries the CertificateRequest
  (clients: ``openssl s_client`` with and without a certificate, ``gnutls-cli``);
- TLS 1.3 post-handshake client authentication: ``s_server`` told ``c`` (clients ``s_client
  -enable_pha`` and ``gnutls-cli --post-handshake-auth``), and Python ``ssl``
  (``post_handshake_auth`` and ``verify_client_post_handshake()``);
- TLS 1.3 HelloRetryRequest: the client's only key share is for X25519, the server takes P-256;
- TLS 1.3 resumption with 0-RTT early data after a mutual handshake.

Every session runs on 127.0.0.1 while ``dumpcap`` records the loopback interface; the clients
write the key log. The truth comes from what the script did and from what the stacks reported
(``s_server``/``s_client -msg`` message logs and verify output, the ``gnutls-cli`` log, Python's
``getpeercert()`` and message callback), never from the capture.

Usage (as root)::

    python3 captures/record_later.py [--out DIR] [--verbose]
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recording import cli, core, keylog, tools, truth
from recording.capture import (
    DUMPCAP_LO,
    capture,
    connections_closed,
    wait_until,
)
from recording.core import MUTUAL, PING, PONG, POST_HANDSHAKE, TLS12, TLS13, RecordingError, check
from recording.pki import Pki, build_pki
from recording.programs import Program, clean_env, serving, tool_versions
from recording.pyssl import client_context, peer_cn, recv_line, served, server_context
from recording.tools import gnutls_client_cmd, msg_log, readable, version_flag
from recording.truth import Where, chain_sent, session_entry, verdict_of

RECORDED_BY = "captures/record_later.py"
PROGRAMS = ("dumpcap", "openssl", "gnutls-cli")
EARLY = b"early\n"
AFTER = b"after\n"


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Conn:
    """One client connection of a scenario and what it must turn out to be."""

    scenario: str
    client_id: str | None
    expect: str
    command: str | None = None
    """Line typed on ``s_server``'s stdin after the client's first line: ``R`` renegotiates and
    requests a client certificate, ``r`` renegotiates without, ``c`` sends a TLS 1.3
    post-handshake CertificateRequest."""
    later: str | None = None
    hrr: bool = False
    early_data: bool = False
    """Resume the previous connection's session and send ``EARLY`` as 0-RTT data."""


@dataclass(frozen=True)
class ToolScenario:
    """An ``openssl s_server`` on one port and the client connections it serves in order."""

    port: int
    version: str
    client: str  # "openssl" or "gnutls"
    conns: tuple[Conn, ...]
    server_args: tuple[str, ...] = ()
    client_args: tuple[str, ...] = ()

    @property
    def stack(self) -> str:
        return f"openssl/{self.client}"


@dataclass(frozen=True)
class PhaScenario:
    """A Python ``ssl`` server asking a Python client for its certificate after the handshake."""

    port: int
    conn: Conn
    stack: str = "python-ssl/python-ssl"


Scenario = ToolScenario | PhaScenario

REQUIRE = ("-Verify", "4", "-verify_return_error")

TLS12_SCENARIOS: tuple[Scenario, ...] = (
    ToolScenario(
        8561,
        TLS12,
        "openssl",
        (Conn("tls12-renegotiation-mutual", "bob", MUTUAL, "R", core.RENEGOTIATION),),
    ),
    ToolScenario(
        8562,
        TLS12,
        "openssl",
        (
            Conn(
                "tls12-renegotiation-cert-requested-not-sent",
                None,
                core.NOT_SENT,
                "R",
                core.RENEGOTIATION,
            ),
        ),
    ),
    # gnutls-cli 3.7.9 aborts the renegotiation with unexpected_message when the first handshake
    # gave it a TLS 1.2 session ticket; without tickets it completes
    ToolScenario(
        8563,
        TLS12,
        "gnutls",
        (Conn("tls12-renegotiation-mutual-gnutls", "carol", MUTUAL, "R", core.RENEGOTIATION),),
        server_args=("-no_ticket",),
    ),
    ToolScenario(
        8564,
        TLS12,
        "openssl",
        (Conn("tls12-renegotiation-without-request", "bob", core.ONE_WAY, "r"),),
    ),
)

TLS13_SCENARIOS: tuple[Scenario, ...] = (
    ToolScenario(
        8571,
        TLS13,
        "openssl",
        (Conn("tls13-post-handshake-mutual", "bob", MUTUAL, "c", POST_HANDSHAKE),),
        client_args=("-enable_pha",),
    ),
    ToolScenario(
        8572,
        TLS13,
        "gnutls",
        (Conn("tls13-post-handshake-mutual-gnutls", "carol", MUTUAL, "c", POST_HANDSHAKE),),
        client_args=("--post-handshake-auth",),
    ),
    PhaScenario(
        8573, Conn("tls13-post-handshake-mutual-python", "alice", MUTUAL, later=POST_HANDSHAKE)
    ),
    PhaScenario(
        8574,
        Conn(
            "tls13-post-handshake-cert-requested-not-sent-python",
            None,
            core.NOT_SENT,
            later=POST_HANDSHAKE,
        ),
    ),
    ToolScenario(
        8575,
        TLS13,
        "openssl",
        (Conn("tls13-hello-retry-mutual", "bob", MUTUAL, hrr=True),),
        server_args=("-groups", "P-256", *REQUIRE),
        client_args=("-groups", "X25519:P-256"),
    ),
    ToolScenario(
        8576,
        TLS13,
        "openssl",
        (Conn("tls13-hello-retry-one-way", "bob", core.ONE_WAY, hrr=True),),
        server_args=("-groups", "P-256"),
        client_args=("-groups", "X25519:P-256"),
    ),
    ToolScenario(
        8577,
        TLS13,
        "openssl",
        (
            Conn("tls13-mutual-before-0rtt", "bob", MUTUAL),
            Conn("tls13-resumed-0rtt", "bob", core.RESUMED, early_data=True),
        ),
        server_args=("-early_data", *REQUIRE),
    ),
)


@dataclass(frozen=True)
class CaptureSpec:
    name: str
    scenarios: tuple[Scenario, ...]

    @property
    def file(self) -> str:
        return f"{self.name}.pcapng"

    @property
    def keylog(self) -> str:
        return f"{self.name}.keylog"


CAPTURES = (
    CaptureSpec("later_tls12", TLS12_SCENARIOS),
    CaptureSpec("later_tls13", TLS13_SCENARIOS),
)


# --------------------------------------------------------------------------------------------
# What the stacks reported


@dataclass
class Seen:
    """One connection as the server's TLS stack reported it, and what the client reported."""

    messages: list[tuple[str, str]] = field(default_factory=list)  # (sender, name)
    lengths: list[int] = field(default_factory=list)
    verified_cn: str | None = None  # the client leaf the server verified
    verify_error: bool = False
    reused: bool = False
    early_data: bool = False
    fatal_alerts: list[str] = field(default_factory=list)
    completed: bool = False
    client_port: int | None = None

    def first_handshake_end(self) -> int:
        """Index just past the message that completed the first handshake (both Finished)."""
        done: set[str] = set()
        for i, (sender, name) in enumerate(self.messages):
            if name == "Finished":
                done.add(sender)
                if len(done) == 2:
                    return i + 1
        return len(self.messages)

    def count(self, sender: str, name: str) -> int:
        return sum(1 for m in self.messages if m == (sender, name))

    def lengths_of(self, sender: str, name: str) -> list[int]:
        pairs = zip(self.messages, self.lengths, strict=True)
        return [n for m, n in pairs if m == (sender, name)]


_DEPTH0 = re.compile(r"^depth=0 .*?CN ?= ?([^,\n]+)$", re.M)
_FATAL = re.compile(r"Alert \[length [0-9a-f]+\], fatal (\w+)")


def _server_seen(text: str) -> Seen:
    messages, lengths = msg_log(text, "server")
    cns = _DEPTH0.findall(text)
    return Seen(
        messages=messages,
        lengths=lengths,
        verified_cn=cns[-1].strip() if cns else None,
        verify_error="verify error" in text,
        reused="Reused session-id" in text,
        early_data="Early data received:" in text,
        fatal_alerts=_FATAL.findall(text),
    )


# --------------------------------------------------------------------------------------------
# Running the tools


def _wait(ready: Callable[[], bool], what: str, logs: Callable[[], str]) -> None:
    if not wait_until(ready, core.TOOL_TIMEOUT):
        raise RecordingError(f"timed out waiting for {what}\n{readable(logs())}")


def _server_cmd(sc: ToolScenario, pki: Pki) -> list[str]:
    cmd = [
        "openssl",
        "s_server",
        "-accept",
        f"{core.HOST}:{sc.port}",
        "-naccept",
        str(len(sc.conns)),
    ]
    cmd += ["-cert", str(pki.server.cert), "-key", str(pki.server.key)]
    cmd += ["-cert_chain", str(pki.server.extra), "-CAfile", str(pki.root)]
    cmd += [version_flag(sc.version), "-msg", "-verify_return_error"]
    if any(c.command in ("R", "r") for c in sc.conns):
        cmd.append("-no_resumption_on_reneg")  # else the renegotiation resumes the session
    return cmd + list(sc.server_args)


def _client_cmd(
    sc: ToolScenario, conn: Conn, pki: Pki, keylog: Path, session: Path
) -> tuple[list[str], dict[str, str]]:
    identity = pki.client(conn.client_id)
    if sc.client == "gnutls":
        cmd = gnutls_client_cmd(tools.Endpoint(sc.port, sc.version), pki, identity)
        return [*cmd[:-1], *sc.client_args, cmd[-1]], clean_env(keylog)
    cmd = [
        "openssl",
        "s_client",
        "-connect",
        f"{core.HOST}:{sc.port}",
        "-servername",
        core.SERVER_NAME,
    ]
    cmd += ["-CAfile", str(pki.root), "-verify_return_error", "-no_ign_eof", "-nocommands"]
    cmd += [version_flag(sc.version), "-msg", "-keylogfile", str(keylog)]
    if identity is not None:
        cmd += ["-cert", str(identity.cert), "-key", str(identity.key)]
        cmd += ["-cert_chain", str(identity.extra)]
    if conn.early_data:
        early = session.with_suffix(".early")
        early.write_bytes(EARLY)
        cmd += ["-sess_in", str(session), "-early_data", str(early)]
    else:
        cmd += ["-sess_out", str(session)]
    return [*cmd, *sc.client_args], clean_env()


def _later_done(seen: Callable[[], Seen], command: str) -> Callable[[], bool]:
    """The later handshake has ended: the server sent its second Finished (renegotiation) or
    read the client's second Finished (post-handshake authentication)."""
    sender = "client" if command == "c" else "server"
    return lambda: seen().count(sender, "Finished") >= 2


def _converse(
    sc: ToolScenario, conn: Conn, server: Program, client: Program, start: int, index: int
) -> None:
    """ping from the client; the server's command and the later handshake; a line from the
    client after it; pong from the server; then the client closes (close_notify both ways)."""

    def logs() -> str:
        return f"--- server\n{server.text()[start:]}\n--- client\n{client.text()}"

    def seen() -> Seen:
        return _server_seen(server.text()[start:])

    client.send(PING, strict=True)
    _wait(lambda: server.lines(PING) > index, "the client's ping", logs)
    if conn.command is not None:
        server.send(f"{conn.command}\n".encode(), strict=True)
        _wait(_later_done(seen, conn.command), f"the handshake after {conn.command!r}", logs)
        client.send(AFTER, strict=True)
        _wait(lambda: server.lines(AFTER) > index, "the client's line after it", logs)
    server.send(PONG, strict=True)
    _wait(lambda: client.lines(PONG) > 0, "the server's pong", logs)
    client.close_stdin()
    _wait(lambda: client.proc.poll() is not None, "the client to exit", logs)
    _wait(lambda: connections_closed(sc.port), "the server's close", logs)


def run_tool(
    sc: ToolScenario, pki: Pki, keylog: Path, work: Path, verbose: bool
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    session = work / f"session-{sc.port}.pem"
    with serving(_server_cmd(sc, pki), sc.port, stdin=True) as server:
        for index, conn in enumerate(sc.conns):
            start = len(server.text())
            client = Program(*_client_cmd(sc, conn, pki, keylog, session))
            try:
                _converse(sc, conn, server, client, start, index)
            finally:
                client_log = client.stop()
            server_log = server.text()[start:]
            if verbose:
                print(
                    f"=== {conn.scenario}\n--- server\n{readable(server_log)}\n"
                    f"--- client\n{readable(client_log)}"
                )
            seen = _server_seen(server_log)
            seen.completed = True  # _converse returned: every line crossed both ways
            _check_client_view(sc, conn, seen, client_log)
            previous = entries[-1] if entries else None
            entries.append(_judge(conn, sc.version, sc.stack, sc.port, pki, seen, previous))
        wait_until(server.ended, 2.0)
    return entries


def _check_client_view(sc: ToolScenario, conn: Conn, seen: Seen, log: str) -> None:
    """The client must have reported the same handshake as the server."""
    name = conn.scenario
    if sc.client == "openssl":
        messages, _ = msg_log(log, "client")
        check(name, "handshake messages the client reported", messages, seen.messages)
        if conn.early_data:
            check(name, "client early data", "Early data was accepted" in log, True)
        return
    requested = conn.command in ("R", "c")
    if conn.command == "R":
        check(name, "gnutls rehandshake", "*** Rehandshake was performed." in log, requested)
    if conn.command == "c":
        check(name, "gnutls re-auth", "*** Re-auth was performed." in log, requested)
    sent = re.search(r"- Successfully sent (\d+) certificate\(s\) to server", log)
    check(name, "certificates gnutls-cli sent", sent is not None, requested)


# --------------------------------------------------------------------------------------------
# Python ssl: TLS 1.3 post-handshake authentication


_PY_NAMES = {
    "NEWSESSION_TICKET": "NewSessionTicket",
    "SERVER_DONE": "ServerHelloDone",
}


def _py_name(msg_type: object) -> str:
    name = getattr(msg_type, "name", str(msg_type))
    return _PY_NAMES.get(name, "".join(w.capitalize() for w in name.split("_")))


def _pha_server(
    sock: socket.socket, ctx: ssl.SSLContext, peer: list[str | None], errors: list[str]
) -> None:
    """Read a line, ask for the certificate after the handshake, write a line (the request goes
    out before it), read the client's next line (its answer comes before it), answer pong."""
    try:
        raw, _ = sock.accept()
        raw.settimeout(core.IO_TIMEOUT)
        with ctx.wrap_socket(raw, server_side=True) as tls:
            if recv_line(tls) != PING:
                raise RecordingError("no ping")
            if peer_cn(tls.getpeercert()) is not None:
                raise RecordingError("client certificate in the first handshake")
            tls.verify_client_post_handshake()
            tls.sendall(b"cert\n")
            if recv_line(tls) != AFTER:
                raise RecordingError("no line after the post-handshake authentication")
            peer.append(peer_cn(tls.getpeercert()))
            tls.sendall(PONG)
            if tls.recv(64) == b"":
                tls.unwrap()
    except (OSError, ssl.SSLError, RecordingError) as exc:
        errors.append(f"server: {exc}")


def run_python_pha(sc: PhaScenario, pki: Pki, keylog: Path) -> list[dict[str, Any]]:
    """A Python server asking a Python client for its certificate after the handshake."""
    conn = sc.conn
    identity = pki.client(conn.client_id)
    verify = ssl.CERT_REQUIRED if identity is not None else ssl.CERT_OPTIONAL
    sctx = server_context(pki, TLS13, verify)
    sctx.post_handshake_auth = True
    seen = Seen()

    def on_message(_c: Any, direction: str, _v: Any, ctype: Any, mtype: Any, _d: bytes) -> None:
        if ctype == ssl._TLSContentType.HANDSHAKE:
            seen.messages.append(("server" if direction == "write" else "client", _py_name(mtype)))

    sctx._msg_callback = on_message
    cctx = client_context(pki, TLS13, identity, keylog)
    cctx.post_handshake_auth = True
    errors: list[str] = []
    peer: list[str | None] = []
    with served(core.HOST, sc.port, _pha_server, sctx, peer, errors):
        try:
            raw = socket.create_connection((core.HOST, sc.port), timeout=core.IO_TIMEOUT)
            seen.client_port = raw.getsockname()[1]
            with cctx.wrap_socket(raw, server_hostname=core.SERVER_NAME) as tls:
                tls.sendall(PING)
                if recv_line(tls) != b"cert\n":
                    raise RecordingError("no line from the server")
                tls.sendall(AFTER)
                seen.completed = recv_line(tls) == PONG
                tls.unwrap()
        except (OSError, ssl.SSLError) as exc:
            errors.append(f"client: {exc}")
    if errors or not peer:
        raise RecordingError(f"{conn.scenario}: {'; '.join(errors) or 'server did not end'}")
    seen.verified_cn = peer[0]
    return [_judge(conn, TLS13, sc.stack, sc.port, pki, seen, None)]


# --------------------------------------------------------------------------------------------
# Ground truth


def _judge(
    conn: Conn,
    version: str,
    stack: str,
    port: int,
    pki: Pki,
    seen: Seen,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """The truth entry of one connection from what the stacks reported; checked against what
    the scenario set out to do."""
    name = conn.scenario
    identity = pki.client(conn.client_id)
    end = seen.first_handshake_end()
    first, later = seen.messages[:end], seen.messages[end:]
    requested_first = ("server", "CertificateRequest") in first
    requested_later = ("server", "CertificateRequest") in later
    requested = requested_first or requested_later
    answered = ("client", "Certificate") in (later if requested_later else first)
    cert_sent = requested and seen.verified_cn is not None
    later_auth = None
    if requested_later:
        later_auth = core.RENEGOTIATION if version == TLS12 else POST_HANDSHAKE
    hrr = version == TLS13 and seen.count("client", "ClientHello") == 2
    verdict = verdict_of(
        requested=requested, resumed=seen.reused, completed=seen.completed, cert_sent=cert_sent
    )
    logs = f"messages: {seen.messages}"
    try:
        check(name, "fatal alerts", seen.fatal_alerts, [])
        check(name, "verify errors", seen.verify_error, False)
        check(name, "verdict", verdict, conn.expect)
        check(name, "later authentication", later_auth, conn.later)
        check(name, "HelloRetryRequest", hrr, conn.hrr)
        check(name, "early data", seen.early_data, conn.early_data)
        if requested:
            check(name, "client Certificate message", answered, True)
            check(name, "client verified", seen.verified_cn, identity and identity.cn)
        if conn.command in ("R", "r"):
            check(name, "HelloRequest", seen.count("server", "HelloRequest"), 1)
            check(name, "renegotiating ClientHello", seen.count("client", "ClientHello"), 2)
        if version == TLS12 and requested:
            sizes = seen.lengths_of("client", "Certificate")
            check(name, "empty TLS 1.2 Certificate", sizes[-1] == 7, not cert_sent)
    except RecordingError as exc:
        raise RecordingError(f"{exc}\n{logs}") from None
    from_mutual = None
    if verdict == core.RESUMED:
        if previous is None:
            raise RecordingError(f"{name}: resumed, but no session before it")
        from_mutual = previous["verdict"] == MUTUAL
    where = Where(name, stack, port, version, seen.client_port)
    chain = chain_sent(requested, True, identity)
    entry = session_entry(
        where,
        verdict,
        chain,
        None if seen.reused else pki.server.sent,
        resumed_from_mutual=from_mutual,
    )
    entry.update(
        ended=None,
        later_auth=later_auth,
        hello_retry_request=hrr,
        early_data=seen.early_data,
        messages=[f"{sender}:{msg}" for sender, msg in seen.messages],
    )
    return entry


def record(spec: CaptureSpec, out: Path, pki: Pki, work: Path, verbose: bool) -> int:
    keylog_path = keylog.fresh(out / spec.keylog)
    sessions: list[dict[str, Any]] = []
    with capture(DUMPCAP_LO, out / spec.file, [sc.port for sc in spec.scenarios]):
        for sc in spec.scenarios:
            if isinstance(sc, PhaScenario):
                sessions += run_python_pha(sc, pki, keylog_path)
            else:
                sessions += run_tool(sc, pki, keylog_path, work, verbose)
    truth.write_recording(out, spec.name, RECORDED_BY, tool_versions(), sessions)
    return len(sessions)


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parser(__doc__, verbose="print the tools' output").parse_args(argv)
    cli.require(PROGRAMS)

    def record_all(out: Path, work: Path) -> Iterator[cli.Recorded]:
        pki = build_pki(work / "pki", None)  # public certificates are not exported
        for spec in CAPTURES:
            yield cli.Recorded(out / spec.file, record(spec, out, pki, work, args.verbose))

    return cli.run("later", args.out, record_all)


if __name__ == "__main__":
    raise SystemExit(main())
