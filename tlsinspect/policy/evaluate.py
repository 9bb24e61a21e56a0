"""Evaluating a policy: which sessions a rule selects, and why a session breaks it.

`evaluate(policy, sessions)` checks flat session rows (`report.flat.flat_row()`, or the records
of a `read_capture()` DataFrame) and returns one `RuleResult` per rule, with a `Violation` (the
session and the reasons) for every selected session that breaks the rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase

from .rows import list_value, san_values, time_value, value
from .rules import TLS_VERSIONS, Policy, Require, Rule


@dataclass
class Violation:
    session: Mapping[str, object]
    reasons: list[str]


@dataclass
class RuleResult:
    rule: Rule
    matched: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def status(self) -> str:
        """`pass`, `fail`, or `no-match` (a warning, a failure with `require_match`)."""
        if self.violations:
            return "fail"
        if not self.matched:
            return "fail" if self.rule.require_match else "no-match"
        return "pass"

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def selects(rule: Rule, row: Mapping[str, object]) -> bool:
    """Whether the rule applies to the session."""
    m = rule.match
    if m.port:
        port = value(row, "server_port")
        if not isinstance(port, int) or not any(lo <= port <= hi for lo, hi in m.port):
            return False
    if m.server_ip:
        try:
            addr = ipaddress.ip_address(str(value(row, "server_ip")))
        except ValueError:
            return False
        if not any(addr in net for net in m.server_ip):
            return False
    if m.server_name:
        names = [value(row, "sni"), value(row, "server_subject_cn")]
        names += san_values(row, "server", ("DNS",))
        lowered = [str(n).lower() for n in names if n]
        if not any(fnmatchcase(n, p) for n in lowered for p in m.server_name):
            return False
    return True


def _cert_name(c: Mapping[str, object]) -> str:
    return str(c.get("subject_cn") or c.get("subject") or c.get("sha256", "?")[:16])  # type: ignore[index]


def check(rule: Rule, row: Mapping[str, object]) -> list[str]:
    """Why the session breaks the rule (empty when it complies)."""
    req = rule.require
    verdict = str(value(row, "verdict"))
    reasons = _check_verdict(req.verdict, verdict, row)
    if req.min_tls_version:
        reasons += _check_version(req.min_tls_version, row)
    if verdict == "resumed":
        return reasons  # no certificates in a resumed handshake
    return reasons + _check_certificates(req, row)


def _check_verdict(allowed: Sequence[str], verdict: str, row: Mapping[str, object]) -> list[str]:
    """The session's verdict; a resumed session is judged by the session it resumes."""
    if not allowed or verdict in allowed:
        return []
    wanted = " or ".join(allowed)
    if verdict != "resumed":
        return [f"verdict is {verdict}, the rule requires {wanted}: {value(row, 'reason')}"]
    origin = value(row, "resumed_from")
    if not isinstance(origin, Mapping):
        return [
            "resumes a session that is not in the capture, so whether it was "
            f"{wanted} cannot be told"
        ]
    if origin.get("verdict") in allowed:
        return []
    return [
        f"resumes a {origin.get('verdict')} session of {origin.get('client')} "
        f"(the rule requires {wanted})"
    ]


def _check_version(minimum: str, row: Mapping[str, object]) -> list[str]:
    version = value(row, "tls_version")  # None: no ServerHello, nothing was negotiated
    if (
        version is not None
        and str(version) in TLS_VERSIONS
        and TLS_VERSIONS.index(str(version)) < TLS_VERSIONS.index(minimum)
    ):
        return [f"{version} is older than {minimum}"]
    return []


def _check_certificates(req: Require, row: Mapping[str, object]) -> list[str]:
    """The client's issuer and identity, and the validity of both chains."""
    chain = [c for c in list_value(row, "client_chain") if isinstance(c, Mapping)]
    # TLS 1.3 without keys: a client certificate the sizes show (or may hide) is encrypted
    hidden = not chain and (
        value(row, "verdict") == "encrypted"
        or (value(row, "basis") == "inferred" and value(row, "client_cert_sent") is True)
    )
    reasons: list[str] = []
    if hidden and (req.client_issuer or req.client_identity):
        what = " and ".join(
            w for w, on in (("issuer", req.client_issuer), ("identity", req.client_identity)) if on
        )
        reasons.append(
            f"client certificate encrypted (TLS 1.3): give a key log to check its {what}"
        )
    elif req.client_issuer:
        reasons += _check_issuer(req.client_issuer, chain)
    if req.client_identity and not hidden:
        reasons += _check_identity(req.client_identity, row, chain)
    if req.cert_expiry_days is not None:
        reasons += _check_expiry(req.cert_expiry_days, row)
    return reasons


def _check_issuer(patterns: Sequence[str], chain: list[Mapping[str, object]]) -> list[str]:
    if not chain:
        return ["no client certificate, so no issuer to check"]
    names = [str(c.get(k) or "") for c in chain for k in ("issuer", "issuer_cn")]
    prints = [str(c.get("sha256") or "").lower() for c in chain[1:]]
    for p in patterns:
        if p.startswith("sha256:"):
            if p[7:] in prints:
                return []
        elif any(p.lower() in n.lower() for n in names if n):
            return []
    leaf = chain[0]
    return [
        f"client certificate {_cert_name(leaf)} is issued by {leaf.get('issuer')!r}, which is "
        f"not one of the allowed CAs ({', '.join(patterns)})"
    ]


def _check_identity(
    patterns: Sequence[str], row: Mapping[str, object], chain: list[Mapping[str, object]]
) -> list[str]:
    if not chain:
        return ["no client certificate, so no client identity"]
    cn = chain[0].get("subject_cn")
    ids = ([str(cn)] if cn else []) + san_values(row, "client", ("URI", "DNS", "email"))
    if any(fnmatchcase(i, p) for i in ids for p in patterns):
        return []
    shown = ", ".join(ids) or "none readable"
    return [f"client identity ({shown}) is not in the allow-list ({', '.join(patterns)})"]


def _check_expiry(days: int, row: Mapping[str, object]) -> list[str]:
    start = time_value(value(row, "start_time"))
    if start is None:
        return []
    out = []
    for role in ("client", "server"):
        for pos, c in enumerate(list_value(row, f"{role}_chain")):
            if not isinstance(c, Mapping):
                continue
            what = f"{role} certificate {_cert_name(c)} (chain position {pos})"
            nb, na = time_value(c.get("not_before")), time_value(c.get("not_after"))
            if na is not None and na < start:
                out.append(f"{what} had expired at capture time (not after {na.isoformat()})")
            elif nb is not None and nb > start:
                out.append(
                    f"{what} was not yet valid at capture time (not before {nb.isoformat()})"
                )
            elif na is not None and na - start < timedelta(days=days):
                left = (na - start) / timedelta(days=1)
                out.append(
                    f"{what} expires {left:.1f} days after the capture ({na.isoformat()}), "
                    f"within the {days} days the rule requires"
                )
    return out


def evaluate(policy: Policy, sessions: Iterable[Mapping[str, object]]) -> list[RuleResult]:
    """Check every session against every rule that selects it."""
    results = [RuleResult(rule) for rule in policy.rules]
    for row in sessions:
        for res in results:
            if not selects(res.rule, row):
                continue
            res.matched += 1
            reasons = check(res.rule, row)
            if reasons:
                res.violations.append(Violation(row, reasons))
    return results
