"""Parsers of single handshake messages: on bodies built field by field from the RFCs, and on
the real messages of tests/tls/fixtures, against tshark's dissection of the same bytes."""

import pytest
from helpers import (
    FIXTURES,
    OWN,
    fixture_bytes,
    fixture_message,
    fixture_table,
    tshark_handshakes,
)
from hypothesis import given
from hypothesis import strategies as st

from tlsinspect.errors import DecodeError
from tlsinspect.tls import messages as m
from tlsinspect.tls.compression import CompressedCertificate, parse_compressed_certificate


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


# -- real messages: the fixtures cut from the recorded captures (tests/tls/fixtures) ------------

# RFC 8446 section 4.1.3: the random of a HelloRetryRequest, SHA-256 of "HelloRetryRequest"
RFC8446_HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
FIXTURE_NAMES = sorted(fixture_table())


def _ints(values: list[str], base: int = 10) -> list[int]:
    return [int(v, base) for v in values]


def _extensions(d) -> list[tuple[int, int]]:
    return list(
        zip(
            _ints(d.get("tls.handshake.extension.type")),
            _ints(d.get("tls.handshake.extension.len")),
            strict=True,
        )
    )


def _first(values: list[str], default: object = None) -> object:
    return values[0] if values else default


def tshark_view(d, version: int) -> dict[str, object]:
    """The fields of a message as tshark dissected it, named as tlsinspect names them."""
    t = d.msg_type
    length = int(d.one("tls.handshake.length"))
    if t == 1:
        exts = _extensions(d)
        ticket = [n for typ, n in exts if typ == 35]
        return {
            "legacy_version": int(d.one("tls.handshake.version"), 16),
            "random": d.one("tls.handshake.random"),
            "session_id": _first(d.get("tls.handshake.session_id"), ""),
            "cipher_suites": _ints(d.get("tls.handshake.ciphersuite"), 16),
            "compression_methods": _ints(d.get("tls.handshake.comp_method")),
            "extensions": exts,
            "server_name": _first(d.get("tls.handshake.extensions_server_name")),
            "alpn": d.get("tls.handshake.extensions_alpn_str"),
            "supported_versions": _ints(d.get("tls.handshake.extensions.supported_version"), 16),
            "session_ticket": ticket[0] if ticket and ticket[0] else None,
            "psk_identities": d.get("tls.handshake.extensions.psk.identity.identity"),
            "post_handshake_auth": any(typ == 49 for typ, _ in exts),
            "early_data": any(typ == 42 for typ, _ in exts),
        }
    if t == 2:
        exts = _extensions(d)
        legacy = int(d.one("tls.handshake.version"), 16)
        return {
            "legacy_version": legacy,
            "random": d.one("tls.handshake.random"),
            "session_id": _first(d.get("tls.handshake.session_id"), ""),
            "cipher_suite": int(d.one("tls.handshake.ciphersuite"), 16),
            "compression_method": int(d.one("tls.handshake.comp_method")),
            "extensions": exts,
            "selected_version": int(
                _first(d.get("tls.handshake.extensions.supported_version"), hex(legacy)), 16
            ),
            "retry_request": d.one("tls.handshake.random") == RFC8446_HRR_RANDOM,
            "psk_accepted": any(typ == 41 for typ, _ in exts),  # RFC 8446 4.2.11
        }
    if t in (11, 25):
        view: dict[str, object] = {
            "entries": d.get("tls.handshake.certificate"),
            "context": _first(d.get("tls.handshake.certificate_request_context"), ""),
            "entry_extensions": _ints(d.get("tls.handshake.extensions_length"))
            if version == 0x0304
            else [],
        }
        if t == 25:
            view["algorithm"] = int(d.one("tls.compress_certificate.algorithm"))
            view["uncompressed_length"] = int(d.one("tls.compress_certificate.uncompressed_length"))
            view["compressed_length"] = int(
                d.one("tls.compress_certificate.compressed_certificate_message.length")
            )
        return view
    if t == 13:
        return {
            "cert_types": _ints(d.get("tls.handshake.cert_type")),
            "sig_algs": _ints(d.get("tls.handshake.sig_hash_alg"), 16),
            "ca_names": _ints(d.get("tls.handshake.dname_len")),
            "context": _first(d.get("tls.handshake.certificate_request_context"), ""),
            "extensions": _extensions(d),
        }
    if t == 15:
        return {
            "scheme": int(d.one("tls.handshake.sig_hash_alg"), 16),
            "sig_len": int(d.one("tls.handshake.client_cert_vrfy.sig_len")),
        }
    if t == 4:
        return {
            "lifetime": int(d.one("tls.handshake.session_ticket_lifetime_hint")),
            "ticket": d.one("tls.handshake.session_ticket"),
        }
    if t == 20:
        return {"verify_data_len": length}
    return {"msg_type": t, "length": length}


