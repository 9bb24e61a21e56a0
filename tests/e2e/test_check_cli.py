"""`tlsinspect check` as CI runs it: exit codes, the report, JUnit XML and JSON."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from helpers import OWN, ROOT

TLS12 = OWN / "tls12.pcapng"
EXAMPLE = ROOT / "examples" / "policy.toml"

PASSING = """
[[rule]]
name = "mutual on 8401"
[rule.match]
port = 8401
[rule.require]
verdict = "mutual"
client_identity = "spiffe://example.test/alice"
"""

FAILING = """
[[rule]]
name = "mutual on 8402"
description = "the one-way service must ask for certificates"
[rule.match]
port = 8402
[rule.require]
verdict = "mutual"

[[rule]]
name = "mutual on 8401"
[rule.match]
port = 8401
[rule.require]
verdict = "mutual"
"""


def check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlsinspect", "check", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def policy(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return p


def test_passing_policy_exits_0(tmp_path):
    r = check(TLS12, "--policy", policy(tmp_path, PASSING))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS  mutual on 8401: 1 matching sessions comply" in r.stdout
    assert r.stdout.rstrip().endswith("1 rule, 13 sessions: 1 passed, 0 failed")
    assert r.stderr == ""


def test_failing_policy_exits_1_and_lists_the_sessions(tmp_path):
    r = check(TLS12, "--policy", policy(tmp_path, FAILING))
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert "FAIL  mutual on 8402: 1 of 1 matching sessions break it" in lines
    assert "      (the one-way service must ask for certificates)" in lines
    session = next(line for line in lines if "#2 " in line)
    assert str(TLS12) in session and "-> 127.0.0.1:8402 (SNI server.example.test)" in session
    assert any("- verdict is one-way, the rule requires mutual" in line for line in lines)
    assert "PASS  mutual on 8401: 1 matching sessions comply" in lines


def test_the_example_policy_passes_on_tls12():
    r = check(TLS12, "--policy", EXAMPLE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASS ") == 2


def test_the_example_policy_fails_where_its_service_is_missing():
    # require_match = true: the 8401 service is not in this capture
    r = check(OWN / "starttls.pcap", "--policy", EXAMPLE)
    assert r.returncode == 1
    assert "FAIL  mutual TLS on the service at port 8401: matched no session" in r.stdout


def test_junit_xml(tmp_path):
    junit = tmp_path / "out" / "report.xml"
    junit.parent.mkdir()
    r = check(TLS12, OWN / "stacks.pcap", "--policy", policy(tmp_path, FAILING), "--junit", junit)
    assert r.returncode == 1
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "1"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "policy.toml"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["mutual on 8402", "mutual on 8401"]
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("message") == (
        "1 of 1 matching sessions break the rule"
    )
    assert "tls12.pcapng #2" in (failure.text or "") and "verdict is one-way" in (
        failure.text or ""
    )
    assert cases[1].find("failure") is None


def test_json_format(tmp_path):
    r = check(TLS12, "--policy", policy(tmp_path, FAILING), "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["passed"] is False and doc["sessions"] == 13
    assert doc["captures"] == [str(TLS12)]
    first, second = doc["rules"]
    assert (first["name"], first["status"], first["matched"]) == ("mutual on 8402", "fail", 1)
    (v,) = first["violations"]
    assert v["server"] == "127.0.0.1:8402" and v["verdict"] == "one-way" and v["index"] == 2
    assert v["reasons"][0].startswith("verdict is one-way")
    assert second["status"] == "pass" and second["violations"] == []


def test_a_rule_matching_nothing_is_a_warning(tmp_path):
    text = PASSING + '\n[[rule]]\nname = "nobody"\n[rule.match]\nport = 1\n[rule.require]\n'
    text += 'verdict = "mutual"\n'
    r = check(TLS12, "--policy", policy(tmp_path, text))
    assert r.returncode == 0
    assert "WARN  nobody: matched no session" in r.stdout
    assert "warning: rule 'nobody' matched no session" in r.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[rule]]\nname = "x"\n[rule.require]\nverdict = mutual\n', "not valid TOML"),
        ('[[rule]]\nname = "x"\n[rule.require]\nverdict = "mutual"\nmtls = true\n', "line 5"),
    ],
    ids=["syntax", "unknown-key"],
)
def test_broken_policy_exits_2_with_the_line(tmp_path, text, message):
    p = policy(tmp_path, text)
    r = check(TLS12, "--policy", p)
    assert r.returncode == 2
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"tlsinspect check: {p}")
    assert message in line and "line " in line
    if "unknown" in message or "line 5" in message:
        assert "unknown key 'mtls'" in line


def test_unusable_capture_or_missing_policy_exits_2(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_text("not a capture\n")
    r = check(TLS12, bad, "--policy", policy(tmp_path, PASSING))
    assert r.returncode == 2 and "not a pcap or pcapng capture" in r.stderr
    r = check(tmp_path / "missing.pcap", "--policy", policy(tmp_path, PASSING))
    assert r.returncode == 2 and "missing.pcap" in r.stderr
    r = check(TLS12, "--policy", tmp_path / "nope.toml")
    assert r.returncode == 2 and "nope.toml" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    r = check(TLS12, "--policy", policy(tmp_path, PASSING), "--keylog", tmp_path / "keys.log")
    assert r.returncode == 2 and "keys.log: no such key log file" in r.stderr


def test_several_captures(tmp_path):
    text = '[[rule]]\nname = "all mutual"\n[rule.require]\nverdict = "mutual"\n'
    r = check(TLS12, OWN / "stacks.pcap", "--policy", policy(tmp_path, text), "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    files = {v["file"] for v in doc["rules"][0]["violations"]}
    assert files == {str(TLS12), str(OWN / "stacks.pcap")}


def test_the_example_ci_workflow_command_passes(tmp_path):
    """The `tlsinspect check` line of examples/ci-workflow.yml, run as CI would run it."""
    workflow = (ROOT / "examples" / "ci-workflow.yml").read_text()
    (line,) = [s for s in workflow.splitlines() if s.strip().startswith("run: tlsinspect check")]
    args = shlex.split(line.split("run: tlsinspect", 1)[1])
    assert args[0] == "check"
    junit = args.index("--junit") + 1
    args[junit] = str(tmp_path / args[junit])
    r = subprocess.run(
        [sys.executable, "-m", "tlsinspect", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert ET.parse(args[junit]).getroot().get("failures") == "0"


def test_the_readme_shows_the_example_policy_as_it_is():
    readme = (ROOT / "README.md").read_text()
    assert "```toml\n" + EXAMPLE.read_text().rstrip("\n") + "\n```" in readme
