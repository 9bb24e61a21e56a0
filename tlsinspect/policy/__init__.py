"""Policies on recorded traffic: rules that select sessions and say what they require.

Pure: `parse_policy(text)` turns TOML text into a `Policy` (or raises `PolicyError` naming the
line), `evaluate(policy, sessions)` checks flat session rows (`report.flat.flat_row()`, or the
records of a `read_capture()` DataFrame) and returns one `RuleResult` per rule, and
`text_report`, `json_report`, `junit_xml` render the results. Reading files and exit codes belong
to `tlsinspect check` (commands/check.py).

The modules: `rules` (the parsed policy's types, `PolicyError`, the keys a policy may hold),
`parse` (TOML text to a `Policy`), `rows` (reading values of session rows), `evaluate` (which
sessions a rule selects, and why one breaks it), `render` (text, JSON and JUnit XML reports).

A policy (see examples/policy.toml and the README):

    [[rule]]
    name = "payments API: mutual TLS with our client CA"
    require_match = true                 # fail when no session matches (default: a warning)
    [rule.match]                         # every selector given must hold; none: all sessions
    server_name = ["*.payments.example"] # globs on the SNI, the server leaf CN and SAN DNS names
    server_ip = ["10.1.0.0/16"]          # addresses or CIDR blocks
    port = [443, "8400-8499"]
    [rule.require]                       # at least one requirement
    verdict = "mutual"                   # or a list
    client_issuer = ["Client CA", "sha256:3f1c..."]  # name (substring) or issuer fingerprint
    min_tls_version = "1.2"
    cert_expiry_days = 30                # no certificate expired or expiring within 30 days
    client_identity = ["spiffe://example.test/*", "client-alice"]

Resumed sessions exchange no certificates: they pass a `verdict` requirement when the session
they resume is in the capture and had an allowed verdict, and the certificate requirements
(`client_issuer`, `client_identity`, `cert_expiry_days`) do not apply to them.
"""

from __future__ import annotations

from ..errors import PolicyError
from .evaluate import RuleResult, Violation, check, evaluate, selects
from .parse import parse_policy
from .render import describe_session, json_report, junit_xml, text_report, to_json
from .rules import Match, Policy, Require, Rule

__all__ = [
    "Match",
    "Policy",
    "PolicyError",
    "Require",
    "Rule",
    "RuleResult",
    "Violation",
    "check",
    "describe_session",
    "evaluate",
    "json_report",
    "junit_xml",
    "parse_policy",
    "selects",
    "text_report",
    "to_json",
]
