"""Reports of policy results (text, JSON, JUnit XML), and a policy package that does no I/O."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from policytools import rule, tls12_rows

import tlsinspect
from tlsinspect.policy import evaluate, json_report, junit_xml, parse_policy, text_report


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return tls12_rows()


def test_reports(rows):
    text = (
        rule('verdict = "mutual"', "port = 8402")
        + rule('verdict = "mutual"', "port = 8401").replace('"r"', '"ok"')
        + rule('verdict = "mutual"', "port = 1").replace('"r"', '"none"')
    )
    results = evaluate(parse_policy(text), rows)
    out = text_report(results, len(rows), "header")
    assert out.splitlines()[0] == "header"
    assert "FAIL  r: 1 of 1 matching sessions break it" in out
    assert "PASS  ok: 1 matching sessions comply" in out
    assert "WARN  none: matched no session" in out
    assert "tls12.pcapng #2 127.0.0.1:49952 -> 127.0.0.1:8402 (SNI server.example.test) at" in out
    assert out.endswith("3 rules, 13 sessions: 1 passed, 1 failed, 1 matched no session\n")
    doc = json.loads(json.dumps(json_report(results, len(rows), ["tls12.pcapng"], "p.toml")))
    assert doc["passed"] is False
    assert [r["status"] for r in doc["rules"]] == ["fail", "pass", "no-match"]
    assert doc["rules"][0]["violations"][0]["server"] == "127.0.0.1:8402"
    root = ET.fromstring(junit_xml(results, "p.toml"))
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert "127.0.0.1:8402" in (cases["r"].find("failure").text or "")
    assert cases["ok"].find("failure") is None and cases["none"].find("skipped") is not None


def test_policy_module_does_no_io():
    package = Path(tlsinspect.policy.__file__).parent  # type: ignore[attr-defined]
    for module in sorted(package.glob("*.py")):
        source = module.read_text()
        for word in ("open(", "print(", "sys.stdout", "sys.stderr"):
            assert word not in source
