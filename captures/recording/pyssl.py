"""Python ``ssl`` as both ends of a session: contexts from the test PKI, a server thread on a
listening socket, a client, and what each end observed through the ``ssl`` API."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from . import core
from .core import IO_TIMEOUT, PING, PONG, TLS12, TLS13, TOOL_TIMEOUT, RecordingError
from .pki import Identity, Pki

SSL_VERSIONS = {TLS12: ssl.TLSVersion.TLSv1_2, TLS13: ssl.TLSVersion.TLSv1_3}
SSL_VERSION_NAMES = {"TLSv1.2": TLS12, "TLSv1.3": TLS13}


@dataclass
class Side:
    """What one end of a connection observed through the ``ssl`` API."""

    port: int | None = None
    handshake: bool = False
    exchanged: bool = False
    version: str | None = None
    reused: bool = False
    peer_cn: str | None = None
    error: str | None = None
    alert: str | None = None
    session: ssl.SSLSession | None = None
    ended: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def note_handshake(self, tls: object) -> None:
        if not isinstance(tls, ssl.SSLSocket):
            raise RecordingError("unexpected socket after the upgrade")
        self.handshake = True
        self.version = SSL_VERSION_NAMES.get(tls.version() or "")

    def fail(self, exc: Exception) -> None:
        reason = getattr(exc, "reason", None)
        self.error = reason or f"{type(exc).__name__}: {exc}"
        self.alert = core.alert_from_openssl_reason(reason)

    @contextmanager
    def talking(self, *errors: type[Exception]) -> Iterator[None]:
        """An error of the conversation in the block (of TLS, of the socket, of the dialogue, or
        one of ``errors``) is this side's failure."""
        try:
            yield
        except (ssl.SSLError, OSError, RecordingError, *errors) as exc:
            self.fail(exc)

    def give_up(self, exc: Exception | str) -> None:
        """The server stops before TLS: nothing more will happen on this side."""
        self.error = str(exc)
        self.done.set()


def peer_cn(cert: dict[str, Any] | None) -> str | None:
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_until(sock: socket.socket, end: bytes, limit: int = 4096) -> bytes:
    """Read byte by byte until the data ends with ``end`` (or the peer closes)."""
    data = b""
    while not data.endswith(end) and len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def recv_line(sock: socket.socket) -> bytes:
    return recv_until(sock, b"\n", limit=1 << 20)


def listener(host: str, port: int, rcvbuf: int | None = None) -> socket.socket:
    """A listening socket; ``rcvbuf`` (set before listening, so that accepted connections
    inherit it) keeps the window the server advertises small."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((host, port))
    sock.listen(4)
    sock.settimeout(TOOL_TIMEOUT)
    return sock


@contextmanager
def served(
    host: str, port: int, serve: Callable[..., None], *args: Any, rcvbuf: int | None = None
) -> Iterator[None]:
    """``serve(listener, *args)`` in a thread while the block runs."""
    sock = listener(host, port, rcvbuf)
    thread = threading.Thread(target=serve, args=(sock, *args), daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(TOOL_TIMEOUT)
        sock.close()


def accept(sock: socket.socket, side: Side) -> socket.socket | None:
    """The next connection, or None (and the side given up) when none comes."""
    try:
        conn, _ = sock.accept()
    except OSError as exc:
        side.give_up(exc)
        return None
    conn.settimeout(IO_TIMEOUT)
    return conn


def server_context(
    pki: Pki, version: str, verify: ssl.VerifyMode, tickets: bool = True
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = SSL_VERSIONS[version]
    ctx.load_cert_chain(pki.server.chain, pki.server.key)
    ctx.verify_mode = verify
    if verify != ssl.CERT_NONE:
        ctx.load_verify_locations(pki.root)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def client_context(
    pki: Pki, version: str, identity: Identity | None, keylog: object | None = None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = SSL_VERSIONS[version]
    ctx.load_verify_locations(pki.root)
    if identity is not None:
        ctx.load_cert_chain(identity.chain, identity.key)
    if keylog is not None:
        ctx.keylog_filename = str(keylog)
    return ctx


def _abort(tls: ssl.SSLSocket) -> None:
    """Half-close after a failed handshake and read until the peer closes, so that the kernel
    does not answer late client data with a reset."""
    with suppress(OSError):
        tls.shutdown(socket.SHUT_WR)
        while tls.recv(4096):
            pass


def serve_tls(
    tls: ssl.SSLSocket,
    side: Side,
    exchange: Callable[[ssl.SSLSocket], bool],
    close_notify: bool = True,
) -> None:
    """Handshake, run ``exchange``, then wait for the client to end TLS and answer its
    close_notify; ``close_notify`` false: the client just closes TCP, and so does the server."""
    try:
        tls.do_handshake()
        side.handshake = True
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        side.reused = bool(tls.session_reused)
        side.peer_cn = peer_cn(tls.getpeercert())
        side.exchanged = exchange(tls)
        if tls.recv(64) == b"" and close_notify:
            tls.unwrap()
    except (ssl.SSLError, OSError, RecordingError) as exc:
        side.fail(exc)
        _abort(tls)
    finally:
        tls.close()
        side.done.set()


def ping_pong_server(tls: ssl.SSLSocket) -> bool:
    if recv_exact(tls, len(PING)) != PING:
        return False
    tls.sendall(PONG)
    return True


def python_server(
    sock: socket.socket,
    contexts: Sequence[ssl.SSLContext],
    sides: Sequence[Side],
    exchange: Callable[[ssl.SSLSocket], bool] = ping_pong_server,
) -> None:
    """One connection per side, each with its context: handshake, ``exchange``, close."""
    for ctx, side in zip(contexts, sides, strict=True):
        conn = accept(sock, side)
        if conn is None:
            return
        tls = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        serve_tls(tls, side, exchange)


def python_client(
    host: str, port: int, ctx: ssl.SSLContext, sni: str | None, session: ssl.SSLSession | None
) -> Side:
    """Connect, handshake, ping, read the pong, close_notify."""
    side = Side()
    raw = socket.create_connection((host, port), timeout=IO_TIMEOUT)
    side.port = raw.getsockname()[1]
    tls = ctx.wrap_socket(
        raw, server_hostname=sni or host, session=session, do_handshake_on_connect=False
    )
    try:
        tls.do_handshake()
        side.handshake = True
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        tls.sendall(PING)
        reply = recv_exact(tls, len(PONG))
        side.reused = bool(tls.session_reused)
        side.session = tls.session
        tls.unwrap()
        side.exchanged = reply == PONG
    except (ssl.SSLError, OSError) as exc:
        side.fail(exc)
    finally:
        tls.close()
        raw.close()
    return side


def smtp_client(host: str, port: int, ctx: ssl.SSLContext, sni: str | None = None) -> Side:
    """``smtplib``: EHLO, STARTTLS, EHLO and QUIT in TLS, close_notify."""
    side = Side()
    smtp = smtplib.SMTP(host, port, local_hostname="client.example.test", timeout=IO_TIMEOUT)
    with closing(smtp), side.talking(smtplib.SMTPException):
        assert smtp.sock is not None
        side.port = smtp.sock.getsockname()[1]
        smtp.ehlo()
        code, _ = smtp.starttls(context=ctx)
        if code != 220:
            raise RecordingError(f"STARTTLS answered {code}")
        tls = smtp.sock
        side.note_handshake(tls)
        smtp.ehlo()
        side.exchanged = smtp.docmd("QUIT")[0] == 221
        assert isinstance(tls, ssl.SSLSocket)
        tls.unwrap()
    return side
