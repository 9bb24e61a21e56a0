"""The driver of the recorders whose stack is a small C program linked with its library
(``record_wolfssl.py``, ``record_mbedtls.py``): the program, compiled with ``gcc``, is server or
client by its arguments and prints one line per thing it saw (``EVENT ...``). A ``Stack`` says
which library, versions and ports; ``run(stack, argv)`` records its matrix against ``openssl``
and GnuTLS and against itself, judges each session from both programs' reports and checks the
recording with tshark."""

from __future__ import annotations

import re
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cli, core, keylog, tools, truth, tshark
from .capture import DUMPCAP_LO, capture, connections_closed, wait_until
from .core import ALERTS, FAILED, MUTUAL, NOT_SENT, PING, PONG, TLS12, TLS13, RecordingError, check
from .pki import Pki, build_pki, with_ec_server, with_expired_client
from .programs import Program, clean_env, serving, tool_versions, version_of
from .tools import Endpoint, gnutls_client_cmd, gnutls_server_cmd, openssl_client_cmd
from .truth import Where, chain_sent, session_entry, verdict_of

AFTER = b"after\n"
CERT_LINE = b"cert\n"
EXPIRED = "erin"
"""The client whose certificate, issued by the right intermediate CA, expired yesterday."""
EC_SERVER = "ec-server"
"""Not a client: the server's ECDSA identity, kept among the clients of the ``Pki``."""
PROGRAMS = ("dumpcap", "tshark", "gcc", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf")


# --------------------------------------------------------------------------------------------
# The stack under test and the matrix


@dataclass(frozen=True)
class Stack:
    """A library and its program ``captures/stacks/NAME/peer.c``, recorded by
    ``captures/record_NAME.py``."""

    name: str
    libs: tuple[str, ...]
    """What ``gcc`` links the program with."""
    ports: range
    library_version: Callable[[], str]
    versions: tuple[str, ...] = (TLS13, TLS12)
    pha: bool = True
    """The stack does TLS 1.3 post-handshake client authentication."""
    tls12_ec_server: bool = True
    """As TLS 1.2 server the stack gets an ECDSA server certificate for the matrix (and the
    RSA one only in the ``RSA_SERVER_SCENARIOS``)."""

    @property
    def source(self) -> Path:
        return cli.CAPTURES / "stacks" / self.name / "peer.c"

    @property
    def recorded_by(self) -> str:
        return f"captures/record_{self.name}.py"


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
    Scenario("one-way", "none", None, core.ONE_WAY),
    Scenario("cert-requested-not-sent", "optional", None, NOT_SENT),
    # the client sends an empty Certificate; verdict_of counts that as not sent
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
# Programs


def compile_peer(stack: Stack, work: Path) -> Path:
    binary = work / f"{stack.name}-peer"
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(binary), str(stack.source), *stack.libs]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RecordingError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return binary


REQUEST = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "require": ssl.CERT_REQUIRED}
REQUEST["pha"] = ssl.CERT_NONE  # the server asks later, by its own means


def _tool_scenario(case: Case) -> Endpoint:
    return Endpoint(case.port, case.version, REQUEST[case.scenario.verify])


def _version_arg(version: str) -> str:
    return "1.3" if version == TLS13 else "1.2"


def server_cmd(case: Case, binary: Path, pki: Pki, keylog: Path) -> list[str]:
    if case.server == "openssl":
        cmd = tools.openssl_server_cmd(_tool_scenario(case), pki)
        if case.pha:
            cmd.remove("-rev")  # the server's lines come from its stdin; "c" asks for the cert
        return [*cmd, "-keylogfile", str(keylog)]
    if case.server == "gnutls":
        return gnutls_server_cmd(_tool_scenario(case), pki)
    cmd = [str(binary), "server", str(case.port), _version_arg(case.version), str(pki.root)]
    identity = pki.clients[EC_SERVER] if case.ec_server else pki.server
    cmd += ["--cert", str(identity.chain), "--key", str(identity.key)]
    cmd += ["--pha"] if case.pha else ["--verify", case.scenario.verify]
    return [*cmd, "--keylog", str(keylog)]


