"""The plaintext part of the protocols that upgrade to TLS (SMTP, IMAP, POP3, FTP, XMPP, LDAP,
PostgreSQL, MySQL), server side and client side: the standard library's clients where there is
one, else a client here. Each protocol is an ``Upgrade`` of ``UPGRADES``."""

from __future__ import annotations

import ftplib
import hashlib
import imaplib
import poplib
import socket
import ssl
import struct
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass

from .core import IO_TIMEOUT, RecordingError
from .pyssl import Side, recv_exact, recv_line, recv_until, smtp_client


def _expect(what: str, ok: bool) -> None:
    if not ok:
        raise RecordingError(f"unexpected {what}")


def _command(sock: socket.socket, verb: bytes) -> bytes:
    """Read one command line and check its verb, one or more words (case-insensitive, after an
    optional tag)."""
    line = recv_line(sock)
    words, got = verb.upper().split(), [w.upper() for w in line.split()]
    ok = words in (got[: len(words)], got[1 : 1 + len(words)])
    _expect(f"command {line!r}, wanted {verb.decode()}", ok)
    return line


Step = tuple[bytes | None, bytes]
"""The client's command (None: none, the server speaks first) and the server's answer."""


def _dialogue(*steps: Step) -> Callable[[socket.socket], bool]:
    """The server's side of a dialogue of commands and answers; ``{tag}`` in an answer stands
    for the command's tag (IMAP)."""

    def run(sock: socket.socket) -> bool:
        for verb, answer in steps:
            tag = b"" if verb is None else _command(sock, verb).split(b" ", 1)[0]
            sock.sendall(answer.replace(b"{tag}", tag))
        return True

    return run


# SMTP (RFC 3207), client smtplib

_smtp_before = _dialogue(
    (None, b"220 server.example.test ESMTP test server\r\n"),
    (b"EHLO", b"250-server.example.test\r\n250 STARTTLS\r\n"),
    (b"STARTTLS", b"220 2.0.0 Ready to start TLS\r\n"),
)
_smtp_after = _dialogue(
    (b"EHLO", b"250-server.example.test\r\n250 8BITMIME\r\n"),
    (b"QUIT", b"221 2.0.0 Bye\r\n"),
)

# IMAP (RFC 3501), client imaplib: CAPABILITY, STARTTLS, then CAPABILITY and LOGOUT in TLS

