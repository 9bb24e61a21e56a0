"""Parsers for the hello extensions tlsinspect reports (RFC 6066, 7301, 8446, 8701).

Extensions are kept raw as `(type, data)` pairs on the messages (unknown ones included, as in
aioquic); these functions read the ones the report needs.
"""

from __future__ import annotations

from .reader import Reader

SERVER_NAME = 0
STATUS_REQUEST = 5
SUPPORTED_GROUPS = 10
SIGNATURE_ALGORITHMS = 13
ALPN = 16
ENCRYPT_THEN_MAC = 22
EXTENDED_MASTER_SECRET = 23
SESSION_TICKET = 35
PRE_SHARED_KEY = 41
EARLY_DATA = 42
SUPPORTED_VERSIONS = 43
CERTIFICATE_AUTHORITIES = 47
POST_HANDSHAKE_AUTH = 49
SIGNATURE_ALGORITHMS_CERT = 50
KEY_SHARE = 51
RENEGOTIATION_INFO = 0xFF01
ENCRYPTED_CLIENT_HELLO = 0xFE0D

Extensions = tuple[tuple[int, bytes], ...]


def parse_block(r: Reader) -> Extensions:
    """The extensions vector at the end of a hello (absent → empty)."""
    if r.remaining == 0:
        return ()
    return r.sub16("extensions").tlv16_list("extension")


def find(extensions: Extensions, ext_type: int) -> bytes | None:
    for t, data in extensions:
        if t == ext_type:
            return data
    return None


def server_name(data: bytes) -> str | None:
    """First host_name of a server_name extension (RFC 6066 section 3)."""
    r = Reader(data, "server_name").sub16("server_name_list")
    while r.remaining:
        name_type = r.u8("name_type")
        name = r.vec16("host_name")
        if name_type == 0:
            return name.decode("ascii", "replace")
    return None


def alpn(data: bytes) -> tuple[str, ...]:
    r = Reader(data, "alpn").sub16("protocol_name_list")
    out = []
    while r.remaining:
        out.append(r.vec8("protocol_name").decode("ascii", "replace"))
    return tuple(out)


def client_supported_versions(data: bytes) -> tuple[int, ...]:
    return Reader(data, "supported_versions").sub8("versions").u16_list("versions")


def server_supported_version(data: bytes) -> int:
    r = Reader(data, "supported_versions")
    v = r.u16("selected_version")
    r.expect_end()
    return v


def signature_algorithms(data: bytes) -> tuple[int, ...]:
    return Reader(data, "signature_algorithms").sub16("algorithms").u16_list("algorithms")


def distinguished_names(r: Reader) -> tuple[bytes, ...]:
    """A DistinguishedName<0..2^16-1> vector: DER-encoded X.501 names."""
    names = r.sub16("certificate_authorities")
    out = []
    while names.remaining:
        out.append(names.vec16("distinguished name"))
    return tuple(out)


def psk_identities(data: bytes) -> tuple[bytes, ...]:
    """The identities (tickets) of a ClientHello's pre_shared_key extension (RFC 8446 4.2.11)."""
    r = Reader(data, "pre_shared_key").sub16("identities")
    out = []
    while r.remaining:
        out.append(r.vec16("identity"))
        r.u32("obfuscated_ticket_age")
    return tuple(out)


def certificate_authorities(data: bytes) -> tuple[bytes, ...]:
    return distinguished_names(Reader(data, "certificate_authorities"))
