"""The public API: what `tlsinspect` exports, its one tree of exceptions, and its one version."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers import ROOT

import tlsinspect
from tlsinspect import errors

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PACKAGE = Path(tlsinspect.__file__).resolve().parent

ERROR_CLASSES = [
    cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, BaseException)
]


def test_every_name_of_all_is_importable():
    for name in tlsinspect.__all__:
        assert getattr(tlsinspect, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from tlsinspect import *", namespace)
    assert set(tlsinspect.__all__) <= set(namespace)


def test_all_names_each_member_once():
    assert len(tlsinspect.__all__) == len(set(tlsinspect.__all__))


def test_nothing_public_is_missing_from_all():
    """What the package defines at its top (not the typing names it imports, nor its
    submodules) and what it exports lazily is exactly `__all__`."""
    public = {
        name
        for name, value in vars(tlsinspect).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and str(getattr(value, "__module__", "")).startswith("tlsinspect")
    }
    public |= set(tlsinspect._LAZY)
    assert sorted(public) == sorted(tlsinspect.__all__)


def test_the_error_classes_and_the_record_type_are_exported():
    assert {cls.__name__ for cls in ERROR_CLASSES} <= set(tlsinspect.__all__)
    for name in ("Verdict", "Basis", "SessionRecord"):
        assert name in tlsinspect.__all__
    from tlsinspect.model import Basis, Verdict
    from tlsinspect.record import SessionRecord

    assert tlsinspect.SessionRecord is SessionRecord
    assert (tlsinspect.Verdict, tlsinspect.Basis) == (Verdict, Basis)


def test_importing_the_package_loads_no_layer():
    code = (
        "import sys, tlsinspect\n"
        "print(tlsinspect.__file__)\n"
        "print(*sorted(m for m in sys.modules if m.split('.')[0] == 'tlsinspect'))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    where, loaded = r.stdout.splitlines()
    assert Path(where).resolve() == PACKAGE / "__init__.py"
    assert loaded.split() == ["tlsinspect", "tlsinspect.errors"]


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_derives_from_tlsinspect_error(cls):
    assert issubclass(cls, errors.TlsInspectError)
    assert cls.__module__ == "tlsinspect.errors"
    assert getattr(tlsinspect, cls.__name__) is cls


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("tlsinspect.capture.live", "LiveCaptureError"),
        ("tlsinspect.capture.tshark", "LiveCaptureError"),
        ("tlsinspect.capture.tshark", "TsharkError"),
        ("tlsinspect.capture.tshark", "TsharkMissing"),
        ("tlsinspect.policy", "PolicyError"),
        ("tlsinspect.tls.decrypt", "UnsupportedCipher"),
    ],
)
def test_the_old_import_paths_give_the_classes_of_errors(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_no_exception_class_is_defined_outside_errors():
    """A class deriving from an exception (a builtin one, one of errors.py, or any base whose
    name ends in Error or Exception) is defined nowhere else in the package."""
    known = {c.__name__ for c in ERROR_CLASSES} | {
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for base in node.bases:
                name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                if name in known or name.endswith(("Error", "Exception")):
                    found.append(f"{path.relative_to(PACKAGE)}: {node.name}({name})")
    assert found == []


def test_a_ca_bundle_without_a_certificate_is_a_certificate_error(tmp_path):
    bundle = tmp_path / "empty.pem"
    bundle.write_bytes(b"no certificate here\n")
    with pytest.raises(errors.CertificateError) as err:
        tlsinspect.read_ca_bundle(bundle)
    assert isinstance(err.value, ValueError)  # what read_ca_bundle raised before
    assert "Unable to load PEM file" in str(err.value)  # cryptography's message, unchanged


def test_the_version_is_written_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "tlsinspect.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", tlsinspect.__version__)
