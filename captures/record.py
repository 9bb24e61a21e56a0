#!/usr/bin/env python3
"""Record real TLS sessions on loopback and write the ground truth of each capture.

Every session is run between real TLS stacks (Python ``ssl``, ``openssl s_server``/``s_client``,
``gnutls-serv``/``gnutls-cli``) on 127.0.0.1 or ::1 while ``dumpcap`` or ``tcpdump`` records the
loopback interface. The ground truth (``X.truth.json`` next to ``X.pcapng``) is built from what the
script configured and from what the TLS APIs and tools reported, never from the capture itself.
The plaintext part of the STARTTLS sessions (SMTP, IMAP, POP3, FTP, XMPP, LDAP, PostgreSQL,
MySQL) is spoken by small servers in ``recording/protocols.py`` and by the standard library
clients or, where there is none, by clients there too. The scenarios run in
``recording/scenarios.py`` and ``recording/edge.py``; this script holds the table of captures.

Usage (as root)::

    python3 captures/record.py [--out DIR] [--only NAME] [--verbose]
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recording import cli, edge, keylog, scenarios, truth
from recording.capture import DUMPCAP_LO, TCPDUMP_ANY, TCPDUMP_LO, CaptureTool, capture
from recording.core import FAILED, MUTUAL, NOT_SENT, ONE_WAY, RESUMED, SERVER_NAME, TLS12, TLS13
from recording.edge import CLOSED_BY_SERVER, RESET_BY_SERVER, EdgeConn, EdgeScenario, run_edge
from recording.pki import Pki, build_pki
from recording.programs import tool_versions
from recording.scenarios import Conn, PyScenario, StarttlsScenario, run_python, run_starttls
from recording.tools import ToolScenario

RECORDED_BY = "captures/record.py"
PROGRAMS = ("dumpcap", "tcpdump", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf")

Scenario = PyScenario | ToolScenario | StarttlsScenario | EdgeScenario

REQ = ssl.CERT_REQUIRED
OPT = ssl.CERT_OPTIONAL
NONE = ssl.CERT_NONE


def _py(port: int, version: str, verify: ssl.VerifyMode, *conns: Conn, **kw: Any) -> PyScenario:
    return PyScenario(port=port, version=version, verify=verify, conns=conns, **kw)


# fmt: off
TLS12_SCENARIOS: tuple[Scenario, ...] = (
    _py(8401, TLS12, REQ, Conn("tls12-mutual-intermediate", "alice", MUTUAL)),
    _py(8402, TLS12, NONE, Conn("tls12-one-way", None, ONE_WAY)),
    _py(8403, TLS12, OPT, Conn("tls12-cert-requested-not-sent", None, NOT_SENT)),
    _py(8404, TLS12, REQ, Conn("tls12-cert-required-not-sent", None, NOT_SENT, "handshake_failure")),
    _py(8405, TLS12, REQ, Conn("tls12-refused-unknown-ca", "mallory", FAILED, "unknown_ca")),
    _py(8406, TLS12, REQ, Conn("tls12-mutual-before-session-id-resumption", "alice", MUTUAL),
        Conn("tls12-resumed-session-id", "alice", RESUMED, resume=True), tickets=False),
    _py(8407, TLS12, REQ, Conn("tls12-mutual-before-ticket-resumption", "alice", MUTUAL),
        Conn("tls12-resumed-ticket", "alice", RESUMED, resume=True)),
    _py(8408, TLS12, NONE, Conn("tls12-one-way-before-ticket-resumption", None, ONE_WAY),
        Conn("tls12-resumed-ticket-one-way", None, RESUMED, resume=True)),
    _py(8409, TLS12, REQ, Conn("tls12-mutual-ipv6", "alice", MUTUAL), host="::1", sni=None),
    _py(8410, TLS12, NONE, Conn("tls12-one-way-ipv6", None, ONE_WAY), host="::1", sni="localhost"),
)

TLS13_SCENARIOS: tuple[Scenario, ...] = (
    _py(8431, TLS13, REQ, Conn("tls13-mutual", "alice", MUTUAL)),
    _py(8432, TLS13, NONE, Conn("tls13-one-way", None, ONE_WAY)),
    _py(8433, TLS13, OPT, Conn("tls13-cert-requested-not-sent", None, NOT_SENT)),
    _py(8434, TLS13, REQ, Conn("tls13-cert-required-not-sent", None, NOT_SENT, "certificate_required")),
    _py(8435, TLS13, REQ, Conn("tls13-refused-unknown-ca", "mallory", FAILED, "unknown_ca")),
    ToolScenario("tls13-mutual-gnutls", 8436, TLS13, "gnutls/gnutls", REQ, "carol", MUTUAL),
    ToolScenario("tls13-mutual-openssl", 8437, TLS13, "openssl/openssl", REQ, "bob", MUTUAL),
    _py(8438, TLS13, REQ, Conn("tls13-mutual-before-resumption", "alice", MUTUAL),
        Conn("tls13-resumed-psk", "alice", RESUMED, resume=True)),
)
# fmt: on


def _tool(
    name: str,
    port: int,
    stack: str,
    request: ssl.VerifyMode,
    client_id: str | None,
    expect: str,
    alert: str | None = None,
) -> ToolScenario:
    return ToolScenario(name, port, TLS12, stack, request, client_id, expect, alert)


OSSL = "openssl/openssl"
GNU = "gnutls/gnutls"

STACKS_SCENARIOS: tuple[Scenario, ...] = (
    _tool("openssl-mutual", 8461, OSSL, REQ, "bob", MUTUAL),
    _tool("openssl-one-way", 8462, OSSL, NONE, None, ONE_WAY),
    _tool("openssl-cert-requested-not-sent", 8463, OSSL, OPT, None, NOT_SENT),
    _tool("openssl-cert-required-not-sent", 8464, OSSL, REQ, None, NOT_SENT, "handshake_failure"),
    _tool("openssl-refused-unknown-ca", 8465, OSSL, REQ, "mallory", FAILED, "unknown_ca"),
    _tool("gnutls-mutual", 8466, GNU, REQ, "carol", MUTUAL),
    _tool("gnutls-one-way", 8467, GNU, NONE, None, ONE_WAY),
    _tool("gnutls-cert-requested-not-sent", 8468, GNU, OPT, None, NOT_SENT),
    _tool("gnutls-cert-required-not-sent", 8469, GNU, REQ, None, NOT_SENT, "decode_error"),
    _tool("gnutls-server-openssl-client-mutual", 8470, "gnutls/openssl", REQ, "bob", MUTUAL),
    _tool("openssl-server-gnutls-client-mutual", 8471, "openssl/gnutls", REQ, "carol", MUTUAL),
    _tool(
        "gnutls-refused-rogue-ca", 8472, "gnutls/openssl", REQ, "mallory", FAILED, "access_denied"
    ),
)

STARTTLS_SCENARIOS: tuple[Scenario, ...] = (
    _py(2525, TLS12, REQ, Conn("smtp-starttls-mutual", "alice", MUTUAL), smtp=True, sni=None),
    _py(2526, TLS12, NONE, Conn("smtp-starttls-one-way", None, ONE_WAY), smtp=True, sni=None),
)

STARTTLS_ALL_SCENARIOS: tuple[Scenario, ...] = (
    StarttlsScenario("smtp-starttls-587-mutual", "smtp", 587, REQ, "alice", MUTUAL, None),
    StarttlsScenario("imap-starttls-one-way", "imap", 143, NONE, None, ONE_WAY, None),
    StarttlsScenario("pop3-stls-mutual", "pop3", 110, REQ, "alice", MUTUAL, None),
    StarttlsScenario("ftp-auth-tls-one-way", "ftp", 21, NONE, None, ONE_WAY, None),
    StarttlsScenario("xmpp-starttls-mutual", "xmpp", 5222, REQ, "alice", MUTUAL, SERVER_NAME),
    StarttlsScenario("ldap-starttls-one-way", "ldap", 389, NONE, None, ONE_WAY, SERVER_NAME),
    StarttlsScenario(
        "postgresql-sslrequest-mutual", "postgresql", 5432, REQ, "alice", MUTUAL, SERVER_NAME
    ),
    StarttlsScenario("mysql-ssl-one-way", "mysql", 3306, NONE, None, ONE_WAY, None),
)

TCP_EDGE_SCENARIOS: tuple[Scenario, ...] = (
    EdgeScenario(
        8491,
        TLS12,
        (
            EdgeConn("tls12-one-way-before-port-reuse", NONE, None, ONE_WAY),
            EdgeConn("tls12-mutual-on-reused-port", REQ, "alice", MUTUAL),
        ),
        client_port=edge.REUSED_CLIENT_PORT,
    ),
    EdgeScenario(
        8492,
        TLS12,
        (EdgeConn("tls12-mutual-big-chain-small-segments", REQ, "dave", MUTUAL),),
        small_segments=True,
    ),
    EdgeScenario(
        8493,
        TLS13,
        (EdgeConn("tls13-mutual-big-chain-small-segments", REQ, "dave", MUTUAL),),
        small_segments=True,
    ),
    EdgeScenario(12345, TLS12, (EdgeConn("tls12-mutual-port-12345", REQ, "alice", MUTUAL),)),
    EdgeScenario(
        8494,
        TLS12,
        (EdgeConn("tls12-reset-after-client-cert", REQ, "alice", FAILED, RESET_BY_SERVER),),
        server="reset-after-client-cert",
    ),
    EdgeScenario(
        8495,
        TLS12,
        (EdgeConn("tls12-silent-server-closes", NONE, None, FAILED, CLOSED_BY_SERVER),),
        server="silent",
    ),
)

DEMO_SCENARIOS: tuple[Scenario, ...] = (
    _py(443, TLS12, REQ, Conn("demo-tls12-mutual-intermediate", "alice", MUTUAL)),
    _py(8443, TLS12, NONE, Conn("demo-tls12-one-way", None, ONE_WAY)),
    _py(8444, TLS12, OPT, Conn("demo-tls12-cert-requested-not-sent", None, NOT_SENT)),
    _py(8445, TLS12, REQ, Conn("demo-tls12-refused-unknown-ca", "mallory", FAILED, "unknown_ca")),
    _py(8446, TLS13, REQ, Conn("demo-tls13-mutual", "alice", MUTUAL)),
    _py(8447, TLS13, NONE, Conn("demo-tls13-one-way", None, ONE_WAY)),
    _py(8448, TLS12, REQ, Conn("demo-tls12-mutual-ipv6", "alice", MUTUAL), host="::1", sni=None),
)


@dataclass(frozen=True)
class CaptureSpec:
    name: str
    file: str
    tool: CaptureTool
    keylog: str | None
    scenarios: tuple[Scenario, ...]
    big_chain: bool = False
    """The scenarios use client-dave, whose 4096-bit keys take a second or two to make."""


CAPTURES: tuple[CaptureSpec, ...] = (
    CaptureSpec("tls12", "tls12.pcapng", DUMPCAP_LO, None, TLS12_SCENARIOS),
    CaptureSpec("tls13", "tls13.pcapng", DUMPCAP_LO, "tls13.keylog", TLS13_SCENARIOS),
    CaptureSpec("stacks", "stacks.pcap", TCPDUMP_ANY, None, STACKS_SCENARIOS),
    CaptureSpec("starttls", "starttls.pcap", TCPDUMP_LO, None, STARTTLS_SCENARIOS),
    CaptureSpec("demo", "demo.pcapng", DUMPCAP_LO, "demo.keylog", DEMO_SCENARIOS),
    CaptureSpec("starttls_all", "starttls_all.pcapng", DUMPCAP_LO, None, STARTTLS_ALL_SCENARIOS),
    CaptureSpec(
        "tcp_edge", "tcp_edge.pcapng", DUMPCAP_LO, None, TCP_EDGE_SCENARIOS, big_chain=True
    ),
)


def _run(sc: Scenario, pki: Pki, keylog_path: Path | None, verbose: bool) -> list[dict[str, Any]]:
    if isinstance(sc, PyScenario):
        return run_python(sc, pki, keylog_path)
    if isinstance(sc, StarttlsScenario):
        return run_starttls(sc, pki)
    if isinstance(sc, EdgeScenario):
        return run_edge(sc, pki)
    return scenarios.run_tool(sc, pki, keylog_path, verbose)


def record(spec: CaptureSpec, out: Path, pki: Pki, tools: dict[str, str], verbose: bool) -> int:
    """Record one capture file and write its truth next to it; returns its sessions."""
    keylog_path = keylog.fresh(out / spec.keylog) if spec.keylog else None
    sessions: list[dict[str, Any]] = []
    with capture(spec.tool, out / spec.file, [sc.port for sc in spec.scenarios]):
        for sc in spec.scenarios:
            sessions += _run(sc, pki, keylog_path, verbose)
    stem = spec.file.rsplit(".", 1)[0]
    truth.write(
        out / f"{stem}.truth.json",
        capture=spec.file,
        keylog=spec.keylog,
        recorded_by=RECORDED_BY,
        tools=tools,
        sessions=sessions,
        tool=spec.tool,
    )
    truth.publish(out / spec.file, keylog_path)
    return len(sessions)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__, verbose="print the tools' output")
    parser.add_argument(
        "--only",
        choices=[c.name for c in CAPTURES],
        action="append",
        help="record only this capture (repeatable)",
    )
    args = parser.parse_args(argv)
    cli.require(PROGRAMS)
    selected = [c for c in CAPTURES if not args.only or c.name in args.only]

    def record_all(out: Path, work: Path) -> Iterator[cli.Recorded]:
        tools = tool_versions()
        pki = build_pki(work, out / "pki", any(spec.big_chain for spec in selected))
        for spec in selected:
            count = record(spec, out, pki, tools, args.verbose)
            yield cli.Recorded(out / spec.file, count)

    return cli.run("record", args.out, record_all)


if __name__ == "__main__":
    raise SystemExit(main())
