"""Parsing a policy: TOML text to a `Policy`, or a `PolicyError` that names the line.

TOML parsers do not tell where a key stands, so `_Parser` scans the text for the table headers
of every [[rule]] and finds the line of a key in the table it belongs to (best effort: a key in
a dotted name or an inline table is found too).
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterable, Mapping

from ..errors import PolicyError
from .rules import (
    MATCH_KEYS,
    REQUIRE_KEYS,
    RULE_KEYS,
    TLS_VERSIONS,
    TOP_KEYS,
    VERDICTS,
    Match,
    Policy,
    Require,
    Rule,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


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
        if rule is None:  # before the first table, else a table of that name
            found = self._first(self._span(None, ""), assign)
            return found or next((n for n, _rule, t in self._headers if t == key), None)
        if section is None:  # `key = ...` or `key.x = ...` in the rule, else [rule.key]
            found = self._first(self._span(rule, "rule"), assign, re.compile(rf"^\s*{k}\s*\."))
            return found or self._header(rule, f"rule.{key}")
        return (
            self._first(self._span(rule, f"rule.{section}"), assign)
            or self._in_rule_table(rule, section, key)
            or self._header(rule, f"rule.{section}")
        )

    def _first(self, numbers: Iterable[int], *patterns: re.Pattern[str]) -> int | None:
        """The first of the lines `numbers` that one of `patterns` matches."""
        for n in numbers:
            if any(p.match(self.lines[n - 1]) for p in patterns):
                return n
        return None

    def _header(self, rule: int, table: str) -> int | None:
        """The line of the header of `table` in rule number `rule`."""
        return next((n for n, r, t in self._headers if r == rule and t == table), None)

    def _in_rule_table(self, rule: int, section: str, key: str) -> int | None:
        """The line of `section.key = ...` or `section = { key = ... }` in the rule's table."""
        k, s = re.escape(key), re.escape(section)
        dotted = re.compile(rf"^\s*{s}\s*\.\s*(\"{k}\"|'{k}'|{k})\s*=")
        inline = re.compile(rf"^\s*{s}\s*=\s*\{{")
        for n in self._span(rule, "rule"):
            text = self.lines[n - 1]
            if dotted.match(text) or (inline.match(text) and re.search(rf"[{{,]\s*{k}\s*=", text)):
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
        line = self._header(i, "rule") or 0
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
