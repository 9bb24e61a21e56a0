"""Parsers of single handshake messages, on bodies built field by field from the RFCs."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsinspect.errors import DecodeError
from tlsinspect.tls import messages as m


def v8(b: bytes) -> bytes:
    return len(b).to_bytes(1, "big") + b


def v16(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def v24(b: bytes) -> bytes:
    return len(b).to_bytes(3, "big") + b


def ext(t: int, data: bytes) -> bytes:
    return t.to_bytes(2, "big") + v16(data)


def client_hello(exts: bytes) -> bytes:
    return (
        b"\x03\x03"
        + b"R" * 32
        + v8(b"S" * 32)
        + v16(b"\x13\x01\xc0\x2f\x0a\x0a")
        + v8(b"\x00")
        + v16(exts)
    )


def test_client_hello_with_sni_alpn_versions_ticket():
    exts = (
        ext(0, v16(b"\x00" + v16(b"svc.example.test")))
        + ext(16, v16(v8(b"h2") + v8(b"http/1.1")))
        + ext(43, v8(b"\x0a\x0a\x03\x04\x03\x03"))
        + ext(35, b"TICKET")
        + ext(49, b"")
        + ext(0x1234, b"unknown")
    )
    ch = m.parse_client_hello(client_hello(exts))
    assert ch.server_name == "svc.example.test"
    assert ch.alpn == ("h2", "http/1.1")
    assert ch.supported_versions == (0x0A0A, 0x0304, 0x0303)
    assert ch.max_version == 0x0304
    assert ch.cipher_suites == (0x1301, 0xC02F, 0x0A0A)
    assert ch.session_ticket == b"TICKET"
    assert ch.post_handshake_auth and not ch.psk_offered
    assert (0x1234, b"unknown") in ch.extensions


def test_client_hello_without_extensions():
    body = b"\x03\x01" + b"R" * 32 + v8(b"") + v16(b"\x00\x2f") + v8(b"\x00")
    ch = m.parse_client_hello(body)
    assert ch.extensions == () and ch.max_version == 0x0301


def test_server_hello_tls13_and_hello_retry_request():
    sh = m.parse_server_hello(
        b"\x03\x03" + b"r" * 32 + v8(b"") + b"\x13\x02\x00" + v16(ext(43, b"\x03\x04"))
    )
    assert sh.selected_version == 0x0304 and sh.cipher_suite == 0x1302 and not sh.retry_request
    hrr = m.parse_server_hello(
        b"\x03\x03" + m.HRR_RANDOM + v8(b"") + b"\x13\x01\x00" + v16(ext(43, b"\x03\x04"))
    )
    assert hrr.retry_request


def test_certificate_tls12_and_tls13_forms():
    c12 = m.parse_certificate(v24(v24(b"leaf") + v24(b"inter")), tls13=False)
    assert c12.entries == (b"leaf", b"inter")
    assert m.parse_certificate(v24(b""), tls13=False).entries == ()
    c13 = m.parse_certificate(v8(b"ctx") + v24(v24(b"leaf") + v16(b"")), tls13=True)
    assert c13.entries == (b"leaf",) and c13.context == b"ctx"


def test_certificate_request_tls12_tls10_tls13():
    dn = b"\x30\x00"
    tls12 = m.parse_certificate_request(
        v8(b"\x01\x40") + v16(b"\x04\x01\x08\x04") + v16(v16(dn)), tls13=False
    )
    assert tls12.cert_types == (1, 64) and tls12.sig_algs == (0x0401, 0x0804)
    assert tls12.ca_names == (dn,)
    tls10 = m.parse_certificate_request(v8(b"\x01") + v16(v16(dn) + v16(dn)), tls13=False)
    assert tls10.sig_algs == () and tls10.ca_names == (dn, dn)
    tls13 = m.parse_certificate_request(
        v8(b"") + v16(ext(13, v16(b"\x08\x04")) + ext(47, v16(v16(dn)))), tls13=True
    )
    assert tls13.sig_algs == (0x0804,) and tls13.ca_names == (dn,)


def test_certificate_verify_with_and_without_scheme():
    assert m.parse_certificate_verify(b"\x08\x04" + v16(b"s" * 256), 0x0303) == m.CertificateVerify(
        0x0804, 256
    )
    assert m.parse_certificate_verify(v16(b"s" * 128), 0x0301) == m.CertificateVerify(None, 128)


@pytest.mark.parametrize(
    "body",
    [b"", b"\x03\x03", client_hello(b"")[:-1], client_hello(ext(0, b"\x00\x05abc")) + b"x"],
)
def test_malformed_client_hello_is_a_decode_error(body):
    with pytest.raises(DecodeError):
        m.parse_client_hello(body)


@given(st.integers(0, 30), st.binary(max_size=300))
def test_any_bytes_give_a_message_or_a_decode_error(msg_type, body):
    try:
        out = m.parse_handshake(msg_type, body, 0x0303)
    except DecodeError:
        return
    assert out.msg_type == msg_type


# -- TLS 1.3 drafts: the ServerHello layouts and the version names --------------------------------


def _draft21_server_hello(version: int) -> bytes:
    """A ServerHello as drafts up to 21 wrote it: version, random, cipher_suite, extensions
    (here a key_share with an X25519 share), no session ID, no compression method."""
    share = b"\x00\x1d\x00\x20" + bytes(range(32))
    exts = b"\x00\x33" + len(share).to_bytes(2, "big") + share
    return (
        version.to_bytes(2, "big")
        + b"\x11" * 32
        + b"\x13\x01"
        + len(exts).to_bytes(2, "big")
        + exts
    )


def test_server_hello_of_draft_21_has_no_session_id():
    from tlsinspect.tls.messages import parse_server_hello

    sh = parse_server_hello(_draft21_server_hello(0x7F15))
    assert (sh.legacy_version, sh.selected_version) == (0x7F15, 0x7F15)
    assert (sh.session_id, sh.cipher_suite, sh.compression_method) == (b"", 0x1301, 0)
    assert [t for t, _ in sh.extensions] == [0x33]


def test_server_hello_of_draft_23_is_the_final_layout():
    from tlsinspect.tls.messages import parse_server_hello

    exts = b"\x00\x2b\x00\x02\x7f\x17"
    body = b"\x03\x03" + b"\x22" * 32 + b"\x20" + b"\x33" * 32 + b"\x13\x02\x00"
    sh = parse_server_hello(body + len(exts).to_bytes(2, "big") + exts)
    assert (sh.legacy_version, sh.selected_version, sh.session_id) == (0x0303, 0x7F17, b"\x33" * 32)


def test_server_hello_of_an_experiment_is_read_in_either_layout():
    from tlsinspect.tls.messages import parse_server_hello

    assert parse_server_hello(_draft21_server_hello(0x7E01)).session_id == b""
    body = b"\x7e\x02" + b"\x22" * 32 + b"\x01\x09" + b"\x13\x01\x00" + b"\x00\x00"
    sh = parse_server_hello(body)
    assert (sh.session_id, sh.cipher_suite, sh.selected_version) == (b"\x09", 0x1301, 0x7E02)
    with pytest.raises(DecodeError):
        parse_server_hello(body + b"\x00")  # neither layout consumes it exactly


@pytest.mark.parametrize(
    "version,name",
    [
        (0x7F0E, "TLS 1.3 (draft 14)"),
        (0x7F17, "TLS 1.3 (draft 23)"),
        (0x7F1C, "TLS 1.3 (draft 28)"),
        (0xFB17, "TLS 1.3 (Facebook draft 23)"),
        (0xFB1A, "TLS 1.3 (Facebook draft 26)"),
        (0x7E01, "TLS 1.3 (Google experiment 1)"),
        (0x0304, "TLS 1.3"),
    ],
)
def test_tls13_versions_are_named_as_wireshark_names_them(version, name):
    from tlsinspect.tls import registry as reg

    assert reg.name_of("version", version) == name
    assert reg.is_tls13(version)
    assert not reg.is_tls13(0x0303) and not reg.is_tls13(0x7A7A)


def test_client_offering_the_rfc_and_drafts_offers_the_rfc_first():
    from tlsinspect.tls.messages import ClientHello

    hello = ClientHello(
        0x0303,
        b"\x00" * 32,
        b"",
        (),
        b"\x00",
        (),
        supported_versions=(0x7F1C, 0x0304, 0x7F17, 0x0303),
    )
    assert hello.max_version == 0x0304
    older = ClientHello(
        0x0303,
        b"\x00" * 32,
        b"",
        (),
        b"\x00",
        (),
        supported_versions=(0x7A7A, 0x7F17, 0x7F1C, 0x0303),
    )
    assert older.max_version == 0x7F1C
