"""Captures made to grow an analyzer's memory (`captures/hostile_flood.py`): half-open handshakes,
64 KB partial ClientHellos, a SYN flood, a port scan, a reset flood. Whatever they hold, the
peak RSS of `tlsinspect` stays under its memory limit, every connection that showed TLS is
reported once, the evicted ones as incomplete with the reason, and the evictions are counted.

Each capture is generated at test time into a temporary directory and run through the command
line as a user runs it; the peak RSS is the kernel's account of that child (`wait4`). The large
captures (200,000 connections, 8,000 partial hellos) are marked `large`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import OWN, ROOT, read, run_cli, tcp_connections
from pcaptools import write

from tlsinspect.capture import open_capture
from tlsinspect.engines.builtin import Analyzer
from tlsinspect.engines.lifecycle import DEFAULT_LIMITS, MEMORY_LIMIT_MB, Limits
from tlsinspect.engines.tshark import TsharkRun

EVICTED = re.compile(
    r"connections evicted to keep memory under (\d+) MB: ([\d,]+) \((.*)\); ([\d,]+) of them "
    r"showed TLS"
)


def _generate(tmp_path_factory: pytest.TempPathFactory, size: str) -> Path:
    out = tmp_path_factory.mktemp(f"hostile_flood_{size}")
    r = subprocess.run(
        [sys.executable, "-m", "captures.hostile_flood", str(out), "--size", size],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory, "small")


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory, "large")


@dataclass
class Run:
    sessions: list[dict]
    stderr: str
    peak_mb: float  # the child's peak RSS
    connections: int  # in the capture
    tls: int  # of them showing TLS

    def evictions(self) -> tuple[int, str, int] | None:
        """The report's count of evictions: (all, by limit, of them TLS), None if it has none."""
        m = EVICTED.search(self.stderr)
        if m is None:
            return None
        assert int(m.group(1)) == self.limit_mb
        return int(m.group(2).replace(",", "")), m.group(3), int(m.group(4).replace(",", ""))

    limit_mb: int = MEMORY_LIMIT_MB


# A small process that starts the command and writes its peak RSS (KiB) into the file named
# first: the peak of a child forked from this test process would count this one's memory
# (Linux keeps the high-water mark of the memory a process had before its exec).
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def analyse(directory: Path, name: str, *options: str, fmt: str = "jsonl") -> Run:
    """`python -m tlsinspect CAPTURE --format FMT`, its peak RSS taken from the kernel."""
    out, err = directory / f"{name}.{fmt}.out", directory / f"{name}.{fmt}.err"
    peak = directory / f"{name}.{fmt}.peak"
    command = ["-m", "tlsinspect", str(directory / name), "--format", fmt, *options]
    with open(out, "wb") as o, open(err, "wb") as e:
        code = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(peak), *command], stdout=o, stderr=e
        ).returncode
    stderr = err.read_text()
    assert "Traceback" not in stderr, stderr
    assert code == 0, stderr
    facts = json.loads((directory / "manifest.json").read_text())["files"][name]
    text = out.read_text()
    sessions = [json.loads(line) for line in text.splitlines()] if fmt == "jsonl" else []
    limit = (
        int(options[options.index("--memory-limit") + 1])
        if "--memory-limit" in options
        else MEMORY_LIMIT_MB
    )
    return Run(
        sessions,
        stderr if fmt == "jsonl" else text,
        int(peak.read_text()) / 1024,  # KiB on Linux
        facts["connections"],
        facts["tls"],
        limit,
    )


def _evicted(s: dict) -> bool:
    return any(a.startswith("evicted: ") for a in s["anomalies"])


def check_bounded(run: Run) -> list[dict]:
    """What every hostile capture must give: RSS under the limit, every TLS connection reported
    once, the evicted ones incomplete with the reason and as many as the report counts."""
    assert run.peak_mb < run.limit_mb, f"peak RSS {run.peak_mb:.0f} MB"
    assert len(run.sessions) == run.tls
    assert len({(s["client_ip"], s["client_port"]) for s in run.sessions}) == run.tls
    evicted = [s for s in run.sessions if _evicted(s)]
    for s in evicted:
        assert s["verdict"] == "incomplete", s
        assert s["ended"].startswith("evicted from memory ("), s
        assert s["ended"].removeprefix("evicted from memory (") in s["reason"], s
    counted = run.evictions()
    if counted is None:
        assert not evicted
    else:
        assert counted[2] == len(evicted)
        parts = re.findall(r"([\d,]+) at ", counted[1])
        assert sum(int(p.replace(",", "")) for p in parts) == counted[0]
    return evicted


