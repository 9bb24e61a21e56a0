"""Names of TLS protocol numbers (RFC 5246, RFC 8446 and the IANA registries).

Numbers stay raw ints everywhere (open enums, as in tls-parser): a value no table knows is kept
and printed as `unknown(0x....)`, never rejected.
"""

from __future__ import annotations

from ._iana import CIPHER_SUITES, EXTENSIONS, GROUPS, SIGNATURE_SCHEMES

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24

# application_settings (ALPS), the old and the new code point: a client that offers it may send
# an EncryptedExtensions in its second flight (draft-vvv-tls-alps)
ALPS_EXTENSIONS = frozenset({17513, 17613})

CONTENT_TYPES = {
    CHANGE_CIPHER_SPEC: "change_cipher_spec",
    ALERT: "alert",
    HANDSHAKE: "handshake",
    APPLICATION_DATA: "application_data",
    HEARTBEAT: "heartbeat",
}

HELLO_REQUEST = 0
CLIENT_HELLO = 1
SERVER_HELLO = 2
HELLO_VERIFY_REQUEST = 3
NEW_SESSION_TICKET = 4
END_OF_EARLY_DATA = 5
HELLO_RETRY_REQUEST = 6  # TLS 1.3 drafts up to 21 (the final RFC uses a ServerHello instead)
ENCRYPTED_EXTENSIONS = 8
CERTIFICATE = 11
SERVER_KEY_EXCHANGE = 12
CERTIFICATE_REQUEST = 13
SERVER_HELLO_DONE = 14
CERTIFICATE_VERIFY = 15
CLIENT_KEY_EXCHANGE = 16
FINISHED = 20
CERTIFICATE_URL = 21
CERTIFICATE_STATUS = 22
SUPPLEMENTAL_DATA = 23
KEY_UPDATE = 24
COMPRESSED_CERTIFICATE = 25
MESSAGE_HASH = 254

HANDSHAKE_TYPES = {
    HELLO_REQUEST: "hello_request",
    CLIENT_HELLO: "client_hello",
    SERVER_HELLO: "server_hello",
    HELLO_VERIFY_REQUEST: "hello_verify_request",
    NEW_SESSION_TICKET: "new_session_ticket",
    END_OF_EARLY_DATA: "end_of_early_data",
    HELLO_RETRY_REQUEST: "hello_retry_request",
    ENCRYPTED_EXTENSIONS: "encrypted_extensions",
    CERTIFICATE: "certificate",
    SERVER_KEY_EXCHANGE: "server_key_exchange",
    CERTIFICATE_REQUEST: "certificate_request",
    SERVER_HELLO_DONE: "server_hello_done",
    CERTIFICATE_VERIFY: "certificate_verify",
    CLIENT_KEY_EXCHANGE: "client_key_exchange",
    FINISHED: "finished",
    CERTIFICATE_URL: "certificate_url",
    CERTIFICATE_STATUS: "certificate_status",
    SUPPLEMENTAL_DATA: "supplemental_data",
    KEY_UPDATE: "key_update",
    COMPRESSED_CERTIFICATE: "compressed_certificate",
    MESSAGE_HASH: "message_hash",
}

ALERT_LEVELS = {1: "warning", 2: "fatal"}

ALERT_DESCRIPTIONS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
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
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

# Alerts that a peer sends when it refuses the other side's certificate.
CERTIFICATE_ALERTS = frozenset({41, 42, 43, 44, 45, 46, 48, 49, 116})

VERSIONS = {
    0x0002: "SSL 2.0",
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}

CLIENT_CERTIFICATE_TYPES = {
    1: "rsa_sign",
    2: "dss_sign",
    3: "rsa_fixed_dh",
    4: "dss_fixed_dh",
    5: "rsa_ephemeral_dh",
    6: "dss_ephemeral_dh",
    20: "fortezza_dms",
    64: "ecdsa_sign",
    65: "rsa_fixed_ecdh",
    66: "ecdsa_fixed_ecdh",
}

_TABLES = {
    "content_type": CONTENT_TYPES,
    "handshake": HANDSHAKE_TYPES,
    "alert": ALERT_DESCRIPTIONS,
    "alert_level": ALERT_LEVELS,
    "cipher": CIPHER_SUITES,
    "extension": EXTENSIONS,
    "group": GROUPS,
    "signature": SIGNATURE_SCHEMES,
    "version": VERSIONS,
    "cert_type": CLIENT_CERTIFICATE_TYPES,
}


def name_of(kind: str, value: int) -> str:
    """Name of `value` in the registry `kind`, or `unknown(0x..)` when the registry lacks it."""
    name = _TABLES[kind].get(value)
    if name is not None:
        return name
    if kind == "version" and value & 0x0F0F == 0x0A0A:
        return f"GREASE(0x{value:04x})"
    if kind == "version" and is_tls13(value):
        return _TLS13_VARIANTS.get(value) or f"TLS 1.3 (draft {value & 0xFF})"
    return f"unknown(0x{value:04x})" if value > 0xFF else f"unknown({value})"


# -- TLS 1.3 before RFC 8446 -------------------------------------------------------------------
#
# Stacks deployed TLS 1.3 drafts before the RFC: 0x7fNN is draft NN (draft-ietf-tls-tls13-NN,
# section 4.2.1 of each), named as Wireshark names them ("TLS 1.3 (draft 23)"). Facebook's fizz
# sent 0xfb17 and 0xfb1a for its builds of drafts 23 and 26 (Wireshark's packet-tls-utils.c
# reads both as TLS 1.3 drafts), and BoringSSL's 2017 field trials in Chrome 0x7e01-0x7e03
# (its ssl_versions.cc: TLS1_3_EXPERIMENT_VERSION, ..._EXPERIMENT2/3; Wireshark does not know
# those). All are TLS 1.3 to an observer: encrypted after the ServerHello, the same messages.

_TLS13_VARIANTS = {
    0xFB17: "TLS 1.3 (Facebook draft 23)",
    0xFB1A: "TLS 1.3 (Facebook draft 26)",
    0x7E01: "TLS 1.3 (Google experiment 1)",
    0x7E02: "TLS 1.3 (Google experiment 2)",
    0x7E03: "TLS 1.3 (Google experiment 3)",
}
_TLS13_VARIANT_DRAFTS = {0xFB17: 23, 0xFB1A: 26}


def is_tls13(version: int) -> bool:
    """TLS 1.3: the RFC's 0x0304, a draft (0x7fNN) or one of the stacks' variants above."""
    return version == 0x0304 or version >> 8 == 0x7F or version in _TLS13_VARIANTS


def tls13_draft(version: int) -> int | None:
    """The draft number of a TLS 1.3 draft version (0x7f17 -> 23, 0xfb1a -> 26); 0 for the
    RFC's TLS 1.3 and for any other version; None for a variant whose draft is not known
    (the 0x7e0N experiments)."""
    if version >> 8 == 0x7F:
        return version & 0xFF
    if version in _TLS13_VARIANTS:
        return _TLS13_VARIANT_DRAFTS.get(version)
    return 0


def version_rank(version: int) -> tuple[int, int]:
    """A sort key that puts versions in the order of their age: a TLS 1.3 draft or variant
    after TLS 1.2 and before the RFC's TLS 1.3 (0x7f1c is not "higher" than 0x0304)."""
    if version != 0x0304 and is_tls13(version):
        return (0x0304, (tls13_draft(version) or 0) - 0x100)
    return (version, 0)


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values (0x0a0a, 0x1a1a, ... 0xfafa)."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF
