"""HalfStream: in-order, retransmission, overlap, out of order, gaps, snaplen cuts, wraparound."""

import random

from hypothesis import given
from hypothesis import strategies as st

from tlsinspect.net.reassembly import MAX_PENDING_SEGMENTS, Gap, HalfStream

DATA = bytes(range(256)) * 40


def deliver(h: HalfStream, segments) -> bytes:
    out = b""
    for seq, payload in segments:
        for c in h.segment(seq, payload):
            assert not isinstance(c, Gap)
            out += c
    return out


def cut(isn: int, sizes) -> list[tuple[int, bytes]]:
    segs, pos = [], 0
    for n in sizes:
        segs.append(((isn + 1 + pos) & 0xFFFFFFFF, DATA[pos : pos + n]))
        pos += n
    return segs


def test_in_order_after_syn():
    h = HalfStream()
    h.syn(1000)
    assert deliver(h, cut(1000, [100, 200, 300])) == DATA[:600]


def test_retransmissions_and_overlaps_are_trimmed():
    h = HalfStream()
    h.syn(0)
    segs = cut(0, [100, 100, 100])
    out = deliver(h, [segs[0], segs[0], (51, DATA[50:150]), segs[1], segs[2], segs[1]])
    assert out == DATA[:300]


def test_out_of_order_is_put_back_in_order():
    segs = cut(5, [10, 20, 30, 40, 50])
    for _ in range(20):
        order = segs[:]
        random.shuffle(order)
        h = HalfStream()
        h.syn(5)
        assert deliver(h, order) == DATA[:150]


def test_sequence_wraparound():
    h = HalfStream()
    h.syn(0xFFFFFF00)
    assert deliver(h, cut(0xFFFFFF00, [200, 200, 200])) == DATA[:600]


def test_no_syn_starts_at_the_first_segment_seen():
    h = HalfStream()
    assert deliver(h, [(777, b"abc"), (780, b"def")]) == b"abcdef"


def test_hole_is_reported_at_flush_never_zero_filled():
    h = HalfStream()
    h.syn(0)
    segs = cut(0, [100, 100, 100])
    assert h.segment(*segs[0]) == [DATA[:100]]
    assert h.segment(*segs[2]) == []
    assert h.flush() == [Gap(100, 100), DATA[200:300]]


def test_too_many_pending_segments_become_a_gap():
    h = HalfStream()
    h.syn(0)
    segs = cut(0, [10] * (MAX_PENDING_SEGMENTS + 5))
    out = []
    for s in segs[1:]:
        out += h.segment(*s)
    assert out[0] == Gap(0, 10)
    assert b"".join(c for c in out if isinstance(c, bytes)) == DATA[10 : 10 * len(segs)]


def test_snaplen_cut_segment_leaves_a_gap_of_the_missing_bytes():
    h = HalfStream()
    h.syn(0)
    assert h.segment(1, DATA[:60], missing=40) == [DATA[:60], Gap(60, 40)]
    assert h.segment(101, DATA[100:150]) == [DATA[100:150]]


@given(
    st.lists(st.integers(1, 300), min_size=1, max_size=12), st.randoms(), st.integers(0, 2**32 - 1)
)
def test_any_order_with_duplicates_gives_the_stream(sizes, rnd, isn):
    segs = cut(isn, sizes)
    order = segs + rnd.sample(segs, len(segs) // 2)
    rnd.shuffle(order)
    h = HalfStream()
    h.syn(isn)
    out = deliver(h, order)
    assert out == DATA[: sum(sizes)] and h.flush() == []
