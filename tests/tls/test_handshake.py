import pytest

from tlsinspect.errors import DecodeError, MessageTooLarge
from tlsinspect.tls.handshake import MAX_MESSAGE, HandshakeAssembler


def msg(t: int, body: bytes) -> bytes:
    return bytes([t]) + len(body).to_bytes(3, "big") + body


def test_messages_spanning_records_and_several_per_record():
    stream = msg(2, b"s" * 70) + msg(11, b"c" * 3000) + msg(14, b"")
    for step in (1, 5, 100, 4096):
        asm = HandshakeAssembler()
        out = []
        for i in range(0, len(stream), step):
            out += asm.feed(stream[i : i + step])
        assert [(t, len(b)) for t, b in out] == [(2, 70), (11, 3000), (14, 0)]
        assert asm.pending == 0


def test_oversized_message_is_refused():
    with pytest.raises(DecodeError):
        HandshakeAssembler().feed(bytes([11]) + (MAX_MESSAGE + 1).to_bytes(3, "big"))


def test_a_message_over_the_limit_is_refused_at_its_header_and_nothing_kept():
    """A header claiming 2^24-1 bytes (legal) is refused as soon as it is complete, with what it
    claims and how much of it was there; none of it is kept."""
    asm = HandshakeAssembler()
    assert asm.feed(bytes([1, 0xFF])) == []
    with pytest.raises(MessageTooLarge) as exc:
        asm.feed(b"\xff\xff" + b"x" * 500)
    assert (exc.value.msg_type, exc.value.length, exc.value.seen) == (1, (1 << 24) - 1, 504)
    assert exc.value.limit == MAX_MESSAGE and isinstance(exc.value, DecodeError)
    assert asm.pending == 0
