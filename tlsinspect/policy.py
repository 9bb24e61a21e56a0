"""Policies on recorded traffic: rules that select sessions and say what they require.

Pure: `parse_policy(text)` turns TOML text into a `Policy` (or raises `PolicyError` naming the
line), `evaluate(policy, sessions)` checks flat session rows (`report.flat.flat_row()`, or the
records of a `read_capture()` DataFrame) and returns one `RuleResult` per rule, and
`text_report`, `json_report`, `junit_xml` render the results. Reading files and exit codes belong
to `tlsinspect check` (commands/check.py).

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

import ipaddress
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from xml.etree import ElementTree as ET

from .errors import PolicyError
from .model import Verdict
from .tls.registry import VERSIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "Policy",
    "PolicyError",
    "Rule",
    "RuleResult",
    "Violation",
    "evaluate",
    "json_report",
    "junit_xml",
    "parse_policy",
    "text_report",
]

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


# -- parsing ---------------------------------------------------------------------------------


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Parse policy TOML; PolicyError names `source` and the line of any problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    p = _Parser(text, source)
    p.check_keys(doc, TOP_KEYS, None, None, "the policy")
    rules_raw = doc.get("rule", [])
    if not isinstance(rules_raw, list) or not all(isinstance(r, dict) for r in rules_raw):
        raise p.error("'rule' must be written as [[rule]] tables", p.line(None, None, "rule"))
    if not rules_raw:
        raise PolicyError(f"{source}: the policy has no [[rule]]")
    rules = []
    names: set[str] = set()
    for i, raw in enumerate(rules_raw):
        rule = p.rule(i, raw)
        if rule.name in names:
            raise p.error(f"two rules are named {rule.name!r}", rule.line)
        names.add(rule.name)
        rules.append(rule)
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise p.error("'description' must be a string", p.line(None, None, "description"))
    return Policy(tuple(rules), description, source)


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source
        self._headers = self._scan_headers()

    # where things are -------------------------------------------------------------------

    def _scan_headers(self) -> list[tuple[int, int, str]]:
        """(line number, rule index or -1, table name) for every table header."""
        out = []
        rule = -1
        for n, line in enumerate(self.lines, 1):
            m = re.match(r"\s*\[\[\s*rule\s*\]\]", line)
            if m:
                rule += 1
                out.append((n, rule, "rule"))
                continue
            m = re.match(r"\s*\[\s*([A-Za-z0-9_.\" -]+?)\s*\]", line)
            if m:
                out.append((n, rule, m.group(1).replace(" ", "").replace('"', "")))
        return out

    def _span(self, rule: int | None, table: str) -> Iterable[int]:
        """Line numbers (1-based) that belong to `table` of rule number `rule`."""
        starts = [(n, r, t) for n, r, t in self._headers]
        if rule is None and table == "":
            first = starts[0][0] if starts else len(self.lines) + 1
            return range(1, first)
        out: list[int] = []
        for k, (n, r, t) in enumerate(starts):
            if r == rule and t == table:
                end = starts[k + 1][0] if k + 1 < len(starts) else len(self.lines) + 1
                out += range(n + 1, end)
        return out

    def line(self, rule: int | None, section: str | None, key: str) -> int | None:
        """The line where `key` is set (in [rule.<section>] of rule `rule`), best effort."""
        k = re.escape(key)
        assign = re.compile(rf"^\s*(\"{k}\"|'{k}'|{k})\s*=")
        if rule is None:
            for n in self._span(None, ""):
                if assign.match(self.lines[n - 1]):
                    return n
            for n, _rule, t in self._headers:
                if t == key:
                    return n
            return None
        if section is None:
            for n in self._span(rule, "rule"):
                if assign.match(self.lines[n - 1]) or re.match(rf"^\s*{k}\s*\.", self.lines[n - 1]):
                    return n
            for n, r, t in self._headers:
                if r == rule and t == f"rule.{key}":
                    return n
            return None
        for n in self._span(rule, f"rule.{section}"):
            if assign.match(self.lines[n - 1]):
                return n
        s = re.escape(section)
        for n in self._span(rule, "rule"):
            text = self.lines[n - 1]
            if re.match(rf"^\s*{s}\s*\.\s*(\"{k}\"|'{k}'|{k})\s*=", text):
                return n
            if re.match(rf"^\s*{s}\s*=\s*\{{", text) and re.search(rf"[{{,]\s*{k}\s*=", text):
                return n
        for n, r, t in self._headers:
            if r == rule and t == f"rule.{section}":
                return n
        return None

    def error(self, message: str, line: int | None) -> PolicyError:
        where = f"{self.source}, line {line}" if line else self.source
        return PolicyError(f"{where}: {message}")

    def check_keys(
        self,
        table: Mapping[str, object],
        known: Mapping[str, str],
        rule: int | None,
        section: str | None,
        what: str,
    ) -> None:
        for key in table:
            if key not in known:
                line = self.line(rule, section, key)
                hint = ", ".join(sorted(known))
                raise self.error(f"unknown key {key!r} in {what} (known keys: {hint})", line)

    # values ------------------------------------------------------------------------------

    def rule(self, i: int, raw: Mapping[str, object]) -> Rule:
        header = [n for n, r, t in self._headers if r == i and t == "rule"]
        line = header[0] if header else 0
        name = raw.get("name")
        what = f"rule {name!r}" if isinstance(name, str) else f"rule number {i + 1}"
        self.check_keys(raw, RULE_KEYS, i, None, what)
        if not isinstance(name, str) or not name.strip():
            raise self.error(f'{what} needs a name = "..."', self.line(i, None, "name") or line)
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise self.error("'description' must be a string", self.line(i, None, "description"))
        require_match = raw.get("require_match", False)
        if not isinstance(require_match, bool):
            raise self.error(
                "'require_match' must be true or false", self.line(i, None, "require_match")
            )
        match_raw = raw.get("match", {})
        require_raw = raw.get("require")
        for key, value in (("match", match_raw), ("require", require_raw)):
            if value is not None and not isinstance(value, dict):
                raise self.error(f"'{key}' must be a table", self.line(i, None, key))
        assert isinstance(match_raw, dict)
        if not require_raw:
            raise self.error(f"{what} requires nothing: add a [rule.require] table", line)
        assert isinstance(require_raw, dict)
        self.check_keys(match_raw, MATCH_KEYS, i, "match", f"[rule.match] of {what}")
        self.check_keys(require_raw, REQUIRE_KEYS, i, "require", f"[rule.require] of {what}")
        return Rule(
            name=name,
            line=line,
            match=self.match(i, match_raw),
            require=self.require(i, require_raw),
            description=description,
            require_match=require_match,
        )

    def _strings(self, i: int, section: str, key: str, value: object) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            raise self.error(
                f"'{key}' must be a string or a list of strings", self.line(i, section, key)
            )
        return tuple(items)

    def match(self, i: int, raw: Mapping[str, object]) -> Match:
        names: tuple[str, ...] = ()
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        ports: list[tuple[int, int]] = []
        if "server_name" in raw:
            names = tuple(
                n.lower() for n in self._strings(i, "match", "server_name", raw["server_name"])
            )
        if "server_ip" in raw:
            for text in self._strings(i, "match", "server_ip", raw["server_ip"]):
                try:
                    nets.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    raise self.error(
                        f"'server_ip': {text!r} is not an IP address or CIDR block",
                        self.line(i, "match", "server_ip"),
                    ) from None
        if "port" in raw:
            value = raw["port"]
            for item in value if isinstance(value, list) else [value]:
                span = _port_range(item)
                if span is None:
                    raise self.error(
                        f"'port': {item!r} is not a port (0-65535) or a range such as '8400-8499'",
                        self.line(i, "match", "port"),
                    )
                ports.append(span)
        return Match(names, tuple(nets), tuple(ports))

    def require(self, i: int, raw: Mapping[str, object]) -> Require:
        verdicts: tuple[str, ...] = ()
        if "verdict" in raw:
            verdicts = self._strings(i, "require", "verdict", raw["verdict"])
            for v in verdicts:
                if v not in VERDICTS:
                    raise self.error(
                        f"'verdict': {v!r} is not a verdict ({', '.join(VERDICTS)})",
                        self.line(i, "require", "verdict"),
                    )
        issuers: tuple[str, ...] = ()
        if "client_issuer" in raw:
            issuers = tuple(
                _issuer_pattern(s)
                for s in self._strings(i, "require", "client_issuer", raw["client_issuer"])
            )
        version = None
        if "min_tls_version" in raw:
            value = raw["min_tls_version"]
            version = _version_name(value) if isinstance(value, str | float) else None
            if version is None:
                raise self.error(
                    f"'min_tls_version': {value!r} is not a TLS version (e.g. \"1.2\")",
                    self.line(i, "require", "min_tls_version"),
                )
        days = None
        if "cert_expiry_days" in raw:
            value = raw["cert_expiry_days"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise self.error(
                    "'cert_expiry_days' must be a whole number of days, 0 or more",
                    self.line(i, "require", "cert_expiry_days"),
                )
            days = value
        identities: tuple[str, ...] = ()
        if "client_identity" in raw:
            identities = self._strings(i, "require", "client_identity", raw["client_identity"])
        return Require(verdicts, issuers, version, days, identities)


def _port_range(item: object) -> tuple[int, int] | None:
    if isinstance(item, int) and not isinstance(item, bool):
        lo = hi = item
    elif isinstance(item, str) and re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", item):
        lo, hi = (int(x) for x in item.split("-"))
    elif isinstance(item, str) and item.strip().isdigit():
        lo = hi = int(item)
    else:
        return None
    return (lo, hi) if 0 <= lo <= hi <= 65535 else None


_HEX64 = re.compile(r"(?:sha256:)?([0-9a-fA-F]{2}(?::?[0-9a-fA-F]{2}){31})")


def _issuer_pattern(text: str) -> str:
    """'sha256:<hex>' for a fingerprint (colons and case ignored), else the name as given."""
    m = _HEX64.fullmatch(text.strip())
    if m:
        return "sha256:" + m.group(1).replace(":", "").lower()
    return text


def _version_name(value: str | float) -> str | None:
    text = str(value).strip().upper().replace("TLSV", "TLS ").replace("SSLV", "SSL ")
    if re.fullmatch(r"\d\.\d", text):
        text = ("SSL " if text in ("2.0", "3.0") else "TLS ") + text
    text = re.sub(r"^(TLS|SSL)\s*", r"\1 ", text)
    return text if text in TLS_VERSIONS else None


# -- evaluation ------------------------------------------------------------------------------


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


def _v(row: Mapping[str, object], key: str) -> object:
    """A value of a row; pandas' missing values (NA, NaT, NaN) read as None."""
    v = row.get(key)
    if v is None or type(v).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(v, float) and v != v:
        return None
    return v