def client_cmd(case: Case, binary: Path, pki: Pki, keylog: Path) -> list[str]:
    identity = pki.client(case.scenario.client_id)
    if case.client == "openssl":
        cmd = openssl_client_cmd(_tool_scenario(case), pki, identity, keylog)
        return [*cmd, "-enable_pha"] if case.pha else cmd
    if case.client == "gnutls":
        cmd = gnutls_client_cmd(_tool_scenario(case), pki, identity)
        return [*cmd[:-1], "--post-handshake-auth", cmd[-1]] if case.pha else cmd
    cmd = [str(binary), "client", str(case.port), _version_arg(case.version), str(pki.root)]
    if identity is not None:
        cmd += ["--cert", str(identity.chain), "--key", str(identity.key)]
    cmd += ["--sni", core.SERVER_NAME, "--keylog", str(keylog)]
    return [*cmd, "--pha"] if case.pha else cmd


def _reply(case: Case) -> bytes:
    """The line the server answers the ping with."""
    if case.server == "openssl":
        return PONG if case.pha else b"gnip\n"
    if case.server == "gnutls":
        return PING  # gnutls-serv --echo
    return PONG


def converse(case: Case, stack: Stack, server: Program, client: Program) -> None:
    """Drive the tools' stdin: the stack's own program needs nothing, ``s_client`` and
    ``gnutls-cli`` get the client's lines, ``s_server`` (post-handshake case) the server's."""

    def wait(ready: Callable[[], bool]) -> bool:
        return wait_until(ready, core.TOOL_TIMEOUT)

    def client_done() -> bool:
        return client.ended()

    if case.client != stack.name:
        client.send(PING)
        if case.pha:
            wait(lambda: client.has(CERT_LINE) or client_done())
            client.send(AFTER)
        wait(lambda: client.has(_reply(case)) or client_done())
        time.sleep(0.1)  # a TLS 1.3 session ticket may still be on its way
        client.close_stdin()
    elif case.server == "openssl" and case.pha:
        if wait(lambda: server.has(PING) or client_done()) and not client_done():
            server.send(b"c\n")
            time.sleep(0.2)
            server.send(CERT_LINE)
            wait(lambda: server.has(AFTER) or client_done())
            server.send(PONG)
    wait(client_done)
    wait_until(lambda: connections_closed(case.port), 2.0)
    if case.server != "gnutls":
        wait_until(server.ended, 2.0)


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
            rep.alert = ALERTS.get(int(f["code"]), f"alert {f['code']}")
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
        rep.alert = tools.received_alert(program, text)
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


def run_case(
    case: Case, stack: Stack, binary: Path, pki: Pki, keylog_path: Path, verbose: bool
) -> dict[str, Any]:
    before = set(keylog.lines(keylog_path))
    server_keylog = keylog_path if case.server == "gnutls" else None
    client_keylog = keylog_path if case.client == "gnutls" else None
    scmd = server_cmd(case, binary, pki, keylog_path)
    with serving(scmd, case.port, clean_env(server_keylog), stdin=True) as server:
        client = Program(client_cmd(case, binary, pki, keylog_path), clean_env(client_keylog))
        try:
            converse(case, stack, server, client)
        finally:
            client_log = client.stop()
    server_log = server.stop()
    logs = f"--- server\n{server_log}\n--- client\n{client_log}"
    if verbose:
        print(f"=== {case.name} (port {case.port})\n{logs}")
    own = stack.name
    srv = (own_report if case.server == own else tool_report)(case, "server", server_log)
    clt = (own_report if case.client == own else tool_report)(case, "client", client_log)
    keyed = bool(set(keylog.lines(keylog_path)) - before)
    try:
        return judge(case, pki, srv, clt, keyed)
    except RecordingError as exc:
        raise RecordingError(f"{exc}\n{logs}") from None


