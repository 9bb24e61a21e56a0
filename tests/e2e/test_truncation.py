"""Captures cut short: frames cut inside their headers (a snaplen shorter than the headers) and
capture files that end inside a record (`head -c N`), with both engines and `compare`.

Every run must end with a report and exit code 0: the frames it had to skip are counted, with
the header they end in, and a file cut inside a record is analysed up to the cut and says so.
tshark is the oracle for what a frame still holds.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from helpers import OWN, flowed, own_captures, read, run_cli, run_tshark, shared_captures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcaptools import finished, write

from tlsinspect.engines.builtin import Analyzer

SKIPPED = re.compile(r"frames skipped because they end inside their headers .*?: ([\d,]+) \((.*)\)")


def editcap_snaplen(src: Path, dst: Path, snaplen: int) -> Path:
    subprocess.run(["editcap", "-s", str(snaplen), str(src), str(dst)], check=True, timeout=60)
    return dst


def skipped_frames(stderr: str) -> int:
    found = SKIPPED.search(stderr)
    return int(found.group(1).replace(",", "")) if found else 0


# -- frames cut inside their headers -----------------------------------------------------------


@pytest.mark.parametrize(
    "name,snaplen",
    [("tls12.pcapng", n) for n in (10, 20, 34, 50, 60, 74)] + [("stacks.pcap", 40)],
)
def test_snaplen_inside_the_headers_skips_as_many_frames_as_tshark_cannot_read(
    tmp_path, tshark, name, snaplen
):
    """editcap -s N: every frame whose fixed TCP header (20 bytes, up to the urgent pointer) is
    not whole is skipped and counted; tshark shows no urgent pointer for exactly those."""
    cut = editcap_snaplen(OWN / name, tmp_path / f"cut{snaplen}.pcapng", snaplen)
    r = run_cli("--format", "json", cut)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    json.loads(r.stdout)
    rows = run_tshark(tshark, cut, ["frame.number", "tcp.urgent_pointer"], "frame")
    unreadable = sum(1 for row in rows if len(row) < 2 or row[1] == "")
    assert skipped_frames(r.stderr) == unreadable
    table = run_cli(cut)
    assert table.returncode == 0 and "Traceback" not in table.stderr
    if unreadable:
        assert "end inside their headers" in flowed(table.stdout)


def every_capture() -> list[Path]:
    return [*own_captures(), *shared_captures()]


def analyse(packets) -> int:
    """Run the pipeline over packet tuples; the number of sessions (it must not raise)."""
    return sum(1 for _ in Analyzer().run(iter(packets)))


@pytest.fixture(scope="module")
def all_packets() -> dict[str, list]:
    return {p.name: read(p) for p in every_capture()}


def test_every_frame_cut_at_every_header_length(all_packets):
    """Every frame of every capture cut at every length up to 100 bytes (past the longest
    Ethernet/VLAN/IPv6/TCP header stack of the captures): the pipeline never raises, and every
    frame it does not read as TCP is counted as not TCP or as cut."""
    for name, packets in all_packets.items():
        for n in range(101):
            cut = [(ts, lt, d[:n], orig, i) for ts, lt, d, orig, i in packets]
            a = Analyzer()
            for _ in a.run(iter(cut)):
                pass
            assert a.stats.packets == len(packets), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_frame_cut_at_its_own_length(all_packets, data):
    """Hypothesis: each frame cut at a length of its own (inside the headers, the payload, or
    not at all), as a busy capture host with a varying snaplen would cut them."""
    name = data.draw(st.sampled_from(sorted(all_packets)))
    packets = all_packets[name]
    n = len(packets)
    lengths = data.draw(st.lists(st.integers(0, 120), min_size=n, max_size=n))
    cut = [
        (ts, lt, d[:k], orig, i) for (ts, lt, d, orig, i), k in zip(packets, lengths, strict=True)
    ]
    analyse(cut)


def test_cut_frames_are_reported_with_their_header(tmp_path):
    packets = read(OWN / "tls12.pcapng")
    cut = [(ts, lt, d[:30] if k % 2 else d, o, i) for k, (ts, lt, d, o, i) in enumerate(packets)]
    path = write(tmp_path / "every-other.pcap", cut)
    r = run_cli("--format", "json", path)
    assert r.returncode == 0, r.stderr
    found = SKIPPED.search(r.stderr)
    assert found is not None, r.stderr
    assert int(found.group(1)) == len(packets) // 2
    assert "IPv4 header" in found.group(2) or "IPv6 header" in found.group(2)


# -- capture files cut inside a record -----------------------------------------------------------


def cut_points(path: Path) -> list[int]:
    """Lengths in every class: inside the file header, inside the first block or record
    header, inside the first packet record, inside later records, one byte short."""
    size = path.stat().st_size
    return sorted({10, 26, 27, 40, 60, size // 3, size // 2, size * 2 // 3, size - 7, size - 1})


@pytest.mark.parametrize("name", ["tls12.pcapng", "stacks.pcap"])
def test_truncated_file_with_both_engines_and_compare(tmp_path, name):
    src = OWN / name
    whole = json.loads(run_cli("--format", "json", src).stdout)
    size = src.stat().st_size
    for n in cut_points(src):
        path = tmp_path / f"{n}-{name}"
        path.write_bytes(src.read_bytes()[:n])
        finished(path)
        ours = run_cli("--format", "json", path)
        assert "Traceback" not in ours.stderr, (n, ours.stderr)
        if ours.returncode == 2:  # nothing readable: the one-line error of an unusable file
            assert n < 100 and len(ours.stderr.strip().splitlines()) == 1, (n, ours.stderr)
            continue
        assert ours.returncode == 0, (n, ours.stderr)
        sessions = json.loads(ours.stdout)
        assert len(sessions) <= len(whole)
        assert "capture truncated" in ours.stderr, (n, ours.stderr)
        if n not in (size // 2, size - 1):
            continue  # tshark takes a second a run: two cuts inside records are enough
        theirs = run_cli("--engine", "tshark", "--format", "json", path, timeout=300)
        assert theirs.returncode == 0 and "Traceback" not in theirs.stderr, (n, theirs.stderr)
        assert "capture truncated" in theirs.stderr, (n, theirs.stderr)
        assert len(json.loads(theirs.stdout)) == len(sessions)
        table = run_cli("--engine", "tshark", path, timeout=300)
        assert table.returncode == 0 and "capture truncated" in flowed(table.stdout), table.stderr
        compared = run_cli("compare", "--format", "json", path, timeout=300)
        assert compared.returncode in (0, 1) and "Traceback" not in compared.stderr, (
            n,
            compared.stderr,
        )
        report = json.loads(compared.stdout)["captures"][0]
        assert any("capture truncated" in p for p in report["problems"])
        assert report["sessions"]["builtin"] == len(sessions)
        assert report["disagreements"] == [], report["disagreements"]
