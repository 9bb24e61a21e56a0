"""The command line every recorder shares: ``--out DIR`` (default: ``captures/``) and
``--verbose``, the programs it needs, a temporary folder for its PKI and programs, and one
line per capture it wrote, with the tshark check where the recorder runs it."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import tshark
from .core import RecordingError

CAPTURES = Path(__file__).resolve().parents[1]


def parser(doc: str, verbose: str | None = "print the programs' output") -> argparse.ArgumentParser:
    """``--out`` and, unless ``verbose`` is None, ``--verbose``; ``doc`` is the recorder's
    docstring, whose first line describes it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=CAPTURES, help="output folder (default: %(default)s)"
    )
    if verbose is not None:
        parser.add_argument("--verbose", action="store_true", help=verbose)
    return parser


def require(programs: Sequence[str]) -> None:
    """Stop unless the programs are installed and this runs as root (capturing needs it)."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise SystemExit("capturing on loopback needs root")


@dataclass(frozen=True)
class Recorded:
    """A capture written, and the tshark check of its sessions (None: the recorder has none)."""

    capture: Path
    sessions: int
    checks: Sequence[tshark.Checked] | None = None


Record = Callable[[Path, Path], Iterable[Recorded]]
"""Records into the output folder (first argument), with a temporary folder (second)."""


def run(name: str, out: Path, record: Record, verbose: bool = False) -> int:
    """Record, print a line per capture, and return the exit status: 1 when the recording
    stopped or a tshark check found a mismatch."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    failed = False
    with tempfile.TemporaryDirectory(prefix=f"tls-{name}-") as tmp:
        try:
            t0 = time.monotonic()
            for done in record(out, Path(tmp)):
                failed |= _report(done, time.monotonic() - t0, verbose)
                t0 = time.monotonic()
        except (RecordingError, OSError, subprocess.SubprocessError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
    print(f"total {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


def _report(done: Recorded, seconds: float, verbose: bool) -> bool:
    """Print what was recorded; True when the tshark check found a mismatch."""
    size = done.capture.stat().st_size
    line = f"{done.capture.name}: {done.sessions} sessions, {size} bytes, {seconds:.1f} s"
    if done.checks is None:
        print(line)
        return False
    print(f"{line}; {tshark.summary(done.checks)}")
    bad = [c for c in done.checks if c.state == tshark.MISMATCH]
    for c in done.checks if verbose else bad:
        print(f"tshark check: {c}", file=sys.stderr if c in bad else sys.stdout)
    return bool(bad)


def main(
    doc: str,
    name: str,
    programs: Sequence[str],
    record: Callable[[Path, Path, bool], Iterable[Recorded]],
    argv: Sequence[str] | None = None,
) -> int:
    """The whole command line of a recorder with only ``--out`` and ``--verbose``: ``record``
    gets the output folder, a temporary folder and ``--verbose``."""
    args = parser(doc).parse_args(argv)
    require(programs)
    return run(name, args.out, lambda out, work: record(out, work, args.verbose), args.verbose)
