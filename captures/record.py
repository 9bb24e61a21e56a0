#!/usr/bin/env python3
"""Record real TLS sessions on loopback and write the ground truth of each capture.

Every session is run between real TLS stacks (Python ``ssl``, ``openssl s_server``/``s_client``,
``gnutls-serv``/``gnutls-cli``) on 127.0.0.1 or ::1 while ``dumpcap`` or ``tcpdump`` records the
loopback interface. The ground truth (``X.truth.json`` next to ``X.pcapng``) is built from what the
script configured and from what the TLS APIs and tools reported, never from the capture itself.

Usage (as root)::

    python3 captures/record.py [--out DIR] [--only NAME] [--verbose]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
RECORDED_BY = "captures/record.py"
SERVER_NAME = "server.example.test"
PING = b"ping\n"
PONG = b"pong\n"
IO_TIMEOUT = 5.0
TOOL_TIMEOUT = 10.0
CAPTURE_START_TIMEOUT = 10.0
CAPTURE_WARMUP = 0.5
CAPTURE_SETTLE = 0.5

TLS12 = "TLS 1.2"
TLS13 = "TLS 1.3"

MUTUAL = "mutual"
ONE_WAY = "one-way"
NOT_SENT = "cert-requested-not-sent"
FAILED = "failed"
RESUMED = "resumed"

ALERTS: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class RecordingError(RuntimeError):
    """A session did not behave as its scenario requires, or a tool failed."""


# --------------------------------------------------------------------------------------------
# PKI


@dataclass(frozen=True)
class Identity:
    """A leaf certificate with its key and the chain its owner sends, leaf first."""

    cn: str
    cert: Path
    key: Path
    chain: Path
    extra: Path
    sent: tuple[str, ...]


@dataclass(frozen=True)
class Pki:
    root: Path
    server: Identity
    clients: dict[str, Identity]

    def client(self, name: str | None) -> Identity | None:
        return None if name is None else self.clients[name]


@dataclass(frozen=True)
class _Issued:
    name: x509.Name
    key: PrivateKey
    cert: x509.Certificate

    @property
    def cn(self) -> str:
        return str(self.name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _name(country: str, org: str, cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _issue(
    name: x509.Name,
    kind: str,
    issuer: _Issued | None,
    *,
    ca: bool,
    path_length: int | None = None,
    usage: x509.ObjectIdentifier | None = None,
    san: Sequence[x509.GeneralName] = (),
) -> _Issued:
    key = _new_key(kind)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.name if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=not ca and kind == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer = issuer.key if issuer else key
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    return _Issued(name, key, builder.sign(signer, hashes.SHA256()))


def _pem(*certs: _Issued) -> bytes:
    return b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in certs)


def build_pki(work: Path, export: Path | None) -> Pki:
    """Create the test PKI: certificates and chains in ``work``, public certificates also in
    ``export``; private keys stay in ``work`` only."""
    root = _issue(_name("US", "Example Test PKI", "Test Root CA"), "rsa", None, ca=True)
    intermediate = _issue(
        _name("US", "Example Test PKI", "Test Client Intermediate CA"),
        "ec",
        root,
        ca=True,
        path_length=0,
    )
    rogue = _issue(_name("ZZ", "Rogue Certificates Ltd", "Rogue CA"), "ec", None, ca=True)
    server = _issue(
        _name("US", "Example Servers", SERVER_NAME),
        "rsa",
        root,
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[
            x509.DNSName(SERVER_NAME),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )

    def client(cn: str, issuer: _Issued, country: str, org: str) -> _Issued:
        return _issue(
            _name(country, org, f"client-{cn}"),
            "ec",
            issuer,
            ca=False,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            san=[x509.UniformResourceIdentifier(f"spiffe://example.test/{cn}")],
        )

    leaves = {
        "alice": (client("alice", intermediate, "US", "Example Clients"), intermediate),
        "bob": (client("bob", intermediate, "US", "Example Clients"), intermediate),
        "carol": (client("carol", intermediate, "US", "Example Clients"), intermediate),
        "mallory": (client("mallory", rogue, "ZZ", "Rogue Certificates Ltd"), rogue),
    }

    work.mkdir(parents=True, exist_ok=True)
    public: dict[str, bytes] = {
        "test-root-ca.pem": _pem(root),
        "test-client-intermediate-ca.pem": _pem(intermediate),
        "rogue-ca.pem": _pem(rogue),
    }

    def identity(leaf: _Issued, extra: _Issued) -> Identity:
        stem = leaf.cn
        public[f"{stem}.pem"] = _pem(leaf)
        (work / f"{stem}.key").write_bytes(
            leaf.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (work / f"{stem}-extra.pem").write_bytes(_pem(extra))
        (work / f"{stem}-chain.pem").write_bytes(_pem(leaf, extra))
        return Identity(
            cn=stem,
            cert=work / f"{stem}.pem",
            key=work / f"{stem}.key",
            chain=work / f"{stem}-chain.pem",
            extra=work / f"{stem}-extra.pem",
            sent=(stem, extra.cn),
        )

    server_id = identity(server, root)
    clients = {name: identity(leaf, extra) for name, (leaf, extra) in leaves.items()}
    for file_name, data in public.items():
        (work / file_name).write_bytes(data)
    if export is not None:
        export.mkdir(parents=True, exist_ok=True)
        for file_name, data in public.items():
            (export / file_name).write_bytes(data)
    return Pki(root=work / "test-root-ca.pem", server=server_id, clients=clients)


# --------------------------------------------------------------------------------------------
# Capture


def _tcp_states(port: int) -> list[str]:
    """States (hex, as in /proc/net/tcp) of the sockets with ``port`` at either end. Reading
    /proc instead of probing keeps the capture free of extra connections."""
    states: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(FileNotFoundError), open(table, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                ends = (fields[1], fields[2])
                if any(int(end.rsplit(":", 1)[1], 16) == port for end in ends):
                    states.append(fields[3])
    return states


def _listening(port: int) -> bool:
    return "0A" in _tcp_states(port)


def _connections_closed(port: int) -> bool:
    """True when no connection to ``port`` is still open (only LISTEN, TIME_WAIT or CLOSE)."""
    return all(state in ("0A", "06", "07") for state in _tcp_states(port))


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + TOOL_TIMEOUT
    while not _listening(port):
        if proc is not None and proc.poll() is not None:
            raise RecordingError(f"server for port {port} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RecordingError(f"nothing listens on port {port}")
        time.sleep(0.02)


class _Drain:
    """Collect a pipe's bytes in a background thread."""

    def __init__(self, stream: Any) -> None:
        self.data = bytearray()
        self._stream = stream
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for chunk in iter(lambda: self._stream.read1(4096), b""):
            with self._lock:
                self.data.extend(chunk)

    def text(self) -> str:
        with self._lock:
            return self.data.decode(errors="replace")

    def join(self) -> str:
        self._thread.join(TOOL_TIMEOUT)
        return self.text()


