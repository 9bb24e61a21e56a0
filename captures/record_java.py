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

import json
import re
import ssl
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recording import cli, core, keylog, programs, tools, truth, tshark
from recording.capture import (
    DUMPCAP_LO,
    capture,
)
from recording.core import ALERTS, FAILED, MUTUAL, NOT_SENT, TLS12, TLS13, RecordingError, check
from recording.pki import Identity, Pki, build_pki, with_expired_client
from recording.programs import clean_env, run_checked, run_program, serving, tool_versions
from recording.tls13records import record_layer
from recording.tools import (
    Endpoint,
    gnutls_client_cmd,
    gnutls_server_cmd,
    openssl_client_cmd,
)
from recording.truth import Where, chain_sent, session_entry, verdict_of
from recording.tshark import Checked

RECORDED_BY = "captures/record_java.py"
NAME = "stack_java"
SOURCE = cli.CAPTURES / "stacks" / "java" / "Peer.java"
PASSWORD = "changeit"
REQUEST = {"need": ssl.CERT_REQUIRED, "want": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
JAVA_PROTOCOL = {TLS13: "TLSv1.3", TLS12: "TLSv1.2"}
EXPIRED = "expired"
PROGRAMS = (
    *("dumpcap", "tshark", "openssl", "gnutls-cli", "gnutls-serv", "java", "javac"),
    *("keytool", "stdbuf"),
)


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
    Kind(
        "one-way", "none", "bob", core.ONE_WAY
    ),  # the client has a certificate; nobody asks for it
    Kind("cert-requested-not-sent", "want", None, NOT_SENT),
    Kind("required-without-cert", "need", None, NOT_SENT),  # verdict_of: empty Certificate
    Kind("refused-unknown-ca", "need", "mallory", FAILED),
    Kind("refused-expired", "need", EXPIRED, FAILED),
)

PAIRINGS = ("java/openssl", "java/gnutls", "java/java", "openssl/java", "gnutls/java")
FIRST_PORT = {TLS13: 9200, TLS12: 9240}


@dataclass(frozen=True)
class Scenario(core.Pairing):
    name: str
    port: int
    version: str
    stack: str  # "SERVER/CLIENT"
    kind: Kind

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


def java_pki(work: Path) -> Pki:
    """The test PKI plus client-expired; every identity also as ``NAME.p12``, and the root in
    the trust store."""
    pki = with_expired_client(build_pki(work, None), work, EXPIRED, EXPIRED)
    for ident in (pki.server, *pki.clients.values()):
        run_checked(
            ["openssl", "pkcs12", "-export", "-in", str(ident.chain), "-inkey", str(ident.key)]
            + ["-name", ident.cn, "-out", str(_p12(ident)), "-passout", f"pass:{PASSWORD}"]
        )
    run_checked(
        ["keytool", "-importcert", "-noprompt", "-alias", "test-root-ca", "-file", str(pki.root)]
        + ["-keystore", str(_truststore(pki)), "-storetype", "PKCS12", "-storepass", PASSWORD]
    )
    return pki


def _p12(ident: Identity) -> Path:
    return ident.key.with_suffix(".p12")


def _truststore(pki: Pki) -> Path:
    return pki.root.parent / "truststore.p12"


def compile_peer(work: Path) -> Path:
    classes = work / "classes"
    run_checked(["javac", "-d", str(classes), str(SOURCE)])
    return classes


# --------------------------------------------------------------------------------------------
# Commands


def _java_cmd(classes: Path, mode: str, opts: dict[str, str]) -> list[str]:
    cmd = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", str(classes)]
    cmd += ["-Djavax.net.debug=ssl:handshake", "Peer", mode]
    for key, value in opts.items():
        cmd += [f"--{key}", value]
    return cmd


def _tool_scenario(sc: Scenario) -> Endpoint:
    return Endpoint(sc.port, sc.version, REQUEST[sc.kind.auth])


def server_cmd(
    sc: Scenario, pki: Pki, classes: Path, keylog: Path
) -> tuple[list[str], dict[str, str]]:
    if sc.server == "java":
        opts = {
            "port": str(sc.port),
            "protocol": JAVA_PROTOCOL[sc.version],
            "auth": sc.kind.auth,
            "keystore": str(_p12(pki.server)),
            "truststore": str(_truststore(pki)),
            "password": PASSWORD,
        }
        return _java_cmd(classes, "server", opts), clean_env()
    if sc.server == "openssl":
        cmd = tools.openssl_server_cmd(_tool_scenario(sc), pki)
        return [*cmd, "-msg", "-keylogfile", str(keylog)], clean_env()
    return gnutls_server_cmd(_tool_scenario(sc), pki), clean_env(keylog)


