#!/usr/bin/env python3
"""Record mutual-TLS sessions of NSS (``selfserv`` and ``tstclnt`` of libnss3-tools) with
``openssl``, ``gnutls`` and NSS itself, with their ground truth and key logs.

The companion of ``record.py`` (whose PKI, capture and tool helpers it uses). For each of TLS 1.3
and TLS 1.2 it runs the scenarios mutual, one-way, cert-requested-not-sent, required-without-cert,
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

import argparse
import datetime
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record as rec  # noqa: E402  (PKI, capture and tool helpers)

RECORDED_BY = "captures/record_nss.py"
NAME = "stack_nss"
HOST = "127.0.0.1"
TLS12, TLS13 = rec.TLS12, rec.TLS13
MUTUAL, ONE_WAY, NOT_SENT, FAILED = rec.MUTUAL, rec.ONE_WAY, rec.NOT_SENT, rec.FAILED
POST_HANDSHAKE = "post-handshake"
WAIT = rec.TOOL_TIMEOUT

NONE, OPTIONAL, REQUIRED, LATER = "none", "optional", "required", "later"
"""What the server asks for: nothing, a certificate it may do without, one it requires, or one
it requests after the handshake (TLS 1.3 post-handshake authentication, optional)."""

SELFSERV_REQUEST = b"ping\n\n"
"""``selfserv`` answers once it has read an empty line (the end of an HTTP request head), so the
client sends ``ping`` and an empty line; it answers with an HTTP head and the request echoed,
then closes the connection with close_notify."""
SELFSERV_REPLY = b"Content-type: text/plain\r\n\r\nping\n"
REPLIES = {"openssl": b"gnip\n", "gnutls": rec.PING, "nss": SELFSERV_REPLY}

EXPIRED = "erin"
"""A client of the right intermediate CA whose certificate expired a day before recording."""


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Scenario:
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
    def server(self) -> str:
        return self.stack.split("/")[0]

    @property
    def client(self) -> str:
        return self.stack.split("/")[1]

    @property
    def reply(self) -> bytes:
        """What the client must receive: s_server asking after the handshake is driven from
        its stdin (``c``, then ``pong``, then ``q``) instead of answering by itself."""
        if self.server == "openssl" and self.request == LATER:
            return rec.PONG
        return REPLIES[self.server]

    @property
    def later(self) -> str | None:
        return POST_HANDSHAKE if self.request == LATER else None


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
            rows.append((stack, version, NONE, None, ONE_WAY, None))
            rows.append((stack, version, OPTIONAL, None, NOT_SENT, None))
            rows.append((stack, version, REQUIRED, None, NOT_SENT, _NO_CERT_ALERT[server, version]))
            rows.append((stack, version, REQUIRED, "mallory", FAILED, _REFUSED[server, "ca"]))
            rows.append(
                (stack, version, REQUIRED, EXPIRED, FAILED, _REFUSED[server, "expired"])
            )
            if version == TLS13 and server != "gnutls":  # gnutls-serv cannot ask later
                rows.append((stack, version, LATER, who, MUTUAL, None))
    names = {
        (REQUIRED, True, MUTUAL): "mutual",
        (NONE, False, ONE_WAY): "one-way",
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


def build_pki(work: Path) -> rec.Pki:
    """The test PKI of ``record.py`` plus client-erin, issued by the client intermediate CA and
    expired: ``build_pki`` keeps the CA keys to itself, so its ``_issue`` is watched while it
    runs to get hold of the intermediate CA."""
    issued: list[rec._Issued] = []
    original = rec._issue

    def watching(*args: Any, **kwargs: Any) -> rec._Issued:
        result = original(*args, **kwargs)
        issued.append(result)
        return result

    rec._issue = watching  # type: ignore[assignment]
    try:
        pki = rec.build_pki(work, None)
    finally:
        rec._issue = original  # type: ignore[assignment]
    intermediate = next(i for i in issued if i.cn == "Test Client Intermediate CA")
    fresh = original(
        rec._name("US", "Example Clients", f"client-{EXPIRED}"),
        "ec",
        intermediate,
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        san=[x509.UniformResourceIdentifier(f"spiffe://example.test/{EXPIRED}")],
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(fresh.cert.subject)
        .issuer_name(fresh.cert.issuer)
        .public_key(fresh.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
    )
    for ext in fresh.cert.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    cert = builder.sign(intermediate.key, hashes.SHA256())
    expired = rec._Issued(fresh.name, fresh.key, cert)
    stem = expired.cn
    (work / f"{stem}.pem").write_bytes(rec._pem(expired))
    (work / f"{stem}.key").write_bytes(
        expired.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (work / f"{stem}-extra.pem").write_bytes(rec._pem(intermediate))
    (work / f"{stem}-chain.pem").write_bytes(rec._pem(expired, intermediate))
    pki.clients[EXPIRED] = rec.Identity(
        cn=stem,
        cert=work / f"{stem}.pem",
        key=work / f"{stem}.key",
        chain=work / f"{stem}-chain.pem",
        extra=work / f"{stem}-extra.pem",
        sent=(stem, intermediate.cn),
    )
    return pki


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT)
    if done.returncode != 0:
        raise rec.RecordingError(f"{' '.join(cmd)}: {done.stdout}{done.stderr}")


@dataclass(frozen=True)
class NssDbs:
    server: Path
    clients: dict[str | None, Path]

    def client(self, who: str | None) -> Path:
        return self.clients[who]


def _new_db(path: Path, pki: rec.Pki) -> Path:
    """An NSS database without password that trusts the test root for TLS clients and servers
    (``CT``: a CA trusted to issue client and server certificates)."""
    path.mkdir(parents=True)
    _run(["certutil", "-N", "-d", f"sql:{path}", "--empty-password"])
    _run(["certutil", "-A", "-d", f"sql:{path}", "-n", "test-root", "-t", "CT,C,C", "-i",
          str(pki.root)])
    return path


def _import_identity(db: Path, identity: rec.Identity, nickname: str, work: Path) -> None:
    """The leaf, its key and the certificates it sends besides, as PKCS#12 through pk12util."""
    p12 = work / f"{nickname}.p12"
    _run(["openssl", "pkcs12", "-export", "-in", str(identity.cert), "-inkey", str(identity.key),
          "-certfile", str(identity.extra), "-name", nickname, "-passout", "pass:",
          "-out", str(p12)])
    _run(["pk12util", "-i", str(p12), "-d", f"sql:{db}", "-W", ""])


