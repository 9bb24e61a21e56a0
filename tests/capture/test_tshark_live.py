"""The statistics dumpcap prints when it stops, as `tlsinspect live --engine tshark` reads them.

The lines are dumpcap 4.0's format (capture_loop_get_errmsg / report_counts in dumpcap.c): the
e2e live tests read real ones with no drop; these check drops land in the right counters.
"""

from __future__ import annotations

from tlsinspect.capture.live import CaptureStats
from tlsinspect.capture.tshark_live import parse_dumpcap_statistics


def test_drops_split_between_the_kernel_and_dumpcap():
    stats = CaptureStats()
    parse_dumpcap_statistics(
        [
            "Capturing on 'Loopback: lo'",
            "\rPackets: 8 \rPackets captured: 1200",
            "Packets received/dropped on interface 'eth0': 1300/100 "
            "(pcap:60/dumpcap:25/flushed:5/ps_ifdrop:10) (92.3%)",
        ],
        stats,
    )
    assert (stats.captured, stats.kernel_packets) == (1200, 1300)
    assert stats.kernel_drops == 70  # libpcap's (socket buffer) and the interface's
    assert stats.queue_drops == 30  # dumpcap's own, and what it flushed


def test_nothing_said_leaves_the_drops_unknown():
    stats = CaptureStats()
    parse_dumpcap_statistics(["dumpcap: The capture session could not be initiated"], stats)
    assert stats.kernel_drops is None and stats.kernel_packets is None and stats.captured == 0
