"""Reports of a policy's results: text for people, JSON, and JUnit XML for CI."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from xml.etree import ElementTree as ET

from ..model import count
from .evaluate import RuleResult
from .rows import value


def describe_session(row: Mapping[str, object]) -> str:
    """`file #index client -> server (SNI name) at time`, for one line of a report."""

    def ep(ip: object, port: object) -> str:
        return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"

    file = value(row, "file")
    sni = value(row, "sni")
    start = value(row, "start_time")
    when = start.isoformat() if isinstance(start, datetime) else start
    return (
        (f"{file} " if file else "")
        + f"#{value(row, 'index')} {ep(value(row, 'client_ip'), value(row, 'client_port'))} -> "
        + ep(value(row, "server_ip"), value(row, "server_port"))
        + (f" (SNI {sni})" if sni else "")
        + (f" at {when}" if when else "")
    )


def text_report(results: Sequence[RuleResult], sessions: int, header: str = "") -> str:
    """A readable report: each rule's status, then every violation with its reasons."""
    lines = [header] if header else []
    for res in results:
        status = res.status
        tag = {"pass": "PASS", "fail": "FAIL", "no-match": "WARN"}[status]
        rule = res.rule
        if res.violations:
            detail = f"{len(res.violations)} of {res.matched} matching sessions break it"
        elif not res.matched:
            detail = "matched no session" + (
                " (require_match = true)" if rule.require_match else ""
            )
        else:
            detail = f"{res.matched} matching sessions comply"
        lines.append(f"{tag}  {rule.name}: {detail}")
        if res.violations and rule.description:
            lines.append(f"      ({rule.description})")
        for v in res.violations:
            lines.append(f"      {describe_session(v.session)}")
            lines += [f"        - {r}" for r in v.reasons]
    failed = sum(r.failed for r in results)
    warned = sum(r.status == "no-match" for r in results)
    passed = sum(r.status == "pass" for r in results)
    lines.append(
        f"{count(len(results), 'rule')}, {count(sessions, 'session')}: {passed} passed, "
        f"{failed} failed" + (f", {warned} matched no session" if warned else "")
    )
    return "\n".join(lines) + "\n"


def _session_json(row: Mapping[str, object]) -> dict[str, object]:
    start = value(row, "start_time")
    return {
        "file": value(row, "file"),
        "index": value(row, "index"),
        "client": f"{value(row, 'client_ip')}:{value(row, 'client_port')}",
        "server": f"{value(row, 'server_ip')}:{value(row, 'server_port')}",
        "sni": value(row, "sni"),
        "start_time": start.isoformat() if isinstance(start, datetime) else start,
        "verdict": str(value(row, "verdict")),
    }


def json_report(
    results: Sequence[RuleResult], sessions: int, files: Sequence[str], policy: str
) -> dict[str, object]:
    return {
        "policy": policy,
        "captures": list(files),
        "sessions": sessions,
        "passed": not any(r.failed for r in results),
        "rules": [
            {
                "name": r.rule.name,
                "description": r.rule.description,
                "status": r.status,
                "matched": r.matched,
                "violations": [
                    {**_session_json(v.session), "reasons": v.reasons} for v in r.violations
                ],
            }
            for r in results
        ],
    }


def junit_xml(results: Sequence[RuleResult], suite: str, seconds: float = 0.0) -> str:
    """JUnit XML: one test suite, one test case per rule; its failure lists the sessions."""
    failures = sum(r.failed for r in results)
    skipped = sum(r.status == "no-match" for r in results)
    root = ET.Element("testsuites", name="tlsinspect check", tests=str(len(results)))
    root.set("failures", str(failures))
    ts = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{seconds:.3f}",
    )
    for r in results:
        _junit_case(ts, r)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_case(suite: ET.Element, r: RuleResult) -> None:
    """The test case of one rule: its failure lists the sessions, or why it was skipped."""
    case = ET.SubElement(suite, "testcase", classname="tlsinspect.policy", name=r.rule.name)
    case.set("time", "0")
    if r.violations:
        body = []
        for v in r.violations:
            body.append(describe_session(v.session))
            body += [f"  - {reason}" for reason in v.reasons]
        fail = ET.SubElement(
            case,
            "failure",
            message=f"{len(r.violations)} of {r.matched} matching sessions break the rule",
            type="policy",
        )
        fail.text = "\n".join(body)
    elif not r.matched:
        if r.rule.require_match:
            fail = ET.SubElement(
                case, "failure", message="the rule matched no session", type="no-match"
            )
            fail.text = "require_match = true and no session of the captures matched"
        else:
            ET.SubElement(case, "skipped", message="the rule matched no session")
    else:
        out = ET.SubElement(case, "system-out")
        out.text = f"{r.matched} matching sessions comply"


def to_json(report: Mapping[str, object]) -> str:
    return json.dumps(report, indent=2) + "\n"
