"""The tests' own tools against tshark: what they say of a capture is what tshark says."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import OWN, SHARED, own_captures, read, run_tshark, tcp_connections

CAPTURES = [*own_captures(), SHARED / "zeek__globus-url-copy.pcap"]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_tcp_connections_are_tsharks_tcp_streams(tshark: str, capture: Path) -> None:
    """Every TCP packet is in the connection tshark numbers it in (tcp.stream), and each
    connection's two ports are tshark's."""
    packets = read(capture)
    ours: dict[int, tuple[int, tuple[int, int]]] = {}  # frame number -> (connection, ports)
    for conn in tcp_connections(packets):
        for i in conn.packets:
            ours[i + 1] = (conn.index, tuple(sorted(conn.ports)))
    rows = run_tshark(
        tshark, capture, ["frame.number", "tcp.stream", "tcp.srcport", "tcp.dstport"], "tcp"
    )
    theirs = {
        int(n): (int(s), tuple(sorted((int(a), int(b))))) for n, s, a, b in rows if "," not in s
    }
    assert theirs and ours == theirs


def test_a_reused_address_and_port_pair_is_a_new_connection() -> None:
    """tcp_edge.pcapng reuses the client port 30491 to port 8491 (its truth has two sessions
    there): two connections, as tshark numbers them (checked above)."""
    conns = [c for c in tcp_connections(read(OWN / "tcp_edge.pcapng")) if 8491 in c.ports]
    assert [sorted(c.ports) for c in conns] == [[8491, 30491], [8491, 30491]]
    assert conns[0].packets[-1] < conns[1].packets[0]


def test_stream_bytes_start_with_the_hellos() -> None:
    """The reassembled streams of a recorded TLS connection: the client's starts with a
    handshake record holding a ClientHello (RFC 5246 6.2.1, 7.4), the server's with a
    ServerHello."""
    packets = read(OWN / "tls12.pcapng")
    conn = tcp_connections(packets)[0]
    client, server = conn.stream(0, packets), conn.stream(1, packets)
    assert (client[0], client[5], server[0], server[5]) == (22, 1, 22, 2)
    assert sum(len(p) for side, p in conn.payloads if side == 0) >= len(client)