def parsed_view(msg: object) -> dict[str, object]:
    """The same fields of tlsinspect's value."""
    if isinstance(msg, m.ClientHello):
        return {
            "legacy_version": msg.legacy_version,
            "random": msg.random.hex(),
            "session_id": msg.session_id.hex(),
            "cipher_suites": list(msg.cipher_suites),
            "compression_methods": list(msg.compression_methods),
            "extensions": [(t, len(data)) for t, data in msg.extensions],
            "server_name": msg.server_name,
            "alpn": list(msg.alpn),
            "supported_versions": list(msg.supported_versions),
            "session_ticket": len(msg.session_ticket) if msg.session_ticket else None,
            "psk_identities": [p.hex() for p in msg.psk_identities],
            "post_handshake_auth": msg.post_handshake_auth,
            "early_data": msg.early_data,
        }
    if isinstance(msg, m.ServerHello):
        return {
            "legacy_version": msg.legacy_version,
            "random": msg.random.hex(),
            "session_id": msg.session_id.hex(),
            "cipher_suite": msg.cipher_suite,
            "compression_method": msg.compression_method,
            "extensions": [(t, len(data)) for t, data in msg.extensions],
            "selected_version": msg.selected_version,
            "retry_request": msg.retry_request,
            "psk_accepted": msg.psk_accepted,
        }
    if isinstance(msg, m.Certificate):
        view: dict[str, object] = {
            "entries": [e.hex() for e in msg.entries],
            "context": msg.context.hex(),
            "entry_extensions": [sum(4 + len(data) for _, data in e) for e in msg.entry_extensions],
        }
        if isinstance(msg, CompressedCertificate):
            view["algorithm"] = msg.algorithm
            view["uncompressed_length"] = msg.uncompressed_length
            view["compressed_length"] = msg.compressed_length
        return view
    if isinstance(msg, m.CertificateRequest):
        return {
            "cert_types": list(msg.cert_types),
            "sig_algs": list(msg.sig_algs),
            "ca_names": [len(n) for n in msg.ca_names],
            "context": msg.context.hex(),
            "extensions": [(t, len(data)) for t, data in msg.extensions],
        }
    if isinstance(msg, m.CertificateVerify):
        return {"scheme": msg.scheme, "sig_len": msg.sig_len}
    if isinstance(msg, m.NewSessionTicket):
        return {"lifetime": msg.lifetime, "ticket": msg.ticket.hex()}
    if isinstance(msg, m.Finished):
        return {"verify_data_len": msg.verify_data_len}
    assert isinstance(msg, m.OtherHandshake), msg
    return {"msg_type": msg.msg_type, "length": msg.length}