_imap_before = _dialogue(
    (None, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
    (b"CAPABILITY", b"* CAPABILITY IMAP4rev1 STARTTLS\r\n{tag} OK CAPABILITY completed\r\n"),
    (b"STARTTLS", b"{tag} OK Begin TLS negotiation now\r\n"),
)
_imap_after = _dialogue(
    (b"CAPABILITY", b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK CAPABILITY completed\r\n"),
    (b"LOGOUT", b"* BYE server.example.test logging out\r\n{tag} OK LOGOUT completed\r\n"),
)


def _imap_client(host: str, port: int, ctx: ssl.SSLContext, sni: str | None) -> Side:
    side = Side()
    imap = imaplib.IMAP4(host, port, timeout=IO_TIMEOUT)
    with side.talking(imaplib.IMAP4.error):
        side.port = imap.sock.getsockname()[1]
        typ, _ = imap.starttls(ctx)
        _expect(f"STARTTLS answer {typ}", typ == "OK")
        side.note_handshake(imap.sock)
        side.exchanged = imap.logout()[0] == "BYE"
    with suppress(OSError):
        imap.sock.close()
    return side


# POP3 (RFC 2595), client poplib: CAPA, STLS, then CAPA and QUIT in TLS

_pop3_before = _dialogue(
    (None, b"+OK POP3 ready\r\n"),
    (b"CAPA", b"+OK Capability list follows\r\nUSER\r\nSTLS\r\n.\r\n"),
    (b"STLS", b"+OK Begin TLS\r\n"),
)
_pop3_after = _dialogue(
    (b"CAPA", b"+OK Capability list follows\r\nUSER\r\n.\r\n"),
    (b"QUIT", b"+OK Bye\r\n"),
)


def _pop3_client(host: str, port: int, ctx: ssl.SSLContext, sni: str | None) -> Side:
    side = Side()
    pop = poplib.POP3(host, port, timeout=IO_TIMEOUT)
    with closing(pop), side.talking(poplib.error_proto):
        side.port = pop.sock.getsockname()[1]
        pop.stls(ctx)
        side.note_handshake(pop.sock)
        _expect("capabilities in TLS", "STLS" not in pop.capa())
        side.exchanged = pop.quit().startswith(b"+OK")
    return side


# FTP (RFC 4217), client ftplib.FTP_TLS: AUTH TLS, then USER, PASS and QUIT in TLS

_ftp_before = _dialogue((None, b"220 FTP ready\r\n"), (b"AUTH TLS", b"234 AUTH TLS successful\r\n"))
_ftp_after = _dialogue(
    (b"USER", b"331 Please specify the password.\r\n"),
    (b"PASS", b"230 Login successful.\r\n"),
    (b"QUIT", b"221 Goodbye.\r\n"),
)


def _ftp_client(host: str, port: int, ctx: ssl.SSLContext, sni: str | None) -> Side:
    side = Side()
    ftp = ftplib.FTP_TLS(context=ctx, timeout=IO_TIMEOUT)
    with closing(ftp), side.talking(ftplib.Error):
        ftp.connect(host, port)
        assert ftp.sock is not None
        side.port = ftp.sock.getsockname()[1]
        ftp.auth()
        side.note_handshake(ftp.sock)
        ftp.login()
        side.exchanged = ftp.quit().startswith("221")
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
    _expect("XMPP stream header", recv_until(conn, b"version='1.0'>") == XMPP_CLIENT_HEADER)
    conn.sendall(_xmpp_server_header("c2s-1") + XMPP_TLS_FEATURES)
    _expect("XMPP element, wanted <starttls/>", recv_until(conn, b"/>") == XMPP_STARTTLS)
    conn.sendall(XMPP_PROCEED)


def _xmpp_after(tls: ssl.SSLSocket) -> bool:
    _expect("XMPP stream restart", recv_until(tls, b"version='1.0'>") == XMPP_CLIENT_HEADER)
    tls.sendall(_xmpp_server_header("c2s-2") + XMPP_SASL_FEATURES)
    _expect("XMPP stream end", recv_until(tls, XMPP_CLOSE) == XMPP_CLOSE)
    tls.sendall(XMPP_CLOSE)
    return True


def _xmpp_client_before(sock: socket.socket) -> None:
    sock.sendall(XMPP_CLIENT_HEADER)
    _expect("XMPP features", recv_until(sock, b"</stream:features>").endswith(XMPP_TLS_FEATURES))
    sock.sendall(XMPP_STARTTLS)
    _expect("XMPP answer to <starttls/>", recv_until(sock, b"/>") == XMPP_PROCEED)


def _xmpp_client_after(tls: ssl.SSLSocket) -> bool:
    tls.sendall(XMPP_CLIENT_HEADER)
    features = recv_until(tls, b"</stream:features>")
    tls.sendall(XMPP_CLOSE)
    return features.endswith(XMPP_SASL_FEATURES) and recv_until(tls, XMPP_CLOSE) == XMPP_CLOSE


# LDAP (RFC 4511 StartTLS extended operation); in TLS an anonymous bind, then unbind


LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
LDAP_STARTTLS_REQUEST = bytes.fromhex("301d02010177188016") + LDAP_STARTTLS_OID
LDAP_STARTTLS_RESPONSE = bytes.fromhex("300c02010178070a010004000400")
LDAP_BIND_REQUEST = bytes.fromhex("300c020102600702010304008000")
LDAP_BIND_RESPONSE = bytes.fromhex("300c02010261070a010004000400")
LDAP_UNBIND_REQUEST = bytes.fromhex("30050201034200")


def _ber_message(sock: socket.socket) -> bytes:
    """One LDAPMessage with a short-form length, as all of those exchanged here have."""
    head = recv_exact(sock, 2)
    _expect(f"LDAP message {head.hex()}", len(head) == 2 and head[0] == 0x30 and head[1] < 0x80)
    return head + recv_exact(sock, head[1])


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
    _expect("PostgreSQL SSLRequest", recv_exact(conn, 8) == PG_SSL_REQUEST)
    conn.sendall(b"S")


def _pg_after(tls: ssl.SSLSocket) -> bool:
    (length,) = struct.unpack("!I", recv_exact(tls, 4))
    _expect("PostgreSQL StartupMessage", recv_exact(tls, length - 4) == _pg_startup()[4:])
    tls.sendall(
        _pg_message(b"R", struct.pack("!I", 0))
        + _pg_message(b"S", b"server_version\x0016.2\x00")
        + _pg_message(b"K", struct.pack("!II", 4242, 0x5EC12E7))
        + _pg_message(b"Z", b"I")
    )
    return recv_exact(tls, len(PG_TERMINATE)) == PG_TERMINATE


def _pg_client_before(sock: socket.socket) -> None:
    sock.sendall(PG_SSL_REQUEST)
    _expect("PostgreSQL SSLRequest answer", recv_exact(sock, 1) == b"S")


def _pg_client_after(tls: ssl.SSLSocket) -> bool:
    tls.sendall(_pg_startup())
    types = b""
    while not types.endswith(b"Z"):
        head = recv_exact(tls, 5)
        _expect("PostgreSQL message", len(head) == 5)
        types += head[:1]
        recv_exact(tls, struct.unpack("!I", head[1:])[0] - 4)
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
    head = recv_exact(sock, 4)
    _expect("MySQL packet", len(head) == 4)
    return head[3], recv_exact(sock, int.from_bytes(head[:3], "little"))


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
        with closing(sock), side.talking():
            before(sock)
            tls = ctx.wrap_socket(sock, server_hostname=sni or host, do_handshake_on_connect=False)
            with closing(tls):
                tls.do_handshake()
                side.note_handshake(tls)
                side.exchanged = after(tls)
                tls.unwrap()
        return side

    return client


@dataclass(frozen=True)
class Upgrade:
    """How one protocol upgrades to TLS: the server's plaintext part and its part in TLS, the
    client, and whether that client ends TLS with close_notify (the stdlib IMAP, POP3 and FTP
    clients just close the socket)."""

    server_before: Callable[[socket.socket], object]
    server_after: Callable[[ssl.SSLSocket], bool]
    client: Callable[[str, int, ssl.SSLContext, str | None], Side]
    close_notify: bool


UPGRADES: dict[str, Upgrade] = {
    "smtp": Upgrade(_smtp_before, _smtp_after, smtp_client, True),
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
