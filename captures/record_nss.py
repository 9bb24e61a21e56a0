#!/usr/bin/env python3
"""Record mutual-TLS sessions of NSS (``selfserv`` and ``tstclnt`` of libnss3-tools) with
``openssl``, ``gnutls`` and NSS itself, with their ground truth and key logs.

Its PKI, capture and tool commands are those of ``captures/recording/``. For each of TLS 1.3 and
TLS 1.2 it runs the scenarios mutual, one-way, cert-requested-not-sent, required-without-cert,
refused-unknown-ca and refused-expired, plus TLS 1.3 post-handshake authentication, in the
pairings NSS server with ``openssl s_client``, ``gnutls-cli`` and ``tstclnt``, and NSS client
against ``openssl s_server`` and ``gnutls-serv``. Every session has a port of its own in
9400-9499 on 127.0.0.1 while ``dumpcap`` records the loopback interface.

NSS reads its certificates and keys from NSS databases, made here in a temporary folder with
``certutil`` and ``pk12util`` from the PEM files of the test PKI. The NSS build of Debian 12
ignores ``SSLKEYLOGFILE``; the key log is written by the other program of each pair
(``-keylogfile`` of ``s_client``/``s_server``, ``SSLKEYLOGFILE`` of GnuTLS), so the NSS-NSS
sessions have no keys (truth field ``keyed``).

The truth of a session comes from what both programs reported: the server's log of the client
certificate it received and verified (``selfserv -v``, ``s_server``, ``gnutls-serv``), the
client's output (the server's answer, or the alert it received). The recorder stops when a
session does not behave as its scenario says. Afterwards each session is checked against
``tshark`` with the key log: a CertificateRequest must be there iff the server asked, and a
client Certificate with certificates iff the client sent one.

Usage (as root)::

    python3 captures/record_nss.py [--out DIR] [--verbose]
"""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recording import cli, core, keylog, tools, truth, tshark
from recording.capture import (
    DUMPCAP_LO,
    capture,
    wait_until,
)
from recording.cli import Recorded
from recording.core import MUTUAL, NOT_SENT, PING, TLS12, TLS13, TOOL_TIMEOUT, RecordingError, check
from recording.pki import Identity, Pki, build_pki, with_expired_client
from recording.programs import Program, run_checked, serving, tool_versions, version_of, wind_down
from recording.tools import (
    Endpoint,
    gnutls_client_cmd,
    gnutls_server_cmd,
    openssl_client_cmd,
)
from recording.truth import Where, session_entry, verdict_of
from recording.tshark import Checked

