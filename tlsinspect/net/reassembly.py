"""One direction of a TCP connection, put back in sequence order (sans-IO).

`HalfStream.segment(seq, payload, syn, missing)` takes each captured segment and returns what
became deliverable, in stream order: `bytes` chunks and `Gap` markers. Retransmissions and
overlaps are trimmed (first copy wins, as most stacks do), out-of-order segments wait in a
bounded buffer, and when that buffer overflows or the stream ends with a hole, the hole is
reported as a `Gap`, never filled with zeros. Sequence numbers are compared modulo 2**32.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PENDING_SEGMENTS = 256
MAX_PENDING_BYTES = 1 << 20
_HALF = 1 << 31
_MASK = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Gap:
    """`length` bytes of the stream at `offset` (from the first byte seen) are not in the capture."""

    offset: int
    length: int


class HalfStream:
    __slots__ = ("next_seq", "base", "pending", "pending_bytes", "gap_bytes")

    def __init__(self) -> None:
        self.next_seq: int | None = None  # next expected sequence number
        self.base = 0  # sequence number of stream offset 0
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0
        self.gap_bytes = 0

    @property
    def offset(self) -> int:
        """Stream offset of the next byte expected."""
        return 0 if self.next_seq is None else (self.next_seq - self.base) & _MASK

    def syn(self, seq: int) -> None:
        """A SYN fixes the initial sequence number (ISN + 1 is the first data byte).

        A later SYN with another ISN, before any byte of this direction was seen, replaces it:
        a server may answer a TCP Fast Open SYN (RFC 7413) with a second SYN-ACK of another
        sequence number, and a retransmitted SYN may carry a new ISN. Data sent on the SYN
        itself (a ClientHello in a TFO SYN) follows at ISN + 1, as any segment's.
        """
        first = (seq + 1) & _MASK
        if self.next_seq is None or (
            self.next_seq == self.base and not self.pending and not self.gap_bytes
        ):
            self.next_seq = self.base = first

    def segment(self, seq: int, payload: bytes, missing: int = 0) -> list[bytes | Gap]:
        """Add a segment. `missing`: bytes of its payload the capture cut off (snaplen)."""
        nxt = self.next_seq
        if nxt is None:
            self.next_seq = self.base = nxt = seq
        if seq == nxt and not self.pending and not missing:  # the common case
            self.next_seq = (seq + len(payload)) & _MASK
            return [payload]
        out: list[bytes | Gap] = []
        self._store(seq, payload)
        if missing:
            self._store_hole(seq, len(payload), missing)
        self._drain(out)
        if self.pending and (
            len(self.pending) > MAX_PENDING_SEGMENTS or self.pending_bytes > MAX_PENDING_BYTES
        ):
            self._skip_to_pending(out)
        return out

    def flush(self) -> list[bytes | Gap]:
        """End of stream: deliver what waits behind holes, with the holes as gaps."""
        out: list[bytes | Gap] = []
        while self.pending:
            self._skip_to_pending(out)
        return out

    def _store_hole(self, seq: int, length: int, missing: int) -> None:
        """A snaplen cut: the `missing` bytes after this segment's captured part are lost."""
        self.pending[(seq + length) & _MASK] = _Hole(missing)  # type: ignore[assignment]

    def _store(self, seq: int, payload: bytes) -> None:
        if not payload:
            return
        rel = (seq - self.next_seq) & _MASK  # type: ignore[operator]
        if rel >= _HALF:  # starts before next_seq: keep only the new part
            behind = (-rel) & _MASK
            if behind >= len(payload):
                return
            payload = payload[behind:]
            seq = self.next_seq  # type: ignore[assignment]
        old = self.pending.get(seq)
        if old is None or (not isinstance(old, _Hole) and len(old) < len(payload)):
            if old is not None and not isinstance(old, _Hole):
                self.pending_bytes -= len(old)
            self.pending[seq] = payload
            self.pending_bytes += len(payload)

    def _drain(self, out: list[bytes | Gap]) -> None:
        pending = self.pending
        while pending:
            nxt = self.next_seq
            chunk = pending.pop(nxt, None)  # type: ignore[arg-type]
            if chunk is None:
                # a stored segment may overlap next_seq from behind after a partial delivery
                for s in list(pending):
                    rel = (s - nxt) & _MASK  # type: ignore[operator]
                    if rel >= _HALF:
                        data = pending.pop(s)
                        if isinstance(data, _Hole):
                            continue
                        self.pending_bytes -= len(data)
                        behind = (-rel) & _MASK
                        if behind < len(data):
                            self._store(nxt, data[behind:])  # type: ignore[arg-type]
                if nxt not in pending:
                    return
                continue
            if isinstance(chunk, _Hole):
                self._gap(out, chunk.length)
                continue
            self.pending_bytes -= len(chunk)
            out.append(chunk)
            self.next_seq = (nxt + len(chunk)) & _MASK  # type: ignore[operator]

    def _gap(self, out: list[bytes | Gap], length: int) -> None:
        if length <= 0:
            return
        out.append(Gap(self.offset, length))
        self.gap_bytes += length
        self.next_seq = (self.next_seq + length) & _MASK  # type: ignore[operator]

    def _skip_to_pending(self, out: list[bytes | Gap]) -> None:
        nxt = self.next_seq
        lowest = min(self.pending, key=lambda s: (s - nxt) & _MASK)  # type: ignore[operator]
        self._gap(out, (lowest - nxt) & _MASK)  # type: ignore[operator]
        self._drain(out)


class _Hole:
    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length
