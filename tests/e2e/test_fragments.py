"""IP fragments on real recorded sessions: every datagram cut as a router with a small MTU
would cut it (IPv4) or as the sending host does (IPv6 fragment header), in order and last
first. tlsinspect must put them back together as tshark does (it reassembles IP by default)
and report exactly the sessions of the unfragmented capture; a fragment the capture lost
must not be hidden."""

from __future__ import annotations

import re

import pytest
from helpers import OWN, flowed, read, report_header, run_cli, tcp_info
from pcaptools import fragment, write
from test_vs_tshark import ours, tshark_facts, tshark_messages

import tlsinspect

CAPTURES = [OWN / "tls12.pcapng", OWN / "demo.pcapng"]  # both have IPv4 and IPv6 sessions
# TLS 1.3 with data after the handshake: fragments of flows already decided
IPV4_ONLY = [OWN / "tls13.pcapng", OWN / "later_tls13.pcapng"]
SIZE = 552  # payload bytes per fragment: a 576-byte IPv4 MTU


def fragmented(packets, reverse: bool = False, drop_one: bool = False):
    out, ident, dropped = [], 0x1000, False
    for p in packets:
        parts = fragment(p, SIZE, ident, reverse=reverse)
        ident += 1
        if drop_one and not dropped and len(parts) > 2 and tcp_info(p)[1] != 0:
            parts = parts[:1] + parts[2:]  # the capture lost the second fragment
            dropped = True
        out += parts
    return out


def _without_counts(sessions: list[dict]) -> list[dict]:
    """In order, without the file they come from (the two captures compared are two files)."""
    sessions = [{k: v for k, v in s.items() if k != "file"} for s in sessions]
    return sorted(sessions, key=lambda s: (s["start_time"], s["client_port"]))


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "last-first"])
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_fragmented_capture_gives_the_same_sessions(tmp_path, tshark, capture, reverse):
    packets = read(capture)
    frags = fragmented(packets, reverse=reverse)
    assert len(frags) > len(packets) + 30  # the test really fragments
    versions = {f[2][14] >> 4 for f in frags if len(f[2]) > 14}
    assert versions == {4, 6}
    path = write(tmp_path / f"frag-{capture.stem}.pcap", frags)
    original = write(tmp_path / f"orig-{capture.stem}.pcap", packets)
    assert _without_counts(tlsinspect.sessions(path)) == _without_counts(
        tlsinspect.sessions(original)
    )
    # tshark, which reassembles IP fragments itself, sees the same handshakes and chains
    assert ours(path) == tshark_messages(tshark, path)
    assert tshark_facts(tshark, path) == tshark_facts(tshark, original)
    r = run_cli("--format", "table", path)
    assert r.returncode == 0
    first = report_header(r.stdout)
    assert "IP fragments reassembled into" in first, first
    assert "left out" not in flowed(r.stdout)


@pytest.mark.parametrize("capture", IPV4_ONLY, ids=lambda p: p.name)
def test_fragments_of_decided_flows_are_not_reported_lost(tmp_path, capture):
    packets = read(capture)
    path = write(tmp_path / f"frag-{capture.stem}.pcap", fragmented(packets))
    original = write(tmp_path / f"orig-{capture.stem}.pcap", packets)
    assert _without_counts(tlsinspect.sessions(path)) == _without_counts(
        tlsinspect.sessions(original)
    )
    r = run_cli("--format", "table", path)
    assert r.returncode == 0 and "left out" not in flowed(r.stdout), r.stdout


def test_lost_fragment_is_reported(tmp_path):
    packets = read(OWN / "tls12.pcapng")
    path = write(tmp_path / "lost.pcap", fragmented(packets, drop_one=True))
    r = run_cli("--format", "table", path)
    assert r.returncode == 0, r.stderr
    # the datagram's other fragments: all of them but the one the capture lost
    assert re.search(r"IP fragments left out: [1-9]\d*, of datagrams that never", flowed(r.stdout))
    sessions = tlsinspect.sessions(path)
    original = tlsinspect.sessions(OWN / "tls12.pcapng")
    assert len(sessions) == len(original)
    lost = [s for s in sessions if not s["complete"]]
    assert len(lost) == 1 and "missing from the capture" in lost[0]["reason"] + str(
        lost[0]["anomalies"]
    ), [(s["verdict"], s["reason"]) for s in lost]
