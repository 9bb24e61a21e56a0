"""Selecting sessions as a display filter does: by verdict, server, port and client identity.

`Selection` holds what the user asked for; `selection(...)` builds one from the words of the
command line or of the Python API (and says in one sentence what is wrong with them), and
`Selection.matches(record)` decides on one finished `SessionRecord`. It is a pure function of
the record: it reads the facts the record already holds (addresses, the SNI, the leaf
certificates as `x509.cert_info` already parsed them) and never reaches back into parsing. An
empty selection keeps every session.

The rule, as in Wireshark's display filters: the values of one option are alternatives (ORed),
the options given must all hold (ANDed). `--verdict mutual --verdict one-way --port 8443` keeps
the sessions on port 8443 that were mutual or one-way.

- verdict: the names of `model.Verdict` (`mutual`, `one-way`, `cert-requested-not-sent`,
  `failed`, `incomplete`, `encrypted`, `resumed`); another word is an error that lists them.
- server: a glob (`fnmatch`, without case) on the server's address (`10.0.0.5`, `::1`), its
  address and port (`10.0.0.5:8443`, `[::1]:8443`: IPv6 in brackets, which here are the
  brackets of the address, not a glob's character class), the SNI, and the server leaf's CN
  and its DNS SANs. Not its IP SANs: a certificate naming 127.0.0.1 is also sent from ::1, and
  `--server 127.0.0.1` means the server at that address. A TLS 1.3 server certificate is
  encrypted: without a key log only the address and the SNI can match.
- port: the server's port, or a range `8000-8999`.
- client identity: a glob (without case) on the client leaf's CN and its SAN values (URI such
  as SPIFFE IDs, DNS, email, IP: the text after `URI:`), or a prefix of its SHA-256
  fingerprint (8 hex digits or more, `sha256:` and colons allowed). Only a certificate sent in
  the session itself matches: a resumed session sends none (its `resumed_from` says whose
  session it resumes), and a TLS 1.3 client certificate is encrypted without a key log.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..model import Verdict
from ..record import SessionRecord
from ..x509 import CertInfo, cert_info

VERDICTS = tuple(v.value for v in Verdict)

#: A value of an option: one word, or several (a list or tuple); ports may be ints.
Values = str | int | Iterable[str | int] | None

# "[2001:db8::1]:8443", "[::1]", "[fe80::*]:*": brackets around an IPv6 address (or a glob of
# one) are literal, so that the address form of the output can be pasted into --server
_BRACKETED = re.compile(r"\[([0-9a-f:.*?]*:[0-9a-f:.*?]*)\](.*)", re.IGNORECASE)
_FINGERPRINT = re.compile(r"(?:sha256:)?((?:[0-9a-f]{2}:?){4,32})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which sessions to keep; each field empty means "any"."""

    verdicts: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()  # globs, lower case, brackets escaped
    ports: tuple[tuple[int, int], ...] = ()  # inclusive ranges
    client_identities: tuple[str, ...] = ()  # globs, lower case
    fingerprints: tuple[str, ...] = ()  # SHA-256 prefixes, lower-case hex

    def __bool__(self) -> bool:
        return bool(
            self.verdicts
            or self.servers
            or self.ports
            or self.client_identities
            or self.fingerprints
        )

    def matches(self, r: SessionRecord) -> bool:
        """Whether the session is kept: every option given holds for it."""
        if self.verdicts and r.decision.verdict.value not in self.verdicts:
            return False
        if self.ports and not any(lo <= r.server[1] <= hi for lo, hi in self.ports):
            return False
        if self.servers and not _any_match(self.servers, server_names(r)):
            return False
        if self.client_identities or self.fingerprints:
            leaf = _leaf(r.facts.client_certs)
            if leaf is None:
                return False
            ids = _any_match(self.client_identities, client_identities(leaf))
            if not ids and not any(leaf.sha256.startswith(p) for p in self.fingerprints):
                return False
        return True

    def filter(self, records: Iterable[SessionRecord]) -> Iterator[SessionRecord]:
        """The records kept, in the order they come (streamed: one record at a time)."""
        if not self:
            yield from records
            return
        for r in records:
            if self.matches(r):
                yield r


