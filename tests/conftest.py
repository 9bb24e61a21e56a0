"""Fixtures and hooks; what tests import by name is in helpers.py."""

from __future__ import annotations

import shutil
import sys

import pytest
from helpers import SHARED_ABSENT, uses_shared


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed: scripts/test installs it (apt-get install tshark)")
    return path


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "shared: the test reads the public captures of ../shared/captures/"
    )


def pytest_collection_modifyitems(config, items) -> None:
    """Without the public captures, every test of them skips with one reason: those marked
    `shared`, those given one as a parameter, and those whose parameters were all of them."""
    if not SHARED_ABSENT:
        return
    skip = pytest.mark.skip(reason=SHARED_ABSENT)
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        emptied = any(
            str(m.kwargs.get("reason", "")).startswith("got empty parameter set")
            for m in item.iter_markers(name="skip")
        )
        if item.get_closest_marker("shared") or emptied or uses_shared(list(params.values())):
            item.add_marker(skip, append=False)


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
