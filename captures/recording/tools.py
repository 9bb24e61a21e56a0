"""The ``openssl`` and ``gnutls`` command-line tools as TLS ends: their command lines, a
session between two of them, and what their logs say."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .capture import wait_until
from .core import HOST, PING, SERVER_NAME, TLS12, TOOL_TIMEOUT, Pairing, alert_name
from .pki import Identity, Pki
from .programs import Program, Run, serving, wind_down


class Setup(Protocol):
    """What the tools' command lines depend on: the server's port, the TLS version and what the
    server asks of the client."""

    @property
    def port(self) -> int: ...

    @property
    def version(self) -> str: ...

    @property
    def request(self) -> ssl.VerifyMode: ...


@dataclass(frozen=True)
class Endpoint:
    port: int
    version: str
    request: ssl.VerifyMode = ssl.CERT_NONE


@dataclass(frozen=True)
class ToolScenario(Pairing):
    """One connection between command-line TLS tools and the outcome it must have."""

    scenario: str
    port: int
    version: str
    stack: str
    request: ssl.VerifyMode
    client_id: str | None
    expect: str
    alert: str | None = None


def version_flag(version: str) -> str:
    return "-tls1_2" if version == TLS12 else "-tls1_3"


def openssl_server_cmd(sc: Setup, pki: Pki) -> list[str]:
    cmd = ["openssl", "s_server", "-accept", f"{HOST}:{sc.port}", "-naccept", "1", "-rev"]
    cmd += ["-cert", str(pki.server.cert), "-key", str(pki.server.key)]
    cmd += ["-cert_chain", str(pki.server.extra), "-CAfile", str(pki.root)]
    cmd.append(version_flag(sc.version))
    if sc.request == ssl.CERT_OPTIONAL:
        cmd += ["-verify", "4", "-verify_return_error"]
    elif sc.request == ssl.CERT_REQUIRED:
        cmd += ["-Verify", "4", "-verify_return_error"]
    return cmd


def gnutls_priority(version: str) -> str:
    return "NORMAL:-VERS-ALL:+VERS-TLS1.2" if version == TLS12 else "NORMAL:-VERS-ALL:+VERS-TLS1.3"


def gnutls_server_cmd(sc: Setup, pki: Pki) -> list[str]:
    """``gnutls-serv`` block-buffers its log on a pipe; ``stdbuf`` makes it line-buffered so that
    the log can be followed while the server runs."""
    cmd = ["stdbuf", "-oL", "-eL", "gnutls-serv", "--echo", "-p", str(sc.port)]
    cmd += ["--x509certfile", str(pki.server.chain), "--x509keyfile", str(pki.server.key)]
    cmd += ["--x509cafile", str(pki.root), "--priority", gnutls_priority(sc.version)]
    if sc.request == ssl.CERT_NONE:
        cmd.append("--disable-client-cert")
    elif sc.request == ssl.CERT_OPTIONAL:
        cmd.append("--verify-client-cert")
    else:
        cmd += ["--require-client-cert", "--verify-client-cert"]
    return cmd


def openssl_client_cmd(
    sc: Setup, pki: Pki, identity: Identity | None, keylog: Path | None
) -> list[str]:
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{sc.port}", "-servername", SERVER_NAME]
    cmd += ["-CAfile", str(pki.root), "-verify_return_error", "-quiet", "-no_ign_eof"]
    cmd.append(version_flag(sc.version))
    if identity is not None:
        cmd += ["-cert", str(identity.cert), "-key", str(identity.key)]
        cmd += ["-cert_chain", str(identity.extra)]
    if keylog is not None:
        cmd += ["-keylogfile", str(keylog)]
    return cmd


def gnutls_client_cmd(sc: Setup, pki: Pki, identity: Identity | None) -> list[str]:
    """The host is the last argument: options go before it."""
    cmd = ["gnutls-cli", "-p", str(sc.port), "--x509cafile", str(pki.root)]
    cmd += ["--sni-hostname", SERVER_NAME, "--verify-hostname", SERVER_NAME]
    cmd += ["--priority", gnutls_priority(sc.version)]
    if identity is not None:
        cmd += ["--x509certfile", str(identity.chain), "--x509keyfile", str(identity.key)]
    return [*cmd, HOST]


def reply_of(server: str) -> bytes:
    """``s_server -rev`` answers each line reversed; ``gnutls-serv --echo`` echoes it."""
    return b"gnip\n" if server == "openssl" else PING


def run_client_tool(cmd: list[str], env: dict[str, str], expect: bytes) -> Run:
    """Run a TLS client tool, send ``PING`` on its stdin, wait for the server's answer (or the
    client's exit) and then close stdin so that the client shuts the connection down."""
    client = Program(cmd, env, merge=False)
    client.send(PING)
    wait_until(lambda: client.has(expect) or client.ended(), TOOL_TIMEOUT)
    client.close_stdin()
    wait_until(client.ended, TOOL_TIMEOUT)
    return client.finish()


def run_tool_pair(
    sc: ToolScenario, server_cmd: list[str], client_cmd: list[str], env: dict[str, str]
) -> tuple[Run, Run]:
    """Start the server tool, wait until it listens, run the client, then stop the server once
    both ends have closed the connection (``s_server -naccept 1`` exits by itself)."""
    with serving(server_cmd, sc.port, merge=False) as server:
        client = run_client_tool(client_cmd, env, reply_of(sc.server))
        wind_down(server, sc.port, exits=sc.server == "openssl")
    return server.finish(), client


_OPENSSL_ALERT = re.compile(r"SSL alert number (\d+)")
_GNUTLS_ALERT = re.compile(r"Received alert \[(\d+)\]")


def received_alert(client: str, text: str) -> str | None:
    """The alert a client tool's log says it received."""
    pattern = _OPENSSL_ALERT if client == "openssl" else _GNUTLS_ALERT
    match = pattern.search(text)
    return None if match is None else alert_name(int(match.group(1)))


def server_saw_client_cert(server: str, text: str, identity: Identity | None) -> bool:
    if identity is None:
        return False
    if server == "openssl":
        pattern = rf"Peer certificate: .*CN ?= ?{re.escape(identity.cn)}\b"
    else:
        pattern = rf"Subject: CN={re.escape(identity.cn)},"
    return re.search(pattern, text) is not None


def gnutls_client_port(text: str) -> int | None:
    """The client port in a ``gnutls-serv`` log."""
    match = re.search(r"connection from IPv[46] \S+ port (\d+)", text)
    return int(match.group(1)) if match else None


_MSG = re.compile(r"^(<<<|>>>) [^,\n]+, Handshake \[length ([0-9a-f]+)\], (\w+)", re.M)
_HEX = re.compile(r"^    [0-9a-f]{2}( [0-9a-f]{2})*$\n?|^.*RecordHeader.*$\n?", re.M)


def msg_log(text: str, me: str) -> tuple[list[tuple[str, str]], list[int]]:
    """Handshake messages of an ``openssl -msg`` log as (sender, name), and their lengths;
    ``me`` is the role of the program that wrote the log."""
    peer = "client" if me == "server" else "server"
    found = _MSG.findall(text)
    return [(me if d == ">>>" else peer, n) for d, _, n in found], [int(n, 16) for _, n, _ in found]


def readable(log: str) -> str:
    """An ``openssl -msg`` log without its hex dumps."""
    return _HEX.sub("", log)
