#!/usr/bin/env python3
"""Record TLS sessions of Go's crypto/tls against OpenSSL, GnuTLS and itself, with ground truth.

The Go end is ``captures/stacks/go/main.go`` (standard library only), built with ``go build``
into a temporary folder. It is the server (``tls.NoClientCert``, ``tls.VerifyClientCertIfGiven``
or ``tls.RequireAndVerifyClientCert``) for ``openssl s_client``, ``gnutls-cli`` and itself, and
the client (with or without a certificate) of ``openssl s_server`` and ``gnutls-serv``. Every
pairing runs the same six scenarios in TLS 1.3 and in TLS 1.2 (the version pinned on both ends):
mutual, one-way, certificate requested but not sent, required but not sent, a client
certificate from an unknown CA and an expired client certificate. Go has no TLS 1.3
post-handshake client authentication and, as server, no TLS 1.2 renegotiation, so neither is
recorded here.

Each session has its own server port (9100-9195) and runs on 127.0.0.1 while ``dumpcap``
records the loopback interface. Every program that can writes the session keys (Go
``KeyLogWriter``, ``-keylogfile``, ``SSLKEYLOGFILE``) into ``stack_go.keylog``. The truth comes
from what both programs reported (the Go program's JSON lines, ``-msg`` logs, the GnuTLS logs),
never from the capture; afterwards every session is checked against tshark's decryption of the
capture with the key log.

Usage (as root)::

    python3 captures/record_go.py [--out DIR] [--verbose]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record as rec  # noqa: E402  (PKI, capture and tool functions)
import record_later as later  # noqa: E402  (the ``openssl -msg`` log parser)

RECORDED_BY = "captures/record_go.py"
NAME = "stack_go"
GO_SOURCE = HERE / "stacks" / "go"
TLS12, TLS13 = rec.TLS12, rec.TLS13
MUTUAL, ONE_WAY, NOT_SENT, FAILED = rec.MUTUAL, rec.ONE_WAY, rec.NOT_SENT, rec.FAILED
HOST = "127.0.0.1"
GO_VERSION = {TLS12: "1.2", TLS13: "1.3"}
REPLY = {"go": b"pong\n", "openssl": b"gnip\n", "gnutls": b"ping\n"}
"""What each server answers to ``ping``: the Go program ``pong``, ``s_server -rev`` the line
reversed, ``gnutls-serv --echo`` the line itself."""
EXPIRED = "expired"
EXPIRED_AGO = datetime.timedelta(days=3650 + 30)
"""The expired client certificate was valid from ten years and 30 days ago until 30 days ago."""


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Case:
    name: str
    auth: str  # the Go server's ClientAuth: none, optional, require
    client_id: str | None
    expect: str
    refused: bool = False


CASES = (
    Case("mutual", "require", "alice", MUTUAL),
    # the client has a certificate, but the server does not ask for it
    Case("one-way", "none", "bob", ONE_WAY),
    Case("cert-requested-not-sent", "optional", None, NOT_SENT),
    # rec.verdict_of: an empty client Certificate is cert-requested-not-sent even if refused
    Case("required-without-cert", "require", None, NOT_SENT, refused=True),
    Case("refused-unknown-ca", "require", "mallory", FAILED, refused=True),
    Case("refused-expired", "require", EXPIRED, FAILED, refused=True),
)
PAIRS = ("go/openssl", "go/gnutls", "openssl/go", "gnutls/go", "go/go")
REQUEST = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "require": ssl.CERT_REQUIRED}


@dataclass(frozen=True)
class Session:
    pair: str
    version: str
    case: Case
    port: int

    @property
    def server(self) -> str:
        return self.pair.split("/")[0]

    @property
    def client(self) -> str:
        return self.pair.split("/")[1]

    @property
    def scenario(self) -> str:
        tag = "tls13" if self.version == TLS13 else "tls12"
        return f"{tag}-{self.case.name}-{self.pair.replace('/', '-')}"

    def tool_scenario(self) -> rec.ToolScenario:
        """The same session in the form record.py's command builders take."""
        return rec.ToolScenario(
            self.scenario,
            self.port,
            self.version,
            self.pair,
            REQUEST[self.case.auth],
            self.case.client_id,
            self.case.expect,
        )


def sessions() -> list[Session]:
    """Ports: 9100 + 20 per pairing, + 10 for TLS 1.2, + the case's index."""
    out = []
    for p, pair in enumerate(PAIRS):
        for v, version in enumerate((TLS13, TLS12)):
            for c, case in enumerate(CASES):
                out.append(Session(pair, version, case, 9100 + 20 * p + 10 * v + c))
    return out


