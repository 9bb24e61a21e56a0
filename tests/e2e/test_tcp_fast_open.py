"""TCP Fast Open (RFC 7413) recorded for real: a Python TLS client and server in a network
namespace of their own (net.ipv4.tcp_fastopen=3 there only), captured with dumpcap on its
loopback. The second connection carries its ClientHello on the SYN; tshark is the oracle.
A server that answers with a second SYN-ACK of another sequence number is derived from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import read, run_tshark, tcp_info
from pcaptools import write
from test_vs_tshark import ours, tshark_messages

import tlsinspect

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or shutil.which("ip") is None,
    reason="TCP Fast Open is recorded in a network namespace: Linux and root",
)
PAIR = Path(__file__).parent / "tfo" / "tfo_pair.py"
PORT = 8499


@pytest.fixture(scope="module")
def tfo_capture(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tfo")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", d / "key.pem", "-out", d / "cert.pem", "-days", "2",
         "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ns = f"tlsi-tfo{os.getpid() % 100000}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        pytest.skip("no network namespace can be made here")
    out = d / "tfo.pcapng"
    try:

        def run(*cmd: str) -> None:
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, timeout=60)

        run("ip", "link", "set", "lo", "up")
        run("sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=3")  # this namespace's own setting
        cap = subprocess.Popen(
            ["ip", "netns", "exec", ns, "dumpcap", "-q", "-i", "lo", "-f", f"tcp port {PORT}",
             "-w", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert cap.stderr is not None
            cap.stderr.readline()  # "File: ...": dumpcap is starting
            time.sleep(1.5)  # as captures/record.py waits for dumpcap to capture
            run(sys.executable, str(PAIR), str(PORT), str(d))
            time.sleep(1)
        finally:
            cap.terminate()
            cap.wait(timeout=30)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return out


def test_client_hello_on_the_syn(tfo_capture, tshark):
    rows = run_tshark(
        tshark, tfo_capture, ["tcp.stream", "tcp.options.tfo.cookie", "tls.handshake.type"],
        "tcp.flags.syn == 1 && tcp.flags.ack == 0",
    )  # fmt: skip
    assert [r[2] for r in rows] == ["", "1"]  # the second SYN carries the ClientHello
    assert rows[1][1]  # with the cookie the first connection got
    sessions = tlsinspect.sessions(tfo_capture)
    assert [s["verdict"] for s in sessions] == ["one-way", "one-way"]
    assert all(s["roles_from"] == "syn" and not s["anomalies"] for s in sessions)
    assert all(s["handshake"][0] == "client:client_hello" for s in sessions)
    assert ours(tfo_capture) == tshark_messages(tshark, tfo_capture)


def test_second_syn_ack_with_another_sequence_number(tfo_capture, tmp_path, tshark):
    """The server's SYN-ACK sent twice, the first with another ISN (as a server that drops the
    TFO data and restarts its side): the later SYN-ACK sets the sequence numbers."""
    pkts = read(tfo_capture)
    synacks = [i for i, p in enumerate(pkts) if tcp_info(p)[2] & 0x12 == 0x12]
    at = synacks[-1]  # the TFO connection's
    ts, lt, data, orig, iface = pkts[at]
    from tlsinspect.net.link import locate_tcp

    t = locate_tcp(lt, data)[2]
    seq = (int.from_bytes(data[t + 4 : t + 8], "big") - 0x12345) & 0xFFFFFFFF
    other = data[: t + 4] + seq.to_bytes(4, "big") + data[t + 8 :]
    path = write(
        tmp_path / "two-synacks.pcap", pkts[:at] + [(ts - 1, lt, other, orig, iface)] + pkts[at:]
    )
    before = tlsinspect.sessions(tfo_capture)
    after = tlsinspect.sessions(path)
    assert [(s["verdict"], s["handshake"], s["anomalies"]) for s in after] == [
        (s["verdict"], s["handshake"], s["anomalies"]) for s in before
    ]
    assert ours(path) == tshark_messages(tshark, path)