def judge(case: Case, pki: Pki, srv: Report, clt: Report, keyed: bool) -> dict[str, Any]:
    name = case.name
    sc = case.scenario
    identity = pki.client(sc.client_id)
    requested = case.requested
    cert_sent = requested and identity is not None
    if sc.client_sends is not None:
        cert_sent = requested and sc.client_sends
    completed = srv.completed and clt.completed
    for rep in (srv, clt):
        if rep.version is not None:
            check(name, f"{rep.program} version", rep.version, case.version)
    if completed:
        expected_cn = identity.cn if cert_sent and identity else None
        check(name, "client certificate accepted by the server", srv.peer_cn, expected_cn)
    else:
        check(name, "a failure reported", bool(srv.error or clt.error or clt.alert), True)
        if cert_sent and identity is not None and srv.offered_cn is not None:
            check(name, "client certificate the server got", srv.offered_cn, identity.cn)
    if srv.program == case.server and case.server not in ("openssl", "gnutls"):
        want = identity.cn if cert_sent and identity else None
        check(name, "client certificate the server reported", srv.offered_cn, want)
    if case.pha:
        check(name, "post-handshake CertificateRequest sent", srv.later_request, True)
    verdict = verdict_of(
        requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    if sc.name == "rsa-server-ec-client-aborts":
        verdict = FAILED  # the client answered the request with an alert, not a Certificate
    check(name, "verdict", verdict, sc.expect)
    client_port = clt.client_port or srv.client_port
    if client_port is None:
        raise RecordingError(f"{name}: no program reported the client port")
    where = Where(name, case.stack, case.port, case.version, client_port)
    chain = chain_sent(requested, cert_sent, identity)
    entry = session_entry(where, verdict, chain, pki.server.sent, alert=clt.alert)
    entry.update(
        keyed=keyed,
        later_auth=core.POST_HANDSHAKE if case.pha else None,
        server_key="ECDSA P-256" if case.ec_server else "RSA 2048",
        server_report=_summary(srv),
        client_report=_summary(clt),
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
# Recording


def stack_pki(work: Path) -> Pki:
    """The test PKI plus client-erin, expired, and a server identity with a P-256 key."""
    pki = with_expired_client(build_pki(work, None), work, EXPIRED, EXPIRED)
    return with_ec_server(pki, work, EC_SERVER)


def record(stack: Stack, out: Path, work: Path, verbose: bool) -> Iterator[cli.Recorded]:
    pki = stack_pki(work / "pki")
    binary = compile_peer(stack, work)
    name = f"stack_{stack.name}"
    pcap, keylog_path = out / f"{name}.pcapng", keylog.fresh(out / f"{name}.keylog")
    todo = cases(stack)
    sessions: list[dict[str, Any]] = []
    with capture(DUMPCAP_LO, pcap, sorted({c.port for c in todo})):
        for case in todo:
            entry = run_case(case, stack, binary, pki, keylog_path, verbose)
            sessions.append(entry)
            if verbose:
                print(f"{case.name}: {entry['verdict']}, keyed {entry['keyed']}")
    keylog.dedupe(keylog_path)
    tools = tool_versions()
    tools[stack.name] = stack.library_version()
    tools["gcc"] = version_of(["gcc", "--version"])
    truth.write_recording(out, name, stack.recorded_by, tools, sessions)
    yield cli.Recorded(pcap, len(sessions), tshark.check(pcap, keylog_path, sessions))


def run(stack: Stack, argv: Sequence[str] | None = None) -> int:
    """The command line of the recorder of ``stack``."""

    def record_stack(out: Path, work: Path, verbose: bool) -> Iterator[cli.Recorded]:
        return record(stack, out, work, verbose)

    return cli.main(
        f"Record {stack.name} sessions with truth.", stack.name, PROGRAMS, record_stack, argv
    )
