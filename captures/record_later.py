#!/usr/bin/env python3
"""Record TLS sessions whose client authentication comes late, or whose handshake takes a
detour, with their ground truth and key logs.

The companion of ``record.py`` (whose PKI, capture and tool helpers it uses) for:

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

import argparse
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record as rec  # noqa: E402  (PKI, capture, Python ssl and tool helpers)

RECORDED_BY = "captures/record_later.py"
TLS12, TLS13 = rec.TLS12, rec.TLS13
MUTUAL, ONE_WAY, NOT_SENT, RESUMED = rec.MUTUAL, rec.ONE_WAY, rec.NOT_SENT, rec.RESUMED
RENEGOTIATION = "renegotiation"
POST_HANDSHAKE = "post-handshake"
HOST = "127.0.0.1"
EARLY = b"early\n"
AFTER = b"after\n"
WAIT = rec.TOOL_TIMEOUT


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
        (Conn("tls12-renegotiation-mutual", "bob", MUTUAL, "R", RENEGOTIATION),),
    ),
    ToolScenario(
        8562,
        TLS12,
        "openssl",
        (Conn("tls12-renegotiation-cert-requested-not-sent", None, NOT_SENT, "R", RENEGOTIATION),),
    ),
    # gnutls-cli 3.7.9 aborts the renegotiation with unexpected_message when the first handshake
    # gave it a TLS 1.2 session ticket; without tickets it completes
    ToolScenario(
        8563,
        TLS12,
        "gnutls",
        (Conn("tls12-renegotiation-mutual-gnutls", "carol", MUTUAL, "R", RENEGOTIATION),),
        server_args=("-no_ticket",),
    ),
    ToolScenario(
        8564,
        TLS12,
        "openssl",
        (Conn("tls12-renegotiation-without-request", "bob", ONE_WAY, "r"),),
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
            NOT_SENT,
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
        (Conn("tls13-hello-retry-one-way", "bob", ONE_WAY, hrr=True),),
        server_args=("-groups", "P-256"),
        client_args=("-groups", "X25519:P-256"),
    ),
    ToolScenario(
        8577,
        TLS13,
        "openssl",
        (
            Conn("tls13-mutual-before-0rtt", "bob", MUTUAL),
            Conn("tls13-resumed-0rtt", "bob", RESUMED, early_data=True),
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


_MSG = re.compile(r"^(<<<|>>>) [^,\n]+, Handshake \[length ([0-9a-f]+)\], (\w+)", re.M)
_DEPTH0 = re.compile(r"^depth=0 .*?CN ?= ?([^,\n]+)$", re.M)
_FATAL = re.compile(r"Alert \[length [0-9a-f]+\], fatal (\w+)")


def _msg_log(text: str, me: str) -> tuple[list[tuple[str, str]], list[int]]:
    """Handshake messages of an ``openssl -msg`` log as (sender, name), and their lengths;
    ``me`` is the role of the program that wrote the log."""
    peer = "client" if me == "server" else "server"
    found = _MSG.findall(text)
    return [(me if d == ">>>" else peer, n) for d, _, n in found], [int(n, 16) for _, n, _ in found]


def _server_seen(text: str) -> Seen:
    messages, lengths = _msg_log(text, "server")
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


class Proc:
    """A tool with its stdin on a pipe and its stdout and stderr collected together."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
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
        except BrokenPipeError as exc:
            raise rec.RecordingError(f"{self.cmd[0]} exited early") from exc

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def text(self) -> str:
        return self.out.text()

    def lines(self, line: bytes) -> int:
        """How many times ``line`` (ending with a newline) stands on a line of its own."""
        text, want = self.text(), line.decode()
        return text.count("\n" + want) + (1 if text.startswith(want) else 0)

    def stop(self) -> str:
        rec._stop(self.proc)
        return self.out.join()


_HEX = re.compile(r"^    [0-9a-f]{2}( [0-9a-f]{2})*$\n?|^.*RecordHeader.*$\n?", re.M)


def _readable(log: str) -> str:
    """An ``openssl -msg`` log without its hex dumps."""
    return _HEX.sub("", log)


def _wait(ready: Callable[[], bool], what: str, logs: Callable[[], str]) -> None:
    if not rec._wait_until(ready, WAIT):
        raise rec.RecordingError(f"timed out waiting for {what}\n{_readable(logs())}")


