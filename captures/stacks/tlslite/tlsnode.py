#!/usr/bin/env python3
"""One TLS connection over tlslite-ng, driven by ``captures/record_tlslite.py``.

    tlsnode.py server PORT VERSION VERIFY CERTFILE KEYFILE CAFILE [pha] [compress=ALG]
    tlsnode.py client PORT VERSION CAFILE SNI CERTFILE|- KEYFILE|- [compress=ALG]

It speaks the line protocol of ``captures/stacks/erlang/tlsnode.escript`` (``listening``,
``peer_port N``, ``local_port N``, ``handshake ok V``, ``handshake_error TERM``, ``peer_cert
CN|none``, ``keylog LINE``, ``recv TEXT``, ``sent TEXT``, ``recv_error TERM``, ``pha
requested``, ``closed``), errors written as Erlang terms ``{tls_alert,{NAME,"..."}}``.

VERSION is tlsv1.2 or tlsv1.3 (the only one offered). tlslite-ng does not validate certificate
chains itself, so this script does: the server requests a certificate (``reqCert=True``) for
VERIFY optional and required, and once tlslite's handshake has ended it checks the client's chain
against CAFILE (dates first, then ``cryptography``'s path validation) and refuses with a fatal
``certificate_expired`` or ``unknown_ca`` alert, or with ``certificate_required`` (TLS 1.3) /
``handshake_failure`` (TLS 1.2) when VERIFY is required and the Certificate was empty. The client
checks the server's chain the same way. ``pha``: no certificate in the handshake; after the
client's line the server sends a post-handshake CertificateRequest, then its answer, and reads the
client's Certificate with what follows. ``compress=ALG``: RFC 8879 certificate compression with
ALG only (zlib, brotli or zstd) both ways; without it compression is off (tlslite-ng would offer
every algorithm it has).

tlslite-ng writes no key log: this script wraps its record layer's key derivation
(``calcPendingStates``, ``calcTLS1_3PendingState``) and prints the secrets in the NSS key log
format, the first TLS 1.3 pair as handshake traffic secrets, the second as traffic secrets 0.
"""

from __future__ import annotations

import datetime
import socket
import sys
from typing import Any

from cryptography import x509
from cryptography.x509 import verification
from tlslite import messages, recordlayer
from tlslite.api import (
    HandshakeSettings,
    TLSConnection,
    X509CertChain,
    parsePEMKey,
)
from tlslite.constants import AlertDescription
from tlslite.errors import TLSAbruptCloseError, TLSError, TLSLocalAlert, TLSRemoteAlert

VERSIONS = {"tlsv1.2": (3, 3), "tlsv1.3": (3, 4)}
TIMEOUT = 10.0


def say(line: str) -> None:
    print(line, flush=True)


def alert_term(description: int, text: str) -> str:
    name = AlertDescription.toStr(description)
    quoted = text.replace('"', "'")
    return "{tls_alert,{" + f'{name},"{quoted}"' + "}}"


# --------------------------------------------------------------------------------------------
# Key log


_client_random: list[bytes] = []


def _keep_random(method: Any) -> Any:
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        if not _client_random:
            _client_random.append(bytes(self.random))
        return result

    return wrapped


messages.ClientHello.create = _keep_random(messages.ClientHello.create)
messages.ClientHello.parse = _keep_random(messages.ClientHello.parse)

_tls13_calls: list[int] = []
_calc13 = recordlayer.RecordLayer.calcTLS1_3PendingState
_calc12 = recordlayer.RecordLayer.calcPendingStates


def _log13(self: Any, suite: Any, client_secret: Any, server_secret: Any, impl: Any) -> Any:
    labels = (
        ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET")
        if not _tls13_calls
        else ("CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0")
    )
    if len(_tls13_calls) < 2 and _client_random:
        random = _client_random[0].hex()
        say(f"keylog {labels[0]} {random} {bytes(client_secret).hex()}")
        say(f"keylog {labels[1]} {random} {bytes(server_secret).hex()}")
    _tls13_calls.append(1)
    return _calc13(self, suite, client_secret, server_secret, impl)


