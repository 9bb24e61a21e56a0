#!/usr/bin/env python3
"""Record mutual-TLS sessions of Java's JSSE (OpenJDK 17) with their ground truth.

JSSE plays server and client through ``captures/stacks/java/Peer.java`` (compiled with
``javac`` into a temporary folder), paired with ``openssl s_server``/``s_client``,
``gnutls-serv``/``gnutls-cli`` and with itself, in TLS 1.3 and TLS 1.2: mutual, one-way,
certificate requested but not sent, certificate required but not sent, refused client
certificate from an unknown CA, refused expired client certificate. JSSE 17 has no TLS 1.3
post-handshake authentication (neither side), so there is no such session.

Every session runs on 127.0.0.1 while ``dumpcap`` records the loopback interface. JSSE writes no
key log: the keys come from the OpenSSL or GnuTLS peer (``-keylogfile``, ``SSLKEYLOGFILE``), so
Java-with-Java sessions have none (truth ``"keyed": false``). The truth comes from what both
programs reported (Peer's JSON lines and JSSE's ``javax.net.debug`` handshake log, the
``-msg`` logs of ``s_server``/``s_client``, the ``gnutls`` logs), never from the capture; the
capture is then checked against it with ``tshark`` and the key log.

Usage (as root)::

    python3 captures/record_java.py [--out DIR] [--verbose]
    python3 captures/record_java.py --records [--out DIR]   # record layer of the TLS 1.3 sessions
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256, SHA384
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.x509.oid import ExtendedKeyUsageOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record as rec  # noqa: E402  (PKI, capture and tool commands)

RECORDED_BY = "captures/record_java.py"
NAME = "stack_java"
SOURCE = HERE / "stacks" / "java" / "Peer.java"
TLS12, TLS13 = rec.TLS12, rec.TLS13
MUTUAL, ONE_WAY, NOT_SENT, FAILED = rec.MUTUAL, rec.ONE_WAY, rec.NOT_SENT, rec.FAILED
HOST = "127.0.0.1"
PASSWORD = "changeit"
JAVA_PROTOCOL = {TLS13: "TLSv1.3", TLS12: "TLSv1.2"}
WAIT = rec.TOOL_TIMEOUT
EXPIRED = "expired"


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Kind:
    """One row of the matrix: what the server asks, which client identity, what must happen."""

    name: str
    auth: str  # "need", "want" or "none"
    client_id: str | None
    expect: str


KINDS = (
    Kind("mutual", "need", "alice", MUTUAL),
    Kind("one-way", "none", "bob", ONE_WAY),  # the client has a certificate; nobody asks for it
    Kind("cert-requested-not-sent", "want", None, NOT_SENT),
    Kind("required-without-cert", "need", None, NOT_SENT),  # rec.verdict_of: empty Certificate
    Kind("refused-unknown-ca", "need", "mallory", FAILED),
    Kind("refused-expired", "need", EXPIRED, FAILED),
)

PAIRINGS = ("java/openssl", "java/gnutls", "java/java", "openssl/java", "gnutls/java")
FIRST_PORT = {TLS13: 9200, TLS12: 9240}


@dataclass(frozen=True)
class Scenario:
    name: str
    port: int
    version: str
    stack: str  # "SERVER/CLIENT"
    kind: Kind

    @property
    def server(self) -> str:
        return self.stack.split("/")[0]

    @property
    def client(self) -> str:
        return self.stack.split("/")[1]

    @property
    def requested(self) -> bool:
        return self.kind.auth != "none"


def _scenarios() -> tuple[Scenario, ...]:
    out: list[Scenario] = []
    for version in (TLS13, TLS12):
        port = FIRST_PORT[version]
        tag = "tls13" if version == TLS13 else "tls12"
        for stack in PAIRINGS:
            for kind in KINDS:
                name = f"{tag}-{stack.replace('/', '-')}-{kind.name}"
                out.append(Scenario(name, port, version, stack, kind))
                port += 1
    return tuple(out)


SCENARIOS = _scenarios()


# --------------------------------------------------------------------------------------------
# PKI additions: an expired client certificate, PKCS#12 key stores and the trust store


def _expired_identity(pki: rec.Pki, work: Path) -> rec.Identity:
    """client-expired, issued by the Test Client Intermediate CA, valid until yesterday. The
    intermediate's key is not kept by ``rec.build_pki``, so this captures it from ``rec._issue``
    while the PKI is built (see ``build_pki``)."""
    issuer = _ISSUED["Test Client Intermediate CA"]
    key = rec._new_key("ec")
    now = datetime.datetime.now(datetime.timezone.utc)
    name = rec._name("US", "Example Clients", "client-expired")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("spiffe://example.test/expired")]
            ),
            False,
        )
        .sign(issuer.key, hashes.SHA256())
    )
    leaf = cert.public_bytes(serialization.Encoding.PEM)
    extra = issuer.cert.public_bytes(serialization.Encoding.PEM)
    stem = "client-expired"
    (work / f"{stem}.pem").write_bytes(leaf)
    (work / f"{stem}-extra.pem").write_bytes(extra)
    (work / f"{stem}-chain.pem").write_bytes(leaf + extra)
    (work / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return rec.Identity(
        cn=stem,
        cert=work / f"{stem}.pem",
        key=work / f"{stem}.key",
        chain=work / f"{stem}-chain.pem",
        extra=work / f"{stem}-extra.pem",
        sent=(stem, issuer.cn),
    )


_ISSUED: dict[str, Any] = {}


def build_pki(work: Path) -> rec.Pki:
    """``rec.build_pki`` plus client-expired; every identity also as ``NAME.p12``."""
    original = rec._issue

    def keep(*args: Any, **kwargs: Any) -> Any:
        issued = original(*args, **kwargs)
        _ISSUED[issued.cn] = issued
        return issued

    rec._issue = keep
    try:
        pki = rec.build_pki(work, None)  # public certificates are not exported
    finally:
        rec._issue = original
    clients = dict(pki.clients)
    clients[EXPIRED] = _expired_identity(pki, work)
    pki = rec.Pki(root=pki.root, server=pki.server, clients=clients)
    for ident in (pki.server, *clients.values()):
        _run(
            ["openssl", "pkcs12", "-export", "-in", str(ident.chain), "-inkey", str(ident.key)]
            + ["-name", ident.cn, "-out", str(_p12(ident)), "-passout", f"pass:{PASSWORD}"]
        )
    _run(
        ["keytool", "-importcert", "-noprompt", "-alias", "test-root-ca", "-file", str(pki.root)]
        + ["-keystore", str(_truststore(pki)), "-storetype", "PKCS12", "-storepass", PASSWORD]
    )
    return pki


def _p12(ident: rec.Identity) -> Path:
    return ident.key.with_suffix(".p12")


def _truststore(pki: rec.Pki) -> Path:
    return pki.root.parent / "truststore.p12"


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise rec.RecordingError(f"{cmd[0]} failed: {done.stderr.strip()}")
    return done.stdout


def compile_peer(work: Path) -> Path:
    classes = work / "classes"
    _run(["javac", "-d", str(classes), str(SOURCE)])
    return classes


# --------------------------------------------------------------------------------------------
# Commands


def _java_cmd(classes: Path, mode: str, opts: dict[str, str]) -> list[str]:
    cmd = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", str(classes)]
    cmd += ["-Djavax.net.debug=ssl:handshake", "Peer", mode]
    for key, value in opts.items():
        cmd += [f"--{key}", value]
    return cmd


def _tool_scenario(sc: Scenario) -> rec.ToolScenario:
    request = {"need": rec.REQ, "want": rec.OPT, "none": rec.NONE}[sc.kind.auth]
    return rec.ToolScenario(
        sc.name, sc.port, sc.version, sc.stack, request, sc.kind.client_id, sc.kind.expect
    )


def server_cmd(
    sc: Scenario, pki: rec.Pki, classes: Path, keylog: Path
) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if sc.server == "java":
        opts = {
            "port": str(sc.port),
            "protocol": JAVA_PROTOCOL[sc.version],
            "auth": sc.kind.auth,
            "keystore": str(_p12(pki.server)),
            "truststore": str(_truststore(pki)),
            "password": PASSWORD,
        }
        return _java_cmd(classes, "server", opts), env
    if sc.server == "openssl":
        cmd = rec._openssl_server_cmd(_tool_scenario(sc), pki)
        return [*cmd, "-msg", "-keylogfile", str(keylog)], env
    env["SSLKEYLOGFILE"] = str(keylog)
    return rec._gnutls_server_cmd(_tool_scenario(sc), pki), env


def client_cmd(
    sc: Scenario, pki: rec.Pki, classes: Path, keylog: Path
) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    identity = pki.client(sc.kind.client_id)
    if sc.client == "java":
        opts = {
            "port": str(sc.port),
            "protocol": JAVA_PROTOCOL[sc.version],
            "truststore": str(_truststore(pki)),
            "password": PASSWORD,
            "sni": rec.SERVER_NAME,
        }
        if identity is not None:
            opts["keystore"] = str(_p12(identity))
        return _java_cmd(classes, "client", opts), env
    if sc.client == "openssl":
        cmd = rec._openssl_client_cmd(_tool_scenario(sc), pki, identity, keylog)
        return [*cmd, "-msg"], env
    env["SSLKEYLOGFILE"] = str(keylog)
    cmd = rec._gnutls_client_cmd(_tool_scenario(sc), pki, identity)
    return cmd, env


# --------------------------------------------------------------------------------------------
# What the programs reported


@dataclass
class Report:
    """What one program said about the connection."""

    requested: bool | None = None
    """Server: it sent a CertificateRequest; client: it received one (None: not reported)."""
    cert: bool | None = None
    """Client: it sent a non-empty Certificate; server: it received one."""
    peer_cn: str | None = None
    """Server: the client leaf it accepted; client: the server leaf."""
    data: str | None = None
    """Server: the line it read; client: the line it read back."""
    alert_sent: str | None = None
    alert_received: str | None = None
    error: str | None = None
    client_port: int | None = None
    messages: list[str] = field(default_factory=list)
    close_notify_received: bool | None = None


_CN = re.compile(r"CN=([^,]+)")
_JAVA_MSG = re.compile(
    r"^javax\.net\.ssl\|DEBUG\|[^|]*\|[^|]*\|[^|]*\|[^|]*\|"
    r"(Produced|Consuming) (?:(?:server|client) )?([A-Za-z]+?)(?: handshake| stateless post-handshake)?"
    r" message",
    re.M,
)
_JAVA_FATAL = re.compile(r"\|Fatal \(([A-Z_]+)\)")
_JAVA_ALERT = re.compile(r"Received fatal alert: (\w+)")


def _java_report(out: str, err: str, role: str) -> Report:
    r = Report()
    events = []
    for line in out.splitlines():
        with suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    peer_msg = "client" if role == "server" else "server"
    for verb, msg in _JAVA_MSG.findall(err):
        r.messages.append(f"{role if verb == 'Produced' else peer_msg}:{msg}")
    for ev in events:
        kind = ev["event"]
        if kind in ("accepted", "connected"):
            r.client_port = ev["client_port"]
        elif kind == "handshake" and ev["peer_chain"]:
            match = _CN.match(ev["peer_chain"][0])
            r.peer_cn = match.group(1) if match else None
        elif kind == "read":
            r.data = ev["data"]
        elif kind == "error":
            r.error = f"{ev['stage']}: {ev['exception']}"
            match = _JAVA_ALERT.search(ev["exception"])
            r.alert_received = match.group(1) if match else None
        elif kind == "peer_closed":
            r.close_notify_received = True
    fatal = _JAVA_FATAL.search(err)
    r.alert_sent = fatal.group(1).lower() if fatal else None
    if role == "server":
        r.requested = "server:CertificateRequest" in r.messages
        blocks = re.findall(
            r"Consuming client Certificate handshake message \((.*?)^javax\.net", err, re.S | re.M
        )
        # TLS 1.2 dumps an empty list as "<empty list>", TLS 1.3 as "[" and "]" lines
        r.cert = bool(blocks) and re.search(r"<empty list>|\[\s*\n\]", blocks[0]) is None
    else:
        r.requested = "server:CertificateRequest" in r.messages
        r.cert = any(ev["event"] == "key_manager" for ev in events)
    return r


_OSSL_MSG = re.compile(
    r"^(<<<|>>>) [^,\n]+, (Handshake|Alert) \[length ([0-9a-f]+)\], (\w+)(?: (\w+))?", re.M
)
_DEPTH0 = re.compile(r"^depth=0 .*?CN ?= ?([^,\n]+)$", re.M)


def _openssl_report(text: str, role: str) -> Report:
    r = Report()
    peer = "client" if role == "server" else "server"
    cert_lengths: list[int] = []
    for direction, ctype, length, name, detail in _OSSL_MSG.findall(text):
        sender = role if direction == ">>>" else peer
        if ctype == "Alert":
            if name == "fatal":
                if sender == role:
                    r.alert_sent = detail
                else:
                    r.alert_received = detail
            continue
        r.messages.append(f"{sender}:{name}")
        if sender == "client" and name == "Certificate":
            cert_lengths.append(int(length, 16))
    r.requested = "server:CertificateRequest" in r.messages
    # -msg lengths count the 4-byte header: an empty client Certificate is 7 bytes in TLS 1.2,
    # 8 in TLS 1.3 (the request context)
    r.cert = bool(cert_lengths) and cert_lengths[0] > 8
    if role == "server":
        cns = _DEPTH0.findall(text)
        r.peer_cn = cns[-1].strip() if cns and r.cert else None
        errors = [ln for ln in text.splitlines() if ":error:" in ln]
        r.error = errors[0] if errors else None
        # s_server -rev logs no data: the reversed line the client reads back shows it (_judge)
    else:
        alert = re.search(r"SSL alert number (\d+)", text)
        if r.alert_received is None and alert:
            r.alert_received = rec.ALERTS.get(int(alert.group(1)))
        errors = [ln for ln in text.splitlines() if ":error:" in ln]
        r.error = errors[0] if errors else None
        r.data = "pong\n" if "\npong\n" in text or text.startswith("pong\n") else None
    return r


def _gnutls_report(text: str, role: str, sc: Scenario, identity: rec.Identity | None) -> Report:
    r = Report()
    if role == "server":
        r.requested = sc.requested  # gnutls-serv does not log its handshake messages
        subject = re.search(r"Subject: CN=([^,]+),", text)
        r.cert = subject is not None and sc.requested
        r.peer_cn = subject.group(1) if subject else None
        port = re.search(r"connection from IPv[46] \S+ port (\d+)", text)
        r.client_port = int(port.group(1)) if port else None
        err = re.search(r"Error in handshake: (.*)", text)
        r.error = err.group(1) if err else None
        r.data = "ping\n" if re.search(r"^received .*\bping$", text, re.M) else None
    else:
        sent = re.search(r"- Successfully sent (\d+) certificate\(s\) to server", text)
        r.cert = sent is not None and int(sent.group(1)) > 0
        r.requested = sent is not None or "Server has requested a certificate" in text
        alert = re.search(r"Received alert \[(\d+)\]", text)
        r.alert_received = rec.ALERTS.get(int(alert.group(1))) if alert else None
        r.data = "pong\n" if "\npong\n" in text or text.startswith("pong\n") else None
        err = re.search(r"\*\*\* (Fatal error.*|Handshake has failed.*|Error.*)", text)
        r.error = err.group(1) if err else None
        if identity is None:
            r.cert = False
    return r


def _report(
    who: str, role: str, out: str, err: str, sc: Scenario, identity: rec.Identity | None
) -> Report:
    if who == "java":
        return _java_report(out, err, role)
    if who == "openssl":
        return _openssl_report(out + err, role)
    return _gnutls_report(out + err, role, sc, identity)


# --------------------------------------------------------------------------------------------
# Running one session


def _reply(sc: Scenario) -> bytes:
    """What the client reads back: Peer answers pong, ``s_server -rev`` gnip, gnutls echoes."""
    return {"java": rec.PONG, "openssl": b"gnip\n", "gnutls": rec.PING}[sc.server]


def run_session(
    sc: Scenario, pki: rec.Pki, classes: Path, keylog: Path, verbose: bool
) -> dict[str, Any]:
    if rec._listening(sc.port):
        raise rec.RecordingError(f"port {sc.port} is already in use")
    identity = pki.client(sc.kind.client_id)
    keys_before = keylog.read_text(encoding="ascii").count("\n")
    scmd, senv = server_cmd(sc, pki, classes, keylog)
    ccmd, cenv = client_cmd(sc, pki, classes, keylog)
    server = subprocess.Popen(
        scmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=senv
    )
    sout, serr = rec._Drain(server.stdout), rec._Drain(server.stderr)
    try:
        rec._wait_listening(sc.port, server)
        if sc.client == "java":
            done = subprocess.run(ccmd, capture_output=True, text=True, env=cenv, timeout=30)
            cout, cerr = done.stdout, done.stderr
        else:
            run = rec._run_client_tool(ccmd, cenv, _reply(sc))
            cout, cerr = run.out, run.err
        rec._wait_until(lambda: rec._connections_closed(sc.port), 3.0)
        if sc.server in ("java", "openssl"):
            rec._wait_until(lambda: server.poll() is not None, 5.0)
    finally:
        rec._stop(server)
    stext, setext = sout.join(), serr.join()
    keyed = keylog.read_text(encoding="ascii").count("\n") > keys_before
    srep = _report(sc.server, "server", stext, setext, sc, identity)
    crep = _report(sc.client, "client", cout, cerr, sc, identity)
    logs = (
        f"--- server {scmd}\n{stext}\n{_brief(setext)}\n--- client {ccmd}\n{cout}\n{_brief(cerr)}"
    )
    if verbose:
        print(f"=== {sc.name}\n{logs}\nserver {srep}\nclient {crep}")
    try:
        entry = _judge(sc, pki, srep, crep, keyed)
    except rec.RecordingError as exc:
        raise rec.RecordingError(f"{exc}\nserver {srep}\nclient {crep}\n{logs}") from None
    return entry


def _brief(debug: str) -> str:
    """The handshake message, alert and error lines of a JSSE debug log (or a tool's stderr)."""
    if "javax.net.ssl|" not in debug:
        return debug
    keep = re.compile(r"(Produced|Consuming|Fatal|alert|Exception)")
    lines = [ln.split("|", 6)[-1] for ln in debug.splitlines() if ln.startswith("javax.net.ssl|")]
    return "\n".join(ln for ln in lines if keep.search(ln))


def _judge(sc: Scenario, pki: rec.Pki, srep: Report, crep: Report, keyed: bool) -> dict[str, Any]:
    name = sc.name
    identity = pki.client(sc.kind.client_id)
    if sc.server == "openssl" and crep.data == "gnip\n":
        srep.data = "ping\n"  # the server reversed the line it read
    requested = bool(srep.requested)
    rec.check(name, "CertificateRequest the server reported", requested, sc.requested)
    if crep.requested is not None and sc.client != "gnutls":
        rec.check(name, "CertificateRequest the client reported", crep.requested, requested)
    cert_sent = requested and bool(crep.cert)
    rec.check(name, "client certificate sent", cert_sent, requested and identity is not None)
    completed = srep.data == "ping\n" and crep.data == _reply(sc).decode()
    if sc.server != "gnutls" or completed:
        rec.check(name, "client certificate the server received", bool(srep.cert), cert_sent)
    if completed:
        rec.check(
            name, "client the server accepted", srep.peer_cn, identity.cn if cert_sent else None
        )
    verdict = rec.verdict_of(
        requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    rec.check(name, "verdict", verdict, sc.kind.expect)
    refused = sc.kind.name.startswith("refused") or sc.kind.name == "required-without-cert"
    rec.check(name, "completed", completed, not refused)
    if refused and srep.alert_sent is None and crep.alert_received is None:
        if srep.error is None:
            raise rec.RecordingError(f"{name}: the server reported no failure")
    client_port = crep.client_port or srep.client_port
    entry = rec.session_entry(
        scenario=name,
        stack=sc.stack,
        ip=HOST,
        client_port=client_port,
        server_port=sc.port,
        version=sc.version,
        sni=rec.SERVER_NAME,
        verdict=verdict,
        resumed_from_mutual=None,
        alert=crep.alert_received,
        client_chain=None if not requested else (identity.sent if cert_sent and identity else ()),
        server_chain=pki.server.sent,
    )
    entry.update(
        keyed=keyed,
        later_auth=None,
        server_auth=sc.kind.auth,
        server_alert_sent=srep.alert_sent,
        server_error=srep.error,
        client_error=crep.error,
        messages=srep.messages or crep.messages,
    )
    return entry


# --------------------------------------------------------------------------------------------
# Check against the capture


def _tshark(pcap: Path, keylog: Path, fields: Sequence[str], display: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-Y", display]
    cmd += ["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;"]
    for f in fields:
        cmd += ["-e", f]
    return [line.split("\t") for line in _run(cmd).splitlines()]


def check_capture(pcap: Path, keylog: Path, sessions: list[dict[str, Any]]) -> list[str]:
    """With the key log, the decrypted handshake must show a CertificateRequest iff requested
    and a client Certificate with at least one certificate iff sent. Returns the mismatches
    (sessions that cannot be decrypted are noted, not counted)."""
    rows = _tshark(
        pcap,
        keylog,
        ["tcp.srcport", "tcp.dstport", "tls.handshake.type", "tls.handshake.certificate_length"],
        "tls.handshake",
    )
    seen: dict[int, dict[str, Any]] = {}
    for src, dst, types, cert_lengths in rows:
        sport, dport = int(src), int(dst)
        client = dport if sport in _PORTS else sport
        s = seen.setdefault(client, {"types_s": [], "types_c": [], "client_certs": None})
        tlist = [int(t) for t in types.split(";") if t]
        if sport in _PORTS:
            s["types_s"] += tlist
        else:
            s["types_c"] += tlist
            if 11 in tlist:
                n = len([c for c in cert_lengths.split(";") if c])
                s["client_certs"] = (s["client_certs"] or 0) + n
    problems: list[str] = []
    for entry in sessions:
        s = seen.get(entry["client_port"])
        name = entry["scenario"]
        if s is None:
            problems.append(f"{name}: no handshake in the capture")
            continue
        decrypted = 8 in s["types_s"] or entry["tls_version"] == TLS12  # EncryptedExtensions
        entry["capture_check"] = "decrypted" if decrypted else "not decryptable (no key)"
        if not decrypted:
            continue
        requested = entry["client_chain"] is not None
        if (13 in s["types_s"]) != requested:
            problems.append(f"{name}: CertificateRequest in capture {13 in s['types_s']}")
        sent = bool(entry["client_chain"])
        got = (s["client_certs"] or 0) >= 1
        if got != sent:
            problems.append(f"{name}: client Certificate with certificates in capture {got}")
    return problems


_PORTS = {sc.port for sc in SCENARIOS}


# --------------------------------------------------------------------------------------------
# The TLS 1.3 record layer, decrypted with the key log


HS_NAMES = {
    1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 5: "EndOfEarlyData",
    8: "EncryptedExtensions", 11: "Certificate", 13: "CertificateRequest",
    15: "CertificateVerify", 20: "Finished", 24: "KeyUpdate",
}  # fmt: skip
CT_NAMES = {20: "CCS", 21: "Alert", 22: "Handshake", 23: "AppData"}
SUITES = {
    0x1301: (AESGCM, 16, SHA256),
    0x1302: (AESGCM, 32, SHA384),
    0x1303: (ChaCha20Poly1305, 32, SHA256),
}


def _expand_label(secret: bytes, label: bytes, length: int, algo: Any) -> bytes:
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(algo(), length, info).derive(secret)


def _keylog(path: Path) -> dict[tuple[str, str], bytes]:
    keys: dict[tuple[str, str], bytes] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) == 3:
            keys[(parts[0], parts[1].lower())] = bytes.fromhex(parts[2])
    return keys


def _streams(pcap: Path) -> dict[int, list[tuple[bool, bytes]]]:
    """Per client port the TCP payloads in capture order, (from_server, bytes)."""
    cmd = ["tshark", "-r", str(pcap), "-Y", "tcp.len > 0 && !tcp.analysis.retransmission"]
    cmd += ["-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.payload"]
    out: dict[int, list[tuple[bool, bytes]]] = {}
    for line in _run(cmd).splitlines():
        src, dst, payload = line.split("\t")
        from_server = int(src) in _PORTS
        client = int(dst) if from_server else int(src)
        out.setdefault(client, []).append((from_server, bytes.fromhex(payload.replace(":", ""))))
    return out


def record_layer(pcap: Path, keylog: Path, client_port: int) -> list[dict[str, Any]]:
    """Each record of one connection after the ServerHello: sender, outer type and length and,
    where the key log has the secrets, the inner type, the messages, content length and padding
    (zeros between the content type byte and the tag)."""
    chunks = _streams(pcap).get(client_port, [])
    data = {
        True: b"".join(c for s, c in chunks if s),
        False: b"".join(c for s, c in chunks if not s),
    }
    records: dict[bool, list[tuple[int, bytes, bytes]]] = {True: [], False: []}
    for side, buf in data.items():
        i = 0
        while i + 5 <= len(buf):
            length = int.from_bytes(buf[i + 3 : i + 5], "big")
            records[side].append((i, buf[i : i + 5], buf[i + 5 : i + 5 + length]))
            i += 5 + length
    hello = records[False][0][2] if records[False] else b""
    client_random = hello[6:38].hex()
    server_hello = records[True][0][2] if records[True] else b""
    suite = int.from_bytes(server_hello[39 + server_hello[38] : 41 + server_hello[38]], "big")
    keys = _keylog(keylog)
    # order of the records on the wire: by first appearance of their bytes in capture order
    order: list[tuple[bool, int]] = []
    offsets = {True: 0, False: 0}
    for side, chunk in chunks:
        offsets[side] += len(chunk)
        for n, (start, _h, _b) in enumerate(records[side]):
            if start < offsets[side] and (side, n) not in order:
                order.append((side, n))
    stage = {True: "SERVER_HANDSHAKE_TRAFFIC_SECRET", False: "CLIENT_HANDSHAKE_TRAFFIC_SECRET"}
    seq = {True: 0, False: 0}
    result = []
    for side, n in order:
        _start, header, body = records[side][n]
        ctype = header[0]
        if n == 0:
            continue  # ClientHello / ServerHello
        row: dict[str, Any] = {
            "sender": "server" if side else "client",
            "length": len(body),
            "outer": CT_NAMES.get(ctype, str(ctype)),
        }
        secret = keys.get((stage[side], client_random))
        if ctype == 23 and secret is not None and suite in SUITES:
            cls, klen, algo = SUITES[suite]
            key = _expand_label(secret, b"key", klen, algo)
            iv = _expand_label(secret, b"iv", 12, algo)
            nonce = bytes(a ^ b for a, b in zip(iv, seq[side].to_bytes(12, "big"), strict=True))
            try:
                plain = cls(key).decrypt(nonce, body, header)
            except Exception:  # noqa: BLE001  (wrong key: leave the record undecrypted)
                plain = None
            if plain is not None:
                seq[side] += 1
                stripped = plain.rstrip(b"\x00")
                inner, content = stripped[-1], stripped[:-1]
                row.update(inner=CT_NAMES.get(inner, str(inner)), content=len(content))
                row["padding"] = len(plain) - len(stripped)
                if inner == 22:
                    msgs, j = [], 0
                    while j + 4 <= len(content):
                        mlen = int.from_bytes(content[j + 1 : j + 4], "big")
                        msgs.append(HS_NAMES.get(content[j], str(content[j])))
                        j += 4 + mlen
                    row["messages"] = msgs
                    if "Finished" in msgs:
                        stage[side] = (
                            "SERVER_TRAFFIC_SECRET_0" if side else "CLIENT_TRAFFIC_SECRET_0"
                        )
                        seq[side] = 0
                elif inner == 21:
                    row["alert"] = rec.ALERTS.get(content[1], str(content[1]))
        result.append(row)
    return result


def print_records(out: Path) -> None:
    truth = json.loads((out / f"{NAME}.truth.json").read_text(encoding="utf-8"))
    pcap, keylog = out / f"{NAME}.pcapng", out / f"{NAME}.keylog"
    for entry in truth["sessions"]:
        if entry["tls_version"] != TLS13:
            continue
        print(f"== {entry['scenario']} ({entry['stack']}, {entry['verdict']}, "
              f"keyed={entry['keyed']}, port {entry['client_port']})")  # fmt: skip
        for row in record_layer(pcap, keylog, entry["client_port"]):
            extra = ""
            if "inner" in row:
                extra = f" -> {row['inner']} content={row['content']} pad={row['padding']}"
                if "messages" in row:
                    extra += " " + "+".join(row["messages"])
                if "alert" in row:
                    extra += f" {row['alert']}"
            print(f"  {row['sender']:6} {row['outer']:8} {row['length']:5}{extra}")


# --------------------------------------------------------------------------------------------


def java_version() -> str:
    done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    lines = done.stderr.strip().splitlines()
    return lines[1].strip() if len(lines) > 1 else "unknown"


def record(out: Path, pki: rec.Pki, classes: Path, verbose: bool, only: str | None = None) -> int:
    pcap, keylog = out / f"{NAME}.pcapng", out / f"{NAME}.keylog"
    keylog.unlink(missing_ok=True)
    keylog.touch()
    sessions: list[dict[str, Any]] = []
    with rec.capture(rec.DUMPCAP_LO, pcap, [sc.port for sc in SCENARIOS]):
        for sc in SCENARIOS:
            if only and only not in sc.name:
                continue
            sessions.append(run_session(sc, pki, classes, keylog, verbose))
            print(f"  {sc.port} {sc.name}: {sessions[-1]['verdict']}", flush=True)
    problems = check_capture(pcap, keylog, sessions)
    tools = rec.tool_versions()
    tools["java"] = java_version()
    doc = {
        "capture": pcap.name,
        "keylog": keylog.name,
        "recorded_by": RECORDED_BY,
        "captured_with": "dumpcap -i lo",
        "tools": tools,
        "sessions": sessions,
    }
    truth = out / f"{NAME}.truth.json"
    truth.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for path in (pcap, keylog, truth):
        path.chmod(0o644)
    if problems:
        raise rec.RecordingError("capture check failed:\n" + "\n".join(problems))
    return len(sessions)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the programs' output")
    parser.add_argument("--only", help="record only the scenarios whose name contains this")
    parser.add_argument(
        "--records", action="store_true", help="print the TLS 1.3 record layer of a recording"
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if args.records:
        print_records(out)
        return 0
    needed = ("dumpcap", "tshark", "openssl", "gnutls-cli", "gnutls-serv", "java", "javac")
    missing = [p for p in (*needed, "keytool", "stdbuf") if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise SystemExit("capturing on loopback needs root")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tls-java-") as tmp:
        work = Path(tmp)
        try:
            pki = build_pki(work / "pki")
            classes = compile_peer(work)
            count = record(out, pki, classes, args.verbose, args.only)
        except (rec.RecordingError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 1
    size = (out / f"{NAME}.pcapng").stat().st_size
    print(f"{NAME}.pcapng: {count} sessions, {size} bytes, {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
