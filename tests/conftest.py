"""Shared fixtures: where captures live, and tshark as the oracle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OWN = ROOT / "captures"
SHARED = (ROOT / ".." / "shared" / "captures").resolve()


def own_captures() -> list[Path]:
    found = sorted(p for p in OWN.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))
    if not found:
        raise RuntimeError(f"no recorded captures in {OWN}: run captures/record.py")
    return found


def shared_view() -> list[dict]:
    view = SHARED / "tshark-view.json"
    if not view.exists():
        raise RuntimeError(f"{view} is missing: the shared captures must be beside the checkout")
    return json.loads(view.read_text())


def shared_captures() -> list[Path]:
    return sorted({SHARED / s["file"] for s in shared_view()})


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed: scripts/test installs it (apt-get install tshark)")
    return path


def run_tshark(
    tshark: str,
    capture: Path,
    fields: list[str],
    display_filter: str,
    decode_as: list[int] = (),
    keylog: Path | None = None,
) -> list[list[str]]:
    cmd = [
        tshark,
        "-n",
        "-r",
        str(capture),
        "-o",
        "tcp.reassemble_out_of_order:TRUE",
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]
    for port in decode_as:
        cmd += ["-d", f"tcp.port=={port},tls"]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    return [line.split("\t") for line in out.splitlines()]


def blind_verdict(truth: dict) -> str:
    """The verdict a recorded session must get without its key log. A TLS 1.2 client asked for
    its certificate only in a renegotiation did so in encrypted records: what the capture shows
    is the first handshake, one-way. A TLS 1.3 post-handshake answer shows in record sizes. A
    TLS 1.2 refusal sent after the handshake is an encrypted alert, then the close: `failed`
    without keys too (only the key log names the alert)."""
    return "one-way" if truth.get("later_auth") == "renegotiation" else truth["verdict"]


def run_cli(*args: str | Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """`python -m tlsinspect ARGS`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "tlsinspect", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pytest_terminal_summary(terminalreporter) -> None:
    """The per-stack table of tests/e2e/test_stacks.py, when it ran."""
    module = sys.modules.get("test_stacks")
    table = getattr(module, "TABLE", None)
    if not table:
        return
    cols = ["1.3 right", "1.3 undecided", "1.3 wrong", "1.2 right", "1.2 wrong"]
    cols += ["keyed right", "keyed wrong"]
    tr = terminalreporter
    tr.section("verdicts per TLS stack (without keys / with keys)")
    tr.write_line(f"{'stack':<10}" + "".join(f"{c:>15}" for c in cols))
    for name in sorted(table):
        tr.write_line(f"{name:<10}" + "".join(f"{table[name][c]:>15}" for c in cols))