def _dissected(tshark: str, name: str):
    f = fixture_table()[name]
    keylog = OWN / f.keylog if f.keylog else None
    found = [
        d
        for d in tshark_handshakes(tshark, OWN / f.capture, f.frame, [f.port], keylog)
        if d.msg_type == f.msg_type
    ]
    return found[f.nth]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_is_the_message_tshark_dissects_in_its_frame(tshark, name):
    raw = fixture_bytes(name)
    d = _dissected(tshark, name)
    assert raw == d.raw
    assert raw[0] == fixture_table()[name].msg_type
    assert int.from_bytes(raw[1:4], "big") == len(raw) - 4 == int(d.one("tls.handshake.length"))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_parses_to_what_tshark_dissects(tshark, name):
    msg = fixture_message(name)
    assert msg.msg_type == fixture_table()[name].msg_type or isinstance(msg, CompressedCertificate)
    assert parsed_view(msg) == tshark_view(_dissected(tshark, name), fixture_table()[name].version)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_body_is_consumed_whole(name):
    """A parser that reads fields stops exactly at the end of the body (a byte more is a
    decode error); Finished and the messages kept by type and size count every byte."""
    raw = fixture_bytes(name)
    f = fixture_table()[name]
    msg = fixture_message(name)
    if isinstance(msg, m.Finished):
        assert msg.verify_data_len == len(raw) - 4
    elif isinstance(msg, m.OtherHandshake):
        assert msg.length == len(raw) - 4
    else:
        with pytest.raises(DecodeError):
            if f.msg_type == 25:
                parse_compressed_certificate(raw[4:] + b"\x00", f.version)
            else:
                m.parse_handshake(f.msg_type, raw[4:] + b"\x00", f.version)


def test_fixtures_readme_names_each_file_with_its_capture_and_frame():
    readme = (FIXTURES / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in readme.splitlines()
        if line.startswith("| `")
    }
    assert sorted(rows) == sorted(p.name for p in FIXTURES.glob("*.bin"))
    for f in fixture_table().values():
        cells = [c.strip(" `") for c in rows[f.file].split("|")[1:-1]]
        assert cells[1:4] == [f.capture, str(f.port), str(f.frame)], cells
        assert cells[4].startswith(f"{f.msg_type} ")


def test_the_resuming_client_presents_the_ticket_it_was_issued(tshark):
    """RFC 5077 3.1: the ticket of the TLS 1.2 NewSessionTicket comes back in the next
    ClientHello's SessionTicket extension. RFC 8446 4.6.1, 4.2.11: a TLS 1.3 ticket comes back
    as a pre_shared_key identity; the session resumed on port 8438 got its tickets in frames 129
    and 131 (tshark decrypts them with the key log)."""
    issued = fixture_message("new_session_ticket_tls12")
    assert fixture_message("client_hello_tls12_ticket").session_ticket == issued.ticket
    ch = fixture_message("client_hello_tls13_psk")
    assert ch.psk_offered and len(ch.psk_identities) == 1
    tickets = [
        d.one("tls.handshake.session_ticket")
        for frame in (129, 131)
        for d in tshark_handshakes(
            tshark, OWN / "tls13.pcapng", frame, [8438], OWN / "tls13.keylog"
        )
        if d.msg_type == 4
    ]
    assert len(tickets) == 2 and ch.psk_identities[0].hex() in tickets


def test_a_client_that_offers_post_handshake_auth_and_the_later_request():
    """RFC 8446 4.6.2: a post-handshake CertificateRequest carries a non-empty context (the
    client's Certificate echoes it); one in the handshake has an empty one (4.3.2)."""
    assert fixture_message("client_hello_tls13_post_handshake_auth").post_handshake_auth
    assert not fixture_message("client_hello_tls13").post_handshake_auth
    assert fixture_message("certificate_request_tls13_post_handshake").context != b""
    assert fixture_message("certificate_request_tls13").context == b""


def test_server_key_exchange_names_its_ecdhe_curve():
    """The recorded ECDHE ServerKeyExchange names the curve tshark dissects there; a body that
    does not start with named_curve parameters (DHE: dh_p's length) names none."""
    ske = fixture_message("server_key_exchange_tls12")
    assert isinstance(ske, m.OtherHandshake) and ske.msg_type == 12
    assert ske.named_group == 0x001D  # x25519, as tls.handshake.server_named_curve says
    dhe = m.parse_handshake(12, v16(b"\x01" * 256) + v16(b"\x02") + v16(b"\x03" * 256), 0x0303)
    assert isinstance(dhe, m.OtherHandshake) and dhe.named_group is None
