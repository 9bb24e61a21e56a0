"""Which files a command reads: paths, directories and globs expanded, the rotated series rule,
the order and time check of a series, and a series read as one stream of records."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from helpers import OWN, read
from pcaptools import write

from tlsinspect.capture import Follow, open_capture
from tlsinspect.capture.inputs import (
    Input,
    SeriesSource,
    capture_paths,
    open_input,
    plan,
    series_key,
    time_span,
)

SERIES = OWN / "series"
RING = sorted(SERIES.glob("ring_*.pcapng"))
DEMO = OWN / "demo.pcapng"
STARTTLS = OWN / "starttls.pcap"


@pytest.mark.parametrize(
    "names",
    [
        ["rot.pcap", "rot.pcap1", "rot.pcap2", "rot.pcap10"],  # tcpdump -C
        ["rot.pcap00", "rot.pcap01", "rot.pcap02"],  # tcpdump -C -W 100
        ["dump-20261207-2030.pcap", "dump-20261207-2031.pcap"],  # tcpdump -G, strftime
        ["t-1765139400.pcap", "t-1765139460.pcap"],  # tcpdump -G, %s
        ["t-203000.pcap", "t-203000.pcap1", "t-203100.pcap"],  # -G with -C
        [p.name for p in RING],  # dumpcap -b
    ],
)
def test_names_of_one_series_share_a_key(names):
    assert len({series_key(os.path.join("d", n)) for n in names}) == 1


@pytest.mark.parametrize(
    "names",
    [
        ["tls12.pcapng", "tls13.pcapng"],  # short numbers are names, not times
        ["a.pcap", "b.pcap"],
        ["dump-2030.pcap", "dump-20301.pcap"],  # -G names have one length
        ["x/rot.pcap", "y/rot.pcap1"],  # another directory
        ["demo.pcapng", "demo.pcapng.gz"],
    ],
)
def test_names_of_different_captures_do_not(names):
    assert len({series_key(n) for n in names}) == len(names)


def test_a_directory_is_its_captures_sorted_and_the_rest_is_said(tmp_path):
    (tmp_path / "b").mkdir()
    shutil.copy(DEMO, tmp_path / "b" / "z.pcapng")
    shutil.copy(STARTTLS, tmp_path / "a.pcap")
    (tmp_path / "notes.txt").write_text("not a capture")
    (tmp_path / "b" / "keys.log").write_text("CLIENT_RANDOM 00 00\n")
    skipped: list[str] = []
    found = capture_paths(tmp_path, skipped)
    assert found == [str(tmp_path / "a.pcap"), str(tmp_path / "b" / "z.pcapng")]
    (line,) = skipped
    assert "2 files that are not captures skipped" in line and "notes.txt" in line


def test_globs_files_and_empty_matches(tmp_path):
    assert capture_paths([str(OWN / "tls1*.pcapng"), DEMO]) == [
        str(OWN / "tls12.pcapng"),
        str(OWN / "tls13.pcapng"),
        str(DEMO),
    ]
    with pytest.raises(FileNotFoundError, match="no capture matches"):
        capture_paths(str(tmp_path / "*.pcap"))
    with pytest.raises(FileNotFoundError, match="no capture file in this directory"):
        capture_paths(tmp_path)
    with pytest.raises(ValueError):
        capture_paths([])


def test_time_span_from_the_end_is_the_time_of_the_last_record(tmp_path):
    for path in [*RING, DEMO, STARTTLS, OWN / "stacks.pcap"]:
        packets = read(path)
        assert time_span(str(path)) == (packets[0][0], packets[-1][0]), path
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(STARTTLS.read_bytes()[:-7])  # the last record cut: read through instead
    packets = read(cut)
    assert time_span(str(cut)) == (packets[0][0], packets[-1][0])


def test_a_series_is_ordered_by_time_whatever_the_order_given():
    notes: list[str] = []
    given = [str(p) for p in reversed(RING)]
    (inp,) = plan(given, None, notes)
    assert inp.paths == tuple(str(p) for p in RING) and not notes
    assert [Input((p,)) for p in given] == plan(given, False)


def test_a_file_of_the_series_without_packets_goes_first(tmp_path):
    names = [tmp_path / f"g-20261207-21055{i}.pcap" for i in range(3)]
    names[0].write_bytes(STARTTLS.read_bytes()[:24])  # the file header tcpdump -G wrote first
    packets = read(STARTTLS)
    half = len(packets) // 2
    write(names[1], packets[:half])
    write(names[2], packets[half:])
    (inp,) = plan([str(p) for p in reversed(names)])
    assert inp.paths == tuple(str(p) for p in names)
    with open_input(inp) as src:
        assert [r[0] for r in src] == [p[0] for p in packets]


def test_files_overlapping_in_time_are_read_apart_and_said(tmp_path):
    a, b = tmp_path / "rot.pcap", tmp_path / "rot.pcap1"
    shutil.copy(DEMO, a)
    shutil.copy(DEMO, b)  # the same times: not one capture cut in two
    notes: list[str] = []
    assert plan([str(a), str(b)], None, notes) == [Input((str(a),)), Input((str(b),))]
    (note,) = notes
    assert "named like one rotated series" in note and "read apart" in note
    notes.clear()
    (forced,) = plan([str(a), str(b)], True, notes)
    assert len(forced.paths) == 2 and "overlap in time" in notes[0]


def test_a_series_reads_as_the_files_one_after_the_other():
    with open_input(Input(tuple(str(p) for p in RING))) as src:
        assert isinstance(src, SeriesSource)
        records = list(src)
        assert src.packets == len(records)
        assert src.paths == [str(p) for p in RING]
        assert [src.file_of(r[0]) for r in records] == [str(p) for p in RING for _ in read(p)]
    assert records == [r for p in RING for r in read(p)]


def test_one_file_is_opened_as_before():
    src = open_input(Input((str(DEMO),)))
    with src:
        assert not isinstance(src, SeriesSource)
        assert src.file_of(0) == str(DEMO)


def test_a_recently_written_capture_cut_short_may_still_be_written(tmp_path):
    cut = tmp_path / "growing.pcap"
    cut.write_bytes(STARTTLS.read_bytes()[:-7])
    with open_capture(cut) as src:
        list(src)
        assert src.problems[-1].startswith("capture may still be being written (modified ")
        assert "--follow reads it as it grows" in src.problems[-1]
    old = os.path.getmtime(cut) - 60
    os.utime(cut, (old, old))
    with open_capture(cut) as src:
        list(src)
        assert src.problems[-1].startswith("capture truncated: ")
    assert Path(cut).exists()


def test_a_followed_file_goes_on_to_the_next_file_the_writer_opens(tmp_path):
    """Following rot.pcap: a stale rot.pcap1 (an earlier run's) is not its next file; the
    rot.pcap2 written now is, and the stop ends the reading there."""
    first, stale, nxt = tmp_path / "rot.pcap", tmp_path / "rot.pcap1", tmp_path / "rot.pcap2"
    shutil.copy(STARTTLS, first)
    shutil.copy(OWN / "stacks.pcap", stale)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    follow = Follow(poll=0.02)
    src = open_input(Input((str(first),)), follow)
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(src), daemon=True)
    reader.start()
    time.sleep(0.5)
    assert got == read(STARTTLS) and reader.is_alive()  # waiting at the end of rot.pcap
    shutil.copy(DEMO, nxt)
    time.sleep(0.5)
    assert reader.is_alive() and got == read(STARTTLS) + read(DEMO)
    follow.stop.set()
    reader.join(5)
    assert not reader.is_alive()
    assert src.paths == [str(first), str(nxt)]
    assert src.file_of(read(DEMO)[0][0]) == str(nxt)
    src.close()
