"""The scenarios of ``record.py``: Python ``ssl`` servers with their client connections, a pair
of command-line tools, a protocol that upgrades to TLS. Each runner runs its scenario, checks
that it turned out as the scenario says, and returns its truth entries."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import pyssl, tools
from .core import HOST, MUTUAL, SERVER_NAME, TLS12, TOOL_TIMEOUT, RecordingError, check
from .pki import Identity, Pki
from .programs import clean_env
from .protocols import UPGRADES, Upgrade
from .pyssl import Side, accept, client_context, python_client, serve_tls, served, server_context
from .tools import ToolScenario, gnutls_client_cmd, gnutls_client_port, gnutls_server_cmd, reply_of
from .truth import Where, chain_sent, session_entry, verdict_of


def upgrade_server(
    sock: socket.socket, contexts: Sequence[ssl.SSLContext], sides: Sequence[Side], up: Upgrade
) -> None:
    """One connection per side: the protocol's plaintext part, then TLS and its part in TLS."""
    for ctx, side in zip(contexts, sides, strict=True):
        conn = accept(sock, side)
        if conn is None:
            return
        try:
            up.server_before(conn)
        except (OSError, RecordingError) as exc:
            conn.close()
            side.give_up(exc)
            return
        tls = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        serve_tls(tls, side, up.server_after, close_notify=up.close_notify)


# -- Python ssl on both ends


@dataclass(frozen=True)
class Conn:
    """One client connection of a Python scenario and the outcome it must have."""

    scenario: str
    client: str | None
    expect: str
    alert: str | None = None
    resume: bool = False


@dataclass(frozen=True)
class PyScenario:
    """A Python ``ssl`` server on one port and the client connections it serves in order."""

    port: int
    version: str
    verify: ssl.VerifyMode
    conns: tuple[Conn, ...]
    host: str = HOST
    sni: str | None = SERVER_NAME
    """Server name the client verifies and sends; ``None`` makes the client use ``host``, an IP
    literal, for which Python sends no SNI."""
    tickets: bool = True
    smtp: bool = False


def run_python(sc: PyScenario, pki: Pki, keylog: Path | None) -> list[dict[str, Any]]:
    """Run a Python ``ssl`` server scenario: one truth entry per connection."""
    ctx = server_context(pki, sc.version, sc.verify, sc.tickets)
    servers = [Side() for _ in sc.conns]
    if sc.smtp:
        serve: tuple[Any, ...] = (upgrade_server, [ctx] * len(servers), servers, UPGRADES["smtp"])
    else:
        serve = (pyssl.python_server, [ctx] * len(servers), servers)
    contexts: dict[str | None, ssl.SSLContext] = {}
    entries: list[dict[str, Any]] = []
    session: ssl.SSLSession | None = None
    with served(sc.host, sc.port, *serve):
        for conn, server in zip(sc.conns, servers, strict=True):
            identity = pki.client(conn.client)
            if conn.client not in contexts:
                contexts[conn.client] = client_context(pki, sc.version, identity, keylog)
            if sc.smtp:
                client = pyssl.smtp_client(sc.host, sc.port, contexts[conn.client])
            else:
                resume_from = session if conn.resume else None
                client = python_client(sc.host, sc.port, contexts[conn.client], sc.sni, resume_from)
                session = client.session
            if not server.done.wait(TOOL_TIMEOUT):
                raise RecordingError(f"{conn.scenario}: the server did not finish")
            previous = entries[-1] if entries else None
            entries.append(_judge_python(sc, conn, identity, pki, client, server, previous))
    return entries


