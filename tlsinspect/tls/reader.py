"""A bounds-checked cursor over a complete message body.

Used only on bodies whose total length is already known and present, so running past the end
means the bytes are malformed: that raises DecodeError (never an IndexError or struct.error).
"""

from __future__ import annotations

import struct

from ..errors import DecodeError


class Reader:
    __slots__ = ("_buf", "_pos", "_end", "_what")

    def __init__(self, buf: bytes, what: str = "message", start: int = 0, end: int | None = None):
        self._buf = buf
        self._pos = start
        self._end = len(buf) if end is None else end
        self._what = what

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def _take(self, n: int, field: str) -> int:
        pos = self._pos
        if n < 0 or pos + n > self._end:
            raise DecodeError(
                f"{self._what}: {field} needs {n} bytes at offset {pos}, "
                f"only {self._end - pos} left"
            )
        self._pos = pos + n
        return pos

    def u8(self, field: str = "u8") -> int:
        return self._buf[self._take(1, field)]

    def u16(self, field: str = "u16") -> int:
        p = self._take(2, field)
        return (self._buf[p] << 8) | self._buf[p + 1]

    def u24(self, field: str = "u24") -> int:
        p = self._take(3, field)
        b = self._buf
        return (b[p] << 16) | (b[p + 1] << 8) | b[p + 2]

    def u32(self, field: str = "u32") -> int:
        p = self._take(4, field)
        return int.from_bytes(self._buf[p : p + 4], "big")

    def raw(self, n: int, field: str = "bytes") -> bytes:
        p = self._take(n, field)
        return bytes(self._buf[p : p + n])

    def vec8(self, field: str = "vector") -> bytes:
        return self.raw(self.u8(field), field)

    def vec16(self, field: str = "vector") -> bytes:
        return self.raw(self.u16(field), field)

    def vec24(self, field: str = "vector") -> bytes:
        return self.raw(self.u24(field), field)

    def sub(self, n: int, field: str) -> Reader:
        """A reader over the next n bytes, which this reader skips."""
        p = self._take(n, field)
        return Reader(self._buf, f"{self._what}/{field}", p, p + n)

    def sub8(self, field: str) -> Reader:
        return self.sub(self.u8(field), field)

    def sub16(self, field: str) -> Reader:
        return self.sub(self.u16(field), field)

    def sub24(self, field: str) -> Reader:
        return self.sub(self.u24(field), field)

    def u16_list(self, field: str) -> tuple[int, ...]:
        """The rest of this reader as u16 values (a sub-reader over a u16 vector)."""
        n = self.remaining
        if n % 2:
            raise DecodeError(f"{self._what}: {field} has an odd length {n}")
        p = self._take(n, field)
        return struct.unpack_from(f">{n // 2}H", self._buf, p)

    def tlv16_list(self, field: str) -> tuple[tuple[int, bytes], ...]:
        """The rest of this reader as (u16 type, vec16 data) pairs, as hello extensions are."""
        buf, pos, end = self._buf, self._pos, self._end
        out = []
        while pos < end:
            if pos + 4 > end:
                raise DecodeError(f"{self._what}: {field}: {end - pos} bytes left, need 4")
            n = (buf[pos + 2] << 8) | buf[pos + 3]
            start = pos + 4
            pos = start + n
            if pos > end:
                raise DecodeError(
                    f"{self._what}: {field} {(buf[start - 4] << 8) | buf[start - 3]} needs "
                    f"{n} bytes at offset {start}, only {end - start} left"
                )
            out.append(((buf[start - 4] << 8) | buf[start - 3], bytes(buf[start:pos])))
        self._pos = end
        return tuple(out)

    def rest(self) -> bytes:
        return self.raw(self.remaining, "rest")

    def expect_end(self, what: str | None = None) -> None:
        if self._pos != self._end:
            raise DecodeError(
                f"{what or self._what}: {self._end - self._pos} unexpected bytes at the end"
            )
