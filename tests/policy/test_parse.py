"""Parsing policies: the line of every mistake, and the values normalised."""

from __future__ import annotations

import pytest
from helpers import ROOT
from policytools import rule

from tlsinspect.policy import PolicyError, parse_policy


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
