"""What a policy is once parsed: `Policy`, `Rule`, `Match`, `Require`, and the words it knows.

The tables below name every key a policy file may hold, with the text an error about an unknown
key lists; `VERDICTS` and `TLS_VERSIONS` are the values `verdict` and `min_tls_version` accept.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..model import Verdict
from ..tls.registry import VERSIONS

VERDICTS = tuple(v.value for v in Verdict)
TLS_VERSIONS = tuple(VERSIONS[k] for k in sorted(VERSIONS))  # oldest first

TOP_KEYS = {"description": "text about the policy", "rule": "the rules, as [[rule]] tables"}
RULE_KEYS = {
    "name": "the rule's name (required)",
    "description": "text shown with its failures",
    "require_match": "fail when the rule selects no session (default false: a warning)",
    "match": "which sessions the rule applies to",
    "require": "what those sessions must show",
}
MATCH_KEYS = {
    "server_name": "globs on the SNI and the server certificate's CN and DNS names",
    "server_ip": "server addresses or CIDR blocks",
    "port": "server ports or ranges such as '8400-8499'",
}
REQUIRE_KEYS = {
    "verdict": "allowed verdicts, e.g. 'mutual'",
    "client_issuer": "CA names (substring) or SHA-256 fingerprints of the client's issuer",
    "min_tls_version": "lowest allowed version, e.g. '1.2'",
    "cert_expiry_days": "days a certificate must stay valid after the capture time",
    "client_identity": "allowed client CNs and SAN names (URI, DNS, email), as globs",
}


@dataclass(frozen=True)
class Match:
    server_name: tuple[str, ...] = ()
    server_ip: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    port: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Require:
    verdict: tuple[str, ...] = ()
    client_issuer: tuple[str, ...] = ()
    min_tls_version: str | None = None
    cert_expiry_days: int | None = None
    client_identity: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    name: str
    line: int
    match: Match
    require: Require
    description: str = ""
    require_match: bool = False


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    description: str = ""
    source: str = "policy"
