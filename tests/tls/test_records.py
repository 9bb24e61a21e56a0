"""RecordLayer: detection by content, records spanning feeds, caps, SSLv2 hello."""

import pytest

from tlsinspect.tls.records import DONE, MAX_RECORD, RECORDS, SCAN_LIMIT, SSLV2_HELLO, RecordLayer


def record(ct: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes([ct]) + version.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload


def hello(msg_type: int = 1, size: int = 60) -> bytes:
    body = b"\x03\x03" + b"\x11" * (size - 2)
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def test_records_split_anywhere_are_reassembled():
    stream = record(22, hello()) + record(20, b"\x01") + record(23, b"x" * 100)
    for cut in range(len(stream) + 1):
        rl = RecordLayer()
        out = rl.feed(stream[:cut]) + rl.feed(stream[cut:])
        assert [(ct, len(p)) for ct, _, p in out] == [(22, 64), (20, 1), (23, 100)]
        assert rl.state == RECORDS and rl.start == 0


def test_many_records_in_one_feed_one_byte_at_a_time():
    stream = b"".join(record(22, hello()) for _ in range(3))
    rl = RecordLayer()
    out = []
    for i in range(len(stream)):
        out += rl.feed(stream[i : i + 1])
    assert len(out) == 3


@pytest.mark.parametrize(
    "preamble",
    [
        b"220 mail.example ESMTP\r\n250-STARTTLS\r\n220 Ready to start TLS\r\n",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2fS",  # PostgreSQL SSLRequest + 'S'
        b"\x16\x03\x03garbage that looks like a start" * 3,
    ],
)
def test_tls_after_a_plaintext_preamble(preamble):
    rl = RecordLayer()
    out = rl.feed(preamble[:7]) + rl.feed(preamble[7:] + record(22, hello()))
    assert rl.start == len(preamble)
    assert rl.preamble == preamble[:256]
    assert [ct for ct, _, _ in out] == [22]


def test_gives_up_after_the_scan_limit():
    rl = RecordLayer()
    for _ in range(SCAN_LIMIT // 1000 + 2):
        assert rl.feed(b"GET / HTTP/1.1\r\n" * 62 + b"12345678") == []
    assert rl.state == DONE


def test_record_too_long_ends_the_layer():
    rl = RecordLayer()
    rl.feed(record(22, hello()))
    assert rl.feed(b"\x17\x03\x03" + (MAX_RECORD + 1).to_bytes(2, "big")) == []
    assert rl.state == DONE and "exceeds" in rl.error


def test_garbage_after_tls_keeps_the_records_before_it():
    rl = RecordLayer()
    out = rl.feed(record(22, hello()) + record(23, b"x" * 10) + b"HTTP/1.1 200 OK\r\n")
    assert [ct for ct, _, _ in out] == [22, 23]
    assert rl.state == DONE and "not a TLS record at stream offset 84" in rl.error
    assert rl.feed(record(23, b"more")) == []


def test_sslv2_compatible_client_hello():
    body = bytes([1, 3, 1, 0, 9, 0, 0, 0, 16]) + bytes([0, 0, 0x2F, 0, 0, 0x35, 1, 0, 0x80])
    body += b"c" * 16
    rl = RecordLayer()
    out = rl.feed(bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body)
    assert out == [(SSLV2_HELLO, 2, body)]


def test_alert_answering_a_hello_is_detected_only_when_allowed():
    rl = RecordLayer()
    rl.feed(record(21, b"\x02\x28"))
    assert rl.state != RECORDS
    rl = RecordLayer()
    rl.accept_alert = True
    assert rl.feed(record(21, b"\x02\x28")) == [(21, 0x0303, b"\x02\x28")]


def test_midstream_application_data_needs_two_chained_headers():
    two = record(23, b"a" * 40) + record(23, b"b" * 30)
    rl = RecordLayer(midstream=True)
    assert rl.feed(two[:47]) == []
    assert len(rl.feed(two[47:])) == 2
    rl = RecordLayer(midstream=True)
    rl.feed(record(23, b"a" * 40) + b"not a record")
    assert rl.state != RECORDS
    rl = RecordLayer(midstream=False)
    rl.feed(two)
    assert rl.state != RECORDS


@pytest.mark.parametrize("claim", [0x10000, 70_000, (1 << 24) - 1])
@pytest.mark.parametrize("preamble", [b"", b"220 mail.example ESMTP\r\n"])
def test_a_hello_claiming_more_than_64_kib_still_starts_tls(claim, preamble):
    """A handshake message may claim up to 2^24-1 bytes: a hello whose header claims more than
    64 KiB is TLS as well, at the start of a stream or after a preamble (what is then done with
    a message too large to read is the handshake assembler's business)."""
    body = hello()[4:]
    first = record(22, bytes([1]) + claim.to_bytes(3, "big") + body)
    rl = RecordLayer()
    out = rl.feed(preamble + first)
    assert rl.state == RECORDS and rl.start == len(preamble)
    assert [(ct, p[:4]) for ct, _, p in out] == [(22, bytes([1]) + claim.to_bytes(3, "big"))]