def _judge_python(
    sc: PyScenario,
    conn: Conn,
    identity: Identity | None,
    pki: Pki,
    client: Side,
    server: Side,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    name = conn.scenario
    resumed = client.reused
    check(name, "session reuse", resumed, conn.resume)
    if resumed:
        check(name, "server reuse", server.reused, True)
    requested = sc.verify != ssl.CERT_NONE and not resumed
    completed = client.exchanged and server.exchanged
    if completed:
        check(name, "server version", server.version, sc.version)
        check(name, "client version", client.version, sc.version)
    cert_sent = requested and identity is not None
    if completed and not resumed:
        expected_cn = identity.cn if cert_sent and identity else None
        check(name, "client certificate seen by server", server.peer_cn, expected_cn)
    if not completed:
        check(name, "failure", client.error is not None or server.error is not None, True)
    verdict = verdict_of(
        requested=requested, resumed=resumed, completed=completed, cert_sent=cert_sent
    )
    check(name, "verdict", verdict, conn.expect)
    check(name, "alert", client.alert, conn.alert)
    from_mutual: bool | None = None
    if resumed:
        if previous is None or previous["server_port"] != sc.port:
            raise RecordingError(f"{name}: no earlier session to resume")
        from_mutual = previous["verdict"] == MUTUAL
    where = Where(
        name, "python-ssl/python-ssl", sc.port, sc.version, client.port, ip=sc.host, sni=sc.sni
    )
    chain = chain_sent(requested, True, identity)
    return session_entry(
        where,
        verdict,
        chain,
        None if resumed else pki.server.sent,
        alert=client.alert,
        resumed_from_mutual=from_mutual,
        starttls="smtp" if sc.smtp else None,
    )


# -- openssl and gnutls command-line tools


def run_tool(
    sc: ToolScenario, pki: Pki, keylog: Path | None, verbose: bool
) -> list[dict[str, Any]]:
    """Run one command-line tool scenario: its truth entry."""
    identity = pki.client(sc.client_id)
    server_cmd = (
        tools.openssl_server_cmd(sc, pki) if sc.server == "openssl" else gnutls_server_cmd(sc, pki)
    )
    env = clean_env()
    if sc.client == "openssl":
        client_cmd = tools.openssl_client_cmd(sc, pki, identity, keylog)
    else:
        client_cmd = gnutls_client_cmd(sc, pki, identity)
        env = clean_env(keylog)
    server, client = tools.run_tool_pair(sc, server_cmd, client_cmd, env)
    logs = f"--- server\n{server.text}\n--- client\n{client.text}"
    if verbose:
        print(f"=== {sc.scenario}\n{logs}")
    name = sc.scenario
    completed = reply_of(sc.server) in client.out.encode()
    alert = tools.received_alert(sc.client, client.text)
    requested = sc.request != ssl.CERT_NONE
    cert_sent = requested and identity is not None
    verdict = verdict_of(
        requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    try:
        if completed:
            seen = tools.server_saw_client_cert(sc.server, server.text, identity)
            check(name, "client certificate seen by server", seen, cert_sent)
        check(name, "verdict", verdict, sc.expect)
        check(name, "alert", alert, sc.alert)
    except RecordingError as exc:
        raise RecordingError(f"{exc}\n{logs}") from None
    client_port = gnutls_client_port(server.text) if sc.server == "gnutls" else None
    where = Where(name, sc.stack, sc.port, sc.version, client_port)
    chain = chain_sent(requested, True, identity)
    entry = session_entry(where, verdict, chain, pki.server.sent, alert=alert)
    return [entry]


# -- protocols that upgrade to TLS, on their usual ports


@dataclass(frozen=True)
class StarttlsScenario:
    """One connection of a protocol that upgrades to TLS, on its usual port."""

    scenario: str
    protocol: str
    port: int
    verify: ssl.VerifyMode
    client_id: str | None
    expect: str
    sni: str | None
    """Server name the client sends; ``None``: the stdlib clients connect to 127.0.0.1, an IP
    literal, and send no SNI."""
    version: str = TLS12


def run_starttls(sc: StarttlsScenario, pki: Pki) -> list[dict[str, Any]]:
    """Run one STARTTLS connection: its truth entry."""
    up = UPGRADES[sc.protocol]
    server = Side()
    ctx = server_context(pki, sc.version, sc.verify)
    if not up.close_notify:
        # OpenSSL 3 answers an EOF without close_notify with a fatal alert, which the client,
        # already closed, answers with a reset; like many mail and FTP servers, take EOF as the end
        ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    identity = pki.client(sc.client_id)
    with served(HOST, sc.port, upgrade_server, [ctx], [server], up):
        client = up.client(HOST, sc.port, client_context(pki, sc.version, identity), sc.sni)
        if not server.done.wait(TOOL_TIMEOUT):
            raise RecordingError(f"{sc.scenario}: the server did not finish")
    name = sc.scenario
    if not client.exchanged or not server.exchanged:
        raise RecordingError(f"{name}: client {client.error}, server {server.error}")
    check(name, "server version", server.version, sc.version)
    check(name, "client version", client.version, sc.version)
    requested = sc.verify != ssl.CERT_NONE
    cert_sent = requested and identity is not None
    expected_cn = identity.cn if cert_sent and identity else None
    check(name, "client certificate seen by server", server.peer_cn, expected_cn)
    verdict = verdict_of(requested=requested, resumed=False, completed=True, cert_sent=cert_sent)
    check(name, "verdict", verdict, sc.expect)
    where = Where(name, "python-ssl/python-ssl", sc.port, sc.version, client.port, sni=sc.sni)
    chain = chain_sent(requested, True, identity)
    entry = session_entry(where, verdict, chain, pki.server.sent, starttls=sc.protocol)
    return [entry]
