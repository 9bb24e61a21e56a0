"""The plaintext protocol a connection spoke before it upgraded to TLS (STARTTLS and its kin).

Pure: the first bytes each side sent before its first TLS record in, a protocol name out.
"""

from __future__ import annotations

_STARTTLS = (
    (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", "postgresql"),
    (b"STARTTLS", None),  # disambiguated below
    (b"STLS", "pop3"),
    (b"AUTH TLS", "ftp"),
    (b"AUTH SSL", "ftp"),
    (b"<starttls", "xmpp"),
    (b"1.3.6.1.4.1.1466.20037", "ldap"),
)


def starttls_protocol(preamble: dict[str, bytes]) -> str | None:
    """Name the plaintext protocol whose upgrade to TLS the preamble bytes show."""
    if not preamble:
        return None
    client = preamble.get("client", b"")
    server = preamble.get("server", b"")
    both = client + b"\n" + server
    for needle, name in _STARTTLS:
        if needle in both:
            if name:
                return name
            if server.startswith(b"220") or b"EHLO" in client.upper() or b"HELO" in client.upper():
                return "smtp"
            if server.startswith(b"* OK") or b" CAPABILITY" in both:
                return "imap"
            return "starttls"
    if len(server) > 5 and server[4] == 0 and server[3] == 0 and server[5] == 10:
        return "mysql"  # MySQL greeting: 3-byte length, sequence 0, protocol 10
    if len(client) > 4 and client[3] == 1 and len(server) > 4 and server[3] == 0:
        return "mysql"
    return "unknown"