def _list(row: Mapping[str, object], key: str) -> list:
    v = _v(row, key)
    return list(v) if isinstance(v, list | tuple) else []


def _time(v: object) -> datetime | None:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
    if isinstance(v, str) and v:
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return None


def _san_values(row: Mapping[str, object], role: str, kinds: Iterable[str]) -> list[str]:
    out = []
    for entry in _list(row, f"{role}_san"):
        kind, _, value = str(entry).partition(":")
        if kind in kinds:
            out.append(value)
    return out


def selects(rule: Rule, row: Mapping[str, object]) -> bool:
    """Whether the rule applies to the session."""
    m = rule.match
    if m.port:
        port = _v(row, "server_port")
        if not isinstance(port, int) or not any(lo <= port <= hi for lo, hi in m.port):
            return False
    if m.server_ip:
        try:
            addr = ipaddress.ip_address(str(_v(row, "server_ip")))
        except ValueError:
            return False
        if not any(addr in net for net in m.server_ip):
            return False
    if m.server_name:
        names = [_v(row, "sni"), _v(row, "server_subject_cn")]
        names += _san_values(row, "server", ("DNS",))
        lowered = [str(n).lower() for n in names if n]
        if not any(fnmatchcase(n, p) for n in lowered for p in m.server_name):
            return False
    return True


