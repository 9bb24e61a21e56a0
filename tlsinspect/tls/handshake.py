"""Cuts plaintext handshake records into whole handshake messages (RFC 8446 section 5.1).

A message may span several records and a record may hold several messages; the assembler keeps
the bytes of at most one unfinished message, capped at MAX_MESSAGE: a header claiming more
(legal, up to 2^24-1) raises MessageTooLarge at once, before any of that message is kept, so
the memory a direction holds stays below the cap whatever its peer claims.
"""

from __future__ import annotations

from ..errors import MessageTooLarge

MAX_MESSAGE = 1 << 20  # a certificate chain of 1 MiB is already absurd


class HandshakeAssembler:
    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message waiting for the next record."""
        return len(self.buf)

    def feed(self, payload: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf += payload
        out = []
        pos = 0
        while len(buf) - pos >= 4:
            length = (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
            if length > MAX_MESSAGE:
                msg_type, seen = buf[pos], len(buf) - pos
                self.buf = bytearray()
                raise MessageTooLarge(msg_type, length, MAX_MESSAGE, seen)
            if len(buf) - pos < 4 + length:
                break
            out.append((buf[pos], bytes(buf[pos + 4 : pos + 4 + length])))
            pos += 4 + length
        if pos:
            del buf[:pos]
        return out