def selection(
    verdict: Values = None,
    server: Values = None,
    port: Values = None,
    client_identity: Values = None,
) -> Selection:
    """A `Selection` from the values of each option (None, one value or several). `verdict`
    and `port` also take comma-separated lists (`"mutual,one-way"`, `"443,8000-8999"`).

    Raises:
        ValueError: a word that is no verdict (the message lists them), a port that is no
            number from 0 to 65535 or a range whose start is after its end, an empty value.
    """
    verdicts = []
    for v in _split(verdict, "verdict"):
        if v not in VERDICTS:
            close = difflib.get_close_matches(v, VERDICTS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ValueError(f"{v!r} is not a verdict ({hint}one of {', '.join(VERDICTS)})")
        verdicts.append(v)
    ports = [_port_range(p) for p in _split(port, "port")]
    servers = [_server_glob(g) for g in _words(server, "server")]
    identities, prints = [], []
    for g in _words(client_identity, "client identity"):
        m = _FINGERPRINT.fullmatch(g)
        if m:
            prints.append(m.group(1).replace(":", "").lower())
        identities.append(g.lower())  # a hex CN is a CN too
    return Selection(
        tuple(dict.fromkeys(verdicts)),
        tuple(dict.fromkeys(servers)),
        tuple(dict.fromkeys(ports)),
        tuple(dict.fromkeys(identities)),
        tuple(dict.fromkeys(prints)),
    )


def server_names(r: SessionRecord) -> list[str]:
    """What `--server` matches for a session, lower case: address, address:port, SNI, the
    server leaf's CN and DNS SANs."""
    ip, port = r.server
    bracketed = f"[{ip}]" if ":" in ip else ip
    names = [ip, bracketed, f"{bracketed}:{port}"]
    ch = r.facts.client_hello
    if ch is not None and ch.server_name:
        names.append(ch.server_name)
    leaf = _leaf(r.facts.server_certs)
    if leaf is not None:
        if leaf.subject_cn:
            names.append(leaf.subject_cn)
        names += [text for kind, text in _sans(leaf) if kind == "DNS"]
    return [n.lower() for n in dict.fromkeys(names)]


def client_identities(leaf: CertInfo) -> list[str]:
    """What `--client-identity` globs match of a client leaf, lower case: its CN and the text of
    each SAN (`spiffe://...`, a DNS name, an email address)."""
    names = ([leaf.subject_cn] if leaf.subject_cn else []) + [text for _, text in _sans(leaf)]
    return [n.lower() for n in dict.fromkeys(names)]


def _leaf(ders: tuple[bytes, ...] | None) -> CertInfo | None:
    return cert_info(ders[0]) if ders else None


def _sans(leaf: CertInfo) -> list[tuple[str, str]]:
    """(kind, text) of each SAN: ("URI", "spiffe://example.test/alice")."""
    out = []
    for entry in leaf.san:
        kind, _, text = entry.partition(":")
        if text:
            out.append((kind, text))
    return out


def _any_match(globs: tuple[str, ...], names: list[str]) -> bool:
    return any(fnmatchcase(n, g) for g in globs for n in names)


def _values(value: Values) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int):
        return [str(value)]
    return [str(v) for v in value]


def _split(value: Values, option: str) -> list[str]:
    """The words of a verdict or port option: each value, and each comma-separated part."""
    words = [w.strip() for v in _values(value) for w in v.split(",")]
    if "" in words:  # `--verdict "$V"` with V unset must not quietly keep everything
        raise ValueError(f"an empty {option} keeps nothing: give one, or leave the option out")
    return words


def _words(value: Values, option: str) -> list[str]:
    """The globs of a server or identity option (a comma may belong to a name: not split)."""
    out = []
    for v in _values(value):
        if not v.strip():
            raise ValueError(
                f"an empty {option} pattern keeps nothing: give one, or leave the option out"
            )
        out.append(v.strip())
    return out


def _port_range(word: str) -> tuple[int, int]:
    lo_text, dash, hi_text = word.partition("-")
    try:
        lo = int(lo_text)
        hi = int(hi_text) if dash else lo
    except ValueError:
        lo, hi = -1, -1
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"{word!r} is not a port (0-65535) or a range such as 8000-8999")
    return lo, hi


def _server_glob(text: str) -> str:
    """A --server glob, lower case, with the brackets of an IPv6 address taken literally."""
    text = text.lower()
    m = _BRACKETED.fullmatch(text)
    if m:
        return f"[[]{m.group(1)}[]]{m.group(2)}"
    return text
