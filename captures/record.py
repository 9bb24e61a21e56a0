#!/usr/bin/env python3
"""Record real TLS sessions on loopback and write the ground truth of each capture.

Every session is run between real TLS stacks (Python ``ssl``, ``openssl s_server``/``s_client``,
``gnutls-serv``/``gnutls-cli``) on 127.0.0.1 or ::1 while ``dumpcap`` or ``tcpdump`` records the
loopback interface. The ground truth (``X.truth.json`` next to ``X.pcapng``) is built from what the
script configured and from what the TLS APIs and tools reported, never from the capture itself.
The plaintext part of the STARTTLS sessions (SMTP, IMAP, POP3, FTP, XMPP, LDAP, PostgreSQL,
MySQL) is spoken by small servers in this script and by the standard library clients or, where
there is none, by clients in this script.

Usage (as root)::

    python3 captures/record.py [--out DIR] [--only NAME] [--verbose]
"""

from __future__ import annotations

import argparse
import datetime
import ftplib
import hashlib
import imaplib
import ipaddress
import json
import os
import platform
import poplib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import struct
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
    if kind == "rsa4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    return ec.generate_private_key(ec.SECP256R1())


PADDING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.32473.1")
"""A private extension under the example enterprise number of RFC 5612, used to make
certificates large."""


