"""The recorded captures with their ground truth, as the selection and summary tests read them:
which captures, with or without their key log, and the verdict each session must get."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from helpers import OWN, blind_verdict

import tlsinspect
from tlsinspect.record import SessionRecord


def _cases() -> list[tuple[Path, bool]]:
    """(truth file, with its key log): every recording without keys but those of other stacks
    (where TLS 1.3 may stay undecided without keys: tests/e2e/test_stacks.py), and with its key
    log every recording whose sessions all logged their secrets."""
    out = []
    for truth in sorted(OWN.glob("*.truth.json")):
        doc = json.loads(truth.read_text())
        if not truth.name.startswith("stack_"):
            out.append((truth, False))
        if doc.get("keylog") and all(t.get("keyed", True) for t in doc["sessions"]):
            out.append((truth, True))
    return out


CASES = _cases()


def case_id(case: tuple[Path, bool]) -> str:
    return case[0].name.removesuffix(".truth.json") + ("+keys" if case[1] else "")


@functools.cache
def analysed(truth: Path, keyed: bool) -> tuple[SessionRecord, ...]:
    doc = json.loads(truth.read_text())
    keylog = OWN / doc["keylog"] if keyed else None
    return tuple(tlsinspect.analyze(OWN / doc["capture"], keylog=keylog))


def truth_sessions(truth: Path, keyed: bool) -> list[dict]:
    """The truth's sessions, each with the verdict the capture must get (`expected`)."""
    out = []
    for t in json.loads(truth.read_text())["sessions"]:
        out.append({**t, "expected": t["verdict"] if keyed else blind_verdict(t)})
    return out
