"""tlsinspect.tls.connection: properties of TlsConnection on real recorded handshakes: cutting
the byte stream anywhere changes no event, and damaged bytes give events, never an exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import OWN, SHARED, SHARED_ABSENT, read, tcp_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsinspect.tls.connection import TlsConnection

SOURCES = [OWN / "tls12.pcapng", OWN / "stacks.pcap"]
if not SHARED_ABSENT:
    SOURCES.append(SHARED / "zeek__globus-url-copy.pcap")


def flights(path: Path) -> list[list[tuple[int, bytes]]]:
    """Per TCP connection that carried data, its payloads in capture order as (side, bytes)."""
    return [c.payloads for c in tcp_connections(read(path)) if c.payloads]


CONNS = [c for src in SOURCES for c in flights(src)]


def events(chunks: list[tuple[int, bytes]]) -> list:
    conn = TlsConnection()
    out = []
    for side, data in chunks:
        out += conn.receive(side, data, 0)
    return out


def test_there_are_connections_to_test():
    assert len(CONNS) >= 20


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(CONNS))), st.data())
def test_any_split_gives_the_same_events(i, data):
    conn = CONNS[i]
    whole = events(conn)
    pieces = []
    for side, payload in conn:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=4)))
        prev = 0
        for c in [*cuts, len(payload)]:
            pieces.append((side, payload[prev:c]))
            prev = c
    assert events(pieces) == whole


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(CONNS))), st.data())
def test_damaged_streams_never_raise(i, data):
    conn = CONNS[i]
    damaged = []
    for side, payload in conn:
        b = bytearray(payload)
        for _ in range(data.draw(st.integers(0, 3))):
            if b:
                b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
        damaged.append((side, bytes(b)))
    events(damaged)  # must not raise


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_never_raise(seed):
    import random

    rnd = random.Random(seed)
    conn = TlsConnection(midstream=True)
    for _ in range(200):
        conn.receive(rnd.randrange(2), rnd.randbytes(rnd.randrange(1, 600)), 0)