def _cert_name(c: Mapping[str, object]) -> str:
    return str(c.get("subject_cn") or c.get("subject") or c.get("sha256", "?")[:16])  # type: ignore[index]


def check(rule: Rule, row: Mapping[str, object]) -> list[str]:
    """Why the session breaks the rule (empty when it complies)."""
    req = rule.require
    reasons: list[str] = []
    verdict = str(_v(row, "verdict"))
    resumed = verdict == "resumed"
    if req.verdict and verdict not in req.verdict:
        origin = _v(row, "resumed_from")
        wanted = " or ".join(req.verdict)
        if resumed and isinstance(origin, Mapping):
            if origin.get("verdict") not in req.verdict:
                reasons.append(
                    f"resumes a {origin.get('verdict')} session of {origin.get('client')} "
                    f"(the rule requires {wanted})"
                )
        elif resumed:
            reasons.append(
                "resumes a session that is not in the capture, so whether it was "
                f"{wanted} cannot be told"
            )
        else:
            reasons.append(f"verdict is {verdict}, the rule requires {wanted}: {_v(row, 'reason')}")
    if req.min_tls_version:
        version = _v(row, "tls_version")  # None: no ServerHello, nothing was negotiated
        if (
            version is not None
            and str(version) in TLS_VERSIONS
            and TLS_VERSIONS.index(str(version)) < TLS_VERSIONS.index(req.min_tls_version)
        ):
            reasons.append(f"{version} is older than {req.min_tls_version}")
    if resumed:
        return reasons  # no certificates in a resumed handshake
    chain = [c for c in _list(row, "client_chain") if isinstance(c, Mapping)]
    # TLS 1.3 without keys: a client certificate the sizes show (or may hide) is encrypted
    hidden = not chain and (
        _v(row, "verdict") == "encrypted"
        or (_v(row, "basis") == "inferred" and _v(row, "client_cert_sent") is True)
    )
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
    ids = ([str(cn)] if cn else []) + _san_values(row, "client", ("URI", "DNS", "email"))
    if any(fnmatchcase(i, p) for i in ids for p in patterns):
        return []
    shown = ", ".join(ids) or "none readable"
    return [f"client identity ({shown}) is not in the allow-list ({', '.join(patterns)})"]