def _server_cmd(sc: ToolScenario, pki: rec.Pki) -> list[str]:
    cmd = ["openssl", "s_server", "-accept", f"{HOST}:{sc.port}", "-naccept", str(len(sc.conns))]
    cmd += ["-cert", str(pki.server.cert), "-key", str(pki.server.key)]
    cmd += ["-cert_chain", str(pki.server.extra), "-CAfile", str(pki.root)]
    cmd += ["-tls1_2" if sc.version == TLS12 else "-tls1_3", "-msg", "-verify_return_error"]
    if any(c.command in ("R", "r") for c in sc.conns):
        cmd.append("-no_resumption_on_reneg")  # else the renegotiation resumes the session
    return cmd + list(sc.server_args)


def _client_cmd(
    sc: ToolScenario, conn: Conn, pki: rec.Pki, keylog: Path, session: Path
) -> tuple[list[str], dict[str, str]]:
    identity = pki.client(conn.client_id)
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if sc.client == "gnutls":
        cmd = ["gnutls-cli", "-p", str(sc.port), "--x509cafile", str(pki.root)]
        cmd += ["--sni-hostname", rec.SERVER_NAME, "--verify-hostname", rec.SERVER_NAME]
        cmd += ["--priority", rec._gnutls_priority(sc.version)]
        if identity is not None:
            cmd += ["--x509certfile", str(identity.chain), "--x509keyfile", str(identity.key)]
        env["SSLKEYLOGFILE"] = str(keylog)
        return [*cmd, *sc.client_args, HOST], env
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{sc.port}", "-servername", rec.SERVER_NAME]
    cmd += ["-CAfile", str(pki.root), "-verify_return_error", "-no_ign_eof", "-nocommands"]
    cmd += ["-tls1_2" if sc.version == TLS12 else "-tls1_3", "-msg", "-keylogfile", str(keylog)]
    if identity is not None:
        cmd += ["-cert", str(identity.cert), "-key", str(identity.key)]
        cmd += ["-cert_chain", str(identity.extra)]
    if conn.early_data:
        early = session.with_suffix(".early")
        early.write_bytes(EARLY)
        cmd += ["-sess_in", str(session), "-early_data", str(early)]
    else:
        cmd += ["-sess_out", str(session)]
    return [*cmd, *sc.client_args], env


def _later_done(seen: Callable[[], Seen], command: str) -> Callable[[], bool]:
    """The later handshake has ended: the server sent its second Finished (renegotiation) or
    read the client's second Finished (post-handshake authentication)."""
    sender = "client" if command == "c" else "server"
    return lambda: seen().count(sender, "Finished") >= 2


def _converse(
    sc: ToolScenario, conn: Conn, server: Proc, client: Proc, start: int, index: int
) -> None:
    """ping from the client; the server's command and the later handshake; a line from the
    client after it; pong from the server; then the client closes (close_notify both ways)."""

    def logs() -> str:
        return f"--- server\n{server.text()[start:]}\n--- client\n{client.text()}"

    def seen() -> Seen:
        return _server_seen(server.text()[start:])

    client.send(rec.PING)
    _wait(lambda: server.lines(rec.PING) > index, "the client's ping", logs)
    if conn.command is not None:
        server.send(f"{conn.command}\n".encode())
        _wait(_later_done(seen, conn.command), f"the handshake after {conn.command!r}", logs)
        client.send(AFTER)
        _wait(lambda: server.lines(AFTER) > index, "the client's line after it", logs)
    server.send(rec.PONG)
    _wait(lambda: client.lines(rec.PONG) > 0, "the server's pong", logs)
    client.close_stdin()
    _wait(lambda: client.proc.poll() is not None, "the client to exit", logs)
    _wait(lambda: rec._connections_closed(sc.port), "the server's close", logs)


def run_tool(
    sc: ToolScenario, pki: rec.Pki, keylog: Path, work: Path, verbose: bool
) -> list[dict[str, Any]]:
    if rec._listening(sc.port):
        raise rec.RecordingError(f"port {sc.port} is already in use")
    server = Proc(_server_cmd(sc, pki))
    entries: list[dict[str, Any]] = []
    session = work / f"session-{sc.port}.pem"
    try:
        rec._wait_listening(sc.port, server.proc)
        previous: dict[str, Any] | None = None
        for index, conn in enumerate(sc.conns):
            start = len(server.text())
            cmd, env = _client_cmd(sc, conn, pki, keylog, session)
            client = Proc(cmd, env)
            try:
                _converse(sc, conn, server, client, start, index)
            finally:
                client_log = client.stop()
            server_log = server.text()[start:]
            if verbose:
                print(
                    f"=== {conn.scenario}\n--- server\n{_readable(server_log)}\n"
                    f"--- client\n{_readable(client_log)}"
                )
            seen = _server_seen(server_log)
            seen.completed = True  # _converse returned: every line crossed both ways
            _check_client_view(sc, conn, seen, client_log)
            entry = _judge(conn, sc.version, sc.stack, sc.port, pki, seen, previous)
            entries.append(entry)
            previous = entry
        rec._wait_until(lambda: server.proc.poll() is not None, 2.0)
    finally:
        server.stop()
    return entries


