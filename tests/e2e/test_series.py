"""Rotated captures read as one capture, and captures read as they are written (--follow).

The series are real: captures/series/ was recorded by captures/record_series.py with
`dumpcap -b filesize:40` (a TLS 1.2 mutual connection A whose data crosses two file boundaries,
and a one-way connection B that starts in a later file), and the tcpdump tests run the same
recorder with `tcpdump -C 1` on loopback, here and now. The oracle of a series is the same files
merged by mergecap into one capture, read by tlsinspect and by tshark.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import OWN, read, run_cli, tcp_info
from test_vs_tshark import ours, tshark_messages

import tlsinspect

SERIES = OWN / "series"
RING = sorted(SERIES.glob("ring_*.pcapng"))
TRUTH = json.loads((SERIES / "ring.truth.json").read_text())


def _without_file(sessions: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "file"} for s in sessions]


def _starts_in(files: list[Path], client_port: int) -> Path:
    """The file holding the SYN of the connection from `client_port` (read from the packets)."""
    for f in files:
        for p in read(f):
            info = tcp_info(p)
            if info is not None and info[0] == client_port and info[2] & 0x02:
                return f
    raise AssertionError(f"no SYN from port {client_port}")


def _check_truth(sessions: list[dict], truth: dict, files: list[Path]) -> None:
    """One session per recorded connection, with its verdict, logged with its first file."""
    by_port = {s["client_port"]: s for s in sessions}
    assert len(sessions) == len(truth["sessions"]), [s["client_port"] for s in sessions]
    for t in truth["sessions"]:
        s = by_port[t["client_port"]]
        assert s["verdict"] == t["verdict"], (t, s["reason"])
        assert s["basis"] == "observed" and s["complete"]
        assert s["file"] == str(_starts_in(files, t["client_port"]))


def test_the_recorded_ring_buffer_is_one_capture():
    assert len(RING) == len(TRUTH["files"]) == 3
    r = run_cli(SERIES, "--format", "json")
    assert r.returncode == 0, r.stderr
    sessions = json.loads(r.stdout)
    _check_truth(sessions, TRUTH, RING)
    # connection A's data crosses both boundaries: its first and last packets are in the first
    # and the last file, and its session is the one that began in the first
    a = TRUTH["sessions"][0]["client_port"]
    assert _starts_in(RING, a) == RING[0]
    assert any(tcp_info(p) and tcp_info(p)[0] == a for p in read(RING[-1]))  # type: ignore[index]
    assert "ring.truth.json" in r.stderr  # the file of the directory that is no capture


def test_the_series_reads_as_the_merged_capture(tmp_path, tshark):
    merged = tmp_path / "merged.pcapng"
    subprocess.run(["mergecap", "-w", str(merged), *map(str, RING)], check=True, timeout=60)
    series = json.loads(run_cli(*RING, "--format", "json").stdout)
    whole = json.loads(run_cli(merged, "--format", "json").stdout)
    assert _without_file(series) == _without_file(whole)
    assert {s["file"] for s in whole} == {str(merged)}
    # and tshark, on the merged file, sees the handshakes the series shows
    mine = ours(merged)
    assert mine == tshark_messages(tshark, merged)
    assert sum(len(v) for v in mine.values()) > 0


def test_the_tshark_engine_reads_the_series_as_one_too(tshark):
    r = run_cli(SERIES, "--engine", "tshark", "--format", "json", timeout=300)
    assert r.returncode == 0, r.stderr
    _check_truth(json.loads(r.stdout), TRUTH, RING)


def test_read_apart_a_crossing_connection_is_cut_in_pieces():
    r = run_cli(*RING, "--no-series", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    apart = [json.loads(line) for line in r.stdout.splitlines()]
    a = TRUTH["sessions"][0]["client_port"]
    pieces = [s for s in apart if s["client_port"] == a]
    assert len(pieces) > 1  # the later files have its data without its handshake
    assert [p["verdict"] for p in pieces][0] == "mutual"
    assert {p["verdict"] for p in pieces[1:]} <= {"incomplete", "encrypted"}


def test_table_names_the_files_and_counts_each(tmp_path):
    r = run_cli(*RING, "--width", "1000")
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith(f"{RING[0]} .. {RING[-1].name} (series of 3 files): pcapng, ")
    assert first.endswith("2 TLS sessions")
    two = run_cli(OWN / "demo.pcapng", OWN / "starttls.pcap", "--width", "1000")
    lines = two.stdout.splitlines()
    assert lines[0].startswith(f"{OWN / 'demo.pcapng'}: pcapng")
    assert lines[1].startswith(f"{OWN / 'starttls.pcap'}: pcap")
    columns = next(line for line in lines if line.lstrip().startswith("#"))
    assert columns.split()[:2] == ["#", "file"]
    assert any(str(OWN / "starttls.pcap") in line for line in lines[3:])


def test_the_api_and_check_read_the_series_too(tmp_path):
    frame = tlsinspect.read_capture(SERIES)
    assert len(frame) == 2 and set(frame["verdict"]) == {"mutual", "one-way"}
    assert "ring.truth.json" in frame.attrs["notes"][0]
    assert len(tlsinspect.read_capture(RING, series=False)) > 2
    policy = tmp_path / "policy.toml"
    port = TRUTH["server_ports"]["mutual"]
    policy.write_text(
        f'[[rule]]\nname = "mutual on {port}"\nrequire_match = true\n'
        f'[rule.match]\nport = [{port}]\n[rule.require]\nverdict = "mutual"\n'
    )
    r = run_cli("check", SERIES, "--policy", policy, "--format", "json")
    assert r.returncode == 0, r.stdout
    report = json.loads(r.stdout)
    assert report["sessions"] == 2 and report["rules"][0]["status"] == "pass", report
    # read apart, the later pieces of the mutual connection are not mutual: the rule fails
    r = run_cli("check", *RING, "--no-series", "--policy", policy, "--format", "json")
    assert r.returncode == 1, r.stdout


def test_a_file_named_that_is_no_capture_is_exit_2(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    r = run_cli(OWN / "demo.pcapng", bad, "--format", "jsonl")
    assert r.returncode == 2
    assert f"{bad}: not a pcap or pcapng capture" in r.stderr
    assert "Traceback" not in r.stderr
    assert run_cli(bad).stdout == ""


def _need_root_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.fail("recording on loopback needs root (CI runs as root)")
    for tool in tools:
        assert shutil.which(tool), f"{tool} missing: scripts/test installs it"


def _record(out: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(OWN / "record_series.py"), "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class _Lines:
    """The lines a process writes on stdout, with the time each came."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._run, args=(proc,), daemon=True)
        self._thread.start()

    def _run(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append((time.monotonic(), line))

    def join(self) -> list[str]:
        self._thread.join(30)
        return [line for _, line in self.lines]


def _follow(path: Path, *args: str) -> tuple[subprocess.Popen[str], _Lines]:
    """`tlsinspect PATH --follow ARGS` started, its stdout lines collected as they come."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlsinspect", str(path), "--follow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, _Lines(proc)


def _read_offset(proc: subprocess.Popen[str], path: Path) -> int | None:
    """How far the process has read `path` (its descriptor's offset, from /proc), None while it
    does not have the file open."""
    fds = Path(f"/proc/{proc.pid}/fd")
    try:
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) == str(path):
                    info = (Path(f"/proc/{proc.pid}/fdinfo") / fd.name).read_text()
                    return int(info.split("pos:", 1)[1].split()[0])
            except OSError:
                continue
    except OSError:
        pass
    return None


def _reading(proc: subprocess.Popen[str], path: Path, to_end: bool = False) -> None:
    """Wait until the follower has `path` open (started up, waiting for bytes), or, `to_end`,
    has read it to its end."""
    deadline = time.monotonic() + 60
    while True:
        at = _read_offset(proc, path)
        if at is not None and (not to_end or at >= path.stat().st_size):
            return
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"the follower did not read {path} ({at})"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[str], sig: int, last: Path) -> str:
    """Once the follower has read `last` to its end, the signal: it must end cleanly (exit code
    0, no traceback); return its stderr."""
    _reading(proc, last, to_end=True)
    time.sleep(0.2)  # the packets read are analysed
    proc.send_signal(sig)
    try:
        proc.wait(timeout=60)  # stdout is _Lines' to read
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return err


def test_tcpdump_rotation_followed_as_it_is_written(tmp_path):
    """tcpdump -C 1 writes rot.pcap, rot.pcap1, ... while connection A runs; tlsinspect --follow
    on rot.pcap reports A as soon as its handshake is decided, moves on to each next file, and
    after SIGINT has the same sessions as the whole series read afterwards."""
    _need_root_tools("tcpdump")
    out = tmp_path / "rot"
    recorder = _record(
        out, "--tool", "tcpdump", "--size", "1", "--bytes", "2500000", "--prefix", "rot"
    )
    first = out / "rot.pcap"
    deadline = time.monotonic() + 20
    while not first.exists():
        assert recorder.poll() is None, recorder.communicate()
        assert time.monotonic() < deadline, "tcpdump wrote no file"
        time.sleep(0.02)
    follow, lines = _follow(first, "--format", "jsonl")
    rec_out, rec_err = recorder.communicate(timeout=120)
    assert recorder.returncode == 0, rec_out + rec_err
    recorded_at = time.monotonic()
    truth = json.loads((out / "rot.truth.json").read_text())
    files = [out / f for f in truth["files"]]
    _stop(follow, signal.SIGINT, files[-1])
    assert len(files) >= 3  # 2.5 MB in files of 1 MB
    followed = [json.loads(line) for line in lines.join()]
    _check_truth(followed, truth, files)
    # the mutual session was reported while tcpdump was still writing
    assert lines.lines[0][0] < recorded_at
    whole = json.loads(run_cli(out, "--format", "json").stdout)
    _check_truth(whole, truth, files)
    assert _without_file(sorted(followed, key=lambda s: s["start_time"])) == _without_file(whole)


def test_tcpdump_time_rotation_is_one_series(tmp_path):
    """tcpdump -G 1: a file a second, named by strftime (its first file may hold no packet)."""
    _need_root_tools("tcpdump")
    out = tmp_path / "g"
    recorder = _record(
        out, "--tool", "tcpdump-time", "--size", "1", "--bytes", "200000", "--seconds", "3"
    )
    rec_out, rec_err = recorder.communicate(timeout=120)
    assert recorder.returncode == 0, rec_out + rec_err
    truth = json.loads((out / "ring.truth.json").read_text())
    files = [out / f for f in truth["files"]]
    assert len(files) >= 3 and all(f.name.startswith("ring-20") for f in files)
    r = run_cli(out, "--format", "json")
    assert r.returncode == 0, r.stderr
    _check_truth(json.loads(r.stdout), truth, files)


def test_dumpcap_ring_files_are_one_series(tmp_path):
    _need_root_tools("dumpcap")
    out = tmp_path / "ring"
    recorder = _record(out, "--tool", "dumpcap", "--size", "100", "--bytes", "400000")
    rec_out, rec_err = recorder.communicate(timeout=120)
    assert recorder.returncode == 0, rec_out + rec_err
    truth = json.loads((out / "ring.truth.json").read_text())
    files = [out / f for f in truth["files"]]
    assert len(files) >= 3
    r = run_cli(out, "--format", "json")
    assert r.returncode == 0, r.stderr
    _check_truth(json.loads(r.stdout), truth, files)


# -- a capture still being written ----------------------------------------------------------------


def _grow(src: Path, dst: Path, step: int, pause: float, stop_at: int | None = None) -> None:
    """Append the bytes of a recorded capture to `dst` in steps of `step` bytes (cutting records
    anywhere), as a capture tool writing it would."""
    data = src.read_bytes()[:stop_at]
    with open(dst, "ab") as f:
        for at in range(0, len(data), step):
            f.write(data[at : at + step])
            f.flush()
            time.sleep(pause)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_follow_reads_a_growing_file_and_stops_cleanly(tmp_path, sig):
    src = OWN / "tls12.pcapng"
    growing = tmp_path / "growing.pcapng"
    growing.write_bytes(b"")  # the writer has opened it, nothing written yet
    follow, lines = _follow(growing, "--format", "jsonl")
    _reading(follow, growing)
    _grow(src, growing, 997, 0.005)
    err = _stop(follow, sig, growing)
    followed = [json.loads(line) for line in lines.join()]
    whole = json.loads(run_cli(src, "--format", "json").stdout)
    key = lambda s: (s["start_time"], s["client_port"])  # noqa: E731
    assert _without_file(sorted(followed, key=key)) == _without_file(sorted(whole, key=key))
    assert "truncated" not in err and "may still be" not in err


def test_follow_table_prints_each_session_then_the_totals(tmp_path):
    src = OWN / "demo.pcapng"
    growing = tmp_path / "demo.pcapng"
    growing.write_bytes(b"")
    follow, lines = _follow(growing)
    _reading(follow, growing)
    _grow(src, growing, 4096, 0.01)
    _stop(follow, signal.SIGINT, growing)
    text = "".join(lines.join())
    whole = json.loads(run_cli(src, "--format", "json").stdout)
    assert text.startswith(f"following {growing} as it grows; Ctrl-C to stop\n")
    assert text.count(" | ") == len(whole)  # one line per session, with its reason
    assert f"{growing}: pcapng, " in text and f"{len(whole)} TLS sessions (" in text


def test_without_follow_a_file_being_written_is_said_so(tmp_path):
    growing = tmp_path / "growing.pcapng"
    _grow(OWN / "demo.pcapng", growing, 1 << 20, 0, stop_at=30_000)  # cut inside a record
    r = run_cli(growing, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert re.search(
        r"capture may still be being written \(modified \d s ago; --follow reads", r.stderr
    )
    assert "truncated" not in r.stderr
    old = time.time() - 3600
    os.utime(growing, (old, old))
    assert "capture truncated: " in run_cli(growing, "--format", "jsonl").stderr