def _log12(self: Any, suite: Any, master: Any, client_random: Any, *rest: Any) -> Any:
    say(f"keylog CLIENT_RANDOM {bytes(client_random).hex()} {bytes(master).hex()}")
    return _calc12(self, suite, master, client_random, *rest)


recordlayer.RecordLayer.calcTLS1_3PendingState = _log13
recordlayer.RecordLayer.calcPendingStates = _log12


# --------------------------------------------------------------------------------------------
# Certificates


def load_identity(cert: str, key: str) -> tuple[X509CertChain, Any]:
    chain = X509CertChain()
    with open(cert, encoding="ascii") as fh:
        chain.parsePemList(fh.read())
    with open(key, encoding="ascii") as fh:
        private = parsePEMKey(fh.read(), private=True)
    return chain, private


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(names[0].value) if names else "?"


def check_chain(chain: Any, ca_file: str, server_name: str | None) -> tuple[int, str] | None:
    """None when ``chain`` (tlslite's X509CertChain) leads to the CA of ``ca_file``; else the
    alert to send and why."""
    certs = [x509.load_der_x509_certificate(bytes(c.bytes)) for c in chain.x509List]
    now = datetime.datetime.now(datetime.timezone.utc)
    for cert in certs:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return AlertDescription.certificate_expired, f"{common_name(cert)} is out of date"
    with open(ca_file, "rb") as fh:
        store = verification.Store(x509.load_pem_x509_certificates(fh.read()))
    builder = verification.PolicyBuilder().store(store).time(now)
    try:
        if server_name is None:
            builder.build_client_verifier().verify(certs[0], certs[1:])
        else:
            name = x509.DNSName(server_name)
            builder.build_server_verifier(name).verify(certs[0], certs[1:])
    except verification.VerificationError as exc:
        return AlertDescription.unknown_ca, f"{common_name(certs[0])}: {exc}"
    return None


def settings_for(version: str, compress: str | None) -> HandshakeSettings:
    settings = HandshakeSettings()
    settings.minVersion = settings.maxVersion = VERSIONS[version]
    algos = [compress] if compress else []
    settings.certificate_compression_send = list(algos)
    settings.certificate_compression_receive = list(algos)
    return settings


def settings_for_pha(compress: str | None) -> HandshakeSettings:
    settings = HandshakeSettings()
    if compress:
        settings.certificate_compression_receive = [compress]
    return settings


def refuse(conn: TLSConnection, description: int, text: str) -> None:
    say(f"handshake_error {alert_term(description, 'tlslite server: ' + text)}")
    try:
        for _ in conn._sendError(description, text):
            pass
    except TLSLocalAlert:
        pass


# --------------------------------------------------------------------------------------------
# Server and client


def read_line(conn: TLSConnection) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.read()
        if not chunk:
            break
        data += bytes(chunk)
    return data


def wait_close(conn: TLSConnection) -> None:
    try:
        while conn.read():
            pass
        say("closed")
    except (TLSError, OSError) as exc:
        say(f"recv_error {exc!r}")