def _check_client_view(sc: ToolScenario, conn: Conn, seen: Seen, log: str) -> None:
    """The client must have reported the same handshake as the server."""
    name = conn.scenario
    if sc.client == "openssl":
        messages, _ = _msg_log(log, "client")
        rec.check(name, "handshake messages the client reported", messages, seen.messages)
        if conn.early_data:
            rec.check(name, "client early data", "Early data was accepted" in log, True)
        return
    requested = conn.command in ("R", "c")
    if conn.command == "R":
        rec.check(name, "gnutls rehandshake", "*** Rehandshake was performed." in log, requested)
    if conn.command == "c":
        rec.check(name, "gnutls re-auth", "*** Re-auth was performed." in log, requested)
    sent = re.search(r"- Successfully sent (\d+) certificate\(s\) to server", log)
    rec.check(name, "certificates gnutls-cli sent", sent is not None, requested)


# --------------------------------------------------------------------------------------------
# Python ssl: TLS 1.3 post-handshake authentication


_PY_NAMES = {
    "NEWSESSION_TICKET": "NewSessionTicket",
    "SERVER_DONE": "ServerHelloDone",
}


def _py_name(msg_type: object) -> str:
    name = getattr(msg_type, "name", str(msg_type))
    return _PY_NAMES.get(name, "".join(w.capitalize() for w in name.split("_")))


