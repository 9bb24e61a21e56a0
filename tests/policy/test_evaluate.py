"""Evaluating policies on recorded sessions: what a rule selects, and why a session breaks it."""

from __future__ import annotations

import pytest
from helpers import OWN
from policytools import TLS12, rule, run, tls12_rows

import tlsinspect
from tlsinspect.policy import evaluate, parse_policy
from tlsinspect.report.flat import flat_row


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return tls12_rows()


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
