"""One install for every use: every package tlsinspect imports is a default dependency, and a
broken install (a package that cannot be imported) is one sentence, never a traceback."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import pytest
from helpers import OWN, ROOT

PACKAGE = ROOT / "tlsinspect"
DEMO = OWN / "demo.pcapng"


def _imported_top_modules() -> set[str]:
    """Top-level modules the package imports (statements, and `require("x", ...)` calls)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "require"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(str(node.args[0].value).split(".")[0])
    return found - set(sys.stdlib_module_names) - {"tlsinspect", "__future__"}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\s\[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_every_imported_package_is_a_default_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _requirement_names(project["dependencies"])
    distributions = importlib.metadata.packages_distributions()
    # ipywidgets only chooses tqdm's notebook bar when it is there (notebook.Progress)
    optional = {"ipywidgets"}
    missing = {
        module: distributions.get(module, [module])
        for module in _imported_top_modules() - optional
        if not {d.lower() for d in distributions.get(module, [module])} & declared
    }
    assert missing == {}
    # what the notebook API and the shipped notebook need comes with the default install too
    assert {"pandas", "tqdm", "matplotlib", "scapy", "pyshark"} <= declared


def _without(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The command line in a Python where `module` cannot be imported."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from tlsinspect.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "argv", [["compare", str(DEMO)], [str(DEMO), "--engine", "tshark"]], ids=["compare", "engine"]
)
def test_without_pyshark_the_tshark_engine_is_one_line_and_exit_2(argv):
    r = _without("pyshark", *argv)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert "needs the Python package pyshark" in line and "pip install tlsinspect" in line


def test_without_pandas_read_capture_says_so_before_analysing():
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "import tlsinspect\n"
        "from tlsinspect import notebook\n"
        "calls = []\n"
        "real = notebook.iter_records\n"
        "notebook.iter_records = lambda *a: calls.append(a) or real(*a)\n"
        "try:\n"
        f"    tlsinspect.read_capture({str(DEMO)!r})\n"
        "except tlsinspect.MissingPackage as exc:\n"
        "    assert isinstance(exc, ImportError)\n"
        "    print(len(calls), exc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("0 read_capture() needs the Python package pandas")