def client_cmd(
    sc: Scenario, pki: Pki, classes: Path, keylog: Path
) -> tuple[list[str], dict[str, str]]:
    identity = pki.client(sc.kind.client_id)
    if sc.client == "java":
        opts = {
            "port": str(sc.port),
            "protocol": JAVA_PROTOCOL[sc.version],
            "truststore": str(_truststore(pki)),
            "password": PASSWORD,
            "sni": core.SERVER_NAME,
        }
        if identity is not None:
            opts["keystore"] = str(_p12(identity))
        return _java_cmd(classes, "client", opts), clean_env()
    if sc.client == "openssl":
        cmd = openssl_client_cmd(_tool_scenario(sc), pki, identity, keylog)
        return [*cmd, "-msg"], clean_env()
    return gnutls_client_cmd(_tool_scenario(sc), pki, identity), clean_env(keylog)


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
            r.alert_received = ALERTS.get(int(alert.group(1)))
        errors = [ln for ln in text.splitlines() if ":error:" in ln]
        r.error = errors[0] if errors else None
        r.data = "pong\n" if "\npong\n" in text or text.startswith("pong\n") else None
    return r


def _gnutls_report(text: str, role: str, sc: Scenario, identity: Identity | None) -> Report:
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
        r.alert_received = ALERTS.get(int(alert.group(1))) if alert else None
        r.data = "pong\n" if "\npong\n" in text or text.startswith("pong\n") else None
        err = re.search(r"\*\*\* (Fatal error.*|Handshake has failed.*|Error.*)", text)
        r.error = err.group(1) if err else None
        if identity is None:
            r.cert = False
    return r


