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

import json
import os
import re
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recording import cli, core, keylog, programs, tools, truth, tshark
from recording.capture import (
    DUMPCAP_LO,
    capture,
)
from recording.core import FAILED, MUTUAL, NOT_SENT, TLS12, TLS13, RecordingError, alert_name, check
from recording.pki import Pki, build_pki, with_expired_client
from recording.programs import Run, clean_env, run_program, serving, tool_versions, version_of
from recording.tools import (
    Endpoint,
    gnutls_client_cmd,
    gnutls_client_port,
    msg_log,
    readable,
)
from recording.truth import Where, chain_sent, session_entry, verdict_of

RECORDED_BY = "captures/record_go.py"
NAME = "stack_go"
GO_SOURCE = cli.CAPTURES / "stacks" / "go"
GO_VERSION = {TLS12: "1.2", TLS13: "1.3"}
REPLY = {"go": b"pong\n", "openssl": b"gnip\n", "gnutls": b"ping\n"}
"""What each server answers to ``ping``: the Go program ``pong``, ``s_server -rev`` the line
reversed, ``gnutls-serv --echo`` the line itself."""
EXPIRED = "expired"
"""The client with an expired certificate (client-erin, ``pki.with_expired_client``)."""
PROGRAMS = ("dumpcap", "tshark", "openssl", "gnutls-cli", "gnutls-serv", "stdbuf", "go")


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
    Case("one-way", "none", "bob", core.ONE_WAY),
    Case("cert-requested-not-sent", "optional", None, NOT_SENT),
    # verdict_of: an empty client Certificate is cert-requested-not-sent even if refused
    Case("required-without-cert", "require", None, NOT_SENT, refused=True),
    Case("refused-unknown-ca", "require", "mallory", FAILED, refused=True),
    Case("refused-expired", "require", EXPIRED, FAILED, refused=True),
)
PAIRS = ("go/openssl", "go/gnutls", "openssl/go", "gnutls/go", "go/go")
REQUEST = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "require": ssl.CERT_REQUIRED}


@dataclass(frozen=True)
class Session(core.Pairing):
    stack: str
    version: str
    case: Case
    port: int

    @property
    def scenario(self) -> str:
        tag = "tls13" if self.version == TLS13 else "tls12"
        return f"{tag}-{self.case.name}-{self.stack.replace('/', '-')}"

    def tool_scenario(self) -> Endpoint:
        """The session as the tools' command lines take it."""
        return Endpoint(self.port, self.version, REQUEST[self.case.auth])


def sessions() -> list[Session]:
    """Ports: 9100 + 20 per pairing, + 10 for TLS 1.2, + the case's index."""
    out = []
    for p, pair in enumerate(PAIRS):
        for v, version in enumerate((TLS13, TLS12)):
            for c, case in enumerate(CASES):
                out.append(Session(pair, version, case, 9100 + 20 * p + 10 * v + c))
    return out


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
        raise RecordingError(f"go build failed:\n{done.stdout}{done.stderr}")
    return binary


@dataclass
class Programs:
    go: Path
    pki: Pki
    keylog: Path

    def go_server(self, s: Session) -> list[str]:
        cmd = [str(self.go), "-mode", "server", "-addr", f"{core.HOST}:{s.port}"]
        cmd += ["-version", GO_VERSION[s.version], "-auth", s.case.auth]
        cmd += ["-cert", str(self.pki.server.chain), "-key", str(self.pki.server.key)]
        return cmd + ["-ca", str(self.pki.root), "-keylog", str(self.keylog)]

    def go_client(self, s: Session) -> list[str]:
        cmd = [str(self.go), "-mode", "client", "-addr", f"{core.HOST}:{s.port}"]
        cmd += ["-version", GO_VERSION[s.version], "-ca", str(self.pki.root)]
        cmd += ["-servername", core.SERVER_NAME, "-keylog", str(self.keylog)]
        identity = self.pki.client(s.case.client_id)
        if identity is not None:
            cmd += ["-cert", str(identity.chain), "-key", str(identity.key)]
        return cmd

    def server(self, s: Session) -> tuple[list[str], dict[str, str]]:
        if s.server == "go":
            return self.go_server(s), clean_env()
        if s.server == "openssl":
            cmd = tools.openssl_server_cmd(s.tool_scenario(), self.pki)
            return cmd + ["-msg", "-keylogfile", str(self.keylog)], clean_env()
        return tools.gnutls_server_cmd(s.tool_scenario(), self.pki), clean_env(self.keylog)

    def client(self, s: Session) -> tuple[list[str], dict[str, str]]:
        identity = self.pki.client(s.case.client_id)
        if s.client == "go":
            return self.go_client(s), clean_env()
        if s.client == "openssl":
            cmd = tools.openssl_client_cmd(s.tool_scenario(), self.pki, identity, self.keylog)
            return cmd + ["-msg"], clean_env()
        cmd = gnutls_client_cmd(s.tool_scenario(), self.pki, identity)
        return cmd, clean_env(self.keylog)


def run_pair(s: Session, progs: Programs) -> tuple[Run, Run]:
    """Start the server, wait until it listens, run the client (the Go client sends ``ping``
    itself; the tools get it on stdin, which is closed once the answer came or they exited),
    then wait for the connection to end and for the server to exit (``gnutls-serv`` is
    stopped)."""
    server_cmd, server_env = progs.server(s)
    with serving(server_cmd, s.port, server_env, merge=False) as server:
        client_cmd, client_env = progs.client(s)
        if s.client == "go":
            client = run_program(client_cmd, client_env, core.TOOL_TIMEOUT + 5)
        else:
            client = tools.run_client_tool(client_cmd, client_env, REPLY[s.server])
        programs.wind_down(server, s.port, exits=s.server != "gnutls", timeout=3.0)
    return server.finish(), client


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


