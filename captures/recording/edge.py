"""The TCP and TLS edge cases of ``record.py``'s ``tcp_edge`` capture: a reused client port,
a client chain too big for one record sent in small segments, a reset after the client's
certificate, a server that closes without answering."""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import pyssl
from .capture import connections_closed, wait_until
from .core import HOST, IO_TIMEOUT, PING, PONG, SERVER_NAME, TOOL_TIMEOUT, RecordingError, check
from .pki import Identity, Pki
from .pyssl import SSL_VERSION_NAMES, Side, accept, client_context, peer_cn, recv_exact, served
from .truth import Where, chain_sent, session_entry, verdict_of

REUSED_CLIENT_PORT = 30491
"""Fixed client port of the connection-reuse scenario, below the ephemeral range."""
SMALL_MSS = 536
"""Maximum segment size the big-chain clients clamp their connections to."""
SMALL_RCVBUF = 1152
"""Receive buffer of the big-chain servers (the kernel doubles it): their window stays below
two segments of SMALL_MSS, so that loopback, which does segmentation offload, still carries
the client's flight one MSS per packet instead of in multi-segment packets."""
SILENT_SERVER_DELAY = 0.2

RESET_BY_SERVER = "reset by server"
CLOSED_BY_SERVER = "closed by server"


@dataclass(frozen=True)
class EdgeConn:
    """One connection of an edge scenario: what the server asks for, which client identity
    connects, and the outcome it must have."""

    scenario: str
    verify: ssl.VerifyMode
    client: str | None
    expect: str
    ended: str | None = None


@dataclass(frozen=True)
class EdgeScenario:
    """A server on one port and the connections it serves in order.

    ``server``: ``python-ssl`` (a Python ``ssl`` server, one context per connection),
    ``reset-after-client-cert`` (a Python ``ssl`` server on memory BIOs that resets the
    connection once it has read the client's whole second flight, instead of sending its own
    Finished) or ``silent`` (a plain TCP listener that reads the ClientHello and closes)."""

    port: int
    version: str
    conns: tuple[EdgeConn, ...]
    server: str = "python-ssl"
    client_port: int | None = None
    """Bind every client connection to this port (SO_REUSEADDR)."""
    small_segments: bool = False
    """Clamp the client's MSS to SMALL_MSS, shrink its send buffer and set TCP_NODELAY; keep the
    server's receive buffer at SMALL_RCVBUF."""

    @property
    def stack(self) -> str:
        return "plain-tcp/python-ssl" if self.server == "silent" else "python-ssl/python-ssl"


def _reset_after_client_cert_server(
    sock: socket.socket, contexts: list[ssl.SSLContext], sides: list[Side]
) -> None:
    """Run the server's side of a TLS 1.2 handshake on memory BIOs; once the client's second
    flight (Certificate ... Finished) has been processed, drop the server's own ChangeCipherSpec
    and Finished and close the socket with SO_LINGER 0, which sends a reset."""
    (side,) = sides
    conn = accept(sock, side)
    if conn is None:
        return
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = contexts[0].wrap_bio(incoming, outgoing, server_side=True)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                conn.sendall(outgoing.read())
                data = conn.recv(65536)
                if not data:
                    raise RecordingError("the client closed during the handshake") from None
                incoming.write(data)
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        side.peer_cn = peer_cn(tls.getpeercert())
        side.ended = RESET_BY_SERVER
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (ssl.SSLError, OSError, RecordingError) as exc:
        side.fail(exc)
    finally:
        conn.close()
        side.done.set()


def _silent_server(sock: socket.socket, contexts: list[ssl.SSLContext], sides: list[Side]) -> None:
    """Accept, read one TLS record (the ClientHello), wait, then send FIN; read on until the
    client closes too, so that what the client sends after the FIN meets no reset."""
    (side,) = sides
    conn = accept(sock, side)
    if conn is None:
        return
    try:
        header = recv_exact(conn, 5)
        body = recv_exact(conn, int.from_bytes(header[3:5], "big")) if len(header) == 5 else b""
        if header[:1] != b"\x16" or body[:1] != b"\x01":
            raise RecordingError(f"no ClientHello: {header.hex()}")
        time.sleep(SILENT_SERVER_DELAY)
        conn.shutdown(socket.SHUT_WR)
        side.ended = CLOSED_BY_SERVER
        while conn.recv(4096):
            pass
    except (OSError, RecordingError) as exc:
        side.error = str(exc)
    finally:
        conn.close()
        side.done.set()


