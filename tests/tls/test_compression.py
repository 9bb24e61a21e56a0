"""Compressed TLS content: RFC 8879 CompressedCertificate and RFC 3749 DEFLATE records.

CompressedCertificate is also checked on recorded traffic (tests/e2e/test_compress.py); here are
its failure cases. No stack on this machine speaks TLS-level compression (OpenSSL 3.0 of Debian
is built without zlib: `openssl list -disabled` says ZLIB, `s_server -comp` is a no-op), so the
record inflater is tested with bytes compressed the way OpenSSL's COMP_zlib does (zlib's
deflateInit defaults, Z_SYNC_FLUSH after every record), and through a TLS 1.2 connection built
here: ClientHello and ServerHello with compression_method 1, then AES-GCM records holding
compressed Finished, application data and alert, keyed from a master secret.
"""

from __future__ import annotations

import zlib

import brotli
import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsinspect.errors import DecodeError
from tlsinspect.tls import messages as m
from tlsinspect.tls import registry as reg
from tlsinspect.tls.compression import (
    BROTLI,
    MAX_PLAINTEXT,
    MAX_UNCOMPRESSED,
    ZLIB,
    ZSTD,
    CompressedCertificate,
    RecordInflater,
    decompress_certificate,
    parse_compressed_certificate,
)
from tlsinspect.tls.connection import KeysMissing, MessageSeen, TlsConnection
from tlsinspect.tls.keylog import parse_keylog
from tlsinspect.tls.keyschedule import key_material, suite_for

CERT_A = b"\x30\x82\x01\x00" + bytes(range(256))  # DER-looking entries; only framing matters
CERT_B = b"\x30\x81\x80" + bytes(128)


def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def certificate_body(entries: list[bytes], tls13: bool = True) -> bytes:
    chain = b"".join(_u24(len(e)) + e + (b"\x00\x00" if tls13 else b"") for e in entries)
    return (b"\x00" if tls13 else b"") + _u24(len(chain)) + chain


COMPRESS = {
    ZLIB: zlib.compress,
    BROTLI: brotli.compress,
    ZSTD: lambda data: zstandard.ZstdCompressor().compress(data),
}


def compressed(algorithm: int, inner: bytes, length: int | None = None) -> bytes:
    data = COMPRESS[algorithm](inner)
    n = len(inner) if length is None else length
    return algorithm.to_bytes(2, "big") + _u24(n) + _u24(len(data)) + data


@pytest.mark.parametrize("algorithm", [ZLIB, BROTLI, ZSTD])
def test_each_algorithm_gives_the_certificate_inside(algorithm: int) -> None:
    inner = certificate_body([CERT_A, CERT_B])
    msg = parse_compressed_certificate(compressed(algorithm, inner), 0x0304)
    assert isinstance(msg, CompressedCertificate) and isinstance(msg, m.Certificate)
    assert msg.entries == (CERT_A, CERT_B)
    assert msg.msg_type == reg.COMPRESSED_CERTIFICATE == 25
    assert msg.algorithm == algorithm and msg.uncompressed_length == len(inner)
    assert reg.name_of("handshake", msg.msg_type) == "compressed_certificate"


def test_an_empty_chain_compressed() -> None:
    msg = parse_compressed_certificate(compressed(ZLIB, certificate_body([])), 0x0304)
    assert msg.entries == ()


@pytest.mark.parametrize("algorithm", [ZLIB, BROTLI, ZSTD])
def test_the_real_length_must_equal_uncompressed_length(algorithm: int) -> None:
    inner = certificate_body([CERT_A])
    for wrong in (len(inner) - 1, len(inner) + 1):
        with pytest.raises(DecodeError, match="uncompressed_length says"):
            parse_compressed_certificate(compressed(algorithm, inner, wrong), 0x0304)


def test_uncompressed_length_over_the_limit_is_refused_before_inflating() -> None:
    # a zlib bomb: 16 MiB of zeros in 16 KiB; refused from its header alone
    bomb = zlib.compress(bytes(1 << 24 - 1), 9)
    body = b"\x00\x01" + _u24((1 << 24) - 1) + _u24(len(bomb)) + bomb
    with pytest.raises(DecodeError, match="exceeds the limit"):
        parse_compressed_certificate(body, 0x0304)
    assert MAX_UNCOMPRESSED <= 1 << 24


