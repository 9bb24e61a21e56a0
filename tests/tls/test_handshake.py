import pytest

from tlsinspect.errors import DecodeError
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