def _report(
    who: str, role: str, out: str, err: str, sc: Scenario, identity: Identity | None
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
    return {"java": core.PONG, "openssl": b"gnip\n", "gnutls": core.PING}[sc.server]


def run_session(
    sc: Scenario, pki: Pki, classes: Path, keylog_path: Path, verbose: bool
) -> dict[str, Any]:
    identity = pki.client(sc.kind.client_id)
    keys_before = len(keylog.lines(keylog_path))
    scmd, senv = server_cmd(sc, pki, classes, keylog_path)
    ccmd, cenv = client_cmd(sc, pki, classes, keylog_path)
    with serving(scmd, sc.port, senv, merge=False) as server:
        if sc.client == "java":
            client = run_program(ccmd, cenv, 30)
        else:
            client = tools.run_client_tool(ccmd, cenv, _reply(sc))
        programs.wind_down(server, sc.port, exits=sc.server in ("java", "openssl"), timeout=5.0)
    ran = server.finish()
    keyed = len(keylog.lines(keylog_path)) > keys_before
    srep = _report(sc.server, "server", ran.out, ran.err, sc, identity)
    crep = _report(sc.client, "client", client.out, client.err, sc, identity)
    logs = (
        f"--- server {scmd}\n{ran.out}\n{_brief(ran.err)}\n"
        f"--- client {ccmd}\n{client.out}\n{_brief(client.err)}"
    )
    if verbose:
        print(f"=== {sc.name}\n{logs}\nserver {srep}\nclient {crep}")
    try:
        return _judge(sc, pki, srep, crep, keyed)
    except RecordingError as exc:
        raise RecordingError(f"{exc}\nserver {srep}\nclient {crep}\n{logs}") from None


def _brief(debug: str) -> str:
    """The handshake message, alert and error lines of a JSSE debug log (or a tool's stderr)."""
    if "javax.net.ssl|" not in debug:
        return debug
    keep = re.compile(r"(Produced|Consuming|Fatal|alert|Exception)")
    lines = [ln.split("|", 6)[-1] for ln in debug.splitlines() if ln.startswith("javax.net.ssl|")]
    return "\n".join(ln for ln in lines if keep.search(ln))


def _judge(sc: Scenario, pki: Pki, srep: Report, crep: Report, keyed: bool) -> dict[str, Any]:
    name = sc.name
    identity = pki.client(sc.kind.client_id)
    if sc.server == "openssl" and crep.data == "gnip\n":
        srep.data = "ping\n"  # the server reversed the line it read
    requested = bool(srep.requested)
    check(name, "CertificateRequest the server reported", requested, sc.requested)
    if crep.requested is not None and sc.client != "gnutls":
        check(name, "CertificateRequest the client reported", crep.requested, requested)
    cert_sent = requested and bool(crep.cert)
    check(name, "client certificate sent", cert_sent, requested and identity is not None)
    completed = srep.data == "ping\n" and crep.data == _reply(sc).decode()
    if sc.server != "gnutls" or completed:
        check(name, "client certificate the server received", bool(srep.cert), cert_sent)
    if completed:
        check(name, "client the server accepted", srep.peer_cn, identity.cn if cert_sent else None)
    verdict = verdict_of(
        requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    check(name, "verdict", verdict, sc.kind.expect)
    refused = sc.kind.name.startswith("refused") or sc.kind.name == "required-without-cert"
    check(name, "completed", completed, not refused)
    if refused and srep.alert_sent is None and crep.alert_received is None:
        if srep.error is None:
            raise RecordingError(f"{name}: the server reported no failure")
    client_port = crep.client_port or srep.client_port
    where = Where(name, sc.stack, sc.port, sc.version, client_port)
    chain = chain_sent(requested, cert_sent, identity)
    entry = session_entry(where, verdict, chain, pki.server.sent, alert=crep.alert_received)
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


CAPTURE_CHECK = {True: "decrypted", False: "not decryptable (no key)"}


def check_capture(pcap: Path, keylog_path: Path, sessions: list[dict[str, Any]]) -> list[Checked]:
    """``tshark.check``; each entry whose handshake is in the capture notes as
    ``capture_check`` whether tshark decrypted it."""
    checks = tshark.check(pcap, keylog_path, sessions)
    for entry, checked in zip(sessions, checks, strict=True):
        if checked.detail != "no handshake in the capture":
            entry["capture_check"] = CAPTURE_CHECK[checked.state != tshark.NO_KEY]
    return checks


_PORTS = {sc.port for sc in SCENARIOS}


# --------------------------------------------------------------------------------------------
# The TLS 1.3 record layer, decrypted with the key log


def print_records(out: Path) -> None:
    doc = json.loads((out / f"{NAME}.truth.json").read_text(encoding="utf-8"))
    pcap, keylog_path = out / f"{NAME}.pcapng", out / f"{NAME}.keylog"
    for entry in doc["sessions"]:
        if entry["tls_version"] != TLS13:
            continue
        print(f"== {entry['scenario']} ({entry['stack']}, {entry['verdict']}, "
              f"keyed={entry['keyed']}, port {entry['client_port']})")  # fmt: skip
        for row in record_layer(pcap, keylog_path, entry["client_port"], _PORTS):
            extra = ""
            if "inner" in row:
                extra = f" -> {row['inner']} content={row['content']} pad={row['padding']}"
                if "messages" in row:
                    extra += " " + "+".join(row["messages"])
                if "alert" in row:
                    extra += f" {row['alert']}"
            print(f"  {row['sender']:6} {row['outer']:8} {row['length']:5}{extra}")


# --------------------------------------------------------------------------------------------


def record(out: Path, work: Path, verbose: bool, only: str | None = None) -> Iterator[cli.Recorded]:
    pki = java_pki(work / "pki")
    classes = compile_peer(work)
    pcap, keylog_path = out / f"{NAME}.pcapng", keylog.fresh(out / f"{NAME}.keylog")
    sessions: list[dict[str, Any]] = []
    with capture(DUMPCAP_LO, pcap, [sc.port for sc in SCENARIOS]):
        for sc in SCENARIOS:
            if only and only not in sc.name:
                continue
            sessions.append(run_session(sc, pki, classes, keylog_path, verbose))
            print(f"  {sc.port} {sc.name}: {sessions[-1]['verdict']}", flush=True)
    checks = check_capture(pcap, keylog_path, sessions)
    tools = tool_versions()
    tools["java"] = programs.version_of(["java", "-version"], line=1)
    truth.write_recording(out, NAME, RECORDED_BY, tools, sessions)
    yield cli.Recorded(pcap, len(sessions), checks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--only", help="record only the scenarios whose name contains this")
    parser.add_argument(
        "--records", action="store_true", help="print the TLS 1.3 record layer of a recording"
    )
    args = parser.parse_args(argv)
    if args.records:
        print_records(args.out.resolve())
        return 0
    cli.require(PROGRAMS)
    return cli.run("java", args.out, lambda out, work: record(out, work, args.verbose, args.only))


if __name__ == "__main__":
    raise SystemExit(main())