def _padding_extension(size: int) -> x509.UnrecognizedExtension:
    """A non-critical extension whose value is an OCTET STRING of ``size`` bytes (256 to 65535)."""
    text = b"Example Test PKI padding to make this certificate large. "
    data = (text * (size // len(text) + 1))[:size]
    return x509.UnrecognizedExtension(PADDING_OID, b"\x04\x82" + size.to_bytes(2, "big") + data)


def _issue(
    name: x509.Name,
    kind: str,
    issuer: _Issued | None,
    *,
    ca: bool,
    path_length: int | None = None,
    usage: x509.ObjectIdentifier | None = None,
    san: Sequence[x509.GeneralName] = (),
    padding: int = 0,
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
                key_encipherment=not ca and kind.startswith("rsa"),
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
    if padding:
        builder = builder.add_extension(_padding_extension(padding), critical=False)
    return _Issued(name, key, builder.sign(signer, hashes.SHA256()))


def _pem(*certs: _Issued) -> bytes:
    return b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in certs)


BIG_CHAIN_DEPTH = 3
BIG_CHAIN_PADDING = 3072
"""Bytes of padding extension per certificate of the big chain: with 4096-bit RSA keys the four
certificates the client sends make a Certificate message of about 18 KB, more than one record."""


def build_pki(work: Path, export: Path | None, big_chain: bool = False) -> Pki:
    """Create the test PKI: certificates and chains in ``work``, public certificates also in
    ``export``; private keys stay in ``work`` only. ``big_chain`` adds client-dave, whose chain
    runs through three intermediate CAs, all with 4096-bit RSA keys and a padding extension."""
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
    big: list[_Issued] = []
    if big_chain:
        issuer = root
        for n in range(1, BIG_CHAIN_DEPTH + 1):
            issuer = _issue(
                _name("US", "Example Test PKI", f"Test Big Chain Intermediate CA {n}"),
                "rsa4096",
                issuer,
                ca=True,
                path_length=BIG_CHAIN_DEPTH - n,
                padding=BIG_CHAIN_PADDING,
            )
            big.insert(0, issuer)
        leaf = _issue(
            _name("US", "Example Clients", "client-dave"),
            "rsa4096",
            issuer,
            ca=False,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            san=[x509.UniformResourceIdentifier("spiffe://example.test/dave")],
            padding=BIG_CHAIN_PADDING,
        )
        big.insert(0, leaf)

    work.mkdir(parents=True, exist_ok=True)
    public: dict[str, bytes] = {
        "test-root-ca.pem": _pem(root),
        "test-client-intermediate-ca.pem": _pem(intermediate),
        "rogue-ca.pem": _pem(rogue),
    }

    def identity(leaf: _Issued, *extra: _Issued) -> Identity:
        stem = leaf.cn
        public[f"{stem}.pem"] = _pem(leaf)
        (work / f"{stem}.key").write_bytes(
            leaf.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (work / f"{stem}-extra.pem").write_bytes(_pem(*extra))
        (work / f"{stem}-chain.pem").write_bytes(_pem(leaf, *extra))
        return Identity(
            cn=stem,
            cert=work / f"{stem}.pem",
            key=work / f"{stem}.key",
            chain=work / f"{stem}-chain.pem",
            extra=work / f"{stem}-extra.pem",
            sent=(stem, *(c.cn for c in extra)),
        )

    server_id = identity(server, root)
    clients = {name: identity(leaf, extra) for name, (leaf, extra) in leaves.items()}
    if big:
        for ca in big[1:]:
            public[f"{ca.cn.lower().replace(' ', '-')}.pem"] = _pem(ca)
        clients["dave"] = identity(big[0], *big[1:])
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
    ended: str | None = None
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


def _listener(host: str, port: int, rcvbuf: int | None = None) -> socket.socket:
    """A listening socket; ``rcvbuf`` (set before listening, so that accepted connections
    inherit it) keeps the window the server advertises small."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((host, port))
    sock.listen(4)
    sock.settimeout(TOOL_TIMEOUT)
    return sock


def _tls_server_context(
    pki: Pki, version: str, verify: ssl.VerifyMode, tickets: bool = True
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = SSL_VERSIONS[version]
    ctx.load_cert_chain(pki.server.chain, pki.server.key)
    ctx.verify_mode = verify
    if verify != ssl.CERT_NONE:
        ctx.load_verify_locations(pki.root)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def _server_context(pki: Pki, sc: PyScenario) -> ssl.SSLContext:
    return _tls_server_context(pki, sc.version, sc.verify, sc.tickets)


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


def _serve_tls(
    tls: ssl.SSLSocket,
    side: Side,
    exchange: Callable[[ssl.SSLSocket], bool],
    close_notify: bool = True,
) -> None:
    """Handshake, run ``exchange``, then wait for the client to end TLS and answer its
    close_notify; ``close_notify`` false: the client just closes TCP, and so does the server."""
    try:
        tls.do_handshake()
        side.handshake = True
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        side.reused = bool(tls.session_reused)
        side.peer_cn = _peer_cn(tls.getpeercert())
        side.exchanged = exchange(tls)
        if tls.recv(64) == b"" and close_notify:
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
# STARTTLS of the common plaintext protocols


def _recv_until(sock: socket.socket, end: bytes, limit: int = 4096) -> bytes:
    """Read byte by byte until the data ends with ``end`` (or the peer closes)."""
    data = b""
    while not data.endswith(end) and len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _expect(what: str, ok: bool) -> None:
    if not ok:
        raise RecordingError(f"unexpected {what}")


def _command(sock: socket.socket, verb: bytes) -> bytes:
    """Read one command line and check its verb (case-insensitive, after an optional tag)."""
    line = _recv_line(sock)
    words = [w.upper() for w in line.split()[:2]]
    _expect(f"command {line!r}, wanted {verb.decode()}", verb.upper() in words)
    return line


def _tag(line: bytes) -> bytes:
    return line.split(b" ", 1)[0]


def _note_handshake(side: Side, tls: object) -> None:
    _expect("socket after the upgrade", isinstance(tls, ssl.SSLSocket))
    assert isinstance(tls, ssl.SSLSocket)
    side.handshake = True
    side.version = SSL_VERSION_NAMES.get(tls.version() or "")


# SMTP (RFC 3207), client smtplib


def _smtp_before(conn: socket.socket) -> None:
    conn.sendall(b"220 server.example.test ESMTP test server\r\n")
    _command(conn, b"EHLO")
    conn.sendall(b"250-server.example.test\r\n250 STARTTLS\r\n")
    _command(conn, b"STARTTLS")
    conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")


def _smtp_after(tls: ssl.SSLSocket) -> bool:
    _command(tls, b"EHLO")
    tls.sendall(b"250-server.example.test\r\n250 8BITMIME\r\n")
    _command(tls, b"QUIT")
    tls.sendall(b"221 2.0.0 Bye\r\n")
    return True


def _smtp_upgrade_client(host: str, port: int, ctx: ssl.SSLContext, sni: str | None) -> Side:
    return _smtp_client(host, port, ctx)


# IMAP (RFC 3501), client imaplib: CAPABILITY, STARTTLS, then CAPABILITY and LOGOUT in TLS


def _imap_before(conn: socket.socket) -> None:
    conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
    tag = _tag(_command(conn, b"CAPABILITY"))
    conn.sendall(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + b" OK CAPABILITY completed\r\n")
    tag = _tag(_command(conn, b"STARTTLS"))
    conn.sendall(tag + b" OK Begin TLS negotiation now\r\n")


def _imap_after(tls: ssl.SSLSocket) -> bool:
    tag = _tag(_command(tls, b"CAPABILITY"))
    tls.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK CAPABILITY completed\r\n")
    tag = _tag(_command(tls, b"LOGOUT"))
    tls.sendall(b"* BYE server.example.test logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
    return True


def _imap_client(host: str, port: int, ctx: ssl.SSLContext, sni: str | None) -> Side:
    side = Side()
    imap = imaplib.IMAP4(host, port, timeout=IO_TIMEOUT)
    try:
        side.port = imap.sock.getsockname()[1]
        typ, _ = imap.starttls(ctx)
        _expect(f"STARTTLS answer {typ}", typ == "OK")
        _note_handshake(side, imap.sock)
        typ, _ = imap.logout()
        side.exchanged = typ == "BYE"
    except (ssl.SSLError, OSError, imaplib.IMAP4.error, RecordingError) as exc:
        _fail(side, exc)
    finally:
        with suppress(OSError):
            imap.sock.close()
    return side


# POP3 (RFC 2595), client poplib: CAPA, STLS, then CAPA and QUIT in TLS


def _pop3_before(conn: socket.socket) -> None:
    conn.sendall(b"+OK POP3 ready\r\n")
    _command(conn, b"CAPA")
    conn.sendall(b"+OK Capability list follows\r\nUSER\r\nSTLS\r\n.\r\n")
    _command(conn, b"STLS")
    conn.sendall(b"+OK Begin TLS\r\n")


def _pop3_after(tls: ssl.SSLSocket) -> bool:
    _command(tls, b"CAPA")
    tls.sendall(b"+OK Capability list follows\r\nUSER\r\n.\r\n")
    _command(tls, b"QUIT")
    tls.sendall(b"+OK Bye\r\n")
    return True


def _pop3_client(host: str, port: int, ctx: ssl.SSLContext, sni: str | None) -> Side:
    side = Side()
    pop = poplib.POP3(host, port, timeout=IO_TIMEOUT)
    try:
        side.port = pop.sock.getsockname()[1]
        pop.stls(ctx)
        _note_handshake(side, pop.sock)
        _expect("capabilities in TLS", "STLS" not in pop.capa())
        side.exchanged = pop.quit().startswith(b"+OK")
    except (ssl.SSLError, OSError, poplib.error_proto, RecordingError) as exc:
        _fail(side, exc)
    finally:
        pop.close()
    return side


# FTP (RFC 4217), client ftplib.FTP_TLS: AUTH TLS, then USER, PASS and QUIT in TLS


def _ftp_before(conn: socket.socket) -> None:
    conn.sendall(b"220 FTP ready\r\n")
    _expect("AUTH command", _command(conn, b"AUTH").split()[1:] == [b"TLS"])
    conn.sendall(b"234 AUTH TLS successful\r\n")


def _ftp_after(tls: ssl.SSLSocket) -> bool:
    _command(tls, b"USER")
    tls.sendall(b"331 Please specify the password.\r\n")
    _command(tls, b"PASS")
    tls.sendall(b"230 Login successful.\r\n")
    _command(tls, b"QUIT")
    tls.sendall(b"221 Goodbye.\r\n")
    return True


def _ftp_client(host: str, port: int, ctx: ssl.SSLContext, sni: str | None) -> Side:
    side = Side()
    ftp = ftplib.FTP_TLS(context=ctx, timeout=IO_TIMEOUT)
    try:
        ftp.connect(host, port)
        assert ftp.sock is not None
        side.port = ftp.sock.getsockname()[1]
        ftp.auth()
        _note_handshake(side, ftp.sock)
        ftp.login()
        side.exchanged = ftp.quit().startswith("221")
    except (ssl.SSLError, OSError, ftplib.Error, RecordingError) as exc:
        _fail(side, exc)
    finally:
        ftp.close()
    return side


# XMPP (RFC 6120): stream header, features, <starttls/>, <proceed/>; in TLS a new stream


XMPP_CLIENT_HEADER = (
    b"<?xml version='1.0'?><stream:stream to='example.test' xmlns='jabber:client'"
    b" xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)
XMPP_TLS_FEATURES = (
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
    b"</stream:features>"
)
XMPP_STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
XMPP_PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
XMPP_SASL_FEATURES = (
    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>EXTERNAL</mechanism></mechanisms></stream:features>"
)
XMPP_CLOSE = b"</stream:stream>"


def _xmpp_server_header(stream_id: str) -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream from='example.test' id='{stream_id}'"
        " xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        " version='1.0'>"
    ).encode()


def _xmpp_before(conn: socket.socket) -> None:
    _expect("XMPP stream header", _recv_until(conn, b"version='1.0'>") == XMPP_CLIENT_HEADER)
    conn.sendall(_xmpp_server_header("c2s-1") + XMPP_TLS_FEATURES)
    _expect("XMPP element, wanted <starttls/>", _recv_until(conn, b"/>") == XMPP_STARTTLS)
    conn.sendall(XMPP_PROCEED)


def _xmpp_after(tls: ssl.SSLSocket) -> bool:
    _expect("XMPP stream restart", _recv_until(tls, b"version='1.0'>") == XMPP_CLIENT_HEADER)
    tls.sendall(_xmpp_server_header("c2s-2") + XMPP_SASL_FEATURES)
    _expect("XMPP stream end", _recv_until(tls, XMPP_CLOSE) == XMPP_CLOSE)
    tls.sendall(XMPP_CLOSE)
    return True


def _xmpp_client_before(sock: socket.socket) -> None:
    sock.sendall(XMPP_CLIENT_HEADER)
    _expect("XMPP features", _recv_until(sock, b"</stream:features>").endswith(XMPP_TLS_FEATURES))
    sock.sendall(XMPP_STARTTLS)
    _expect("XMPP answer to <starttls/>", _recv_until(sock, b"/>") == XMPP_PROCEED)


def _xmpp_client_after(tls: ssl.SSLSocket) -> bool:
    tls.sendall(XMPP_CLIENT_HEADER)
    features = _recv_until(tls, b"</stream:features>")
    tls.sendall(XMPP_CLOSE)
    return features.endswith(XMPP_SASL_FEATURES) and _recv_until(tls, XMPP_CLOSE) == XMPP_CLOSE


# LDAP (RFC 4511 StartTLS extended operation); in TLS an anonymous bind, then unbind


LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
LDAP_STARTTLS_REQUEST = bytes.fromhex("301d02010177188016") + LDAP_STARTTLS_OID
LDAP_STARTTLS_RESPONSE = bytes.fromhex("300c02010178070a010004000400")
LDAP_BIND_REQUEST = bytes.fromhex("300c020102600702010304008000")
LDAP_BIND_RESPONSE = bytes.fromhex("300c02010261070a010004000400")
LDAP_UNBIND_REQUEST = bytes.fromhex("30050201034200")


def _ber_message(sock: socket.socket) -> bytes:
    """One LDAPMessage with a short-form length, as all of those exchanged here have."""
    head = _recv_exact(sock, 2)
    _expect(f"LDAP message {head.hex()}", len(head) == 2 and head[0] == 0x30 and head[1] < 0x80)
    return head + _recv_exact(sock, head[1])


def _ldap_before(conn: socket.socket) -> None:
    _expect("LDAP StartTLS request", _ber_message(conn) == LDAP_STARTTLS_REQUEST)
    conn.sendall(LDAP_STARTTLS_RESPONSE)


def _ldap_after(tls: ssl.SSLSocket) -> bool:
    _expect("LDAP bind request", _ber_message(tls) == LDAP_BIND_REQUEST)
    tls.sendall(LDAP_BIND_RESPONSE)
    return _ber_message(tls) == LDAP_UNBIND_REQUEST


def _ldap_client_before(sock: socket.socket) -> None:
    sock.sendall(LDAP_STARTTLS_REQUEST)
    _expect("LDAP StartTLS response", _ber_message(sock) == LDAP_STARTTLS_RESPONSE)


def _ldap_client_after(tls: ssl.SSLSocket) -> bool:
    tls.sendall(LDAP_BIND_REQUEST)
    ok = _ber_message(tls) == LDAP_BIND_RESPONSE
    tls.sendall(LDAP_UNBIND_REQUEST)
    return ok


# PostgreSQL (protocol 3.0): SSLRequest, 'S'; in TLS StartupMessage, authentication, Terminate


PG_SSL_REQUEST = bytes.fromhex("0000000804d2162f")
PG_TERMINATE = b"X\x00\x00\x00\x04"


def _pg_message(type_: bytes, body: bytes) -> bytes:
    return type_ + struct.pack("!I", len(body) + 4) + body


def _pg_startup() -> bytes:
    params = b"user\x00test\x00database\x00test\x00application_name\x00psql\x00\x00"
    return struct.pack("!II", len(params) + 8, 3 << 16) + params


def _pg_before(conn: socket.socket) -> None:
    _expect("PostgreSQL SSLRequest", _recv_exact(conn, 8) == PG_SSL_REQUEST)
    conn.sendall(b"S")


def _pg_after(tls: ssl.SSLSocket) -> bool:
    (length,) = struct.unpack("!I", _recv_exact(tls, 4))
    _expect("PostgreSQL StartupMessage", _recv_exact(tls, length - 4) == _pg_startup()[4:])
    tls.sendall(
        _pg_message(b"R", struct.pack("!I", 0))
        + _pg_message(b"S", b"server_version\x0016.2\x00")
        + _pg_message(b"K", struct.pack("!II", 4242, 0x5EC12E7))
        + _pg_message(b"Z", b"I")
    )
    return _recv_exact(tls, len(PG_TERMINATE)) == PG_TERMINATE


def _pg_client_before(sock: socket.socket) -> None:
    sock.sendall(PG_SSL_REQUEST)
    _expect("PostgreSQL SSLRequest answer", _recv_exact(sock, 1) == b"S")


def _pg_client_after(tls: ssl.SSLSocket) -> bool:
    tls.sendall(_pg_startup())
    types = b""
    while not types.endswith(b"Z"):
        head = _recv_exact(tls, 5)
        _expect("PostgreSQL message", len(head) == 5)
        types += head[:1]
        _recv_exact(tls, struct.unpack("!I", head[1:])[0] - 4)
    tls.sendall(PG_TERMINATE)
    return types == b"RSKZ"


# MySQL (client/server protocol): HandshakeV10, SSLRequest; in TLS HandshakeResponse41, OK,
# COM_QUIT


CLIENT_LONG_PASSWORD = 0x1
CLIENT_LONG_FLAG = 0x4
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_STATEMENTS = 0x10000
CLIENT_MULTI_RESULTS = 0x20000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_PLUGIN_AUTH_LENENC = 0x200000
CLIENT_DEPRECATE_EOF = 0x1000000
MYSQL_CLIENT_CAPS = (
    CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_SSL
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC
    | CLIENT_DEPRECATE_EOF
)
MYSQL_SERVER_CAPS = MYSQL_CLIENT_CAPS | CLIENT_CONNECT_WITH_DB
MYSQL_CHARSET = 0xFF  # utf8mb4_0900_ai_ci
MYSQL_MAX_PACKET = 1 << 24
MYSQL_PLUGIN = b"mysql_native_password"
MYSQL_SCRAMBLE = b"0123456789abcdefghij"
MYSQL_OK = b"\x00\x00\x00\x02\x00\x00\x00"
MYSQL_QUIT = b"\x01"


def _mysql_packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def _mysql_read(sock: socket.socket) -> tuple[int, bytes]:
    head = _recv_exact(sock, 4)
    _expect("MySQL packet", len(head) == 4)
    return head[3], _recv_exact(sock, int.from_bytes(head[:3], "little"))


def _mysql_greeting() -> bytes:
    caps = MYSQL_SERVER_CAPS.to_bytes(4, "little")
    return (
        b"\x0a8.0.36\x00"
        + struct.pack("<I", 42)
        + MYSQL_SCRAMBLE[:8]
        + b"\x00"
        + caps[:2]
        + bytes([MYSQL_CHARSET])
        + struct.pack("<H", 0x0002)  # SERVER_STATUS_AUTOCOMMIT
        + caps[2:]
        + bytes([len(MYSQL_SCRAMBLE) + 1])
        + bytes(10)
        + MYSQL_SCRAMBLE[8:]
        + b"\x00"
        + MYSQL_PLUGIN
        + b"\x00"
    )


def _mysql_client_fixed() -> bytes:
    """Capability flags, maximum packet size, character set and 23 zero bytes: the whole
    SSLRequest and the start of HandshakeResponse41."""
    return (
        struct.pack("<II", MYSQL_CLIENT_CAPS, MYSQL_MAX_PACKET) + bytes([MYSQL_CHARSET]) + bytes(23)
    )


def _mysql_native_password(password: bytes, scramble: bytes) -> bytes:
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(scramble + hashlib.sha1(stage1).digest()).digest()
    return bytes(a ^ b for a, b in zip(stage1, stage2, strict=True))


def _mysql_login() -> bytes:
    auth = _mysql_native_password(b"secret", MYSQL_SCRAMBLE)
    return _mysql_client_fixed() + b"test\x00" + bytes([len(auth)]) + auth + MYSQL_PLUGIN + b"\x00"


def _mysql_before(conn: socket.socket) -> None:
    conn.sendall(_mysql_packet(0, _mysql_greeting()))
    seq, payload = _mysql_read(conn)
    _expect("MySQL SSLRequest", (seq, payload) == (1, _mysql_client_fixed()))


def _mysql_after(tls: ssl.SSLSocket) -> bool:
    _expect("MySQL HandshakeResponse41", _mysql_read(tls) == (2, _mysql_login()))
    tls.sendall(_mysql_packet(3, MYSQL_OK))
    return _mysql_read(tls) == (0, MYSQL_QUIT)


def _mysql_client_before(sock: socket.socket) -> None:
    seq, greeting = _mysql_read(sock)
    _expect("MySQL greeting", seq == 0 and greeting[:1] == b"\x0a")
    end = greeting.index(b"\x00", 1)
    scramble = greeting[end + 5 : end + 13]
    lower, upper = greeting[end + 14 : end + 16], greeting[end + 19 : end + 21]
    caps = int.from_bytes(lower + upper, "little")
    scramble += greeting[end + 32 : end + 44]
    _expect("MySQL server without TLS", bool(caps & CLIENT_SSL) and scramble == MYSQL_SCRAMBLE)
    sock.sendall(_mysql_packet(1, _mysql_client_fixed()))


def _mysql_client_after(tls: ssl.SSLSocket) -> bool:
    tls.sendall(_mysql_packet(2, _mysql_login()))
    ok = _mysql_read(tls) == (3, MYSQL_OK)
    tls.sendall(_mysql_packet(0, MYSQL_QUIT))
    return ok


def _upgrade_client(
    before: Callable[[socket.socket], None], after: Callable[[ssl.SSLSocket], bool]
) -> Callable[[str, int, ssl.SSLContext, str | None], Side]:
    """A client speaking the plaintext dialogue ``before``, then TLS, then ``after``, and ending
    with close_notify."""

    def client(host: str, port: int, ctx: ssl.SSLContext, sni: str | None) -> Side:
        side = Side()
        sock: socket.socket = socket.create_connection((host, port), timeout=IO_TIMEOUT)
        side.port = sock.getsockname()[1]
        try:
            before(sock)
            sock = ctx.wrap_socket(sock, server_hostname=sni or host, do_handshake_on_connect=False)
            assert isinstance(sock, ssl.SSLSocket)
            sock.do_handshake()
            _note_handshake(side, sock)
            side.exchanged = after(sock)
            sock.unwrap()
        except (ssl.SSLError, OSError, RecordingError) as exc:
            _fail(side, exc)
        finally:
            sock.close()
        return side

    return client


@dataclass(frozen=True)
class Upgrade:
    """How one protocol upgrades to TLS: the server's plaintext part and its part in TLS, the
    client, and whether that client ends TLS with close_notify (the stdlib IMAP, POP3 and FTP
    clients just close the socket)."""

    server_before: Callable[[socket.socket], None]
    server_after: Callable[[ssl.SSLSocket], bool]
    client: Callable[[str, int, ssl.SSLContext, str | None], Side]
    close_notify: bool


UPGRADES: dict[str, Upgrade] = {
    "smtp": Upgrade(_smtp_before, _smtp_after, _smtp_upgrade_client, True),
    "imap": Upgrade(_imap_before, _imap_after, _imap_client, False),
    "pop3": Upgrade(_pop3_before, _pop3_after, _pop3_client, False),
    "ftp": Upgrade(_ftp_before, _ftp_after, _ftp_client, False),
    "xmpp": Upgrade(
        _xmpp_before, _xmpp_after, _upgrade_client(_xmpp_client_before, _xmpp_client_after), True
    ),
    "ldap": Upgrade(
        _ldap_before, _ldap_after, _upgrade_client(_ldap_client_before, _ldap_client_after), True
    ),
    "postgresql": Upgrade(
        _pg_before, _pg_after, _upgrade_client(_pg_client_before, _pg_client_after), True
    ),
    "mysql": Upgrade(
        _mysql_before,
        _mysql_after,
        _upgrade_client(_mysql_client_before, _mysql_client_after),
        True,
    ),
}


@dataclass(frozen=True)
class StarttlsScenario:
    """One connection of a protocol that upgrades to TLS, on its usual port."""

    scenario: str
    protocol: str
    port: int
    verify: ssl.VerifyMode
    client_id: str | None
    expect: str
    sni: str | None
    """Server name the client sends; ``None``: the stdlib clients connect to 127.0.0.1, an IP
    literal, and send no SNI."""
    version: str = TLS12


def _upgrade_server(listener: socket.socket, ctx: ssl.SSLContext, side: Side, up: Upgrade) -> None:
    try:
        conn, _ = listener.accept()
    except OSError as exc:
        side.error = str(exc)
        side.done.set()
        return
    conn.settimeout(IO_TIMEOUT)
    try:
        up.server_before(conn)
    except (OSError, RecordingError) as exc:
        side.error = str(exc)
        conn.close()
        side.done.set()
        return
    tls = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
    _serve_tls(tls, side, up.server_after, close_notify=up.close_notify)


def run_starttls(sc: StarttlsScenario, pki: Pki, truth: Truth) -> None:
    """Run one STARTTLS connection and append its truth entry."""
    up = UPGRADES[sc.protocol]
    listener = _listener("127.0.0.1", sc.port)
    server = Side()
    ctx = _tls_server_context(pki, sc.version, sc.verify)
    if not up.close_notify:
        # OpenSSL 3 answers an EOF without close_notify with a fatal alert, which the client,
        # already closed, answers with a reset; like many mail and FTP servers, take EOF as the end
        ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    thread = threading.Thread(target=_upgrade_server, args=(listener, ctx, server, up), daemon=True)
    thread.start()
    identity = pki.client(sc.client_id)
    try:
        client = up.client(
            "127.0.0.1", sc.port, _client_context(pki, sc.version, identity, None), sc.sni
        )
        if not server.done.wait(TOOL_TIMEOUT):
            raise RecordingError(f"{sc.scenario}: the server did not finish")
    finally:
        thread.join(TOOL_TIMEOUT)
        listener.close()
    name = sc.scenario
    if not client.exchanged or not server.exchanged:
        raise RecordingError(f"{name}: client {client.error}, server {server.error}")
    check(name, "server version", server.version, sc.version)
    check(name, "client version", client.version, sc.version)
    requested = sc.verify != ssl.CERT_NONE
    cert_sent = requested and identity is not None
    check(
        name,
        "client certificate seen by server",
        server.peer_cn,
        identity.cn if cert_sent and identity else None,
    )
    verdict = verdict_of(requested=requested, resumed=False, completed=True, cert_sent=cert_sent)
    check(name, "verdict", verdict, sc.expect)
    truth.sessions.append(
        session_entry(
            scenario=name,
            stack="python-ssl/python-ssl",
            ip="127.0.0.1",
            client_port=client.port,
            server_port=sc.port,
            version=sc.version,
            sni=sc.sni,
            verdict=verdict,
            resumed_from_mutual=None,
            alert=None,
            client_chain=None if not requested else (identity.sent if identity else ()),
            server_chain=pki.server.sent,
            starttls=sc.protocol,
        )
    )


# --------------------------------------------------------------------------------------------
# TCP and TLS edge cases


REUSED_CLIENT_PORT = 30491
"""Fixed client port of the connection-reuse scenario, below the ephemeral range."""
SMALL_MSS = 536
"""Maximum segment size the big-chain clients clamp their connections to."""
SMALL_RCVBUF = 1152
"""Receive buffer of the big-chain servers (the kernel doubles it): their window stays below
two segments of SMALL_MSS, so that loopback, which does segmentation offload, still carries
the client's flight one MSS per packet instead of in multi-segment packets."""
SILENT_SERVER_DELAY = 0.2

RESET_BY_SERVER = "reset by server"
CLOSED_BY_SERVER = "closed by server"


@dataclass(frozen=True)
class EdgeConn:
    """One connection of an edge scenario: what the server asks for, which client identity
    connects, and the outcome it must have."""

    scenario: str
    verify: ssl.VerifyMode
    client: str | None
    expect: str
    ended: str | None = None


@dataclass(frozen=True)
class EdgeScenario:
    """A server on one port and the connections it serves in order.

    ``server``: ``python-ssl`` (a Python ``ssl`` server, one context per connection),
    ``reset-after-client-cert`` (a Python ``ssl`` server on memory BIOs that resets the
    connection once it has read the client's whole second flight, instead of sending its own
    Finished) or ``silent`` (a plain TCP listener that reads the ClientHello and closes)."""

    port: int
    version: str
    conns: tuple[EdgeConn, ...]
    server: str = "python-ssl"
    client_port: int | None = None
    """Bind every client connection to this port (SO_REUSEADDR)."""
    small_segments: bool = False
    """Clamp the client's MSS to SMALL_MSS, shrink its send buffer and set TCP_NODELAY; keep the
    server's receive buffer at SMALL_RCVBUF."""

    @property
    def stack(self) -> str:
        return "plain-tcp/python-ssl" if self.server == "silent" else "python-ssl/python-ssl"


def _edge_python_server(
    listener: socket.socket, contexts: list[ssl.SSLContext], sides: list[Side]
) -> None:
    for ctx, side in zip(contexts, sides, strict=True):
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            side.error = str(exc)
            side.done.set()
            return
        conn.settimeout(IO_TIMEOUT)
        tls = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        _serve_tls(tls, side, _ping_pong_server)


def _reset_after_client_cert_server(
    listener: socket.socket, contexts: list[ssl.SSLContext], sides: list[Side]
) -> None:
    """Run the server's side of a TLS 1.2 handshake on memory BIOs; once the client's second
    flight (Certificate ... Finished) has been processed, drop the server's own ChangeCipherSpec
    and Finished and close the socket with SO_LINGER 0, which sends a reset."""
    (side,) = sides
    try:
        conn, _ = listener.accept()
    except OSError as exc:
        side.error = str(exc)
        side.done.set()
        return
    conn.settimeout(IO_TIMEOUT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = contexts[0].wrap_bio(incoming, outgoing, server_side=True)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                conn.sendall(outgoing.read())
                data = conn.recv(65536)
                if not data:
                    raise RecordingError("the client closed during the handshake") from None
                incoming.write(data)
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        side.peer_cn = _peer_cn(tls.getpeercert())
        side.ended = RESET_BY_SERVER
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (ssl.SSLError, OSError, RecordingError) as exc:
        _fail(side, exc)
    finally:
        conn.close()
        side.done.set()


def _silent_server(
    listener: socket.socket, contexts: list[ssl.SSLContext], sides: list[Side]
) -> None:
    """Accept, read one TLS record (the ClientHello), wait, then send FIN; read on until the
    client closes too, so that what the client sends after the FIN meets no reset."""
    (side,) = sides
    try:
        conn, _ = listener.accept()
    except OSError as exc:
        side.error = str(exc)
        side.done.set()
        return
    conn.settimeout(IO_TIMEOUT)
    try:
        header = _recv_exact(conn, 5)
        body = _recv_exact(conn, int.from_bytes(header[3:5], "big")) if len(header) == 5 else b""
        if header[:1] != b"\x16" or body[:1] != b"\x01":
            raise RecordingError(f"no ClientHello: {header.hex()}")
        time.sleep(SILENT_SERVER_DELAY)
        conn.shutdown(socket.SHUT_WR)
        side.ended = CLOSED_BY_SERVER
        while conn.recv(4096):
            pass
    except (OSError, RecordingError) as exc:
        side.error = str(exc)
    finally:
        conn.close()
        side.done.set()


EDGE_SERVERS: dict[str, Callable[[socket.socket, list[ssl.SSLContext], list[Side]], None]] = {
    "python-ssl": _edge_python_server,
    "reset-after-client-cert": _reset_after_client_cert_server,
    "silent": _silent_server,
}


def _edge_client(sc: EdgeScenario, ctx: ssl.SSLContext) -> Side:
    """Connect (bound to ``sc.client_port`` if set), handshake, ping, close_notify; then wait for
    the server's FIN before closing, so that the server closes first and keeps the TIME_WAIT."""
    side = Side()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(IO_TIMEOUT)
    if sc.client_port is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        raw.bind(("127.0.0.1", sc.client_port))
    if sc.small_segments:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, SMALL_MSS)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = ctx.wrap_socket(raw, server_hostname=SERVER_NAME, do_handshake_on_connect=False)
    try:
        tls.connect(("127.0.0.1", sc.port))
        side.port = tls.getsockname()[1]
        tls.do_handshake()
        side.handshake = True
        side.version = SSL_VERSION_NAMES.get(tls.version() or "")
        tls.sendall(PING)
        reply = _recv_exact(tls, len(PONG))
        tls.unwrap()
        side.exchanged = reply == PONG and tls.recv(1) == b""
    except ConnectionResetError as exc:
        _fail(side, exc)
        side.ended = RESET_BY_SERVER
    except ssl.SSLEOFError as exc:
        _fail(side, exc)
        side.ended = CLOSED_BY_SERVER
    except (ssl.SSLError, OSError) as exc:
        _fail(side, exc)
    finally:
        tls.close()
    return side


def run_edge(sc: EdgeScenario, pki: Pki, truth: Truth) -> None:
    """Run an edge scenario and append one truth entry per connection."""
    listener = _listener("127.0.0.1", sc.port, SMALL_RCVBUF if sc.small_segments else None)
    contexts = [_tls_server_context(pki, sc.version, c.verify) for c in sc.conns]
    servers = [Side() for _ in sc.conns]
    serve = EDGE_SERVERS[sc.server]
    thread = threading.Thread(target=serve, args=(listener, contexts, servers), daemon=True)
    thread.start()
    try:
        for conn, server in zip(sc.conns, servers, strict=True):
            if sc.client_port is not None and not _wait_until(
                lambda: _connections_closed(sc.client_port or 0), TOOL_TIMEOUT
            ):
                raise RecordingError(f"{conn.scenario}: port {sc.client_port} is still in use")
            identity = pki.client(conn.client)
            client = _edge_client(sc, _client_context(pki, sc.version, identity, None))
            if not server.done.wait(TOOL_TIMEOUT):
                raise RecordingError(f"{conn.scenario}: the server did not finish")
            truth.sessions.append(_judge_edge(sc, conn, identity, pki, client, server))
    finally:
        thread.join(TOOL_TIMEOUT)
        listener.close()


def _judge_edge(
    sc: EdgeScenario,
    conn: EdgeConn,
    identity: Identity | None,
    pki: Pki,
    client: Side,
    server: Side,
) -> dict[str, Any]:
    name = conn.scenario
    logs = f"client {client.error}, server {server.error}"
    requested = conn.verify != ssl.CERT_NONE and sc.server != "silent"
    cert_sent = requested and identity is not None
    completed = client.exchanged and server.exchanged
    if completed:
        check(name, "server version", server.version, sc.version)
        check(name, "client version", client.version, sc.version)
    else:
        check(f"{name} ({logs})", "failure", client.error is not None, True)
    if completed or sc.server == "reset-after-client-cert":
        expected_cn = identity.cn if cert_sent and identity else None
        check(f"{name} ({logs})", "client certificate seen by server", server.peer_cn, expected_cn)
    if sc.client_port is not None:
        check(name, "client port", client.port, sc.client_port)
    verdict = verdict_of(
        requested=requested, resumed=False, completed=completed, cert_sent=cert_sent
    )
    check(f"{name} ({logs})", "verdict", verdict, conn.expect)
    check(name, "alert", client.alert, None)
    check(f"{name} ({logs})", "end seen by the client", client.ended, conn.ended)
    check(name, "end made by the server", server.ended, conn.ended)
    entry = session_entry(
        scenario=name,
        stack=sc.stack,
        ip="127.0.0.1",
        client_port=client.port,
        server_port=sc.port,
        version=sc.version,
        sni=SERVER_NAME,
        verdict=verdict,
        resumed_from_mutual=None,
        alert=None,
        client_chain=None if not requested else (identity.sent if identity else ()),
        server_chain=None if sc.server == "silent" else pki.server.sent,
    )
    entry["ended"] = conn.ended
    return entry


# --------------------------------------------------------------------------------------------
# Captures


Scenario = PyScenario | ToolScenario | StarttlsScenario | EdgeScenario

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
        client_port=REUSED_CLIENT_PORT,
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
            elif isinstance(sc, StarttlsScenario):
                run_starttls(sc, pki, truth)
            elif isinstance(sc, EdgeScenario):
                run_edge(sc, pki, truth)
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
        big_chain = any(spec.big_chain for spec in selected)
        pki = build_pki(Path(work), out / "pki", big_chain)
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
