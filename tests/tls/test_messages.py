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