def _check_expiry(days: int, row: Mapping[str, object]) -> list[str]:
    start = _time(_v(row, "start_time"))
    if start is None:
        return []
    out = []
    for role in ("client", "server"):
        for pos, c in enumerate(_list(row, f"{role}_chain")):
            if not isinstance(c, Mapping):
                continue
            what = f"{role} certificate {_cert_name(c)} (chain position {pos})"
            nb, na = _time(c.get("not_before")), _time(c.get("not_after"))
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


# -- reports ---------------------------------------------------------------------------------


def describe_session(row: Mapping[str, object]) -> str:
    """`file #index client -> server (SNI name) at time`, for one line of a report."""

    def ep(ip: object, port: object) -> str:
        return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"

    file = _v(row, "file")
    sni = _v(row, "sni")
    start = _v(row, "start_time")
    when = start.isoformat() if isinstance(start, datetime) else start
    return (
        (f"{file} " if file else "")
        + f"#{_v(row, 'index')} {ep(_v(row, 'client_ip'), _v(row, 'client_port'))} -> "
        + ep(_v(row, "server_ip"), _v(row, "server_port"))
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
        f"{len(results)} rules, {sessions} sessions: {passed} passed, {failed} failed"
        + (f", {warned} matched no session" if warned else "")
    )
    return "\n".join(lines) + "\n"


def _session_json(row: Mapping[str, object]) -> dict[str, object]:
    start = _v(row, "start_time")
    return {
        "file": _v(row, "file"),
        "index": _v(row, "index"),
        "client": f"{_v(row, 'client_ip')}:{_v(row, 'client_port')}",
        "server": f"{_v(row, 'server_ip')}:{_v(row, 'server_port')}",
        "sni": _v(row, "sni"),
        "start_time": start.isoformat() if isinstance(start, datetime) else start,
        "verdict": str(_v(row, "verdict")),
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
        case = ET.SubElement(ts, "testcase", classname="tlsinspect.policy", name=r.rule.name)
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
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_json(report: Mapping[str, object]) -> str:
    return json.dumps(report, indent=2) + "\n"