@dataclass(frozen=True)
class CaptureTool:
    program: str
    interface: str
    ready: str

    def command(self, path: Path, bpf: str) -> list[str]:
        if self.program == "dumpcap":
            return ["dumpcap", "-q", "-i", self.interface, "-f", bpf, "-w", str(path)]
        return [
            "tcpdump",
            "-n",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
            "-i",
            self.interface,
            "-w",
            str(path),
            bpf,
        ]


DUMPCAP_LO = CaptureTool("dumpcap", "lo", "Capturing on")
TCPDUMP_LO = CaptureTool("tcpdump", "lo", "listening on")
TCPDUMP_ANY = CaptureTool("tcpdump", "any", "listening on")


@contextmanager
def capture(tool: CaptureTool, path: Path, ports: Sequence[int]) -> Iterator[None]:
    """Record loopback TCP traffic on ``ports`` into ``path`` while the block runs."""
    bpf = "tcp and (" + " or ".join(f"port {p}" for p in sorted(set(ports))) + ")"
    path.unlink(missing_ok=True)
    proc = subprocess.Popen(
        tool.command(path, bpf),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    err = _Drain(proc.stderr)
    deadline = time.monotonic() + CAPTURE_START_TIMEOUT
    while tool.ready not in err.text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RecordingError(f"{tool.program} did not start: {err.join().strip()}")
        time.sleep(0.02)
    time.sleep(CAPTURE_WARMUP)
    try:
        yield
        time.sleep(CAPTURE_SETTLE)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(TOOL_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log = err.join()
    if proc.returncode != 0 or not path.exists():
        raise RecordingError(f"{tool.program} failed ({proc.returncode}): {log.strip()}")


# --------------------------------------------------------------------------------------------
# Ground truth


@dataclass
class Truth:
    capture: str
    keylog: str | None
    tool: CaptureTool
    sessions: list[dict[str, Any]] = field(default_factory=list)

    def write(self, path: Path, tools: dict[str, str]) -> None:
        doc = {
            "capture": self.capture,
            "keylog": self.keylog,
            "recorded_by": RECORDED_BY,
            "captured_with": f"{self.tool.program} -i {self.tool.interface}",
            "tools": tools,
            "sessions": self.sessions,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def verdict_of(*, requested: bool, resumed: bool, completed: bool, cert_sent: bool) -> str:
    """Verdict of a session from what the server asked and what the client did; an empty client
    Certificate counts as ``cert-requested-not-sent`` whether or not the server then aborted."""
    if resumed:
        return RESUMED
    if requested and not cert_sent:
        return NOT_SENT
    if not completed:
        return FAILED
    return MUTUAL if cert_sent else ONE_WAY


def session_entry(
    *,
    scenario: str,
    stack: str,
    ip: str,
    client_port: int | None,
    server_port: int,
    version: str,
    sni: str | None,
    verdict: str,
    resumed_from_mutual: bool | None,
    alert: str | None,
    client_chain: Sequence[str] | None,
    server_chain: Sequence[str] | None,
    starttls: str | None = None,
) -> dict[str, Any]:
    """One truth entry. Every alert recorded here is one the client reported receiving, so its
    sender is the server."""
    return {
        "scenario": scenario,
        "stack": stack,
        "client_ip": ip,
        "client_port": client_port,
        "server_ip": ip,
        "server_port": server_port,
        "tls_version": version,
        "sni": sni,
        "verdict": verdict,
        "resumed_from_mutual": resumed_from_mutual,
        "alert": None if alert is None else {"sender": "server", "description": alert},
        "client_chain": None if client_chain is None else list(client_chain),
        "server_chain": None if server_chain is None else list(server_chain),
        "starttls": starttls,
    }


def check(scenario: str, what: str, got: object, expected: object) -> None:
    if got != expected:
        raise RecordingError(f"{scenario}: {what} is {got!r}, expected {expected!r}")


def alert_from_openssl_reason(reason: str | None) -> str | None:
    """Map an OpenSSL error reason such as ``TLSV1_ALERT_UNKNOWN_CA`` to the alert name."""
    match = re.fullmatch(r"(?:SSLV3|TLSV1|TLSV13)_ALERT_([A-Z_]+)", reason or "")
    if match is None:
        return None
    name = match.group(1).lower()
    if name not in ALERTS.values():
        raise RecordingError(f"unknown alert reason {reason}")
    return name


# --------------------------------------------------------------------------------------------
# Python ssl sessions


SSL_VERSIONS = {TLS12: ssl.TLSVersion.TLSv1_2, TLS13: ssl.TLSVersion.TLSv1_3}
SSL_VERSION_NAMES = {"TLSv1.2": TLS12, "TLSv1.3": TLS13}


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
    host: str = "127.0.0.1"
    sni: str | None = SERVER_NAME
    """Server name the client verifies and sends; ``None`` makes the client use ``host``, an IP
    literal, for which Python sends no SNI."""
    tickets: bool = True
    smtp: bool = False


@dataclass
class Side:
    """What one end of a connection observed through the ``ssl`` API."""

    port: int | None = None
    handshake: bool = False
    exchanged: bool = False
    version: str | None = None
    reused: bool = False
    peer_cn: str | None = None
    error: str | None = None
    alert: str | None = None
    session: ssl.SSLSession | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _peer_cn(cert: dict[str, Any] | None) -> str | None:
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _recv_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        line += chunk
    return line


def _listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4)
    sock.settimeout(TOOL_TIMEOUT)
    return sock


def _server_context(pki: Pki, sc: PyScenario) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = SSL_VERSIONS[sc.version]
    ctx.load_cert_chain(pki.server.chain, pki.server.key)
    ctx.verify_mode = sc.verify
    if sc.verify != ssl.CERT_NONE:
        ctx.load_verify_locations(pki.root)
    if not sc.tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def _client_context(
    pki: Pki, version: str, identity: Identity | None, keylog: Path | None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = SSL_VERSIONS[version]
    ctx.load_verify_locations(pki.root)
    if identity is not None:
        ctx.load_cert_chain(identity.chain, identity.key)
    if keylog is not None:
        ctx.keylog_filename = str(keylog)
    return ctx


def _fail(side: Side, exc: Exception) -> None:
    reason = getattr(exc, "reason", None)
    side.error = reason or f"{type(exc).__name__}: {exc}"
    side.alert = alert_from_openssl_reason(reason)


def _abort(tls: ssl.SSLSocket) -> None:
    """Half-close after a failed handshake and read until the peer closes, so that the kernel
    does not answer late client data with a reset."""
    with suppress(OSError):
        tls.shutdown(socket.SHUT_WR)
        while tls.recv(4096):
            pass


def _serve_tls(tls: ssl.SSLSocket, side: Side, exchange: Callable[[ssl.SSLSocket], bool]) -> None:
    try:
        tls.do_handshake()
        side.handshake = True
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        side.reused = bool(tls.session_reused)
        side.peer_cn = _peer_cn(tls.getpeercert())
        side.exchanged = exchange(tls)
        if tls.recv(64) == b"":
            tls.unwrap()
    except (ssl.SSLError, OSError) as exc:
        _fail(side, exc)
        _abort(tls)
    finally:
        tls.close()
        side.done.set()


def _ping_pong_server(tls: ssl.SSLSocket) -> bool:
    if _recv_exact(tls, len(PING)) != PING:
        return False
    tls.sendall(PONG)
    return True


def _python_server(listener: socket.socket, ctx: ssl.SSLContext, sides: list[Side]) -> None:
    for side in sides:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            side.error = str(exc)
            side.done.set()
            return
        conn.settimeout(IO_TIMEOUT)
        tls = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        _serve_tls(tls, side, _ping_pong_server)


def _smtp_server(listener: socket.socket, ctx: ssl.SSLContext, sides: list[Side]) -> None:
    """Serve one SMTP session per side: greeting, EHLO, STARTTLS, then EHLO and QUIT in TLS."""

    def after_upgrade(tls: ssl.SSLSocket) -> bool:
        if not _recv_line(tls).upper().startswith(b"EHLO"):
            return False
        tls.sendall(b"250-server.example.test\r\n250 8BITMIME\r\n")
        if not _recv_line(tls).upper().startswith(b"QUIT"):
            return False
        tls.sendall(b"221 2.0.0 Bye\r\n")
        return True

    for side in sides:
        try:
            conn, _ = listener.accept()
            conn.settimeout(IO_TIMEOUT)
            conn.sendall(b"220 server.example.test ESMTP test server\r\n")
            if not _recv_line(conn).upper().startswith(b"EHLO"):
                raise RecordingError("SMTP client did not send EHLO")
            conn.sendall(b"250-server.example.test\r\n250 STARTTLS\r\n")
            if not _recv_line(conn).upper().startswith(b"STARTTLS"):
                raise RecordingError("SMTP client did not send STARTTLS")
            conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
        except (OSError, RecordingError) as exc:
            side.error = str(exc)
            side.done.set()
            return
        tls = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        _serve_tls(tls, side, after_upgrade)


def _python_client(
    host: str, port: int, ctx: ssl.SSLContext, sni: str | None, session: ssl.SSLSession | None
) -> Side:
    side = Side()
    raw = socket.create_connection((host, port), timeout=IO_TIMEOUT)
    side.port = raw.getsockname()[1]
    server_hostname = sni or host
    tls = ctx.wrap_socket(
        raw, server_hostname=server_hostname, session=session, do_handshake_on_connect=False
    )
    try:
        tls.do_handshake()
        side.handshake = True
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        tls.sendall(PING)
        reply = _recv_exact(tls, len(PONG))
        side.reused = bool(tls.session_reused)
        side.session = tls.session
        tls.unwrap()
        side.exchanged = reply == PONG
    except (ssl.SSLError, OSError) as exc:
        _fail(side, exc)
    finally:
        tls.close()
        raw.close()
    return side


def _smtp_client(host: str, port: int, ctx: ssl.SSLContext) -> Side:
    side = Side()
    smtp = smtplib.SMTP(host, port, local_hostname="client.example.test", timeout=IO_TIMEOUT)
    try:
        assert smtp.sock is not None
        side.port = smtp.sock.getsockname()[1]
        smtp.ehlo()
        code, _ = smtp.starttls(context=ctx)
        if code != 220:
            raise RecordingError(f"STARTTLS answered {code}")
        tls = smtp.sock
        assert isinstance(tls, ssl.SSLSocket)
        side.handshake = True
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        smtp.ehlo()
        code, _ = smtp.docmd("QUIT")
        side.exchanged = code == 221
        tls.unwrap()
    except (ssl.SSLError, OSError, smtplib.SMTPException) as exc:
        _fail(side, exc)
    finally:
        smtp.close()
    return side


def run_python(sc: PyScenario, pki: Pki, truth: Truth, keylog: Path | None) -> None:
    """Run a Python ``ssl`` server scenario and append one truth entry per connection."""
    listener = _listener(sc.host, sc.port)
    ctx = _server_context(pki, sc)
    servers = [Side() for _ in sc.conns]
    serve = _smtp_server if sc.smtp else _python_server
    thread = threading.Thread(target=serve, args=(listener, ctx, servers), daemon=True)
    thread.start()
    client_contexts: dict[str | None, ssl.SSLContext] = {}
    previous: dict[str, Any] | None = None
    session: ssl.SSLSession | None = None
    try:
        for conn, server in zip(sc.conns, servers, strict=True):
            identity = pki.client(conn.client)
            if conn.client not in client_contexts:
                client_contexts[conn.client] = _client_context(pki, sc.version, identity, keylog)
            cctx = client_contexts[conn.client]
            if sc.smtp:
                client = _smtp_client(sc.host, sc.port, cctx)
            else:
                resume_from = session if conn.resume else None
                client = _python_client(sc.host, sc.port, cctx, sc.sni, resume_from)
                session = client.session
            if not server.done.wait(TOOL_TIMEOUT):
                raise RecordingError(f"{conn.scenario}: the server did not finish")
            entry = _judge_python(sc, conn, identity, pki, client, server, previous)
            truth.sessions.append(entry)
            previous = entry
    finally:
        thread.join(TOOL_TIMEOUT)
        listener.close()


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
    return session_entry(
        scenario=name,
        stack="python-ssl/python-ssl",
        ip=sc.host,
        client_port=client.port,
        server_port=sc.port,
        version=sc.version,
        sni=sc.sni,
        verdict=verdict,
        resumed_from_mutual=from_mutual,
        alert=client.alert,
        client_chain=None if not requested else (identity.sent if identity else ()),
        server_chain=None if resumed else pki.server.sent,
        starttls="smtp" if sc.smtp else None,
    )


# --------------------------------------------------------------------------------------------
# openssl and gnutls command-line tools


@dataclass(frozen=True)
class ToolScenario:
    """One connection between command-line TLS tools and the outcome it must have."""

    scenario: str
    port: int
    version: str
    stack: str
    request: ssl.VerifyMode
    client_id: str | None
    expect: str
    alert: str | None = None

    @property
    def server(self) -> str:
        return self.stack.split("/")[0]

    @property
    def client(self) -> str:
        return self.stack.split("/")[1]


@dataclass
class ToolRun:
    returncode: int | None
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def _openssl_server_cmd(sc: ToolScenario, pki: Pki) -> list[str]:
    cmd = ["openssl", "s_server", "-accept", f"127.0.0.1:{sc.port}", "-naccept", "1", "-rev"]
    cmd += ["-cert", str(pki.server.cert), "-key", str(pki.server.key)]
    cmd += ["-cert_chain", str(pki.server.extra), "-CAfile", str(pki.root)]
    cmd.append("-tls1_2" if sc.version == TLS12 else "-tls1_3")
    if sc.request == ssl.CERT_OPTIONAL:
        cmd += ["-verify", "4", "-verify_return_error"]
    elif sc.request == ssl.CERT_REQUIRED:
        cmd += ["-Verify", "4", "-verify_return_error"]
    return cmd


def _gnutls_priority(version: str) -> str:
    return "NORMAL:-VERS-ALL:+VERS-TLS1.2" if version == TLS12 else "NORMAL:-VERS-ALL:+VERS-TLS1.3"


def _gnutls_server_cmd(sc: ToolScenario, pki: Pki) -> list[str]:
    """``gnutls-serv`` block-buffers its log on a pipe; ``stdbuf`` makes it line-buffered so that
    the log can be followed while the server runs."""
    cmd = ["stdbuf", "-oL", "-eL", "gnutls-serv", "--echo", "-p", str(sc.port)]
    cmd += ["--x509certfile", str(pki.server.chain), "--x509keyfile", str(pki.server.key)]
    cmd += ["--x509cafile", str(pki.root), "--priority", _gnutls_priority(sc.version)]
    if sc.request == ssl.CERT_NONE:
        cmd.append("--disable-client-cert")
    elif sc.request == ssl.CERT_OPTIONAL:
        cmd.append("--verify-client-cert")
    else:
        cmd += ["--require-client-cert", "--verify-client-cert"]
    return cmd


def _openssl_client_cmd(
    sc: ToolScenario, pki: Pki, identity: Identity | None, keylog: Path | None
) -> list[str]:
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{sc.port}", "-servername", SERVER_NAME]
    cmd += ["-CAfile", str(pki.root), "-verify_return_error", "-quiet", "-no_ign_eof"]
    cmd.append("-tls1_2" if sc.version == TLS12 else "-tls1_3")
    if identity is not None:
        cmd += ["-cert", str(identity.cert), "-key", str(identity.key)]
        cmd += ["-cert_chain", str(identity.extra)]
    if keylog is not None:
        cmd += ["-keylogfile", str(keylog)]
    return cmd


def _gnutls_client_cmd(sc: ToolScenario, pki: Pki, identity: Identity | None) -> list[str]:
    cmd = ["gnutls-cli", "-p", str(sc.port), "--x509cafile", str(pki.root)]
    cmd += ["--sni-hostname", SERVER_NAME, "--verify-hostname", SERVER_NAME]
    cmd += ["--priority", _gnutls_priority(sc.version)]
    if identity is not None:
        cmd += ["--x509certfile", str(identity.chain), "--x509keyfile", str(identity.key)]
    return [*cmd, "127.0.0.1"]


def _reply_of(server: str) -> bytes:
    """``s_server -rev`` answers each line reversed; ``gnutls-serv --echo`` echoes it."""
    return b"gnip\n" if server == "openssl" else PING


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_until(ready: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _run_client_tool(cmd: list[str], env: dict[str, str], expect: bytes) -> ToolRun:
    """Run a TLS client tool, send ``PING`` on its stdin, wait for the server's answer (or the
    client's exit) and then close stdin so that the client shuts the connection down."""
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = _Drain(proc.stdout), _Drain(proc.stderr)
    assert proc.stdin is not None
    with suppress(BrokenPipeError):
        proc.stdin.write(PING)
        proc.stdin.flush()
    _wait_until(lambda: expect in out.data or proc.poll() is not None, TOOL_TIMEOUT)
    with suppress(BrokenPipeError):
        proc.stdin.close()
    try:
        proc.wait(TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        _stop(proc)
    return ToolRun(proc.returncode, out.join(), err.join())


def _run_tool_pair(
    sc: ToolScenario, server_cmd: list[str], client_cmd: list[str], env: dict[str, str]
) -> tuple[ToolRun, ToolRun]:
    """Start the server tool, wait until it listens, run the client, then stop the server once
    both ends have closed the connection (``s_server -naccept 1`` exits by itself)."""
    if _listening(sc.port):
        raise RecordingError(f"port {sc.port} is already in use")
    proc = subprocess.Popen(
        server_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = _Drain(proc.stdout), _Drain(proc.stderr)
    try:
        _wait_listening(sc.port, proc)
        client = _run_client_tool(client_cmd, env, _reply_of(sc.server))
        _wait_until(lambda: _connections_closed(sc.port), 2.0)
        if sc.server == "openssl":
            _wait_until(lambda: proc.poll() is not None, 2.0)
    finally:
        _stop(proc)
    return ToolRun(proc.returncode, out.join(), err.join()), client


_OPENSSL_ALERT = re.compile(r"SSL alert number (\d+)")
_GNUTLS_ALERT = re.compile(r"Received alert \[(\d+)\]")


def _received_alert(client: str, run: ToolRun) -> str | None:
    pattern = _OPENSSL_ALERT if client == "openssl" else _GNUTLS_ALERT
    match = pattern.search(run.text)
    if match is None:
        return None
    code = int(match.group(1))
    if code not in ALERTS:
        raise RecordingError(f"unknown alert number {code}")
    return ALERTS[code]


def _server_saw_client_cert(server: str, run: ToolRun, identity: Identity | None) -> bool:
    if identity is None:
        return False
    if server == "openssl":
        pattern = rf"Peer certificate: .*CN ?= ?{re.escape(identity.cn)}\b"
    else:
        pattern = rf"Subject: CN={re.escape(identity.cn)},"
    return re.search(pattern, run.text) is not None


def _gnutls_client_port(run: ToolRun) -> int | None:
    match = re.search(r"connection from IPv[46] \S+ port (\d+)", run.text)
    return int(match.group(1)) if match else None


def run_tool(sc: ToolScenario, pki: Pki, truth: Truth, keylog: Path | None, verbose: bool) -> None:
    """Run one command-line tool scenario and append its truth entry."""
    identity = pki.client(sc.client_id)
    server_cmd = (
        _openssl_server_cmd(sc, pki) if sc.server == "openssl" else _gnutls_server_cmd(sc, pki)
    )
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if sc.client == "openssl":
        client_cmd = _openssl_client_cmd(sc, pki, identity, keylog)
    else:
        client_cmd = _gnutls_client_cmd(sc, pki, identity)
        if keylog is not None:
            env["SSLKEYLOGFILE"] = str(keylog)
    server, client = _run_tool_pair(sc, server_cmd, client_cmd, env)
    logs = f"--- server\n{server.text}\n--- client\n{client.text}"
    if verbose:
        print(f"=== {sc.scenario}\n{logs}")
    name = sc.scenario
    completed = _reply_of(sc.server) in client.out.encode()
    alert = _received_alert(sc.client, client)
    requested = sc.request != ssl.CERT_NONE
    cert_sent = requested and identity is not None
    verdict = verdict_of(
        requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    try:
        if completed:
            seen = _server_saw_client_cert(sc.server, server, identity)
            check(name, "client certificate seen by server", seen, cert_sent)
        check(name, "verdict", verdict, sc.expect)
        check(name, "alert", alert, sc.alert)
    except RecordingError as exc:
        raise RecordingError(f"{exc}\n{logs}") from None
    truth.sessions.append(
        session_entry(
            scenario=name,
            stack=sc.stack,
            ip="127.0.0.1",
            client_port=_gnutls_client_port(server) if sc.server == "gnutls" else None,
            server_port=sc.port,
            version=sc.version,
            sni=SERVER_NAME,
            verdict=verdict,
            resumed_from_mutual=None,
            alert=alert,
            client_chain=None if not requested else (identity.sent if identity else ()),
            server_chain=pki.server.sent,
        )
    )


# --------------------------------------------------------------------------------------------
# Captures


Scenario = PyScenario | ToolScenario

REQ = ssl.CERT_REQUIRED
OPT = ssl.CERT_OPTIONAL
NONE = ssl.CERT_NONE


def _py(port: int, version: str, verify: ssl.VerifyMode, *conns: Conn, **kw: Any) -> PyScenario:
    return PyScenario(port=port, version=version, verify=verify, conns=conns, **kw)


TLS12_SCENARIOS: tuple[Scenario, ...] = (
    _py(8401, TLS12, REQ, Conn("tls12-mutual-intermediate", "alice", MUTUAL)),
    _py(8402, TLS12, NONE, Conn("tls12-one-way", None, ONE_WAY)),
    _py(8403, TLS12, OPT, Conn("tls12-cert-requested-not-sent", None, NOT_SENT)),
    _py(
        8404, TLS12, REQ, Conn("tls12-cert-required-not-sent", None, NOT_SENT, "handshake_failure")
    ),
    _py(8405, TLS12, REQ, Conn("tls12-refused-unknown-ca", "mallory", FAILED, "unknown_ca")),
    _py(
        8406,
        TLS12,
        REQ,
        Conn("tls12-mutual-before-session-id-resumption", "alice", MUTUAL),
        Conn("tls12-resumed-session-id", "alice", RESUMED, resume=True),
        tickets=False,
    ),
    _py(
        8407,
        TLS12,
        REQ,
        Conn("tls12-mutual-before-ticket-resumption", "alice", MUTUAL),
        Conn("tls12-resumed-ticket", "alice", RESUMED, resume=True),
    ),
    _py(
        8408,
        TLS12,
        NONE,
        Conn("tls12-one-way-before-ticket-resumption", None, ONE_WAY),
        Conn("tls12-resumed-ticket-one-way", None, RESUMED, resume=True),
    ),
    _py(8409, TLS12, REQ, Conn("tls12-mutual-ipv6", "alice", MUTUAL), host="::1", sni=None),
    _py(8410, TLS12, NONE, Conn("tls12-one-way-ipv6", None, ONE_WAY), host="::1", sni="localhost"),
)

TLS13_SCENARIOS: tuple[Scenario, ...] = (
    _py(8431, TLS13, REQ, Conn("tls13-mutual", "alice", MUTUAL)),
    _py(8432, TLS13, NONE, Conn("tls13-one-way", None, ONE_WAY)),
    _py(8433, TLS13, OPT, Conn("tls13-cert-requested-not-sent", None, NOT_SENT)),
    _py(
        8434,
        TLS13,
        REQ,
        Conn("tls13-cert-required-not-sent", None, NOT_SENT, "certificate_required"),
    ),
    _py(8435, TLS13, REQ, Conn("tls13-refused-unknown-ca", "mallory", FAILED, "unknown_ca")),
    ToolScenario("tls13-mutual-gnutls", 8436, TLS13, "gnutls/gnutls", REQ, "carol", MUTUAL),
    ToolScenario("tls13-mutual-openssl", 8437, TLS13, "openssl/openssl", REQ, "bob", MUTUAL),
    _py(
        8438,
        TLS13,
        REQ,
        Conn("tls13-mutual-before-resumption", "alice", MUTUAL),
        Conn("tls13-resumed-psk", "alice", RESUMED, resume=True),
    ),
)


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


CAPTURES: tuple[CaptureSpec, ...] = (
    CaptureSpec("tls12", "tls12.pcapng", DUMPCAP_LO, None, TLS12_SCENARIOS),
    CaptureSpec("tls13", "tls13.pcapng", DUMPCAP_LO, "tls13.keylog", TLS13_SCENARIOS),
    CaptureSpec("stacks", "stacks.pcap", TCPDUMP_ANY, None, STACKS_SCENARIOS),
    CaptureSpec("starttls", "starttls.pcap", TCPDUMP_LO, None, STARTTLS_SCENARIOS),
    CaptureSpec("demo", "demo.pcapng", DUMPCAP_LO, "demo.keylog", DEMO_SCENARIOS),
)


def _version_of(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def tool_versions() -> dict[str, str]:
    return {
        "openssl": _version_of(["openssl", "version"]),
        "gnutls": _version_of(["gnutls-cli", "--version"]),
        "python_ssl": ssl.OPENSSL_VERSION,
        "python": platform.python_version(),
        "dumpcap": _version_of(["dumpcap", "--version"]),
        "tcpdump": _version_of(["tcpdump", "--version"]),
    }


def record(spec: CaptureSpec, out: Path, pki: Pki, tools: dict[str, str], verbose: bool) -> Truth:
    """Record one capture file and write its truth next to it."""
    keylog = out / spec.keylog if spec.keylog else None
    if keylog is not None:
        keylog.unlink(missing_ok=True)
        keylog.touch()
    truth = Truth(spec.file, spec.keylog, spec.tool)
    ports = [sc.port for sc in spec.scenarios]
    with capture(spec.tool, out / spec.file, ports):
        for sc in spec.scenarios:
            if isinstance(sc, PyScenario):
                run_python(sc, pki, truth, keylog)
            else:
                run_tool(sc, pki, truth, keylog, verbose)
    stem = spec.file.rsplit(".", 1)[0]
    truth.write(out / f"{stem}.truth.json", tools)
    for path in (out / spec.file, keylog):
        if path is not None:
            path.chmod(0o644)
    return truth


def _check_environment() -> None:
    missing = [
        p
        for p in ("dumpcap", "tcpdump", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf")
        if shutil.which(p) is None
    ]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise SystemExit("capturing on loopback needs root")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--only",
        choices=[c.name for c in CAPTURES],
        action="append",
        help="record only this capture (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="print the tools' output")
    args = parser.parse_args(argv)
    _check_environment()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    selected = [c for c in CAPTURES if not args.only or c.name in args.only]
    started = time.monotonic()
    tools = tool_versions()
    with tempfile.TemporaryDirectory(prefix="tls-pki-") as work:
        pki = build_pki(Path(work), out / "pki")
        for spec in selected:
            t0 = time.monotonic()
            try:
                truth = record(spec, out, pki, tools, args.verbose)
            except (RecordingError, OSError) as exc:
                print(f"{spec.file}: {exc}", file=sys.stderr)
                return 1
            size = (out / spec.file).stat().st_size
            print(
                f"{spec.file}: {len(truth.sessions)} sessions, {size} bytes, "
                f"{time.monotonic() - t0:.1f} s"
            )
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