def run_python_pha(sc: PhaScenario, pki: rec.Pki, keylog: Path) -> list[dict[str, Any]]:
    """The server reads a line, calls ``verify_client_post_handshake()`` and writes a line (the
    CertificateRequest goes out before it); the client's answer is read with its next line."""
    conn = sc.conn
    identity = pki.client(conn.client_id)
    verify = ssl.CERT_REQUIRED if identity is not None else ssl.CERT_OPTIONAL
    sctx = rec._tls_server_context(pki, TLS13, verify)
    sctx.post_handshake_auth = True
    seen = Seen()

    def on_message(_c: Any, direction: str, _v: Any, ctype: Any, mtype: Any, _d: bytes) -> None:
        if ctype == ssl._TLSContentType.HANDSHAKE:
            seen.messages.append(("server" if direction == "write" else "client", _py_name(mtype)))

    sctx._msg_callback = on_message
    cctx = rec._client_context(pki, TLS13, identity, keylog)
    cctx.post_handshake_auth = True
    listener = rec._listener(HOST, sc.port)
    errors: list[str] = []
    peer: list[str | None] = []

    def serve() -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(rec.IO_TIMEOUT)
            with sctx.wrap_socket(raw, server_side=True) as tls:
                if rec._recv_line(tls) != rec.PING:
                    raise rec.RecordingError("no ping")
                if rec._peer_cn(tls.getpeercert()) is not None:
                    raise rec.RecordingError("client certificate in the first handshake")
                tls.verify_client_post_handshake()
                tls.sendall(b"cert\n")
                if rec._recv_line(tls) != AFTER:
                    raise rec.RecordingError("no line after the post-handshake authentication")
                peer.append(rec._peer_cn(tls.getpeercert()))
                tls.sendall(rec.PONG)
                if tls.recv(64) == b"":
                    tls.unwrap()
        except (OSError, ssl.SSLError, rec.RecordingError) as exc:
            errors.append(f"server: {exc}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        raw = socket.create_connection((HOST, sc.port), timeout=rec.IO_TIMEOUT)
        seen.client_port = raw.getsockname()[1]
        with cctx.wrap_socket(raw, server_hostname=rec.SERVER_NAME) as tls:
            tls.sendall(rec.PING)
            if rec._recv_line(tls) != b"cert\n":
                raise rec.RecordingError("no line from the server")
            tls.sendall(AFTER)
            seen.completed = rec._recv_line(tls) == rec.PONG
            tls.unwrap()
    except (OSError, ssl.SSLError) as exc:
        errors.append(f"client: {exc}")
    finally:
        thread.join(WAIT)
        listener.close()
    if errors or not peer:
        raise rec.RecordingError(f"{conn.scenario}: {'; '.join(errors) or 'server did not end'}")
    seen.verified_cn = peer[0]
    return [_judge(conn, TLS13, sc.stack, sc.port, pki, seen, None)]


# --------------------------------------------------------------------------------------------
# Ground truth


def _judge(
    conn: Conn,
    version: str,
    stack: str,
    port: int,
    pki: rec.Pki,
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
        later_auth = RENEGOTIATION if version == TLS12 else POST_HANDSHAKE
    hrr = version == TLS13 and seen.count("client", "ClientHello") == 2
    verdict = rec.verdict_of(
        requested=requested, resumed=seen.reused, completed=seen.completed, cert_sent=cert_sent
    )
    logs = f"messages: {seen.messages}"
    try:
        rec.check(name, "fatal alerts", seen.fatal_alerts, [])
        rec.check(name, "verify errors", seen.verify_error, False)
        rec.check(name, "verdict", verdict, conn.expect)
        rec.check(name, "later authentication", later_auth, conn.later)
        rec.check(name, "HelloRetryRequest", hrr, conn.hrr)
        rec.check(name, "early data", seen.early_data, conn.early_data)
        if requested:
            rec.check(name, "client Certificate message", answered, True)
            rec.check(name, "client verified", seen.verified_cn, identity and identity.cn)
        if conn.command in ("R", "r"):
            rec.check(name, "HelloRequest", seen.count("server", "HelloRequest"), 1)
            rec.check(name, "renegotiating ClientHello", seen.count("client", "ClientHello"), 2)
        if version == TLS12 and requested:
            sizes = [
                n
                for m, n in zip(seen.messages, seen.lengths, strict=True)
                if m == ("client", "Certificate")
            ]
            rec.check(name, "empty TLS 1.2 Certificate", sizes[-1] == 7, not cert_sent)
    except rec.RecordingError as exc:
        raise rec.RecordingError(f"{exc}\n{logs}") from None
    from_mutual = None
    if verdict == RESUMED:
        if previous is None:
            raise rec.RecordingError(f"{name}: resumed, but no session before it")
        from_mutual = previous["verdict"] == MUTUAL
    entry = rec.session_entry(
        scenario=name,
        stack=stack,
        ip=HOST,
        client_port=seen.client_port,
        server_port=port,
        version=version,
        sni=rec.SERVER_NAME,
        verdict=verdict,
        resumed_from_mutual=from_mutual,
        alert=None,
        client_chain=None if not requested else (identity.sent if identity else ()),
        server_chain=None if seen.reused else pki.server.sent,
    )
    entry.update(
        ended=None,
        later_auth=later_auth,
        hello_retry_request=hrr,
        early_data=seen.early_data,
        messages=[f"{sender}:{msg}" for sender, msg in seen.messages],
    )
    return entry


def record(spec: CaptureSpec, out: Path, pki: rec.Pki, work: Path, verbose: bool) -> int:
    keylog = out / spec.keylog
    keylog.unlink(missing_ok=True)
    keylog.touch()
    sessions: list[dict[str, Any]] = []
    ports = [sc.port for sc in spec.scenarios]
    with rec.capture(rec.DUMPCAP_LO, out / spec.file, ports):
        for sc in spec.scenarios:
            if isinstance(sc, PhaScenario):
                sessions += run_python_pha(sc, pki, keylog)
            else:
                sessions += run_tool(sc, pki, keylog, work, verbose)
    doc = {
        "capture": spec.file,
        "keylog": spec.keylog,
        "recorded_by": RECORDED_BY,
        "captured_with": "dumpcap -i lo",
        "tools": rec.tool_versions(),
        "sessions": sessions,
    }
    truth = out / f"{spec.name}.truth.json"
    truth.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for path in (out / spec.file, keylog, truth):
        path.chmod(0o644)
    return len(sessions)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the tools' output")
    args = parser.parse_args(argv)
    missing = [p for p in ("dumpcap", "openssl", "gnutls-cli") if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise SystemExit("capturing on loopback needs root")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tls-later-") as tmp:
        work = Path(tmp)
        pki = rec.build_pki(work / "pki", None)  # public certificates are not exported
        for spec in CAPTURES:
            t0 = time.monotonic()
            try:
                count = record(spec, out, pki, work, args.verbose)
            except (rec.RecordingError, OSError) as exc:
                print(f"{spec.file}: {exc}", file=sys.stderr)
                return 1
            size = (out / spec.file).stat().st_size
            print(f"{spec.file}: {count} sessions, {size} bytes, {time.monotonic() - t0:.1f} s")
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
