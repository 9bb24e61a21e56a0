"""Fixtures and hooks; what tests import by name is in helpers.py."""

from __future__ import annotations

import shutil
import sys

import pytest


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed: scripts/test installs it (apt-get install tshark)")
    return path


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