# --------------------------------------------------------------------------------------------
# PKI: record.py's, and an expired certificate from the client intermediate CA


@contextlib.contextmanager
def _clock_back(delta: datetime.timedelta) -> Iterator[None]:
    """Let record.py's ``_issue`` see a clock ``delta`` in the past."""

    class Past(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
            return datetime.datetime.now(tz) - delta

    real = rec.datetime
    rec.datetime = types.SimpleNamespace(  # type: ignore[assignment]
        datetime=Past, timezone=datetime.timezone, timedelta=datetime.timedelta
    )
    try:
        yield
    finally:
        rec.datetime = real


def build_pki(work: Path) -> rec.Pki:
    """record.py's test PKI plus client-erin, expired, issued by the client intermediate CA."""
    issued: list[Any] = []
    issue = rec._issue

    def keep(*args: Any, **kwargs: Any) -> Any:
        made = issue(*args, **kwargs)
        issued.append(made)
        return made

    rec._issue = keep
    try:
        pki = rec.build_pki(work, None)
    finally:
        rec._issue = issue
    intermediate = next(i for i in issued if i.cn == "Test Client Intermediate CA")
    with _clock_back(EXPIRED_AGO):
        leaf = rec._issue(
            rec._name("US", "Example Clients", "client-erin"),
            "ec",
            intermediate,
            ca=False,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
    stem = leaf.cn
    (work / f"{stem}.key").write_bytes(
        leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (work / f"{stem}.pem").write_bytes(rec._pem(leaf))
    (work / f"{stem}-extra.pem").write_bytes(rec._pem(intermediate))
    (work / f"{stem}-chain.pem").write_bytes(rec._pem(leaf, intermediate))
    erin = rec.Identity(
        cn=stem,
        cert=work / f"{stem}.pem",
        key=work / f"{stem}.key",
        chain=work / f"{stem}-chain.pem",
        extra=work / f"{stem}-extra.pem",
        sent=(stem, intermediate.cn),
    )
    return dataclasses.replace(pki, clients={**pki.clients, EXPIRED: erin})


# --------------------------------------------------------------------------------------------
# Programs


def build_go(work: Path) -> Path:
    """``go build`` the Go program into ``work`` (caches there too, no network)."""
    env = dict(os.environ)
    env.update(
        GOCACHE=str(work / "gocache"),
        GOPATH=str(work / "gopath"),
        GOFLAGS="-mod=mod",
        GOPROXY="off",
        CGO_ENABLED="0",
    )
    binary = work / "tlspeer"
    done = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=GO_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise rec.RecordingError(f"go build failed:\n{done.stdout}{done.stderr}")
    return binary


@dataclass
class Programs:
    go: Path
    pki: rec.Pki
    keylog: Path

    def go_server(self, s: Session) -> list[str]:
        cmd = [str(self.go), "-mode", "server", "-addr", f"{HOST}:{s.port}"]
        cmd += ["-version", GO_VERSION[s.version], "-auth", s.case.auth]
        cmd += ["-cert", str(self.pki.server.chain), "-key", str(self.pki.server.key)]
        return cmd + ["-ca", str(self.pki.root), "-keylog", str(self.keylog)]

    def go_client(self, s: Session) -> list[str]:
        cmd = [str(self.go), "-mode", "client", "-addr", f"{HOST}:{s.port}"]
        cmd += ["-version", GO_VERSION[s.version], "-ca", str(self.pki.root)]
        cmd += ["-servername", rec.SERVER_NAME, "-keylog", str(self.keylog)]
        identity = self.pki.client(s.case.client_id)
        if identity is not None:
            cmd += ["-cert", str(identity.chain), "-key", str(identity.key)]
        return cmd

    def server(self, s: Session) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
        if s.server == "go":
            return self.go_server(s), env
        if s.server == "openssl":
            cmd = rec._openssl_server_cmd(s.tool_scenario(), self.pki)
            return cmd + ["-msg", "-keylogfile", str(self.keylog)], env
        env["SSLKEYLOGFILE"] = str(self.keylog)
        return rec._gnutls_server_cmd(s.tool_scenario(), self.pki), env

    def client(self, s: Session) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
        identity = self.pki.client(s.case.client_id)
        if s.client == "go":
            return self.go_client(s), env
        if s.client == "openssl":
            cmd = rec._openssl_client_cmd(s.tool_scenario(), self.pki, identity, self.keylog)
            return cmd + ["-msg"], env
        env["SSLKEYLOGFILE"] = str(self.keylog)
        return rec._gnutls_client_cmd(s.tool_scenario(), self.pki, identity), env


@dataclass
class Run:
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_pair(s: Session, progs: Programs) -> tuple[Run, Run]:
    """Start the server, wait until it listens, run the client (the Go client sends ``ping``
    itself; the tools get it on stdin, which is closed once the answer came or they exited),
    then wait for the connection to end and for the server to exit (``gnutls-serv`` is
    stopped)."""
    if rec._listening(s.port):
        raise rec.RecordingError(f"port {s.port} is already in use")
    server_cmd, server_env = progs.server(s)
    proc = subprocess.Popen(
        server_cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env,
    )
    out, err = rec._Drain(proc.stdout), rec._Drain(proc.stderr)
    try:
        rec._wait_listening(s.port, proc)
        client_cmd, client_env = progs.client(s)
        if s.client == "go":
            done = subprocess.run(
                client_cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=client_env,
                timeout=rec.TOOL_TIMEOUT + 5,
            )
            client = Run(done.stdout, done.stderr)
        else:
            tool = rec._run_client_tool(client_cmd, client_env, REPLY[s.server])
            client = Run(tool.out, tool.err)
        rec._wait_until(lambda: rec._connections_closed(s.port), 3.0)
        if s.server != "gnutls":
            rec._wait_until(lambda: proc.poll() is not None, 3.0)
    finally:
        rec._stop(proc)
    return Run(out.join(), err.join()), client


# --------------------------------------------------------------------------------------------
# What the programs reported


@dataclass
class ServerView:
    requested: bool
    completed: bool = False  # read the ping and answered
    cert_count: int | None = None  # certificates in the client's Certificate, None: no message
    accepted_cn: str | None = None
    rejected: bool = False
    client_port: int | None = None
    sent_alert: str | None = None


@dataclass
class ClientView:
    requested: bool | None  # None: the client does not tell
    cert_count: int | None
    completed: bool  # got the server's answer
    alert: str | None
    client_port: int | None = None


def _events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _first(events: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((e for e in events if e["event"] == name), None)


def _alert_name(code: int) -> str:
    if code not in rec.ALERTS:
        raise rec.RecordingError(f"unknown alert number {code}")
    return rec.ALERTS[code]


_EMPTY_CERTIFICATE = {TLS12: 7, TLS13: 8}
"""Length of an empty client Certificate message with its header in an ``openssl -msg`` log."""
_SENT_ALERT = re.compile(r"^>>> [^\n]*Alert \[length 0002\], fatal (\w+)", re.M)
_RECEIVED_ALERT = re.compile(r"^<<< [^\n]*Alert \[length 0002\], fatal (\w+)", re.M)


def _openssl_cert_count(text: str, me: str, version: str) -> int | None:
    """0 for an empty client Certificate in an ``openssl -msg`` log, 1 for a non-empty one
    (the count of certificates is not in the log), None for no client Certificate."""
    messages, lengths = later._msg_log(text, me)
    sizes = [n for m, n in zip(messages, lengths, strict=True) if m == ("client", "Certificate")]
    if not sizes:
        return None
    return 0 if sizes[-1] == _EMPTY_CERTIFICATE[version] else 1


def server_view(s: Session, run: Run, pki: rec.Pki) -> ServerView:
    if s.server == "go":
        events = _events(run.out)
        view = ServerView(requested=s.case.auth != "none")
        accepted = _first(events, "accepted")
        view.client_port = accepted["client_port"] if accepted else None
        hs = _first(events, "handshake")
        error = _first(events, "error")
        if hs is not None:
            chain = hs["peer_chain"]
            view.cert_count = len(chain) if view.requested else None
            view.accepted_cn = chain[0] if chain else None
        elif error is not None and error["where"] == "handshake":
            what = error.get("client_certificate")
            view.rejected = what == "rejected"
            view.cert_count = {"rejected": 1, "empty": 0}.get(what)
            view.sent_alert = "bad_certificate" if what else None  # crypto/tls 1.19 sends 42
        received = [e.get("received") for e in events if e["event"] == "data"]
        view.completed = rec.PING.decode() in received and any(
            e.get("sent") == "pong\n" for e in events
        )
        return view
    text = run.text
    if s.server == "openssl":
        messages, _ = later._msg_log(text, "server")
        view = ServerView(requested=("server", "CertificateRequest") in messages)
        view.cert_count = _openssl_cert_count(text, "server", s.version)
        peer = re.search(r"^Peer certificate: .*CN ?= ?([^,\n]+)$", text, re.M)
        view.accepted_cn = peer.group(1).strip() if peer else None
        view.rejected = "verify error" in text
        view.completed = "CONNECTION ESTABLISHED" in text and "CONNECTION FAILURE" not in text
        alerts = _SENT_ALERT.findall(text)
        view.sent_alert = alerts[0] if alerts else None
        return view
    # gnutls-serv: --verify-client-cert makes it send a CertificateRequest
    view = ServerView(requested=s.case.auth != "none")
    view.client_port = rec._gnutls_client_port(rec.ToolRun(0, run.out, run.err))
    got = re.search(r"^- Got a certificate list of (\d+) certificates", text, re.M)
    subject = re.search(r"^\tSubject: CN=([^,\n]+),", text, re.M)
    view.rejected = "The certificate is NOT trusted" in text
    view.accepted_cn = subject.group(1) if subject and not view.rejected else None
    if got:
        view.cert_count = int(got.group(1))
    elif view.rejected:
        view.cert_count = 1
    elif view.requested and re.search(
        r"No certificate was found|Certificate is required|"
        r"Peer did not send any certificate",
        text,
    ):
        view.cert_count = 0
    view.completed = "- Description:" in text and "Error in handshake" not in text
    return view


def client_view(s: Session, run: Run) -> ClientView:
    reply = REPLY[s.server]
    if s.client == "go":
        events = _events(run.out)
        request = _first(events, "certificate_request")
        alerts = [e["remote_alert"] for e in events if "remote_alert" in e]
        connected = _first(events, "connected")
        return ClientView(
            requested=request is not None,
            cert_count=request["sending"] if request else None,
            completed=any(e.get("received") == reply.decode() for e in events),
            alert=_alert_name(alerts[0]) if alerts else None,
            client_port=connected["client_port"] if connected else None,
        )
    if s.client == "openssl":
        messages, _ = later._msg_log(run.text, "client")
        received = _RECEIVED_ALERT.findall(run.text)
        return ClientView(
            requested=("server", "CertificateRequest") in messages,
            cert_count=_openssl_cert_count(run.text, "client", s.version),
            completed=reply in run.out.encode(),
            alert=received[0] if received else None,
        )
    sent = re.search(r"- Successfully sent (\d+) certificate\(s\) to server", run.text)
    received = re.search(r"Received alert \[(\d+)\]", run.text)
    return ClientView(
        requested=sent is not None,
        cert_count=int(sent.group(1)) if sent else None,
        completed=reply in run.out.encode(),
        alert=_alert_name(int(received.group(1))) if received else None,
    )


# --------------------------------------------------------------------------------------------
# Ground truth


def _keylog_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="ascii").splitlines() if line.strip()]


def _keyed(version: str, labels: set[str]) -> bool:
    if version == TLS12:
        return "CLIENT_RANDOM" in labels
    return {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET"} <= labels


def judge(
    s: Session, pki: rec.Pki, sv: ServerView, cv: ClientView, labels: set[str]
) -> dict[str, Any]:
    name = s.scenario
    identity = pki.client(s.case.client_id)
    if cv.requested is not None:
        rec.check(name, "CertificateRequest as the client saw it", cv.requested, sv.requested)
    if sv.cert_count is not None and cv.cert_count is not None:
        rec.check(name, "client certificate sent", cv.cert_count > 0, sv.cert_count > 0)
    cert_sent = bool(sv.requested and (cv.cert_count or 0) > 0)
    completed = sv.completed and cv.completed
    verdict = rec.verdict_of(
        requested=sv.requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    rec.check(name, "verdict", verdict, s.case.expect)
    rec.check(name, "server refused", not completed, s.case.refused)
    if s.case.refused:
        rec.check(name, "client certificate rejected", sv.rejected, cert_sent)
    if verdict == MUTUAL:
        rec.check(name, "client the server accepted", sv.accepted_cn, identity and identity.cn)
    elif sv.requested:
        rec.check(name, "client the server accepted", sv.accepted_cn, None)
    if s.case.refused:
        # the refusing server sent an alert: the client must have received it
        rec.check(name, "alert the client received", cv.alert is not None, True)
    if sv.sent_alert is not None and cv.alert is not None:
        rec.check(name, "alert sent and received", cv.alert, sv.sent_alert)
    entry = rec.session_entry(
        scenario=name,
        stack=s.pair,
        ip=HOST,
        client_port=sv.client_port or cv.client_port,
        server_port=s.port,
        version=s.version,
        sni=rec.SERVER_NAME,
        verdict=verdict,
        resumed_from_mutual=None,
        alert=cv.alert,
        client_chain=None if not sv.requested else (identity.sent if cert_sent else ()),
        server_chain=pki.server.sent,
    )
    entry.update(
        keyed=_keyed(s.version, labels),
        keylog_labels=sorted(labels),
        later_auth=None,
        server_auth=s.case.auth,
        client_identity=identity.cn if identity else None,
        completed=completed,
    )
    return entry


def run_session(s: Session, progs: Programs, verbose: bool) -> dict[str, Any]:
    before = len(_keylog_lines(progs.keylog))
    server, client = run_pair(s, progs)
    logs = f"--- server\n{server.text}\n--- client\n{client.text}"
    if verbose:
        print(f"=== {s.scenario} (port {s.port})\n{later._readable(logs)}")
    labels = {line.split()[0] for line in _keylog_lines(progs.keylog)[before:]}
    try:
        sv = server_view(s, server, progs.pki)
        cv = client_view(s, client)
        return judge(s, progs.pki, sv, cv, labels)
    except rec.RecordingError as exc:
        raise rec.RecordingError(f"{exc}\n{later._readable(logs)}") from None


# --------------------------------------------------------------------------------------------
# Checking against tshark's decryption


def tshark_check(pcap: Path, keylog: Path, entries: list[dict[str, Any]]) -> list[str]:
    """With the key log, the decrypted handshake must show a CertificateRequest iff the truth
    says requested, and a client Certificate with at least one certificate iff one was sent."""
    cmd = ["tshark", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-Y", "tls.handshake"]
    cmd += ["-T", "fields", "-E", "separator=|", "-e", "tcp.srcport", "-e", "tcp.dstport"]
    cmd += ["-e", "tls.handshake.type", "-e", "tls.handshake.certificate_length"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    requested: dict[int, bool] = {}
    client_cert: dict[int, bool] = {}
    for line in done.stdout.splitlines():
        src, dst, types_, lengths = line.split("|")
        kinds = {int(t) for t in types_.split(",") if t}
        for e in entries:
            port = e["server_port"]
            if int(src) == port and 13 in kinds:
                requested[port] = True
            if int(dst) == port and 11 in kinds and lengths:
                client_cert[port] = True
    problems = []
    for e in entries:
        port = e["server_port"]
        want_req = e["client_chain"] is not None
        want_cert = bool(e["client_chain"])
        got_req, got_cert = requested.get(port, False), client_cert.get(port, False)
        if (got_req, got_cert) != (want_req, want_cert):
            problems.append(
                f"{e['scenario']} (port {port}, keyed {e['keyed']}): tshark shows "
                f"CertificateRequest {got_req}, client certificate {got_cert}; truth says "
                f"{want_req}, {want_cert}"
            )
    return problems


# --------------------------------------------------------------------------------------------


def _dedupe(path: Path) -> None:
    """Both ends of a session may log the same secrets; keep each line once, in order."""
    lines = list(dict.fromkeys(_keylog_lines(path)))
    path.write_text("".join(f"{line}\n" for line in lines), encoding="ascii")


def record(out: Path, work: Path, verbose: bool) -> tuple[int, list[str]]:
    pki = build_pki(work / "pki")
    keylog = out / f"{NAME}.keylog"
    keylog.unlink(missing_ok=True)
    keylog.touch()
    progs = Programs(build_go(work), pki, keylog)
    plan = sessions()
    pcap = out / f"{NAME}.pcapng"
    entries = []
    with rec.capture(rec.DUMPCAP_LO, pcap, [s.port for s in plan]):
        for s in plan:
            entries.append(run_session(s, progs, verbose))
    _dedupe(keylog)
    tools = rec.tool_versions()
    tools["go"] = rec._version_of(["go", "version"])
    doc = {
        "capture": pcap.name,
        "keylog": keylog.name,
        "recorded_by": RECORDED_BY,
        "captured_with": "dumpcap -i lo",
        "tools": tools,
        "sessions": entries,
    }
    truth = out / f"{NAME}.truth.json"
    truth.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for path in (pcap, keylog, truth):
        path.chmod(0o644)
    return len(entries), tshark_check(pcap, keylog, entries)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the programs' output")
    args = parser.parse_args(argv)
    needed = ("dumpcap", "tshark", "openssl", "gnutls-cli", "gnutls-serv", "stdbuf", "go")
    missing = [p for p in needed if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise SystemExit("capturing on loopback needs root")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tls-go-") as tmp:
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