RECORDED_BY = "captures/record_nss.py"
NAME = "stack_nss"
PROGRAMS = (
    *("dumpcap", "tshark", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf"),
    *("selfserv", "tstclnt", "certutil", "pk12util"),
)

NONE, OPTIONAL, REQUIRED, LATER = "none", "optional", "required", "later"
"""What the server asks for: nothing, a certificate it may do without, one it requires, or one
it requests after the handshake (TLS 1.3 post-handshake authentication, optional)."""

SELFSERV_REQUEST = b"ping\n\n"
"""``selfserv`` answers once it has read an empty line (the end of an HTTP request head), so the
client sends ``ping`` and an empty line; it answers with an HTTP head and the request echoed,
then closes the connection with close_notify."""
SELFSERV_REPLY = b"Content-type: text/plain\r\n\r\nping\n"
REPLIES = {"openssl": b"gnip\n", "gnutls": PING, "nss": SELFSERV_REPLY}

EXPIRED = "erin"
"""A client of the right intermediate CA whose certificate expired a day before recording."""


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Scenario(core.Pairing):
    """One connection between a server and a client program and the outcome it must have."""

    scenario: str
    port: int
    version: str
    stack: str  # "SERVER/CLIENT", each of nss, openssl, gnutls
    request: str
    client_id: str | None
    expect: str
    alert: str | None = None

    @property
    def reply(self) -> bytes:
        """What the client must receive: s_server asking after the handshake is driven from
        its stdin (``c``, then ``pong``, then ``q``) instead of answering by itself."""
        if self.server == "openssl" and self.request == LATER:
            return core.PONG
        return REPLIES[self.server]

    @property
    def later(self) -> str | None:
        return core.POST_HANDSHAKE if self.request == LATER else None


TSHARK_OTHER_PORTS = frozenset({9418})
"""Ports left out: tshark dissects 9418 as git, not TLS."""


def _matrix() -> tuple[Scenario, ...]:
    """Ports from 9401 in order (but those of TSHARK_OTHER_PORTS). The alerts are those each client reported in the recording
    (what the server sent); a scenario whose outcome differs stops the recording."""
    rows: list[tuple[str, str, str, str | None, str, str | None]] = []
    # (stack, version, request, client, verdict, alert); None-alert rows end without one
    clients_of = {"nss/openssl": "alice", "nss/gnutls": "bob", "nss/nss": "carol"}
    clients_of |= {"openssl/nss": "alice", "gnutls/nss": "bob"}
    for stack in ("nss/openssl", "nss/gnutls", "nss/nss", "openssl/nss", "gnutls/nss"):
        server, client = stack.split("/")
        for version in (TLS13, TLS12):
            who = clients_of[stack]
            rows.append((stack, version, REQUIRED, who, MUTUAL, None))
            rows.append((stack, version, NONE, None, core.ONE_WAY, None))
            rows.append((stack, version, OPTIONAL, None, NOT_SENT, None))
            rows.append((stack, version, REQUIRED, None, NOT_SENT, _NO_CERT_ALERT[server, version]))
            rows.append((stack, version, REQUIRED, "mallory", core.FAILED, _REFUSED[server, "ca"]))
            rows.append(
                (stack, version, REQUIRED, EXPIRED, core.FAILED, _REFUSED[server, "expired"])
            )
            if version == TLS13 and server != "gnutls":  # gnutls-serv cannot ask later
                rows.append((stack, version, LATER, who, MUTUAL, None))
    names = {
        (REQUIRED, True, MUTUAL): "mutual",
        (NONE, False, core.ONE_WAY): "one-way",
        (OPTIONAL, False, NOT_SENT): "cert-requested-not-sent",
        (REQUIRED, False, NOT_SENT): "required-without-cert",
        (LATER, True, MUTUAL): "post-handshake-mutual",
    }
    ports = [p for p in range(9401, 9500) if p not in TSHARK_OTHER_PORTS]
    out: list[Scenario] = []
    for port, (stack, version, request, who, verdict, alert) in zip(ports, rows, strict=False):
        if who == "mallory":
            kind = "refused-unknown-ca"
        elif who == EXPIRED:
            kind = "refused-expired"
        else:
            kind = names[request, who is not None, verdict]
        server, client = stack.split("/")
        tag = "tls13" if version == TLS13 else "tls12"
        name = f"{tag}-{kind}-{server}-server-{client}-client"
        out.append(Scenario(name, port, version, stack, request, who, verdict, alert))
    return tuple(out)


# The alert the client reports when the server requires a certificate and gets none
_NO_CERT_ALERT: dict[tuple[str, str], str | None] = {
    ("nss", TLS13): "certificate_required",
    ("nss", TLS12): "bad_certificate",
    ("openssl", TLS13): "certificate_required",
    ("openssl", TLS12): "handshake_failure",
    ("gnutls", TLS13): "certificate_required",
    ("gnutls", TLS12): "decode_error",
}
# ... and when it refuses the client's certificate
_REFUSED: dict[tuple[str, str], str | None] = {
    ("nss", "ca"): "unknown_ca",
    ("nss", "expired"): "certificate_expired",
    ("openssl", "ca"): "unknown_ca",
    ("openssl", "expired"): "certificate_expired",
    ("gnutls", "ca"): "access_denied",
    ("gnutls", "expired"): "access_denied",
}

SCENARIOS = _matrix()


# --------------------------------------------------------------------------------------------
# PKI and NSS databases


@dataclass(frozen=True)
class NssDbs:
    server: Path
    clients: dict[str | None, Path]

    def client(self, who: str | None) -> Path:
        return self.clients[who]


def _new_db(path: Path, pki: Pki) -> Path:
    """An NSS database without password that trusts the test root for TLS clients and servers
    (``CT``: a CA trusted to issue client and server certificates)."""
    path.mkdir(parents=True)
    run_checked(["certutil", "-N", "-d", f"sql:{path}", "--empty-password"])
    run_checked(
        [
            "certutil",
            "-A",
            "-d",
            f"sql:{path}",
            "-n",
            "test-root",
            "-t",
            "CT,C,C",
            "-i",
            str(pki.root),
        ]
    )
    return path


def _import_identity(db: Path, identity: Identity, nickname: str, work: Path) -> None:
    """The leaf, its key and the certificates it sends besides, as PKCS#12 through pk12util."""
    p12 = work / f"{nickname}.p12"
    run_checked(
        [
            "openssl",
            "pkcs12",
            "-export",
            "-in",
            str(identity.cert),
            "-inkey",
            str(identity.key),
            "-certfile",
            str(identity.extra),
            "-name",
            nickname,
            "-passout",
            "pass:",
            "-out",
            str(p12),
        ]
    )
    run_checked(["pk12util", "-i", str(p12), "-d", f"sql:{db}", "-W", ""])


def build_dbs(pki: Pki, work: Path) -> NssDbs:
    """One database for ``selfserv`` and one per client identity (and one without any), as
    ``tstclnt`` without ``-n`` would pick any client certificate of its database."""
    server = _new_db(work / "db-server", pki)
    _import_identity(server, pki.server, "server", work)
    clients: dict[str | None, Path] = {None: _new_db(work / "db-none", pki)}
    for who, identity in pki.clients.items():
        clients[who] = _new_db(work / f"db-{who}", pki)
        _import_identity(clients[who], identity, who, work)
    return NssDbs(server, clients)


# --------------------------------------------------------------------------------------------
# Commands


REQUEST = {NONE: ssl.CERT_NONE, OPTIONAL: ssl.CERT_OPTIONAL, REQUIRED: ssl.CERT_REQUIRED}
REQUEST[LATER] = ssl.CERT_NONE  # the client commands do not depend on it


def _tool_scenario(sc: Scenario) -> Endpoint:
    return Endpoint(sc.port, sc.version, REQUEST[sc.request])


def _nss_version(version: str) -> str:
    return "tls1.3:tls1.3" if version == TLS13 else "tls1.2:tls1.2"


def server_command(
    sc: Scenario, pki: Pki, dbs: NssDbs, keylog: Path
) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if sc.server == "nss":
        cmd = ["selfserv", "-d", f"sql:{dbs.server}", "-n", "server", "-p", str(sc.port)]
        cmd += ["-V", _nss_version(sc.version), "-v"]
        cmd += {NONE: [], OPTIONAL: ["-r"], REQUIRED: ["-r", "-r"]}.get(
            sc.request, ["-r", "-r", "-r", "-E"]
        )
        return cmd, env
    if sc.request == LATER and sc.server == "openssl":
        cmd = ["openssl", "s_server", "-accept", f"{core.HOST}:{sc.port}", "-naccept", "1"]
        cmd += ["-cert", str(pki.server.cert), "-key", str(pki.server.key)]
        cmd += ["-cert_chain", str(pki.server.extra), "-CAfile", str(pki.root), "-tls1_3"]
        return [*cmd, "-verify_return_error", "-keylogfile", str(keylog)], env
    if sc.request == LATER:
        raise RecordingError(f"{sc.scenario}: no post-handshake request for {sc.server}")
    if sc.server == "openssl":
        return [*tools.openssl_server_cmd(_tool_scenario(sc), pki), "-keylogfile", str(keylog)], env
    env["SSLKEYLOGFILE"] = str(keylog)
    return gnutls_server_cmd(_tool_scenario(sc), pki), env


def client_command(
    sc: Scenario, pki: Pki, dbs: NssDbs, keylog: Path, request_file: Path
) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    identity = pki.client(sc.client_id)
    if sc.client == "openssl":
        cmd = openssl_client_cmd(_tool_scenario(sc), pki, identity, keylog)
        return cmd + (["-enable_pha"] if sc.request == LATER else []), env
    if sc.client == "gnutls":
        cmd = gnutls_client_cmd(_tool_scenario(sc), pki, identity)
        if sc.request == LATER:
            cmd.insert(-1, "--post-handshake-auth")
        env["SSLKEYLOGFILE"] = str(keylog)
        return cmd, env
    cmd = ["tstclnt", "-d", f"sql:{dbs.client(sc.client_id)}", "-h", core.HOST, "-p", str(sc.port)]
    cmd += ["-a", core.SERVER_NAME, "-V", _nss_version(sc.version), "-A", str(request_file)]
    if sc.client_id is not None:
        cmd += ["-n", sc.client_id]
    if sc.request == LATER:
        cmd.append("-E")
    return cmd, env


# --------------------------------------------------------------------------------------------
# Running a pair


@dataclass
class Run:
    server: str
    client: str
    client_rc: int | None
    client_out: bytes
    terminated: bool
    """The recorder ended ``tstclnt`` with SIGTERM: it never closes a connection first."""


def run_pair(sc: Scenario, pki: Pki, dbs: NssDbs, keylog: Path, work: Path) -> Run:
    payload = SELFSERV_REQUEST if sc.server == "nss" else PING
    request_file = work / f"request-{sc.port}.txt"
    request_file.write_bytes(payload)
    scmd, senv = server_command(sc, pki, dbs, keylog)
    ccmd, cenv = client_command(sc, pki, dbs, keylog, request_file)
    driven = sc.server == "openssl" and sc.request == LATER
    terminated = False
    with serving(scmd, sc.port, senv, stdin=driven) as server:
        client = Program(ccmd, cenv, stdin=sc.client != "nss", merge=False)
        if sc.client != "nss":  # tstclnt reads the request file
            client.send(payload)
        if driven:
            _drive_s_server(sc, server)
        wait_until(lambda: client.has(sc.reply) or client.ended(), TOOL_TIMEOUT)
        if driven:
            server.send(b"q\n")  # s_server ends the connection with close_notify
        client.close_stdin()
        if sc.client == "nss" and sc.server != "nss" and not client.ended():
            # tstclnt waits for the server to close, which s_server and gnutls-serv do not
            time.sleep(0.2)
            terminated = not client.ended()
        wait_until(client.ended, 0 if terminated else TOOL_TIMEOUT)
        ran = client.finish()
        wind_down(server, sc.port, exits=sc.server == "openssl")
    return Run(server.stop(), ran.text, ran.returncode, bytes(client.out.data), terminated)


def _drive_s_server(sc: Scenario, server: Program) -> None:
    """Once s_server printed the client's ping: ``c`` (post-handshake CertificateRequest),
    then, once it verified the client's certificate, ``pong`` for the client."""
    steps = ((b"\nping\n", b"c\n"), (b"depth=0 ", core.PONG))
    for seen, typed in steps:
        if not wait_until(lambda: server.has(seen), TOOL_TIMEOUT):  # noqa: B023
            raise RecordingError(f"{sc.scenario}: s_server did not print {seen!r}\n{server.text()}")
        server.send(typed, strict=True)
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# What the programs reported


_NSS_ALERTS = {
    "UNKNOWN_CA": "unknown_ca",
    "EXPIRED_CERT": "certificate_expired",
    "BAD_CERT": "bad_certificate",
    "HANDSHAKE_FAILURE": "handshake_failure",
    "CERTIFICATE_REQUIRED": "certificate_required",
    "DECODE_ERROR": "decode_error",
    "ACCESS_DENIED": "access_denied",
    "CERTIFICATE_UNKNOWN": "certificate_unknown",
    "UNSUPPORTED_CERT": "unsupported_certificate",
    "REVOKED_CERT": "certificate_revoked",
    "ILLEGAL_PARAMETER": "illegal_parameter",
    "DECRYPT_ERROR": "decrypt_error",
    "INTERNAL_ERROR": "internal_error",
    "PROTOCOL_VERSION": "protocol_version",
    "HANDSHAKE_UNEXPECTED": "unexpected_message",
    "BAD_MAC": "bad_record_mac",
}
_NSS_ALERT = re.compile(r"SSL_ERROR_(?:RX_)?([A-Z_]+?)_ALERT\b")


def client_alert(sc: Scenario, run: Run) -> str | None:
    """The alert the client reported receiving."""
    if sc.client != "nss":
        return tools.received_alert(sc.client, run.client)
    match = _NSS_ALERT.search(run.client)
    if match is None:
        return None
    if match.group(1) not in _NSS_ALERTS:
        raise RecordingError(f"{sc.scenario}: unknown NSS alert error {match.group(0)}")
    return _NSS_ALERTS[match.group(1)]


def server_received(sc: Scenario, run: Run) -> tuple[str | None, int | None]:
    """The leaf CN of the client certificate the server reported receiving (valid or not),
    and the number of certificates it got where the server says so."""
    text = run.server
    if sc.server == "nss":
        # selfserv -v, its certificate hook: "Subject: CN=...", then validated or not
        match = re.search(r"selfserv: Subject: CN=([^,\n]+)", text)
        return (match.group(1) if match else None), None
    if sc.server == "openssl":
        cns = re.findall(r"^depth=0 .*?CN ?= ?([^,\n]+)$", text, re.M)
        if not cns:
            match = re.search(r"Peer certificate: .*CN ?= ?([^,\n]+)", text)
            cns = [match.group(1)] if match else []
        return (cns[-1].strip() if cns else None), None
    count = re.search(r"Got a certificate list of (\d+) certificates", text)
    match = re.search(r"Certificate\[0\] info:.*?\n\s*Subject: CN=([^,\n]+)", text, re.S)
    return (match.group(1) if match else None), (int(count.group(1)) if count else None)


def server_verified(sc: Scenario, run: Run, cn: str) -> bool:
    """The server accepted the client certificate ``cn``."""
    text = run.server
    if sc.server == "nss":
        return (
            re.search(
                rf"selfserv: Subject: CN={re.escape(cn)},.*?\nselfserv: -- SSL3: Certificate "
                r"Validated\.",
                text,
                re.S,
            )
            is not None
        )
    if sc.server == "openssl" and sc.request == LATER:
        return (
            "verify error" not in text
            and re.search(rf"^depth=0 .*CN ?= ?{re.escape(cn)}\nverify return:1$", text, re.M)
            is not None
        )
    if sc.server == "openssl":
        return (
            "Verification: OK" in text
            and re.search(rf"Peer certificate: .*CN ?= ?{re.escape(cn)}\b", text) is not None
        )
    return "The certificate is trusted" in text


def client_chain_sent(sc: Scenario, identity: Identity) -> tuple[str, ...]:
    """What the client program sends: openssl and gnutls send the files they are given; NSS
    builds the chain from its database and leaves out a self-signed root, so client-mallory
    (issued by the self-signed Rogue CA) goes alone."""
    if sc.client == "nss" and identity.cn == "client-mallory":
        return (identity.cn,)
    return identity.sent


def server_chain_sent(sc: Scenario, pki: Pki) -> tuple[str, ...]:
    """All three servers send the server certificate and the root: s_server and gnutls-serv
    the files they are given, selfserv the chain it builds from its database, root included
    (NSS leaves the root out only of a client's chain)."""
    return pki.server.sent


def judge(sc: Scenario, run: Run, pki: Pki) -> dict[str, Any]:
    name = sc.scenario
    identity = pki.client(sc.client_id)
    completed = sc.reply in run.client_out
    alert = client_alert(sc, run)
    requested = sc.request != NONE
    received, count = server_received(sc, run)
    logs = f"--- server\n{run.server}\n--- client\n{run.client}"
    try:
        if requested and identity is not None and received is None and not completed:
            # no server report of the certificate: only gnutls-serv says nothing on refusal
            check(name, "server without a report of the certificate", sc.server, "gnutls")
            received = identity.cn
        cert_sent = requested and received is not None
        check(
            name,
            "client certificate the server received",
            received if requested else None,
            identity.cn if (identity and requested) else None,
        )
        if count is not None and identity is not None:
            check(name, "certificates gnutls-serv got", count, len(client_chain_sent(sc, identity)))
        if completed and cert_sent:
            check(
                name, "server verified the client", server_verified(sc, run, received or ""), True
            )
        verdict = verdict_of(
            requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
        )
        check(name, "verdict", verdict, sc.expect)
        check(name, "alert", alert, sc.alert)
    except RecordingError as exc:
        raise RecordingError(f"{exc}\n{logs}") from None
    where = Where(name, sc.stack, sc.port, sc.version)
    chain = (
        None
        if not requested
        else (client_chain_sent(sc, identity) if cert_sent and identity else ())
    )
    entry = session_entry(where, verdict, chain, server_chain_sent(sc, pki), alert=alert)
    entry.update(
        keyed=None,  # filled in by check_capture from the key log
        later_auth=sc.later,
        client_closed_by_sigterm=run.terminated,
    )
    return entry


# --------------------------------------------------------------------------------------------
# Check against tshark


def check_capture(
    capture: Path, keylog_path: Path, sessions: list[dict[str, Any]]
) -> list[Checked]:
    """Fill in each session's client port and whether the key log has its secrets (``keyed``)
    from the capture, then compare its truth with the decrypted handshake tshark shows."""
    found = tshark.handshakes(capture, keylog_path, (s["server_port"] for s in sessions))
    keyed_randoms = keylog.client_randoms(keylog_path)
    checks = []
    for s in sessions:
        hs = tshark.find(s, found)
        if hs is not None:
            s["client_port"] = hs.client_port
            s["keyed"] = hs.client_random in keyed_randoms
        checked = tshark.judge(s, hs)
        if s["stack"] == "nss/nss" and s["keyed"]:
            checked = Checked(
                s["scenario"], tshark.MISMATCH, "a key for a session between NSS programs"
            )
        checks.append(checked)
    return checks


# --------------------------------------------------------------------------------------------
# Main


def nss_tool_versions() -> dict[str, str]:
    tools = tool_versions()
    package = version_of(["dpkg-query", "-W", "-f", "${Version}", "libnss3-tools"])
    tools["nss"] = f"libnss3-tools {package} (selfserv, tstclnt)"
    tools.pop("tcpdump", None)
    return tools


def record(out: Path, work: Path, verbose: bool) -> Iterator[Recorded]:
    pcap = out / f"{NAME}.pcapng"
    keylog_path = keylog.fresh(out / f"{NAME}.keylog")
    pki = with_expired_client(build_pki(work / "pki", None), work / "pki", EXPIRED, EXPIRED)
    dbs = build_dbs(pki, work)
    sessions: list[dict[str, Any]] = []
    with capture(DUMPCAP_LO, pcap, [sc.port for sc in SCENARIOS]):
        for sc in SCENARIOS:
            run = run_pair(sc, pki, dbs, keylog_path, work)
            if verbose:
                print(
                    f"=== {sc.scenario} ({sc.port})\n--- server\n{run.server}\n"
                    f"--- client\n{run.client}"
                )
            sessions.append(judge(sc, run, pki))
    checks = check_capture(pcap, keylog_path, sessions)
    truth.write_recording(out, NAME, RECORDED_BY, nss_tool_versions(), sessions)
    yield Recorded(pcap, len(sessions), checks)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(__doc__, "nss", PROGRAMS, record, argv)


if __name__ == "__main__":
    raise SystemExit(main())
