"""IP fragment reassembly, unit by unit (whole captures: tests/e2e/test_fragments.py)."""

from __future__ import annotations

import struct

from tlsinspect.net.fragments import MAX_PARTS, Defragmenter
from tlsinspect.net.ip import ipv4_fragment, ipv6_fragment
from tlsinspect.net.link import locate_fragment, locate_tcp

SRC, DST = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
TCP = struct.pack("!HHIIBBHHH", 40000, 443, 1, 0, 0x50, 0x18, 65535, 0, 0)
PAYLOAD = TCP + bytes(range(256)) * 4  # 20 + 1024 bytes


def v4(offset: int, part: bytes, more: bool, ident: int = 7) -> bytes:
    frag = (0x2000 if more else 0) | offset >> 3
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(part), ident, frag, 64, 6, 0, SRC, DST)
    return header + part


def cut(data: bytes, size: int, ident: int = 7) -> list[bytes]:
    return [
        v4(off, data[off : off + size], off + size < len(data), ident)
        for off in range(0, len(data), size)
    ]


def feed(d: Defragmenter, packets: list[bytes], ts: int = 0) -> list[bytes]:
    out = []
    for p in packets:
        frag = ipv4_fragment(p, 0, len(p))
        assert frag is not None
        whole = d.add(frag, ts)
        if whole is not None:
            out.append(whole)
    return out


def test_in_any_order_the_datagram_comes_back_whole():
    for order in (lambda x: x, lambda x: x[::-1], lambda x: x[1::2] + x[::2]):
        d = Defragmenter()
        out = feed(d, order(cut(PAYLOAD, 200)))
        assert len(out) == 1
        loc = locate_tcp(101, out[0])
        assert loc is not None and out[0][loc[2] : loc[3]] == PAYLOAD
        assert (d.reassembled, d.pending) == (1, {})


def test_overlap_keeps_the_first_bytes():
    d = Defragmenter()
    first = v4(0, PAYLOAD[:400], True)
    changed = bytearray(PAYLOAD[200:600])
    changed[0:200] = b"X" * 200  # overlaps bytes 200..400, which the first fragment holds
    out = feed(d, [first, v4(200, bytes(changed), True), v4(600, PAYLOAD[600:], False)])
    assert out and out[0][20:] == PAYLOAD
    assert d.overlaps == 1


def test_missing_fragment_times_out_and_is_counted():
    d = Defragmenter(timeout_ns=30)
    parts = cut(PAYLOAD, 200)
    assert feed(d, parts[:2] + parts[3:], ts=0) == []
    assert feed(d, cut(PAYLOAD, 496, ident=8), ts=31) != []  # another datagram, later
    assert d.dropped == len(parts) - 1 and d.pending == {}


def test_memory_is_bounded():
    d = Defragmenter(max_pending=10)
    for ident in range(100):
        feed(d, cut(PAYLOAD, 200, ident)[:1])
    assert len(d.pending) == 10 and d.dropped == 90
    d = Defragmenter()
    long = bytes(8 * (MAX_PARTS + 5))
    feed(d, [v4(off, long[off : off + 8], True) for off in range(0, len(long), 8)])
    # the datagram was given up at its MAX_PARTS-th fragment; the last ones start a new wait
    assert d.dropped == MAX_PARTS + 1
    assert [len(p.parts) for p in d.pending.values()] == [4]
    assert d.finish() == 4 and d.pending == {}


def test_too_long_or_past_the_end_is_dropped():
    d = Defragmenter()
    assert feed(d, [v4(65528, b"x" * 16, False)]) == []  # would end past 65,535
    assert d.dropped == 1
    d = Defragmenter()
    # the last fragment says the datagram ends at 600: a fragment past that end is not its
    feed(d, [v4(400, PAYLOAD[400:600], False), v4(600, PAYLOAD[600:800], True)])
    assert d.dropped == 2 and d.pending == {}


def test_ipv6_fragment_header_and_link_layers():
    src6, dst6 = b"\x20\x01" + bytes(13) + b"\x01", b"\x20\x01" + bytes(13) + b"\x02"
    part = PAYLOAD[:512]
    fixed = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(part), 44, 64, src6, dst6)
    frag_hdr = struct.pack("!BBHI", 6, 0, 0 | 1, 99)
    packet = fixed + frag_hdr + part
    f = ipv6_fragment(packet, 0, len(packet))
    assert f is not None and (f.offset, f.more, f.payload) == (0, True, part)
    assert f.header[6] == 6  # the fragmentable part starts with TCP
    eth = bytes(12) + b"\x86\xdd" + packet
    assert locate_tcp(1, eth) is None
    found = locate_fragment(1, eth)
    assert found is not None and found.key == f.key
    vlan = bytes(12) + b"\x81\x00\x00\x05\x08\x00" + v4(0, PAYLOAD[:200], True)
    got = locate_fragment(1, vlan)
    assert got is not None and got.offset == 0 and got.more
    assert locate_fragment(1, bytes(12) + b"\x08\x00" + v4(0, PAYLOAD, False)[:20]) is None