@pytest.mark.parametrize("algorithm", [ZLIB, BROTLI, ZSTD])
def test_output_past_the_stated_length_is_not_inflated_further(algorithm: int) -> None:
    # says 100 bytes, holds 1 MiB: at most 101 bytes are produced before it is refused
    data = COMPRESS[algorithm](bytes(1 << 20))
    with pytest.raises(DecodeError, match="more than"):
        decompress_certificate(algorithm, 100, data)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\x00\x04" + _u24(4) + _u24(1) + b"x", "unknown compression algorithm 4"),
        (b"\x00\x01" + _u24(4) + _u24(0), "empty compressed_certificate_message"),
        (b"\x00\x01" + _u24(4) + _u24(5) + b"junk!", "does not decompress"),
        (b"\x00\x02" + _u24(4) + _u24(5) + b"junk!", "brotli data (does not|ends)"),
        (b"\x00\x03" + _u24(4) + _u24(5) + b"junk!", "does not decompress"),
        (b"\x00\x01" + _u24(4) + _u24(9), "CompressedCertificate"),  # vector past the end
        (compressed(ZLIB, b"\x00\x00\x00\x00")[:-2], "CompressedCertificate"),
        (compressed(ZLIB, b"\x00\x00\x00\x00") + b"\x00", "CompressedCertificate"),  # trailing
    ],
)
def test_malformed_compressed_certificates(body: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        parse_compressed_certificate(body, 0x0304)


def test_a_stream_cut_short_is_refused() -> None:
    data = zlib.compress(certificate_body([CERT_A]))
    with pytest.raises(DecodeError, match="ends before its stream"):
        decompress_certificate(ZLIB, len(certificate_body([CERT_A])), data[: len(data) // 2])


def test_decompressed_bytes_that_are_no_certificate() -> None:
    with pytest.raises(DecodeError):
        parse_compressed_certificate(compressed(ZSTD, b"\x00\x00\x00\x09abc"), 0x0304)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=200), tail=st.binary(max_size=40))
def test_fuzzed_bodies_give_a_value_or_decode_error(cut: int, tail: bytes) -> None:
    body = compressed(BROTLI, certificate_body([CERT_A, CERT_B]))
    data = body[:cut] + tail
    try:
        parse_compressed_certificate(data, 0x0304)
    except DecodeError:
        pass


# -- RFC 3749 DEFLATE records ------------------------------------------------------------------


def deflate_records(chunks: list[bytes], wbits: int = 15) -> list[bytes]:
    """One persistent stream, flushed at each record's end: OpenSSL's COMP_zlib (deflateInit
    with Z_DEFAULT_COMPRESSION, then deflate(Z_SYNC_FLUSH) per record)."""
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, wbits)
    return [c.compress(chunk) + c.flush(zlib.Z_SYNC_FLUSH) for chunk in chunks]


@pytest.mark.parametrize("wbits", [15, -15])  # zlib stream as OpenSSL sends it, or raw DEFLATE
def test_records_inflate_in_order_on_one_stream(wbits: int) -> None:
    chunks = [b"\x14\x00\x00\x0c" + bytes(12), b"GET / HTTP/1.1\r\n" * 20, b"GET / HTTP/1.1\r\n"]
    records = deflate_records(chunks, wbits)
    assert len(records[2]) < len(chunks[2])  # the history makes the repeat short
    inflater = RecordInflater()
    assert [inflater.inflate(r) for r in records] == chunks


def test_a_record_inflating_past_2_14_is_refused() -> None:
    inflater = RecordInflater()
    with pytest.raises(DecodeError, match="more than 2"):
        inflater.inflate(deflate_records([bytes(MAX_PLAINTEXT + 1)])[0])
    assert RecordInflater().inflate(deflate_records([bytes(MAX_PLAINTEXT)])[0]) == bytes(
        MAX_PLAINTEXT
    )


def test_a_record_out_of_the_stream_is_refused() -> None:
    records = deflate_records([b"one" * 50, b"two" * 50])
    inflater = RecordInflater()
    with pytest.raises(DecodeError, match="does not inflate"):
        # a zlib header, then a block of the reserved type 3 (first byte 0xff): never valid
        inflater.inflate(b"\x78\x9c" + b"\xff" * 7)
    inflater = RecordInflater()
    inflater.inflate(records[0])
    with pytest.raises(DecodeError, match="does not inflate"):
        inflater.inflate(b"\xff" * 8)


# -- a TLS 1.2 connection with DEFLATE, decrypted --------------------------------------------