def build_dbs(pki: rec.Pki, work: Path) -> NssDbs:
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


def _tool_scenario(sc: Scenario) -> rec.ToolScenario:
    request = {NONE: ssl.CERT_NONE, OPTIONAL: ssl.CERT_OPTIONAL, REQUIRED: ssl.CERT_REQUIRED}
    request[LATER] = ssl.CERT_NONE  # the client commands do not depend on it
    return rec.ToolScenario(
        sc.scenario, sc.port, sc.version, sc.stack, request[sc.request], sc.client_id, sc.expect
    )


def _nss_version(version: str) -> str:
    return "tls1.3:tls1.3" if version == TLS13 else "tls1.2:tls1.2"


def server_command(
    sc: Scenario, pki: rec.Pki, dbs: NssDbs, keylog: Path
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
        cmd = ["openssl", "s_server", "-accept", f"{HOST}:{sc.port}", "-naccept", "1"]
        cmd += ["-cert", str(pki.server.cert), "-key", str(pki.server.key)]
        cmd += ["-cert_chain", str(pki.server.extra), "-CAfile", str(pki.root), "-tls1_3"]
        return [*cmd, "-verify_return_error", "-keylogfile", str(keylog)], env
    if sc.request == LATER:
        raise rec.RecordingError(f"{sc.scenario}: no post-handshake request for {sc.server}")
    if sc.server == "openssl":
        return [*rec._openssl_server_cmd(_tool_scenario(sc), pki), "-keylogfile", str(keylog)], env
    env["SSLKEYLOGFILE"] = str(keylog)
    return rec._gnutls_server_cmd(_tool_scenario(sc), pki), env


def client_command(
    sc: Scenario, pki: rec.Pki, dbs: NssDbs, keylog: Path, request_file: Path
) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    identity = pki.client(sc.client_id)
    if sc.client == "openssl":
        cmd = rec._openssl_client_cmd(_tool_scenario(sc), pki, identity, keylog)
        return cmd + (["-enable_pha"] if sc.request == LATER else []), env
    if sc.client == "gnutls":
        cmd = rec._gnutls_client_cmd(_tool_scenario(sc), pki, identity)
        if sc.request == LATER:
            cmd.insert(-1, "--post-handshake-auth")
        env["SSLKEYLOGFILE"] = str(keylog)
        return cmd, env
    cmd = ["tstclnt", "-d", f"sql:{dbs.client(sc.client_id)}", "-h", HOST, "-p", str(sc.port)]
    cmd += ["-a", rec.SERVER_NAME, "-V", _nss_version(sc.version), "-A", str(request_file)]
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


def run_pair(sc: Scenario, pki: rec.Pki, dbs: NssDbs, keylog: Path, work: Path) -> Run:
    if rec._listening(sc.port):
        raise rec.RecordingError(f"port {sc.port} is already in use")
    payload = SELFSERV_REQUEST if sc.server == "nss" else rec.PING
    request_file = work / f"request-{sc.port}.txt"
    request_file.write_bytes(payload)
    scmd, senv = server_command(sc, pki, dbs, keylog)
    ccmd, cenv = client_command(sc, pki, dbs, keylog, request_file)
    driven = sc.server == "openssl" and sc.request == LATER
    server = subprocess.Popen(
        scmd,
        stdin=subprocess.PIPE if driven else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=senv,
    )
    sout = rec._Drain(server.stdout)
    reply = sc.reply
    terminated = False
    try:
        rec._wait_listening(sc.port, server)
        stdin = subprocess.DEVNULL if sc.client == "nss" else subprocess.PIPE
        client = subprocess.Popen(
            ccmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cenv
        )
        cout, cerr = rec._Drain(client.stdout), rec._Drain(client.stderr)
        if client.stdin is not None:
            try:
                client.stdin.write(payload)
                client.stdin.flush()
            except BrokenPipeError:
                pass  # the client has already given up
        if driven:
            _drive_s_server(sc, server, sout)
        rec._wait_until(lambda: reply in cout.data or client.poll() is not None, WAIT)
        if driven and server.stdin is not None:
            server.stdin.write(b"q\n")  # s_server ends the connection with close_notify
            server.stdin.flush()
        if client.stdin is not None:
            try:
                client.stdin.close()
            except BrokenPipeError:
                pass
        if sc.client == "nss" and sc.server != "nss" and client.poll() is None:
            # tstclnt waits for the server to close, which s_server and gnutls-serv do not
            time.sleep(0.2)
            terminated = client.poll() is None
        if not rec._wait_until(lambda: client.poll() is not None, 0 if terminated else WAIT):
            rec._stop(client)
        rec._wait_until(lambda: rec._connections_closed(sc.port), 2.0)
        if sc.server == "openssl":
            rec._wait_until(lambda: server.poll() is not None, 2.0)
    finally:
        rec._stop(server)
    client_text = cout.join() + cerr.join()
    return Run(sout.join(), client_text, client.returncode, bytes(cout.data), terminated)


def _drive_s_server(sc: Scenario, server: subprocess.Popen[bytes], out: rec._Drain) -> None:
    """Once s_server printed the client's ping: ``c`` (post-handshake CertificateRequest),
    then, once it verified the client's certificate, ``pong`` for the client."""
    assert server.stdin is not None
    steps = ((b"\nping\n", b"c\n"), (b"depth=0 ", rec.PONG))
    for seen, typed in steps:
        if not rec._wait_until(lambda: seen in out.data, WAIT):  # noqa: B023
            raise rec.RecordingError(f"{sc.scenario}: s_server did not print {seen!r}\n"
                                     f"{out.text()}")
        server.stdin.write(typed)
        server.stdin.flush()
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


def received_alert(sc: Scenario, run: Run) -> str | None:
    """The alert the client reported receiving."""
    if sc.client != "nss":
        return rec._received_alert(sc.client, rec.ToolRun(run.client_rc, run.client, ""))
    match = _NSS_ALERT.search(run.client)
    if match is None:
        return None
    if match.group(1) not in _NSS_ALERTS:
        raise rec.RecordingError(f"{sc.scenario}: unknown NSS alert error {match.group(0)}")
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
        return re.search(
            rf"selfserv: Subject: CN={re.escape(cn)},.*?\nselfserv: -- SSL3: Certificate "
            r"Validated\.", text, re.S
        ) is not None
    if sc.server == "openssl" and sc.request == LATER:
        return "verify error" not in text and re.search(
            rf"^depth=0 .*CN ?= ?{re.escape(cn)}\nverify return:1$", text, re.M
        ) is not None
    if sc.server == "openssl":
        return "Verification: OK" in text and re.search(
            rf"Peer certificate: .*CN ?= ?{re.escape(cn)}\b", text
        ) is not None
    return "The certificate is trusted" in text


def client_chain_sent(sc: Scenario, identity: rec.Identity) -> tuple[str, ...]:
    """What the client program sends: openssl and gnutls send the files they are given; NSS
    builds the chain from its database and leaves out a self-signed root, so client-mallory
    (issued by the self-signed Rogue CA) goes alone."""
    if sc.client == "nss" and identity.cn == "client-mallory":
        return (identity.cn,)
    return identity.sent


def server_chain_sent(sc: Scenario, pki: rec.Pki) -> tuple[str, ...]:
    """All three servers send the server certificate and the root: s_server and gnutls-serv
    the files they are given, selfserv the chain it builds from its database, root included
    (NSS leaves the root out only of a client's chain)."""
    return pki.server.sent


def judge(sc: Scenario, run: Run, pki: rec.Pki) -> dict[str, Any]:
    name = sc.scenario
    identity = pki.client(sc.client_id)
    completed = sc.reply in run.client_out
    alert = received_alert(sc, run)
    requested = sc.request != NONE
    received, count = server_received(sc, run)
    logs = f"--- server\n{run.server}\n--- client\n{run.client}"
    try:
        if requested and identity is not None and received is None and not completed:
            # no server report of the certificate: only gnutls-serv says nothing on refusal
            rec.check(name, "server without a report of the certificate", sc.server, "gnutls")
            received = identity.cn
        cert_sent = requested and received is not None
        rec.check(name, "client certificate the server received", received if requested else
                  None, identity.cn if (identity and requested) else None)
        if count is not None and identity is not None:
            rec.check(name, "certificates gnutls-serv got", count,
                      len(client_chain_sent(sc, identity)))
        if completed and cert_sent:
            rec.check(name, "server verified the client", server_verified(sc, run, received or ""),
                      True)
        verdict = rec.verdict_of(
            requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
        )
        rec.check(name, "verdict", verdict, sc.expect)
        rec.check(name, "alert", alert, sc.alert)
    except rec.RecordingError as exc:
        raise rec.RecordingError(f"{exc}\n{logs}") from None
    entry = rec.session_entry(
        scenario=name,
        stack=sc.stack,
        ip=HOST,
        client_port=None,
        server_port=sc.port,
        version=sc.version,
        sni=rec.SERVER_NAME,
        verdict=verdict,
        resumed_from_mutual=None,
        alert=alert,
        client_chain=None if not requested else (
            client_chain_sent(sc, identity) if cert_sent and identity else ()
        ),
        server_chain=server_chain_sent(sc, pki),
    )
    entry.update(
        keyed=None,  # filled in by check_capture from the key log
        later_auth=sc.later,
        client_closed_by_sigterm=run.terminated,
    )
    return entry


# --------------------------------------------------------------------------------------------
# Check against tshark


def _tshark(capture: Path, keylog: Path, fields: Sequence[str], filt: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(capture), "-o", f"tls.keylog_file:{keylog}", "-Y", filt]
    cmd += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise rec.RecordingError(f"tshark failed: {done.stderr}")
    return [line.split("\t") for line in done.stdout.splitlines() if line]


def check_capture(capture: Path, keylog: Path, sessions: list[dict[str, Any]]) -> list[str]:
    """Compare each session's truth with the decrypted handshake tshark shows; returns the
    mismatches (empty when all agree) and fills in the client port."""
    rows = _tshark(
        capture,
        keylog,
        ["tcp.srcport", "tcp.dstport", "tls.handshake.type", "tls.handshake.certificate_length",
         "tls.handshake.random"],
        "tls.handshake",
    )
    by_port: dict[int, dict[str, Any]] = {}
    for src, dst, types, lengths, randoms in (r + [""] * (5 - len(r)) for r in rows):
        sport, dport = int(src), int(dst)
        server_port = dport if 9400 <= dport <= 9499 else sport
        info = by_port.setdefault(
            server_port,
            {"types": [], "client_certs": [], "server_certs": [], "random": None,
             "client_port": None},
        )
        from_client = dport == server_port
        if from_client:
            info["client_port"] = sport
        kinds = [int(t) for t in types.split(",") if t]
        info["types"] += [("c" if from_client else "s", t) for t in kinds]
        if 11 in kinds:
            certs = len([x for x in lengths.split(",") if x])
            info["client_certs" if from_client else "server_certs"].append(certs)
        if from_client and 1 in kinds and randoms and info["random"] is None:
            info["random"] = randoms.split(",")[0]
    keyed_randoms = set()
    for line in keylog.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            keyed_randoms.add(parts[1].lower())
    problems: list[str] = []
    for s in sessions:
        info = by_port.get(s["server_port"])
        name = s["scenario"]
        if info is None:
            problems.append(f"{name}: no handshake in the capture")
            continue
        s["client_port"] = info["client_port"]
        has_key = (info["random"] or "").replace(":", "").lower() in keyed_randoms
        s["keyed"] = has_key
        if s["stack"] == "nss/nss" and has_key:
            problems.append(f"{name}: a key for a session between NSS programs")
        tls13_hidden = s["tls_version"] == TLS13 and not has_key
        if tls13_hidden:
            continue  # the handshake after the ServerHello stays encrypted
        requested = ("s", 13) in info["types"]
        if requested != (s["client_chain"] is not None):
            problems.append(f"{name}: CertificateRequest seen {requested}, truth "
                            f"{s['client_chain'] is not None}")
        server_certs = info["server_certs"][:1]
        if server_certs != [len(s["server_chain"])]:
            problems.append(f"{name}: server Certificate with {server_certs} certificates, truth "
                            f"{len(s['server_chain'])}")
        certs = max(info["client_certs"], default=0)
        if certs != len(s["client_chain"] or ()):
            problems.append(f"{name}: client Certificate with {certs} certificates, truth "
                            f"{len(s['client_chain'] or ())}")
    return problems


# --------------------------------------------------------------------------------------------
# Main


def tool_versions() -> dict[str, str]:
    tools = rec.tool_versions()
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libnss3-tools"],
                          capture_output=True, text=True)
    tools["nss"] = f"libnss3-tools {done.stdout.strip() or 'unknown'} (selfserv, tstclnt)"
    tools.pop("tcpdump", None)
    return tools