_EMPTY_CERTIFICATE = {TLS12: 7, TLS13: 8}
"""Length of an empty client Certificate message with its header in an ``openssl -msg`` log."""
_SENT_ALERT = re.compile(r"^>>> [^\n]*Alert \[length 0002\], fatal (\w+)", re.M)
_RECEIVED_ALERT = re.compile(r"^<<< [^\n]*Alert \[length 0002\], fatal (\w+)", re.M)


def _openssl_cert_count(text: str, me: str, version: str) -> int | None:
    """0 for an empty client Certificate in an ``openssl -msg`` log, 1 for a non-empty one
    (the count of certificates is not in the log), None for no client Certificate."""
    messages, lengths = msg_log(text, me)
    sizes = [n for m, n in zip(messages, lengths, strict=True) if m == ("client", "Certificate")]
    if not sizes:
        return None
    return 0 if sizes[-1] == _EMPTY_CERTIFICATE[version] else 1


def server_view(s: Session, run: Run, pki: Pki) -> ServerView:
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
        view.completed = core.PING.decode() in received and any(
            e.get("sent") == "pong\n" for e in events
        )
        return view
    text = run.text
    if s.server == "openssl":
        messages, _ = msg_log(text, "server")
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
    view.client_port = gnutls_client_port(run.out)
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
            alert=alert_name(alerts[0]) if alerts else None,
            client_port=connected["client_port"] if connected else None,
        )
    if s.client == "openssl":
        messages, _ = msg_log(run.text, "client")
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
        alert=alert_name(int(received.group(1))) if received else None,
    )


# --------------------------------------------------------------------------------------------
# Ground truth


def judge(s: Session, pki: Pki, sv: ServerView, cv: ClientView, labels: set[str]) -> dict[str, Any]:
    name = s.scenario
    identity = pki.client(s.case.client_id)
    if cv.requested is not None:
        check(name, "CertificateRequest as the client saw it", cv.requested, sv.requested)
    if sv.cert_count is not None and cv.cert_count is not None:
        check(name, "client certificate sent", cv.cert_count > 0, sv.cert_count > 0)
    cert_sent = bool(sv.requested and (cv.cert_count or 0) > 0)
    completed = sv.completed and cv.completed
    verdict = verdict_of(
        requested=sv.requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    check(name, "verdict", verdict, s.case.expect)
    check(name, "server refused", not completed, s.case.refused)
    if s.case.refused:
        check(name, "client certificate rejected", sv.rejected, cert_sent)
    if verdict == MUTUAL:
        check(name, "client the server accepted", sv.accepted_cn, identity and identity.cn)
    elif sv.requested:
        check(name, "client the server accepted", sv.accepted_cn, None)
    if s.case.refused:
        # the refusing server sent an alert: the client must have received it
        check(name, "alert the client received", cv.alert is not None, True)
    if sv.sent_alert is not None and cv.alert is not None:
        check(name, "alert sent and received", cv.alert, sv.sent_alert)
    where = Where(name, s.stack, s.port, s.version, sv.client_port or cv.client_port)
    chain = chain_sent(sv.requested, cert_sent, identity)
    entry = session_entry(where, verdict, chain, pki.server.sent, alert=cv.alert)
    entry.update(
        keyed=keylog.keyed(s.version, labels),
        keylog_labels=sorted(labels),
        later_auth=None,
        server_auth=s.case.auth,
        client_identity=identity.cn if identity else None,
        completed=completed,
    )
    return entry


def run_session(s: Session, progs: Programs, verbose: bool) -> dict[str, Any]:
    before = len(keylog.lines(progs.keylog))
    server, client = run_pair(s, progs)
    logs = f"--- server\n{server.text}\n--- client\n{client.text}"
    if verbose:
        print(f"=== {s.scenario} (port {s.port})\n{readable(logs)}")
    labels = keylog.labels(keylog.lines(progs.keylog)[before:])
    try:
        sv = server_view(s, server, progs.pki)
        cv = client_view(s, client)
        return judge(s, progs.pki, sv, cv, labels)
    except RecordingError as exc:
        raise RecordingError(f"{exc}\n{readable(logs)}") from None


# --------------------------------------------------------------------------------------------


def record(out: Path, work: Path, verbose: bool) -> Iterator[cli.Recorded]:
    pki = with_expired_client(build_pki(work / "pki", None), work / "pki", EXPIRED, "erin")
    keylog_path = keylog.fresh(out / f"{NAME}.keylog")
    progs = Programs(build_go(work), pki, keylog_path)
    plan = sessions()
    pcap = out / f"{NAME}.pcapng"
    entries = []
    with capture(DUMPCAP_LO, pcap, [s.port for s in plan]):
        for s in plan:
            entries.append(run_session(s, progs, verbose))
    keylog.dedupe(keylog_path)
    tools = tool_versions()
    tools["go"] = version_of(["go", "version"])
    truth.write_recording(out, NAME, RECORDED_BY, tools, entries)
    yield cli.Recorded(pcap, len(entries), tshark.check(pcap, keylog_path, entries))


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(__doc__, "go", PROGRAMS, record, argv)


if __name__ == "__main__":
    raise SystemExit(main())