# -- the two cases of unbounded growth, at both sizes ----------------------------------------


def _half_open(directory: Path) -> None:
    run = analyse(directory, "half_open.pcap")
    evicted = check_bounded(run)
    # more connections than the flows followed at once: the oldest were evicted, at that limit
    assert run.connections > DEFAULT_LIMITS.flows
    assert len(evicted) >= run.connections - DEFAULT_LIMITS.flows
    assert all("connections followed at once" in s["ended"] for s in evicted)
    # each sent a part of its ClientHello: never `mutual`, every one incomplete
    assert {s["verdict"] for s in run.sessions} == {"incomplete"}
    assert {s["ended"] for s in run.sessions if not _evicted(s)} == {"the capture ends"}


def _partial_hello(directory: Path, *options: str) -> Run:
    run = analyse(directory, "partial_hello.pcap", *options)
    evicted = check_bounded(run)
    limits = Limits.for_memory(run.limit_mb)
    # each holds 64 KB waiting for the end of its hello: past the bytes buffered in all, evicted
    assert run.connections * 60_000 > limits.buffered
    assert evicted
    assert all("handshake bytes held in all" in s["ended"] for s in evicted)
    return run


def test_half_open_connections(small: Path) -> None:
    _half_open(small)


def test_partial_hellos(small: Path) -> None:
    _partial_hello(small)


def test_partial_hellos_under_a_lower_limit(small: Path) -> None:
    """`--memory-limit` lowers the limits: 2,000 hellos of 64 KB (125 MB) fit under 120 MB."""
    run = _partial_hello(small, "--memory-limit", "120")
    assert run.limit_mb == 120
    assert (
        len([s for s in run.sessions if _evicted(s)])
        > run.tls - Limits.for_memory(120).buffered // 60_000
    )


@pytest.mark.parametrize(
    ("value", "said"), [("50", "too small: at least 100 MB"), ("lots", "not a number of MB")]
)
def test_a_memory_limit_that_cannot_be_is_one_line_and_exit_2(value: str, said: str) -> None:
    r = run_cli(OWN / "tls12.pcapng", "--memory-limit", value)
    assert r.returncode == 2 and not r.stdout
    assert said in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.large
def test_half_open_connections_large(large: Path) -> None:
    _half_open(large)


@pytest.mark.large
def test_partial_hellos_large(large: Path) -> None:
    _partial_hello(large)


# -- floods and scans that never show TLS, and a reset flood ---------------------------------


def test_syn_flood(small: Path) -> None:
    """SYNs never answered: not TLS, so no session, but the flows past the limit are counted."""
    run = analyse(small, "syn_flood.pcap")
    check_bounded(run)
    counted = run.evictions()
    assert counted is not None and counted[2] == 0
    assert counted[0] >= run.connections - DEFAULT_LIMITS.flows


def test_port_scan(small: Path) -> None:
    """A SYN answered by a RST, port after port: each connection leaves the table at its RST,
    nothing is evicted or forgotten."""
    run = analyse(small, "port_scan.pcap")
    check_bounded(run)
    assert run.evictions() is None and "forgotten" not in run.stderr


def test_reset_flood(small: Path) -> None:
    """A part of a ClientHello, then the server's RST: each session is logged at its reset and
    leaves the table, so nothing is evicted and the flow table ends empty."""
    run = analyse(small, "reset_flood.pcap")
    check_bounded(run)
    assert run.evictions() is None and "forgotten" not in run.stderr
    assert {(s["verdict"], s["ended"]) for s in run.sessions} == {
        ("failed", "connection reset by the server")
    }
    analyzer = Analyzer()
    with open_capture(small / "reset_flood.pcap") as source:
        assert sum(1 for _ in analyzer.run(source)) == run.tls
    assert analyzer.flows == {} and not analyzer.active and analyzer.held == 0


