"""The flow lifecycle both engines share: closes, sweeps, idle expiry (packet time)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from helpers import fixture_message

from tlsinspect.engines.lifecycle import (
    FIN,
    IDLE_TIMEOUT_NS,
    MIN_MEMORY_LIMIT_MB,
    RST,
    SWEEP_EVERY,
    SWEEP_EVERY_NS,
    Limits,
    SweepClock,
    closing,
    evict_order,
    evicted,
    excess,
    idle,
)
from tlsinspect.model import EndKind
from tlsinspect.session import SessionFacts


def _facts() -> SessionFacts:
    f = SessionFacts(
        start_ts=0, addrs=(b"\x7f\x00\x00\x01", b"\x7f\x00\x00\x01"), ports=(50000, 443)
    )
    f.client_side = 0
    return f


def test_a_fin_from_each_side_ends_the_connection_and_the_first_says_who_closed():
    f, fin = _facts(), [False, False]
    assert closing(f, fin, 1, FIN, 10) is None  # the server's FIN: one direction closed
    assert (f.end_kind, f.closed_ts, f.closed_by) == (EndKind.FIN, 10, "server")
    assert f.ended == "connection closed by the server"
    assert closing(f, fin, 0, FIN, 20) == (EndKind.FIN, "connection closed by both sides", None)
    assert (f.closed_ts, f.closed_by) == (10, "server")  # the first close is the one kept


def test_a_reset_ends_it_at_once_and_names_its_sender():
    f = _facts()
    assert closing(f, [False, False], 0, RST, 5) == (
        EndKind.RST,
        "connection reset by the client",
        "client",
    )
    assert f.end_kind is None  # the logbook records the reset when it logs the session


def test_sweeps_come_every_so_many_packets_or_so_much_packet_time():
    clock = SweepClock()
    assert clock.due(1, 1_000)  # the first packet starts the clock
    assert not clock.due(2, 1_000 + SWEEP_EVERY_NS - 1)
    assert clock.due(3, 1_000 + SWEEP_EVERY_NS)
    assert not clock.due(4, 1_000 + SWEEP_EVERY_NS + 1)
    assert clock.due(3 + SWEEP_EVERY, 1_000 + SWEEP_EVERY_NS + 2)


@dataclass
class _Flow:
    last_ts: int


def test_idle_flows_are_those_silent_longer_than_the_timeout():
    quiet, busy, edge = _Flow(0), _Flow(IDLE_TIMEOUT_NS), _Flow(1)
    now = IDLE_TIMEOUT_NS + 1
    assert idle([quiet, busy, edge], now) == [quiet]


# -- memory limits ------------------------------------------------------------------------------


def test_limits_grow_with_the_memory_allowed_and_refuse_too_little():
    small, default, large = (Limits.for_memory(mb) for mb in (MIN_MEMORY_LIMIT_MB, 200, 1000))
    assert small.flows < default.flows < large.flows
    assert small.buffered < default.buffered < large.buffered
    assert small.decided < default.decided < large.decided
    assert default.memory_mb == 200
    with pytest.raises(ValueError, match="too small"):
        Limits.for_memory(MIN_MEMORY_LIMIT_MB - 1)


def test_eviction_goes_down_to_seven_eighths_of_the_limit():
    assert excess(800, 800) == 100
    assert excess(700, 800) == 0


@dataclass
class _Candidate:
    name: str
    facts: SessionFacts
    last_ts: int


def test_eviction_order_not_tls_then_no_client_hello_then_least_recently_seen():
    def flow(name: str, ts: int, tls: bool, hello: bool) -> _Candidate:
        f = _facts()
        f.tls_seen = tls
        if hello:
            f.client_hello = fixture_message("client_hello_tls12")
        return _Candidate(name, f, ts)

    flows = [
        flow("hello, old", 1, True, True),
        flow("hello, recent", 9, True, True),
        flow("tls, no hello", 8, True, False),
        flow("not tls, recent", 7, False, False),
        flow("not tls, old", 2, False, False),
    ]
    assert [f.name for f in evict_order(flows)] == [
        "not tls, old",
        "not tls, recent",
        "tls, no hello",
        "hello, old",
        "hello, recent",
    ]


def test_an_evicted_flow_is_noted_with_the_limit_reached():
    f = _facts()
    limits = Limits.for_memory(200)
    kind, ended = evicted(f, limits, "buffered")
    assert kind == EndKind.EVICTED and not kind.closed
    assert ended == "evicted from memory (48 MB of handshake bytes held in all reached)"
    (a,) = f.anomalies
    assert a.name == "flow_evicted" and "the memory limit is 200 MB" in a.detail
