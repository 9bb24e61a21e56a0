"""What the policy tests share: a rule written as policy text, and the sessions of tls12.pcapng."""

from __future__ import annotations

from helpers import OWN

import tlsinspect
from tlsinspect.policy import evaluate, parse_policy
from tlsinspect.report.flat import flat_row

TLS12 = OWN / "tls12.pcapng"


def tls12_rows() -> list[dict]:
    return [{"file": "tls12.pcapng", **flat_row(r)} for r in tlsinspect.analyze(TLS12)]


def rule(require: str, match: str = "", extra: str = "") -> str:
    return (
        f'[[rule]]\nname = "r"\n{extra}\n'
        + (f"[rule.match]\n{match}\n" if match else "")
        + f"[rule.require]\n{require}\n"
    )


def run(text: str, rows: list[dict]):
    (result,) = evaluate(parse_policy(text), rows)
    return result