EDGE_SERVERS: dict[str, Callable[[socket.socket, list[ssl.SSLContext], list[Side]], None]] = {
    "python-ssl": pyssl.python_server,
    "reset-after-client-cert": _reset_after_client_cert_server,
    "silent": _silent_server,
}


def _edge_client(sc: EdgeScenario, ctx: ssl.SSLContext) -> Side:
    """Connect (bound to ``sc.client_port`` if set), handshake, ping, close_notify; then wait for
    the server's FIN before closing, so that the server closes first and keeps the TIME_WAIT."""
    side = Side()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(IO_TIMEOUT)
    if sc.client_port is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        raw.bind((HOST, sc.client_port))
    if sc.small_segments:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, SMALL_MSS)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = ctx.wrap_socket(raw, server_hostname=SERVER_NAME, do_handshake_on_connect=False)
    try:
        tls.connect((HOST, sc.port))
        side.port = tls.getsockname()[1]
        tls.do_handshake()
        side.handshake = True
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        tls.sendall(PING)
        reply = recv_exact(tls, len(PONG))
        tls.unwrap()
        side.exchanged = reply == PONG and tls.recv(1) == b""
    except ConnectionResetError as exc:
        side.fail(exc)
        side.ended = RESET_BY_SERVER
    except ssl.SSLEOFError as exc:
        side.fail(exc)
        side.ended = CLOSED_BY_SERVER
    except (ssl.SSLError, OSError) as exc:
        side.fail(exc)
    finally:
        tls.close()
    return side


def run_edge(sc: EdgeScenario, pki: Pki) -> list[dict[str, Any]]:
    """Run an edge scenario: one truth entry per connection."""
    contexts = [pyssl.server_context(pki, sc.version, c.verify) for c in sc.conns]
    servers = [Side() for _ in sc.conns]
    rcvbuf = SMALL_RCVBUF if sc.small_segments else None
    entries = []
    with served(HOST, sc.port, EDGE_SERVERS[sc.server], contexts, servers, rcvbuf=rcvbuf):
        for conn, server in zip(sc.conns, servers, strict=True):
            if sc.client_port is not None and not wait_until(
                lambda: connections_closed(sc.client_port or 0), TOOL_TIMEOUT
            ):
                raise RecordingError(f"{conn.scenario}: port {sc.client_port} is still in use")
            identity = pki.client(conn.client)
            client = _edge_client(sc, client_context(pki, sc.version, identity))
            if not server.done.wait(TOOL_TIMEOUT):
                raise RecordingError(f"{conn.scenario}: the server did not finish")
            entries.append(_judge_edge(sc, conn, identity, pki, client, server))
    return entries


def _judge_edge(
    sc: EdgeScenario,
    conn: EdgeConn,
    identity: Identity | None,
    pki: Pki,
    client: Side,
    server: Side,
) -> dict[str, Any]:
    name = conn.scenario
    logs = f"client {client.error}, server {server.error}"
    requested = conn.verify != ssl.CERT_NONE and sc.server != "silent"
    cert_sent = requested and identity is not None
    completed = client.exchanged and server.exchanged
    if completed:
        check(name, "server version", server.version, sc.version)
        check(name, "client version", client.version, sc.version)
    else:
        check(f"{name} ({logs})", "failure", client.error is not None, True)
    if completed or sc.server == "reset-after-client-cert":
        expected_cn = identity.cn if cert_sent and identity else None
        check(f"{name} ({logs})", "client certificate seen by server", server.peer_cn, expected_cn)
    if sc.client_port is not None:
        check(name, "client port", client.port, sc.client_port)
    verdict = verdict_of(
        requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    check(f"{name} ({logs})", "verdict", verdict, conn.expect)
    check(name, "alert", client.alert, None)
    check(f"{name} ({logs})", "end seen by the client", client.ended, conn.ended)
    check(name, "end made by the server", server.ended, conn.ended)
    where = Where(name, sc.stack, sc.port, sc.version, client.port)
    chain = chain_sent(requested, True, identity)
    entry = session_entry(where, verdict, chain, None if sc.server == "silent" else pki.server.sent)
    entry["ended"] = conn.ended
    return entry
