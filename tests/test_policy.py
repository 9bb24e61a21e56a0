"""Policies: parsing (with the line of every mistake) and evaluation on recorded sessions."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from helpers import OWN, ROOT

import tlsinspect
from tlsinspect.policy import (
    PolicyError,
    evaluate,
    json_report,
    junit_xml,
    parse_policy,
    text_report,
)
from tlsinspect.report.flat import flat_row

TLS12 = OWN / "tls12.pcapng"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
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


# -- parsing ---------------------------------------------------------------------------------


def test_the_example_policy_parses():
    policy = parse_policy((ROOT / "examples" / "policy.toml").read_text(), "policy.toml")
    first = policy.rules[0]
    assert first.require.verdict == ("mutual",)
    assert first.require.min_tls_version == "TLS 1.2"
    assert first.match.port == ((8401, 8401),)
    assert first.require_match


def test_syntax_error_names_the_line():
    text = '[[rule]]\nname = "r"\n[rule.require]\nverdict = "mutual\n'
    with pytest.raises(PolicyError, match=r"p\.toml: not valid TOML: .*line 4"):
        parse_policy(text, "p.toml")


@pytest.mark.parametrize(
    "text, key, line",
    [
        (rule('verdcit = "mutual"'), "verdcit", 5),
        (rule('verdict = "mutual"', "sni = ['a']"), "sni", 5),
        ('[[rule]]\nname = "r"\nrequire.verdict = "mutual"\nrequire.mutual = true\n', "mutual", 4),
        ('[[rule]]\nname = "r"\nrequire = { verdict = "mutual", tls = "1.2" }\n', "tls", 3),
        (rule('verdict = "mutual"', extra="required_match = true"), "required_match", 3),
        ('title = "x"\n' + rule('verdict = "mutual"'), "title", 1),
        (rule('verdict = "mutual"') + rule('verdict = "x"').replace("verdict", "verdit"), "", 0),
    ],
    ids=["require", "match", "dotted", "inline", "rule", "top", "second-rule"],
)
def test_unknown_key_names_the_key_and_its_line(text, key, line):
    if not key:  # the same mistake in the second rule: its own line, not the first rule's
        key, line = "verdit", 10
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "p.toml")
    assert f"p.toml, line {line}: unknown key {key!r}" in str(err.value)
    assert "known keys:" in str(err.value)


@pytest.mark.parametrize(
    "require, match, message, line",
    [
        ('verdict = "mutal"', "", "'mutal' is not a verdict", 5),
        ('verdict = "mutual"', 'server_ip = "10.0.0.300/8"', "not an IP address or CIDR", 5),
        ('verdict = "mutual"', 'port = "http"', "is not a port", 5),
        ('verdict = "mutual"', "port = 70000", "is not a port", 5),
        ('min_tls_version = "1.9"', "", "not a TLS version", 5),
        ("cert_expiry_days = -1", "", "whole number of days", 5),
        ("client_identity = 3", "", "a string or a list of strings", 5),
    ],
)
def test_wrong_values_name_their_line(require, match, message, line):
    with pytest.raises(PolicyError) as err:
        parse_policy(rule(require, match), "p.toml")
    text = str(err.value)
    assert message in text
    if match:  # the match table comes first
        assert "p.toml, line 5" in text
    else:
        assert f"p.toml, line {line}" in text


def test_a_rule_needs_a_name_and_a_requirement():
    with pytest.raises(PolicyError, match="needs a name"):
        parse_policy('[[rule]]\n[rule.require]\nverdict = "mutual"\n')
    with pytest.raises(PolicyError, match="requires nothing"):
        parse_policy('[[rule]]\nname = "r"\n')
    with pytest.raises(PolicyError, match="no \\[\\[rule\\]\\]"):
        parse_policy('description = "empty"\n')
    with pytest.raises(PolicyError, match="two rules are named"):
        parse_policy(rule('verdict = "mutual"') + rule('verdict = "mutual"'))


def test_versions_and_fingerprints_are_normalised():
    fingerprint = "AB:" + ":".join(["cd"] * 31)
    p = parse_policy(rule(f'min_tls_version = "TLSv1.3"\nclient_issuer = ["{fingerprint}"]'))
    req = p.rules[0].require
    assert req.min_tls_version == "TLS 1.3"
    assert req.client_issuer == ("sha256:ab" + "cd" * 31,)


# -- evaluation --------------------------------------------------------------------------------


def test_mutual_required_on_8401_passes(rows):
    r = run(rule('verdict = "mutual"', "port = 8401"), rows)
    assert (r.status, r.matched, r.violations) == ("pass", 1, [])


def test_mutual_required_on_8402_fails_and_says_why(rows):
    r = run(rule('verdict = "mutual"', "port = 8402"), rows)
    assert r.status == "fail" and r.matched == 1
    (v,) = r.violations
    assert v.session["server_port"] == 8402
    assert v.reasons[0].startswith("verdict is one-way, the rule requires mutual: handshake")


def test_resumed_sessions_are_judged_by_the_session_they_resume(rows):
    r = run(rule('verdict = "mutual"', 'port = ["8406-8407"]'), rows)
    assert r.status == "pass" and r.matched == 4  # two mutual, two resumptions of them
    r = run(rule('verdict = "mutual"', "port = 8408"), rows)
    reasons = [v.reasons[0] for v in r.violations]
    assert reasons[0].startswith("verdict is one-way")
    assert reasons[1].startswith("resumes a one-way session of 127.0.0.1:")


def test_selection_by_name_address_and_port(rows):
    def matched(match: str) -> int:
        return run(rule('min_tls_version = "1.2"', match), rows).matched

    assert matched('server_name = "server.example.test"') == len(rows)  # SNI or certificate
    assert matched('server_name = "*.EXAMPLE.test"') == len(rows)
    assert matched('server_name = "localhost"') == 10  # SAN DNS of the certificate, or SNI
    assert matched('server_ip = "::1"') == 2
    assert matched('server_ip = ["127.0.0.0/8"]') == 11
    assert matched("port = [8401, 8409]") == 2
    assert matched('port = "8400-8405"') == 5
    assert matched('server_ip = "::/0"\nport = 8409') == 1


def test_client_issuer_by_name_and_by_fingerprint(rows):
    ok = run(rule('client_issuer = "Test Client Intermediate"', "port = 8401"), rows)
    assert ok.status == "pass"
    intermediate = next(r for r in rows if r["server_port"] == 8401)["client_chain"][1]
    ok = run(rule(f'client_issuer = "sha256:{intermediate["sha256"]}"', "port = 8401"), rows)
    assert ok.status == "pass"
    bad = run(rule('client_issuer = "Test Client Intermediate"', "port = 8405"), rows)
    assert "issued by 'C=ZZ, O=Rogue Certificates Ltd, CN=Rogue CA'" in bad.violations[0].reasons[0]
    none = run(rule('client_issuer = "Test Client Intermediate"', "port = 8402"), rows)
    assert none.violations[0].reasons == ["no client certificate, so no issuer to check"]


def test_client_identity_allow_list(rows):
    assert run(rule('client_identity = "spiffe://example.test/*"', "port = 8401"), rows).status == (
        "pass"
    )
    assert run(rule('client_identity = "client-alice"', "port = 8401"), rows).status == "pass"
    r = run(rule('client_identity = ["spiffe://example.test/bob"]', "port = 8401"), rows)
    assert r.violations[0].reasons == [
        "client identity (client-alice, spiffe://example.test/alice) is not in the allow-list "
        "(spiffe://example.test/bob)"
    ]


def test_minimum_version(rows):
    assert run(rule('min_tls_version = "1.2"'), rows).status == "pass"
    r = run(rule('min_tls_version = "1.3"'), rows)
    assert len(r.violations) == len(rows)
    assert r.violations[0].reasons == ["TLS 1.2 is older than TLS 1.3"]


def test_certificate_expiry_at_capture_time(rows):
    # the recorded certificates are valid for 10 years from the recording
    assert run(rule("cert_expiry_days = 30", "port = 8401"), rows).status == "pass"
    r = run(rule("cert_expiry_days = 4000", "port = 8401"), rows)
    reasons = r.violations[0].reasons
    assert len(reasons) == 4  # both certificates of both chains
    assert reasons[0].startswith("client certificate client-alice (chain position 0) expires")
    assert "within the 4000 days" in reasons[0]
    later = dict(next(r for r in rows if r["server_port"] == 8401))
    later["start_time"] = "2040-01-01T00:00:00.000000Z"
    (res,) = evaluate(parse_policy(rule("cert_expiry_days = 0")), [later])
    assert "had expired at capture time (not after 2036-" in res.violations[0].reasons[0]
    earlier = dict(later, start_time="2020-01-01T00:00:00Z")
    (res,) = evaluate(parse_policy(rule("cert_expiry_days = 0")), [earlier])
    assert "was not yet valid at capture time" in res.violations[0].reasons[0]


def test_a_rule_without_sessions_warns_or_fails(rows):
    r = run(rule('verdict = "mutual"', "port = 1"), rows)
    assert r.status == "no-match" and not r.failed
    r = run(rule('verdict = "mutual"', "port = 1", extra="require_match = true"), rows)
    assert r.status == "fail" and r.failed


def test_evaluates_dataframe_records(rows):
    pytest.importorskip("pandas")
    frame = tlsinspect.read_capture(TLS12)
    text = rule('verdict = "mutual"\nclient_identity = "client-*"\ncert_expiry_days = 1')
    from_frame = run(text, frame.to_dict("records"))
    from_rows = run(text, rows)
    assert from_frame.matched == from_rows.matched == len(rows)
    assert [v.reasons for v in from_frame.violations] == [v.reasons for v in from_rows.violations]


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
    source = Path(tlsinspect.policy.__file__).read_text()  # type: ignore[attr-defined]
    for word in ("open(", "print(", "sys.stdout", "sys.stderr"):
        assert word not in source


def test_an_encrypted_client_certificate_is_not_called_missing():
    """TLS 1.3 without keys: the sizes show a client certificate (8431 mutual) or tell nothing;
    a rule on the client's identity or issuer asks for the key log instead of failing the
    session for "no client certificate". One-way sessions still have none."""
    tls13 = [
        {"file": "tls13.pcapng", **flat_row(r)} for r in tlsinspect.analyze(OWN / "tls13.pcapng")
    ]
    r = run(rule('client_identity = "client-alice"', "port = 8431"), tls13)
    (v,) = r.violations
    assert v.reasons == [
        "client certificate encrypted (TLS 1.3): give a key log to check its identity"
    ]
    r = run(rule('client_issuer = "Test Client"\nclient_identity = "x"', "port = 8431"), tls13)
    assert r.violations[0].reasons == [
        "client certificate encrypted (TLS 1.3): give a key log to check its issuer and identity"
    ]
    one_way = run(rule('client_identity = "client-alice"', "port = 8432"), tls13)
    assert one_way.violations[0].reasons == ["no client certificate, so no client identity"]
    keyed = [
        {"file": "tls13.pcapng", **flat_row(r)}
        for r in tlsinspect.analyze(OWN / "tls13.pcapng", keylog=OWN / "tls13.keylog")
    ]
    assert run(rule('client_identity = "client-alice"', "port = 8431"), keyed).status == "pass"
