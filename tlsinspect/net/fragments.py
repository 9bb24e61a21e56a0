"""IP fragment reassembly: fragments in, whole datagrams out (sans-IO).

    defrag = Defragmenter()
    datagram = defrag.add(fragment, ts_ns)   # raw IP bytes when this fragment completed one

A datagram is complete when its fragments cover it from offset 0 to the end that the last
fragment (MF clear) gives. Overlapping fragments keep the bytes that arrived first, as the
first copy is what the receiver most likely used (and what Wireshark shows by default);
`overlaps` counts them. The reassembled datagram is the first fragment's header, its length set
and its fragment fields cleared, followed by the payload: an IPv4 or IPv6 packet that the link
layer decoder reads like any other (as raw IP).

Memory and time are bounded: at most `max_pending` datagrams are waiting (the oldest is
dropped to make room), each at most 65,535 bytes in at most `MAX_PARTS` fragments, and a datagram not complete `timeout_ns` of packet time after
its first fragment (30 s, as Linux's ipfrag_time) is dropped. What was dropped is counted.
"""

from __future__ import annotations

from collections import OrderedDict

from .ip import Fragment, rebuild

MAX_DATAGRAM = 65535
TIMEOUT_NS = 30 * 10**9
MAX_PENDING = 4096
MAX_PARTS = 1024  # fragments of one datagram (a 1,500-byte MTU needs 45 for the largest)


class _Pending:
    __slots__ = ("first_ts", "parts", "end", "header", "size")

    def __init__(self, ts: int) -> None:
        self.first_ts = ts
        self.parts: list[tuple[int, bytes]] = []  # (offset, bytes) in arrival order
        self.end: int | None = None  # the datagram's payload length, once the last part came
        self.header: bytes | None = None  # from the fragment at offset 0
        self.size = 0


class Defragmenter:
    def __init__(self, max_pending: int = MAX_PENDING, timeout_ns: int = TIMEOUT_NS) -> None:
        self.max_pending = max_pending
        self.timeout_ns = timeout_ns
        self.pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self.fragments = 0  # fragments taken
        self.reassembled = 0  # datagrams completed
        self.dropped = 0  # fragments of datagrams given up (timeout, room, too long)
        self.overlaps = 0  # fragments that overlapped bytes already held

    def add(self, frag: Fragment, ts: int) -> bytes | None:
        self.fragments += 1
        self._expire(ts)
        p = self.pending.get(frag.key)
        if p is None:
            if len(self.pending) >= self.max_pending:
                self._drop(next(iter(self.pending)))
            p = self.pending[frag.key] = _Pending(ts)
        stop = frag.offset + len(frag.payload)
        if stop > MAX_DATAGRAM or (p.end is not None and stop > p.end) or len(p.parts) >= MAX_PARTS:
            p.parts.append((frag.offset, b""))  # counted among the dropped
            self._drop(frag.key)
            return None
        if frag.offset == 0:
            p.header = frag.header
        if not frag.more:
            p.end = stop
        p.parts.append((frag.offset, frag.payload))
        p.size += len(frag.payload)
        if p.end is None or p.header is None or p.size < p.end:
            return None
        payload = self._assemble(p)
        if payload is None:
            return None  # overlaps counted twice: a hole remains
        del self.pending[frag.key]
        self.reassembled += 1
        return rebuild(p.header, len(payload)) + payload

    def _assemble(self, p: _Pending) -> bytes | None:
        assert p.end is not None
        out = bytearray(p.end)
        covered: list[tuple[int, int]] = []
        overlaps = 0
        for off, data in p.parts:  # arrival order: earlier bytes are kept
            lo, hi = off, off + len(data)
            pieces = [(lo, hi)]
            for a, b in covered:
                nxt = []
                for x, y in pieces:
                    if y <= a or x >= b:
                        nxt.append((x, y))
                        continue
                    overlaps += 1
                    if x < a:
                        nxt.append((x, a))
                    if y > b:
                        nxt.append((b, y))
                pieces = nxt
            for x, y in pieces:
                out[x:y] = data[x - off : y - off]
            covered.append((lo, hi))
        covered.sort()
        reach = 0
        for a, b in covered:
            if a > reach:
                return None
            reach = max(reach, b)
        if reach < p.end:
            return None
        self.overlaps += overlaps
        return bytes(out)

    def _expire(self, now: int) -> None:
        while self.pending:
            key, p = next(iter(self.pending.items()))
            if now - p.first_ts <= self.timeout_ns:
                return
            self._drop(key)

    def _drop(self, key: bytes) -> None:
        p = self.pending.pop(key)
        self.dropped += len(p.parts)

    def finish(self) -> int:
        """The end of the capture: give up the datagrams still waiting; their fragment count."""
        before = self.dropped
        for key in list(self.pending):
            self._drop(key)
        return self.dropped - before