def record(out: Path, work: Path, verbose: bool) -> tuple[int, list[str]]:
    capture = out / f"{NAME}.pcapng"
    keylog = out / f"{NAME}.keylog"
    keylog.unlink(missing_ok=True)
    keylog.touch()
    pki = build_pki(work / "pki")
    dbs = build_dbs(pki, work)
    sessions: list[dict[str, Any]] = []
    with rec.capture(rec.DUMPCAP_LO, capture, [sc.port for sc in SCENARIOS]):
        for sc in SCENARIOS:
            run = run_pair(sc, pki, dbs, keylog, work)
            if verbose:
                print(f"=== {sc.scenario} ({sc.port})\n--- server\n{run.server}\n"
                      f"--- client\n{run.client}")
            sessions.append(judge(sc, run, pki))
    problems = check_capture(capture, keylog, sessions)
    doc = {
        "capture": capture.name,
        "keylog": keylog.name,
        "recorded_by": RECORDED_BY,
        "captured_with": "dumpcap -i lo",
        "tools": tool_versions(),
        "sessions": sessions,
    }
    truth = out / f"{NAME}.truth.json"
    truth.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for path in (capture, keylog, truth):
        path.chmod(0o644)
    return len(sessions), problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the programs' output")
    args = parser.parse_args(argv)
    needed = ("dumpcap", "tshark", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf", "selfserv",
              "tstclnt", "certutil", "pk12util")
    missing = [p for p in needed if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise SystemExit("capturing on loopback needs root")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tls-nss-") as tmp:
        try:
            count, problems = record(out, Path(tmp), args.verbose)
        except (rec.RecordingError, OSError, subprocess.SubprocessError) as exc:
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 1
    size = (out / f"{NAME}.pcapng").stat().st_size
    print(f"{NAME}.pcapng: {count} sessions, {size} bytes, {time.monotonic() - started:.1f} s")
    for problem in problems:
        print(f"tshark check: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