def server(args: list[str]) -> None:
    port, version, verify, cert, key, ca, *extra = args
    pha = "pha" in extra
    compress = next((e.split("=", 1)[1] for e in extra if e.startswith("compress=")), None)
    chain, private = load_identity(cert, key)
    listener = socket.create_server(("127.0.0.1", int(port)))
    say("listening")
    listener.settimeout(2 * TIMEOUT)
    sock, peer = listener.accept()
    sock.settimeout(TIMEOUT)
    say(f"peer_port {peer[1]}")
    conn = TLSConnection(sock)
    settings = settings_for(version, compress)
    try:
        conn.handshakeServer(
            certChain=chain,
            privateKey=private,
            reqCert=verify != "none" and not pha,
            settings=settings,
        )
    except TLSRemoteAlert as exc:
        say(f"handshake_error {alert_term(exc.description, 'received ' + str(exc))}")
        return
    except TLSLocalAlert as exc:
        say(f"handshake_error {alert_term(exc.description, 'tlslite server: ' + str(exc))}")
        return
    except (TLSError, OSError) as exc:
        say(f"handshake_error {exc!r}")
        return
    say(f"tls_handshake_done {conn.getVersionName()}")
    if not pha and verify != "none":
        client_chain = conn.session.clientCertChain
        if client_chain is None or not client_chain.x509List:
            if verify == "required":
                missing = (
                    AlertDescription.certificate_required
                    if conn.version >= (3, 4)
                    else AlertDescription.handshake_failure
                )
                refuse(conn, missing, "no client certificate")
                return
            say("handshake ok " + conn.getVersionName())
            say("peer_cert none")
        else:
            problem = check_chain(client_chain, ca, None)
            if problem is not None:
                refuse(conn, *problem)
                return
            say("handshake ok " + conn.getVersionName())
            leaf = x509.load_der_x509_certificate(bytes(client_chain.x509List[0].bytes))
            say(f"peer_cert {common_name(leaf)}")
    else:
        say("handshake ok " + conn.getVersionName())
        say("peer_cert none")
    try:
        line = read_line(conn)
        say(f"recv {line.decode(errors='replace').strip()}")
        if pha:
            # with the compression lists emptied, tlslite-ng 0.8.2 puts an empty
            # compress_certificate extension in the post-handshake CertificateRequest and then
            # aborts on it itself (decode_error): ask with the default settings instead
            for _ in conn.request_post_handshake_auth(settings_for_pha(compress)):
                pass
            say("pha requested")
        conn.write(b"pong\n")
        say("sent pong")
    except (TLSError, OSError) as exc:
        say(f"recv_error {exc!r}")
        return
    wait_close(conn)
    if pha:
        client_chain = conn.session.clientCertChain
        if client_chain is not None and client_chain.x509List:
            problem = check_chain(client_chain, ca, None)
            leaf = x509.load_der_x509_certificate(bytes(client_chain.x509List[0].bytes))
            say(f"peer_cert {common_name(leaf)}" if problem is None else f"pha_bad {problem}")
    conn.close()


def client(args: list[str]) -> None:
    port, version, ca, sni, cert, key, *extra = args
    compress = next((e.split("=", 1)[1] for e in extra if e.startswith("compress=")), None)
    chain, private = (None, None) if cert == "-" else load_identity(cert, key)
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=TIMEOUT)
    say(f"local_port {sock.getsockname()[1]}")
    conn = TLSConnection(sock)
    try:
        conn.handshakeClientCert(
            chain, private, serverName=sni, settings=settings_for(version, compress)
        )
    except TLSRemoteAlert as exc:
        say(f"handshake_error {alert_term(exc.description, 'received ' + str(exc))}")
        return
    except (TLSError, OSError) as exc:
        say(f"handshake_error {exc!r}")
        return
    problem = check_chain(conn.session.serverCertChain, ca, sni)
    if problem is not None:
        refuse(conn, *problem)
        return
    say("handshake ok " + conn.getVersionName())
    try:
        conn.write(b"ping\n")
        say("sent ping")
        say(f"recv {read_line(conn).decode(errors='replace').strip()}")
    except TLSRemoteAlert as exc:
        say(f"recv_error {alert_term(exc.description, 'received ' + str(exc))}")
        return
    except (TLSAbruptCloseError, TLSError, OSError) as exc:
        say(f"recv_error {exc!r}")
        return
    conn.close()
    say("closed")


def main() -> None:
    role, *args = sys.argv[1:]
    if role == "server":
        server(args)
    elif role == "client":
        client(args)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
