"""TLS handshake messages as frozen values, and one `parse_<message>(body)` function for each.

One class covers a message's TLS 1.2 and TLS 1.3 forms (as tlslite does); the parser takes the
negotiated version where the wire format differs. Field names follow the RFCs. A body whose inner
lengths do not add up raises DecodeError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import DecodeError
from . import extensions as ext
from . import registry as reg
from .reader import Reader

# RFC 8446 section 4.1.3: a ServerHello with this random is a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


@dataclass(frozen=True, slots=True)
class ClientHello:
    msg_type: ClassVar[int] = reg.CLIENT_HELLO
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: ext.Extensions
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    supported_versions: tuple[int, ...] = ()
    session_ticket: bytes | None = None
    psk_offered: bool = False
    psk_identities: tuple[bytes, ...] = ()  # TLS 1.3 tickets offered for resumption
    early_data: bool = False
    post_handshake_auth: bool = False
    ech: bool = False
    sslv2: bool = False

    @property
    def max_version(self) -> int:
        real = [v for v in self.supported_versions if not reg.is_grease(v)]
        return max(real, key=reg.version_rank) if real else self.legacy_version


@dataclass(frozen=True, slots=True)
class ServerHello:
    msg_type: ClassVar[int] = reg.SERVER_HELLO
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: ext.Extensions
    selected_version: int
    retry_request: bool = False
    psk_accepted: bool = False


@dataclass(frozen=True, slots=True)
class Certificate:
    msg_type: ClassVar[int] = reg.CERTIFICATE
    entries: tuple[bytes, ...]
    context: bytes = b""
    entry_extensions: tuple[ext.Extensions, ...] = ()


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    msg_type: ClassVar[int] = reg.CERTIFICATE_REQUEST
    cert_types: tuple[int, ...]
    sig_algs: tuple[int, ...]
    ca_names: tuple[bytes, ...]
    context: bytes = b""
    extensions: ext.Extensions = ()


@dataclass(frozen=True, slots=True)
class CertificateVerify:
    msg_type: ClassVar[int] = reg.CERTIFICATE_VERIFY
    scheme: int | None
    sig_len: int


@dataclass(frozen=True, slots=True)
class NewSessionTicket:
    msg_type: ClassVar[int] = reg.NEW_SESSION_TICKET
    lifetime: int
    ticket: bytes


@dataclass(frozen=True, slots=True)
class Finished:
    msg_type: ClassVar[int] = reg.FINISHED
    verify_data_len: int


@dataclass(frozen=True, slots=True)
class OtherHandshake:
    """A handshake message whose content the report does not need (its type and size are kept,
    and for a ServerKeyExchange the named curve its ECDH parameters may name)."""

    msg_type: int
    length: int
    named_group: int | None = None  # ServerKeyExchange: ECParameters.named_curve (RFC 8422 5.4)


@dataclass(frozen=True, slots=True)
class Alert:
    level: int
    description: int

    @property
    def fatal(self) -> bool:
        return self.level == 2

    @property
    def name(self) -> str:
        return reg.name_of("alert", self.description)


@dataclass(frozen=True, slots=True)
class ChangeCipherSpec:
    pass


@dataclass(frozen=True, slots=True)
class EncryptedRecord:
    """A record the observer cannot read: content type on the wire and ciphertext length."""

    content_type: int
    length: int


HandshakeMessage = (
    ClientHello
    | ServerHello
    | Certificate
    | CertificateRequest
    | CertificateVerify
    | NewSessionTicket
    | Finished
    | OtherHandshake
)


def parse_client_hello(body: bytes) -> ClientHello:
    r = Reader(body, "ClientHello")
    legacy_version = r.u16("legacy_version")
    random = r.raw(32, "random")
    session_id = r.vec8("legacy_session_id")
    cipher_suites = r.sub16("cipher_suites").u16_list("cipher_suites")
    compression = r.vec8("legacy_compression_methods")
    exts = ext.parse_block(r)
    r.expect_end()
    return _client_hello(legacy_version, random, session_id, cipher_suites, compression, exts)


def _client_hello(
    legacy_version: int,
    random: bytes,
    session_id: bytes,
    cipher_suites: tuple[int, ...],
    compression: bytes,
    exts: ext.Extensions,
    sslv2: bool = False,
) -> ClientHello:
    sni = ext.find(exts, ext.SERVER_NAME)
    alpn = ext.find(exts, ext.ALPN)
    versions = ext.find(exts, ext.SUPPORTED_VERSIONS)
    ticket = ext.find(exts, ext.SESSION_TICKET)
    psk = ext.find(exts, ext.PRE_SHARED_KEY)
    return ClientHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=cipher_suites,
        compression_methods=compression,
        extensions=exts,
        server_name=ext.server_name(sni) if sni else None,
        alpn=ext.alpn(alpn) if alpn else (),
        supported_versions=ext.client_supported_versions(versions) if versions else (),
        session_ticket=ticket if ticket else None,
        psk_offered=psk is not None,
        psk_identities=ext.psk_identities(psk) if psk else (),
        early_data=ext.find(exts, ext.EARLY_DATA) is not None,
        post_handshake_auth=ext.find(exts, ext.POST_HANDSHAKE_AUTH) is not None,
        ech=ext.find(exts, ext.ENCRYPTED_CLIENT_HELLO) is not None,
        sslv2=sslv2,
    )


def parse_sslv2_client_hello(body: bytes) -> ClientHello:
    """The SSLv2-compatible ClientHello (RFC 5246 appendix E.2), body after the 2-byte length.

    Only 3-byte cipher specs whose first byte is 0 name TLS suites; the others are SSLv2 ones.
    """
    r = Reader(body, "SSLv2 ClientHello")
    if r.u8("msg_type") != 1:
        raise DecodeError("SSLv2 record is not a ClientHello")
    version = r.u16("version")
    spec_len = r.u16("cipher_spec_length")
    sid_len = r.u16("session_id_length")
    challenge_len = r.u16("challenge_length")
    if spec_len % 3:
        raise DecodeError(
            f"SSLv2 ClientHello: cipher_spec_length {spec_len} is not a multiple of 3"
        )
    specs = r.raw(spec_len, "cipher_specs")
    session_id = r.raw(sid_len, "session_id")
    challenge = r.raw(challenge_len, "challenge")
    suites = tuple(
        (specs[i + 1] << 8) | specs[i + 2] for i in range(0, spec_len, 3) if specs[i] == 0
    )
    random = challenge.rjust(32, b"\x00")[-32:]
    return _client_hello(version, random, session_id, suites, b"\x00", (), sslv2=True)


def parse_server_hello(body: bytes) -> ServerHello:
    """A ServerHello in the RFC's form, or in the form of TLS 1.3 drafts up to 21.

    Up to draft 21 the ServerHello was `version, random, cipher_suite, extensions`: no
    legacy_session_id_echo, no compression method, and the draft version in the version field
    itself (draft-ietf-tls-tls13-21 section 4.1.3). Draft 22 brought back the TLS 1.2 layout, with
    the version in supported_versions, for middlebox compatibility. A BoringSSL experiment
    version (0x7e0N) is read in whichever of the two forms its bytes fit.
    """
    r = Reader(body, "ServerHello")
    legacy_version = r.u16("legacy_version")
    draft = reg.tls13_draft(legacy_version)
    if draft is None:  # an experiment: the layout is not known from the version
        try:
            return _server_hello(body, early_draft=False)
        except DecodeError:
            return _server_hello(body, early_draft=True)
    return _server_hello(body, early_draft=0 < draft <= 21)


def _server_hello(body: bytes, early_draft: bool) -> ServerHello:
    r = Reader(body, "ServerHello")
    legacy_version = r.u16("legacy_version")
    random = r.raw(32, "random")
    if early_draft:
        session_id, cipher_suite, compression = b"", r.u16("cipher_suite"), 0
    else:
        session_id = r.vec8("legacy_session_id_echo")
        cipher_suite = r.u16("cipher_suite")
        compression = r.u8("legacy_compression_method")
    exts = ext.parse_block(r)
    r.expect_end()
    sv = ext.find(exts, ext.SUPPORTED_VERSIONS)
    return ServerHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suite=cipher_suite,
        compression_method=compression,
        extensions=exts,
        selected_version=ext.server_supported_version(sv) if sv else legacy_version,
        retry_request=random == HRR_RANDOM,
        psk_accepted=ext.find(exts, ext.PRE_SHARED_KEY) is not None,
    )


def parse_certificate(body: bytes, tls13: bool) -> Certificate:
    r = Reader(body, "Certificate")
    context = r.vec8("certificate_request_context") if tls13 else b""
    chain = r.sub24("certificate_list")
    r.expect_end()
    entries = []
    entry_exts = []
    while chain.remaining:
        entries.append(chain.vec24("cert_data"))
        if tls13:
            entry_exts.append(ext.parse_block(chain))
    return Certificate(tuple(entries), context, tuple(entry_exts))


def parse_certificate_request(body: bytes, tls13: bool) -> CertificateRequest:
    r = Reader(body, "CertificateRequest")
    if tls13:
        context = r.vec8("certificate_request_context")
        exts = ext.parse_block(r)
        r.expect_end()
        sig = ext.find(exts, ext.SIGNATURE_ALGORITHMS)
        cas = ext.find(exts, ext.CERTIFICATE_AUTHORITIES)
        return CertificateRequest(
            cert_types=(),
            sig_algs=ext.signature_algorithms(sig) if sig else (),
            ca_names=ext.certificate_authorities(cas) if cas else (),
            context=context,
            extensions=exts,
        )
    cert_types = tuple(r.vec8("certificate_types"))
    # TLS 1.0/1.1 have no signature_algorithms here; TLS 1.2 does. Decide by what is left:
    # a TLS 1.2 body holds a sig-alg vector followed by a DN vector that ends the body exactly.
    sig_algs: tuple[int, ...] = ()
    if r.remaining >= 4 and _has_sig_algs(body, len(body) - r.remaining):
        sig_algs = r.sub16("supported_signature_algorithms").u16_list("signature algorithms")
    ca_names = ext.distinguished_names(r)
    r.expect_end()
    return CertificateRequest(cert_types, sig_algs, ca_names)


def _has_sig_algs(body: bytes, pos: int) -> bool:
    n = int.from_bytes(body[pos : pos + 2], "big")
    after = pos + 2 + n
    if n % 2 or after + 2 > len(body):
        return False
    return after + 2 + int.from_bytes(body[after : after + 2], "big") == len(body)


def parse_certificate_verify(body: bytes, version: int) -> CertificateVerify:
    """TLS 1.2 and 1.3 put a signature scheme before the signature, older versions do not.
    When the version is unknown (the ServerHello was not seen), the lengths tell."""
    r = Reader(body, "CertificateVerify")
    if version:
        has_scheme = version >= 0x0303
    else:
        has_scheme = len(body) >= 4 and int.from_bytes(body[2:4], "big") == len(body) - 4
    scheme = r.u16("algorithm") if has_scheme else None
    sig = r.vec16("signature")
    r.expect_end()
    return CertificateVerify(scheme, len(sig))


def parse_new_session_ticket(body: bytes, tls13: bool) -> NewSessionTicket:
    r = Reader(body, "NewSessionTicket")
    lifetime = r.u32("ticket_lifetime")
    if tls13:
        r.u32("ticket_age_add")
        r.vec8("ticket_nonce")
    ticket = r.vec16("ticket")
    if tls13:
        ext.parse_block(r)
    r.expect_end()
    return NewSessionTicket(lifetime, ticket)


def parse_alert(payload: bytes) -> Alert:
    if len(payload) != 2:
        raise DecodeError(f"alert record of {len(payload)} bytes, expected 2")
    return Alert(payload[0], payload[1])


def parse_handshake(msg_type: int, body: bytes, version: int) -> HandshakeMessage:
    """Parse one plaintext handshake message; `version` is the negotiated one (0 before)."""
    tls13 = reg.is_tls13(version)
    if msg_type == reg.CLIENT_HELLO:
        return parse_client_hello(body)
    if msg_type == reg.SERVER_HELLO:
        return parse_server_hello(body)
    if msg_type == reg.CERTIFICATE:
        return parse_certificate(body, tls13)
    if msg_type == reg.CERTIFICATE_REQUEST:
        return parse_certificate_request(body, tls13)
    if msg_type == reg.CERTIFICATE_VERIFY:
        return parse_certificate_verify(body, version)
    if msg_type == reg.NEW_SESSION_TICKET:
        return parse_new_session_ticket(body, tls13)
    if msg_type == reg.FINISHED:
        return Finished(len(body))
    if msg_type == reg.SERVER_KEY_EXCHANGE and len(body) >= 3 and body[0] == 3:
        # curve_type named_curve (RFC 8422 5.4), then the group; meaningful only for the
        # (EC)DHE suites, whose ServerKeyExchange starts with ECParameters: the session checks
        return OtherHandshake(msg_type, len(body), int.from_bytes(body[1:3], "big"))
    return OtherHandshake(msg_type, len(body))


__all__ = [
    "Alert",
    "Certificate",
    "CertificateRequest",
    "CertificateVerify",
    "ChangeCipherSpec",
    "ClientHello",
    "EncryptedRecord",
    "Finished",
    "HandshakeMessage",
    "NewSessionTicket",
    "OtherHandshake",
    "ServerHello",
    "field",
    "parse_handshake",
]