SUITE = 0xC02F  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
CLIENT_RANDOM = bytes(range(32))
SERVER_RANDOM = bytes(range(32, 64))
MASTER = bytes(range(100, 148))


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + _u24(len(body)) + body


def _record(ct: int, payload: bytes) -> bytes:
    return bytes([ct]) + b"\x03\x03" + len(payload).to_bytes(2, "big") + payload


def _hellos(compression: int) -> tuple[bytes, bytes]:
    ch = b"\x03\x03" + CLIENT_RANDOM + b"\x00" + b"\x00\x02" + SUITE.to_bytes(2, "big")
    ch += b"\x02\x01\x00" + b"\x00\x00"  # compression_methods DEFLATE, null; no extensions
    sh = b"\x03\x03" + SERVER_RANDOM + b"\x00" + SUITE.to_bytes(2, "big") + bytes([compression])
    sh += b"\x00\x00"
    return (
        _record(reg.HANDSHAKE, _handshake(reg.CLIENT_HELLO, ch)),
        _record(reg.HANDSHAKE, _handshake(reg.SERVER_HELLO, sh)),
    )


class _Sender:
    """One direction's record protection, as RFC 5288 and RFC 3749 have the sender do it."""

    def __init__(self, is_client: bool, compress: bool) -> None:
        km = key_material(suite_for(SUITE), 0x0303, MASTER, CLIENT_RANDOM, SERVER_RANDOM, is_client)
        self.aead, self.salt, self.seq = AESGCM(km.key), km.iv, 0
        self.deflate = zlib.compressobj() if compress else None

    def record(self, ct: int, plain: bytes) -> bytes:
        if self.deflate is not None:
            plain = self.deflate.compress(plain) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        explicit = self.seq.to_bytes(8, "big")
        aad = explicit + bytes([ct]) + b"\x03\x03" + len(plain).to_bytes(2, "big")
        self.seq += 1
        return _record(ct, explicit + self.aead.encrypt(self.salt + explicit, plain, aad))


def _session(compression: int, compress: bool) -> list[object]:
    keys = parse_keylog(f"CLIENT_RANDOM {CLIENT_RANDOM.hex()} {MASTER.hex()}\n")
    conn = TlsConnection(keys=keys)
    client, server = _Sender(True, compress), _Sender(False, compress)
    ch, sh = _hellos(compression)
    ccs = _record(reg.CHANGE_CIPHER_SPEC, b"\x01")
    finished = _handshake(reg.FINISHED, bytes(12))
    events = conn.receive(0, ch, 1)
    events += conn.receive(1, sh, 2)
    events += conn.receive(0, ccs + client.record(reg.HANDSHAKE, finished), 3)
    events += conn.receive(1, ccs + server.record(reg.HANDSHAKE, finished), 4)
    events += conn.receive(0, client.record(reg.APPLICATION_DATA, b"ping\n" * 30), 5)
    events += conn.receive(1, server.record(reg.ALERT, b"\x02\x2a"), 6)
    return events


def test_a_compressed_tls12_session_is_inflated_after_decryption() -> None:
    events = _session(compression=1, compress=True)
    assert not [e for e in events if isinstance(e, KeysMissing)]
    seen = [(e.side, e.msg) for e in events if isinstance(e, MessageSeen) and e.decrypted]
    app = [e.msg for e in events if isinstance(e, MessageSeen)][-2]
    assert isinstance(app, m.EncryptedRecord)
    assert seen == [
        (0, m.Finished(12)),
        (1, m.Finished(12)),
        (0, m.EncryptedRecord(reg.APPLICATION_DATA, app.length)),
        (1, m.Alert(2, 42)),
    ]


def test_without_compression_negotiated_nothing_is_inflated() -> None:
    # the ClientHello offered DEFLATE, the ServerHello chose null: plaintext as it is
    events = _session(compression=0, compress=False)
    assert not [e for e in events if isinstance(e, KeysMissing)]
    assert any(isinstance(e, MessageSeen) and e.msg == m.Alert(2, 42) for e in events)


def test_compressed_records_read_as_uncompressed_would_be_garbled() -> None:
    # what tlsinspect did before it inflated: a Finished of the wrong size, no alert
    events = _session(compression=1, compress=True)
    plain = _session(compression=0, compress=True)
    assert [e.msg for e in events if isinstance(e, MessageSeen)][-1] == m.Alert(2, 42)
    assert m.Alert(2, 42) not in [e.msg for e in plain if isinstance(e, MessageSeen)]
