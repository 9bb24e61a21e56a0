"""TCP edge cases on real recorded sessions: re-segmented and reordered flights, retransmissions,
lost segments, a capture that starts late, snaplen cuts. Each derived capture is also checked
against tshark where tshark has something to say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import OWN, connection_packets, read, tcp_info
from pcaptools import data_packets, split, write
from test_vs_tshark import ours, tshark_messages

import tlsinspect

CAPTURE = OWN / "tls12.pcapng"
TRUTH = {s["scenario"]: s for s in json.loads((OWN / "tls12.truth.json").read_text())["sessions"]}
MUTUAL = TRUTH["tls12-mutual-intermediate"]
PORT = MUTUAL["server_port"]


@pytest.fixture(scope="module")
def packets():
    return read(CAPTURE)


def only_mutual(packets):
    return [packets[i] for i in connection_packets(packets, PORT)]


def session(path: Path) -> dict:
    found = tlsinspect.sessions(path)
    assert len(found) == 1, [s["reason"] for s in found]
    return found[0]


def server_flight_split(pkts):
    """The mutual session with the server's first flight cut into three segments."""
    first = data_packets(pkts, list(range(len(pkts))), from_port=PORT)[0]
    size = tcp_info(pkts[first])[3]
    a, rest = split(pkts[first], size // 3)
    b, c = split(rest, size // 3)
    return pkts[:first], (a, b, c), pkts[first + 1 :]


def test_resegmented_and_reordered_flight(tmp_path, packets, tshark):
    before, (a, b, c), after = server_flight_split(only_mutual(packets))
    path = write(tmp_path / "reordered.pcap", before + [c, a, b] + after)
    s = session(path)
    assert s["verdict"] == "mutual", s["reason"]
    assert s["complete"] and not s["anomalies"]
    assert ours(path) == tshark_messages(tshark, path)


def test_retransmissions_change_nothing(tmp_path, packets, tshark):
    pkts = only_mutual(packets)
    doubled = []
    for p in pkts:
        doubled.append(p)
        if tcp_info(p)[3]:
            doubled.append(p)
    path = write(tmp_path / "retransmitted.pcap", doubled)
    s = session(path)
    assert s["verdict"] == "mutual" and not s["anomalies"]
    assert ours(path) == tshark_messages(tshark, path)


def test_lost_segment_marks_the_session_incomplete(tmp_path, packets):
    before, (a, _b, c), after = server_flight_split(only_mutual(packets))
    s = session(write(tmp_path / "lost.pcap", before + [a, c] + after))
    assert s["verdict"] == "incomplete"
    assert "missing from the capture" in s["reason"]
    assert not s["complete"] and s["anomalies"]


def test_capture_without_the_syn_tells_roles_by_client_hello(tmp_path, packets):
    pkts = [p for p in only_mutual(packets) if not tcp_info(p)[2] & 0x02]
    s = session(write(tmp_path / "nosyn.pcap", pkts))
    assert s["roles_from"] == "client_hello"
    assert s["verdict"] == "mutual"
    assert s["server_port"] == PORT and s["client_port"] == MUTUAL["client_port"]


def test_capture_starting_after_the_handshake(tmp_path, packets):
    pkts = only_mutual(packets)
    data = data_packets(pkts, list(range(len(pkts))))
    # keep from the first application data on: the ping/pong after both Finished
    late = pkts[data[-4] :]
    s = session(write(tmp_path / "late.pcap", late))
    assert s["verdict"] == "incomplete"
    assert "starts after the handshake" in s["reason"]


def test_capture_ending_after_the_client_hello(tmp_path, packets):
    pkts = only_mutual(packets)
    first_data = data_packets(pkts, list(range(len(pkts))))[0]
    s = session(write(tmp_path / "short.pcap", pkts[: first_data + 1]))
    assert s["verdict"] == "incomplete"
    assert s["sni"] == MUTUAL["sni"]
    assert "no ServerHello" in s["reason"]


def test_snaplen_cut_packets(tmp_path, packets):
    cut = [(ts, lt, d[:96], orig, i) for ts, lt, d, orig, i in only_mutual(packets)]
    s = session(write(tmp_path / "snap.pcap", cut, snaplen=96))
    assert s["verdict"] == "incomplete"
    assert "missing from the capture" in s["reason"]


def test_whole_capture_reordered_across_connections(tmp_path, packets, tshark):
    """Interleaving other connections between the packets of one changes nothing."""
    path = write(tmp_path / "all.pcap", packets)
    assert ours(path) == ours(CAPTURE) == tshark_messages(tshark, CAPTURE)
