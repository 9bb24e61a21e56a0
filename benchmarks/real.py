#!/usr/bin/env python3
"""tlsinspect, tshark and ssldump side by side on the two recordings of real OpenSSL traffic.

    python benchmarks/real.py                 # records benchmarks/real-*.pcap first if missing
    python benchmarks/real.py --repeat 3 --json figures.json

The captures are made by ``benchmarks/record_real.py`` (as root, on loopback): ``bulk``, 400
sessions with about 640 KB of application data each, and ``handshakes``, 3,000 short mutual and
one-way sessions. On each, every tool runs as a whole process (start-up included; the measuring
of ``bench.py``: wall time around the process, CPU time and peak RSS from its rusage, fastest
of --repeat runs for the times, highest peak):

- ``tlsinspect --format json`` and ``--format jsonl`` (and ``--jobs N`` when the command line
  has that option);
- ``tshark -n -r F -Y tls.handshake.type -T fields ...``, the fields ``bench.py`` extracts;
- ``ssldump -n -r F``, which prints every record of every connection (apt package ``ssldump``).

Then the ratios of each tlsinspect run to ssldump and to tshark, by wall time and by CPU time.
On a machine shared with other work the CPU-time ratio is the steadier one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import ROOT, Run, Synthesis, _env, _table, measure, tshark_cmd  # noqa: E402

CAPTURES = ("bulk", "handshakes")
SSLDUMP = "ssldump"


def capture_path(name: str) -> Path:
    return HERE / f"real-{name}.pcap"


def _packets(meta: Path) -> int:
    return int(json.loads(meta.read_text())["packets"])


def _has_jobs() -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "tlsinspect", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
    ).stdout
    return "--jobs" in out


def commands(path: Path, jobs: int | None) -> list[tuple[str, list[str]]]:
    py = [sys.executable, "-m", "tlsinspect"]
    cmds = [
        ("tlsinspect json", py + ["--format", "json", str(path)]),
        ("tlsinspect jsonl", py + ["--format", "jsonl", str(path)]),
    ]
    if jobs:
        cmds.append(
            (
                f"tlsinspect jsonl {jobs} jobs",
                py + ["--jobs", str(jobs), "--format", "jsonl", str(path)],
            )
        )
    cmds.append(("tshark", tshark_cmd(path)))
    cmds.append(("ssldump", [SSLDUMP, "-n", "-r", str(path)]))
    return cmds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=CAPTURES, action="append")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if shutil.which(SSLDUMP) is None:
        raise SystemExit("ssldump is not installed (apt-get install ssldump)")
    names = args.only or list(CAPTURES)
    missing = [n for n in names if not capture_path(n).with_suffix(".meta.json").exists()]
    if missing:
        print(f"recording {', '.join(missing)} (benchmarks/record_real.py, needs root)", flush=True)
        record = [sys.executable, str(HERE / "record_real.py")]
        subprocess.run(record + [a for n in missing for a in ("--only", n)], check=True)
    jobs = (os.cpu_count() or 1) if _has_jobs() else None
    figures: dict[str, list[dict[str, object]]] = {}
    for name in names:
        path = capture_path(name)
        syn = Synthesis(packets=_packets(path.with_suffix(".meta.json")), bytes=path.stat().st_size)
        print(
            f"\n{name}: {path.name}, {syn.packets:,} packets, {syn.bytes / 1e6:,.0f} MB", flush=True
        )
        runs: dict[str, Run] = {
            label: measure(label, cmd, syn, args.repeat, keep_output=False)
            for label, cmd in commands(path, jobs)
        }
        rows = [["", "wall s", "cpu s", "packets/s", "MB/s", "peak RSS MB"]]
        for label, run in runs.items():
            rows.append(
                [
                    label,
                    f"{run.wall_s:.2f}",
                    f"{run.cpu_s:.2f}",
                    f"{run.packets_per_s:,.0f}",
                    f"{run.mb_per_s:,.1f}",
                    f"{run.peak_rss_kb / 1024:.1f}",
                ]
            )
        print(_table(rows))
        ratios = [["", "speed vs ssldump (wall)", "(cpu)", "speed vs tshark (wall)", "(cpu)"]]
        for label, run in runs.items():
            if not label.startswith("tlsinspect"):
                continue
            ratios.append(
                [label]
                + [
                    f"{getattr(runs[other], attr) / getattr(run, attr):.2f}x"
                    for other in ("ssldump", "tshark")
                    for attr in ("wall_s", "cpu_s")
                ]
            )
        print(_table(ratios))
        figures[name] = [{"name": label, **run.figures()} for label, run in runs.items()]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