def test_the_table_counts_the_evictions(small: Path) -> None:
    """The text report says under its table how many connections were evicted, and why."""
    run = analyse(small, "partial_hello.pcap", "--width", "1000", fmt="table")
    assert run.peak_mb < MEMORY_LIMIT_MB
    counted = run.evictions()
    assert counted is not None and counted[2] == counted[0] > 0
    assert f"{run.tls:,} TLS sessions" in run.stderr


# -- eviction never makes a verdict up -------------------------------------------------------


def _interleaved(path: Path) -> list:
    """The packets of a recorded capture with its connections interleaved, a packet of each in
    turn (each one's own order kept, the times made increasing): all of them open at once."""
    packets = read(path)
    conns = [c.packets for c in tcp_connections(packets)]
    out = [packets[c[i]] for i in range(max(map(len, conns))) for c in conns if i < len(c)]
    t0 = packets[0][0]
    return [(t0 + n * 1000, *p[1:]) for n, p in enumerate(out)]


def _verdicts(packets: list, limits: Limits) -> tuple[dict, Analyzer]:
    analyzer = Analyzer(limits=limits)
    records: dict = {}
    for r in analyzer.run(iter(packets)):
        records.setdefault((r.client[1], r.server[1]), []).append(r)
    return records, analyzer


@pytest.mark.parametrize("capture", ["tls12.pcapng", "tls13.pcapng", "stack_go.pcapng"])
def test_tiny_limits_never_make_a_verdict_up(capture: str) -> None:
    """A recorded capture with all its connections open at once, under absurdly small limits
    (3 flows, 4 KB buffered, 4 decided flows remembered): every connection is still reported;
    one not evicted gets the verdict it gets without limits; an evicted one is marked, and
    `mutual` only where it is mutual without limits; a connection forgotten after its verdict
    and met again (seen from the middle) is never `mutual`."""
    packets = _interleaved(OWN / capture)
    free, _ = _verdicts(packets, DEFAULT_LIMITS)
    assert all(len(rs) == 1 for rs in free.values())
    tight, analyzer = _verdicts(packets, Limits(flows=3, buffered=4096, decided=4))
    assert analyzer.stats.evicted.by_limit.get("flows"), "the limits were never reached"
    assert set(free) <= set(tight)
    for pair, (first, *again) in tight.items():
        (unlimited,) = free[pair]
        if any(a.name == "flow_evicted" for a in first.anomalies):
            assert first.facts.ended.startswith("evicted from memory"), first.facts.ended
            if first.decision.verdict == "mutual":
                assert unlimited.decision.verdict == "mutual"
        else:
            assert first.decision == unlimited.decision, pair
        assert all(r.decision.verdict != "mutual" for r in again)


def test_the_tshark_engine_evicts_as_the_builtin_one(tmp_path: Path, tshark: str) -> None:
    """The same limits of connections followed apply to the tshark engine's table: past them,
    connections are evicted, reported incomplete with the anomaly, and counted in its problems;
    a connection not evicted keeps its verdict, and none is made `mutual`."""
    path = write(tmp_path / "interleaved.pcap", _interleaved(OWN / "tls12.pcapng"))
    free = {(r.client[1], r.server[1]): r for r in TsharkRun(str(path)).records()}
    run = TsharkRun(str(path), limits=Limits(flows=3, buffered=4096, decided=4))
    tight = list(run.records())
    assert run.analyzer.evicted.by_limit.get("flows")
    assert any(p.startswith("connections evicted to keep memory") for p in run.problems)
    assert set(free) <= {(r.client[1], r.server[1]) for r in tight}
    firsts: dict = {}
    for r in tight:
        firsts.setdefault((r.client[1], r.server[1]), r)
        if r.decision.verdict == "mutual":
            assert free[(r.client[1], r.server[1])].decision.verdict == "mutual"
    for pair, r in firsts.items():
        if not any(a.name == "flow_evicted" for a in r.anomalies):
            assert r.decision == free[pair].decision, pair
