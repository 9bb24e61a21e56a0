"""tlsinspect.engines.builtin.Analyzer fed the raw packets of the recorded captures: what it logs and
counts, against tshark's reading of the same files and the captures' ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import (
    IDLE_TIMEOUT_NS,
    OWN,
    analyze,
    connection_packets,
    flow_entries,
    open_flows,
    own_captures,
    read,
    run_tshark,
    tcp_connections,
    tcp_info,
)
from pcaptools import data_packets, write

CAPTURES = own_captures()


def truth(capture: Path) -> list[dict]:
    doc = OWN / (capture.name.split(".")[0] + ".truth.json")
    return json.loads(doc.read_text())["sessions"]


def tls_ports(capture: Path) -> list[int]:
    """The server ports tshark must decode as TLS: those of the truth, but STARTTLS ones,
    whose protocols tshark knows (and would misread if forced to TLS)."""
    return sorted({s["server_port"] for s in truth(capture) if not s.get("starttls")})


def tshark_count(
    capture: Path, tshark: str, field: str, display_filter: str, ports: list[int] | None = None
) -> int:
    """How many distinct values of `field` tshark shows in the frames `display_filter` keeps."""
    ports = tls_ports(capture) if ports is None else ports
    return len({tuple(r) for r in run_tshark(tshark, capture, [field], display_filter, ports)})


@pytest.fixture(scope="module", params=CAPTURES, ids=lambda p: p.name)
def analyzed(request: pytest.FixtureRequest):
    capture = request.param
    sessions, analyzer = analyze(read(capture))
    return capture, sessions, analyzer


def test_one_session_per_tls_connection(analyzed, tshark: str) -> None:
    """Each TCP connection in which tshark sees TLS is one session, by its two ports (a reused
    address/port pair is two connections, and two sessions)."""
    capture, sessions, _ = analyzed
    rows = run_tshark(
        tshark, capture, ["tcp.stream", "tcp.srcport", "tcp.dstport"], "tls", tls_ports(capture)
    )
    streams = {int(s): tuple(sorted((int(a), int(b)))) for s, a, b in rows}
    ours = sorted(tuple(sorted((s.client[1], s.server[1]))) for s in sessions)
    assert ours == sorted(streams.values())
    assert len(sessions) == len(truth(capture))


def test_stats_count_what_tshark_counts(analyzed, tshark: str) -> None:
    capture, sessions, analyzer = analyzed
    stats = analyzer.stats
    assert stats.packets == tshark_count(capture, tshark, "frame.number", "frame")
    assert stats.tcp_packets == tshark_count(capture, tshark, "frame.number", "tcp")
    # every recorded connection opens with a SYN: one flow per tcp.stream
    assert stats.flows == tshark_count(capture, tshark, "tcp.stream", "tcp")
    assert stats.sessions == len(sessions) == tshark_count(capture, tshark, "tcp.stream", "tls")
    assert stats.not_tcp == stats.packets - stats.tcp_packets
    assert stats.truncated == 0 and stats.fragments == 0 and not stats.problems


def test_the_flow_table_is_emptied_at_the_end(analyzed) -> None:
    """Every flow is logged by the end (no state left), and a connection that both sides
    closed after its verdict was decided has left the flow table."""
    capture, sessions, analyzer = analyzed
    assert open_flows(analyzer) == 0
    packets = read(capture)
    left = flow_entries(analyzer)
    decided = {(s.client[1], s.server[1]) for s in sessions if s.end_kind is None}
    checked = 0
    for conn in tcp_connections(packets):
        fins = {tcp_info(packets[i])[0] for i in conn.packets if tcp_info(packets[i])[2] & 0x01}
        ports = conn.ports
        if fins == set(ports) and (ports in decided or ports[::-1] in decided):
            assert ports not in left and ports[::-1] not in left, ports
            checked += 1
    assert checked


def test_the_verdicts_are_the_truth() -> None:
    """The pipeline end to end on tls12.pcapng (no key log: every session is TLS 1.2)."""
    sessions, _ = analyze(read(OWN / "tls12.pcapng"))
    expected = [
        (t["client_port"], t["server_port"], t["verdict"]) for t in truth(OWN / "tls12.pcapng")
    ]
    assert [(s.client[1], s.server[1], s.verdict) for s in sessions] == expected
    assert all(s.roles_from == "syn" for s in sessions)


def test_ipv4_total_length_zero_is_read_from_the_capture() -> None:
    """tls12.pcapng with every IPv4 total length 0, as captures of TCP segmentation offload
    show it: the same sessions (the length comes from the captured bytes, as net.ip reads it)."""
    packets = read(OWN / "tls12.pcapng")
    assert {p[1] for p in packets} == {1}
    offload = []
    for ts, lt, data, orig_len, iface in packets:
        frame = bytearray(data)
        if frame[12:14] == b"\x08\x00":
            frame[16:18] = b"\x00\x00"
        offload.append((ts, lt, bytes(frame), orig_len, iface))
    assert offload != packets
    assert analyze(offload)[0] == analyze(packets)[0]


# -- a 4-tuple reused -----------------------------------------------------------------------------


def test_a_reused_address_and_port_pair_gives_two_sessions() -> None:
    """tcp_edge.pcapng: client port 30491 connects twice to 8491 (truth: one-way, then mutual)."""
    sessions, _ = analyze(read(OWN / "tcp_edge.pcapng"))
    on_port = [s for s in sessions if s.server[1] == 8491]
    expected = [
        (t["client_port"], t["verdict"])
        for t in truth(OWN / "tcp_edge.pcapng")
        if t["server_port"] == 8491
    ]
    assert [(s.client[1], s.verdict) for s in on_port] == expected
    assert expected[0][0] == expected[1][0]


def test_a_reused_pair_ends_the_open_session_before_it(tmp_path: Path, tshark: str) -> None:
    """The first connection cut after the server's first flight (undecided, never closed),
    then the second on the same pair: the first is logged at the new SYN, as ended by the reuse."""
    packets = read(OWN / "tcp_edge.pcapng")
    first, second = [c for c in tcp_connections(packets) if 8491 in c.ports]
    served = data_packets(packets, first.packets, from_port=8491)[0]  # the ServerHello flight
    kept = [packets[i] for i in first.packets if i <= served] + [packets[i] for i in second.packets]
    path = write(tmp_path / "reused.pcap", kept)
    assert tshark_count(path, tshark, "tcp.stream", "tcp", [8491]) == 2
    sessions, analyzer = analyze(read(path))
    assert [(s.verdict, s.end_kind) for s in sessions] == [
        ("incomplete", "reuse"),
        ("mutual", None),
    ]
    assert "reused by a new connection" in sessions[0].reason
    assert analyzer.stats.flows == 2


# -- idle expiry in packet time -------------------------------------------------------------------


def _with_a_pause(pause_ns: int) -> list:
    """tls12.pcapng's mutual session (port 8401) with a pause before the server's first flight:
    every packet from there on comes `pause_ns` later."""
    packets = read(OWN / "tls12.pcapng")
    idx = connection_packets(packets, 8401)
    served = data_packets(packets, idx, from_port=8401)[0]
    return [
        (ts + (pause_ns if i >= served else 0), lt, data, orig, iface)
        for i, (ts, lt, data, orig, iface) in ((i, packets[i]) for i in idx)
    ]


def test_a_flow_idle_past_the_timeout_is_logged_idle() -> None:
    """Only the packet timestamps count (the run takes milliseconds): a flow silent longer than
    the idle timeout is logged then, with what it had, and its later packets are not a new
    session."""
    sessions, analyzer = analyze(_with_a_pause(IDLE_TIMEOUT_NS + 10**9))
    assert [(s.verdict, s.end_kind) for s in sessions] == [("incomplete", "idle")]
    assert "no ServerHello" in sessions[0].reason
    assert analyzer.stats.sessions == 1 and analyzer.stats.flows == 1


def test_a_pause_shorter_than_the_timeout_changes_nothing() -> None:
    sessions, _ = analyze(_with_a_pause(IDLE_TIMEOUT_NS - 10**9))
    (expected,) = [t for t in truth(OWN / "tls12.pcapng") if t["server_port"] == 8401]
    assert [(s.verdict, s.end_kind) for s in sessions] == [(expected["verdict"], None)]
