"""The checks on a certificate chain as sent (`check_chain` -> `ChainReport`): each certificate
signed by the next, valid at the time of the capture, fit for its role, naming the server the
client asked for, issued by a CA the server listed, and, given trust anchors, trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .cache import CERT_CACHE_BYTES, bounded_cache
from .checks import (
    FAIL,
    INFO,
    PASS,
    WARN,
    Check,
    _ca_problem,
    _name_check,
    _purpose,
    _validity,
    _weak,
)
from .facts import CertInfo, cert_info
from .names import same_name, short_name
from .signatures import _link, _Links, _walk
from .trust import Anchors, validate


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The checks on one chain as sent: `certs[i]` holds certificate i's checks, leaf first."""

    role: str  # "client" | "server"
    certs: tuple[tuple[Check, ...], ...]
    chain: tuple[Check, ...]

    def checks(self) -> list[Check]:
        return [c for checks in self.certs for c in checks] + list(self.chain)

    def _names(self, result: str, checks: list[Check] | None = None) -> list[str]:
        out: list[str] = []
        for c in self.checks() if checks is None else checks:
            if c.result == result and c.name not in out:
                out.append(c.name)
        return out

    @property
    def failed(self) -> list[str]:
        return self._names(FAIL)

    @property
    def warnings(self) -> list[str]:
        return self._names(WARN)

    @property
    def result(self) -> str:
        return FAIL if self.failed else WARN if self.warnings else PASS

    def find(self, name: str, result: str | None = None) -> Check | None:
        for c in self.checks():
            if c.name == name and (result is None or c.result == result):
                return c
        return None

    def summary(self) -> dict[str, object]:
        checks = self.checks()
        failed, warnings = self._names(FAIL, checks), self._names(WARN, checks)
        return {
            "result": FAIL if failed else WARN if warnings else PASS,
            "failed": failed,
            "warnings": warnings,
            "checks": [c.to_dict() for c in self.chain],
        }


def check_chain(
    ders: Sequence[bytes],
    role: str,
    at: datetime | None,
    *,
    sni: str | None = None,
    server_ip: str | None = None,
    ca_names: Sequence[bytes] = (),
    anchors: Anchors | None = None,
) -> ChainReport:
    """Check a certificate chain as sent (leaf first) at the capture time `at` (aware, UTC;
    None when the capture time is no date: the validity and CA bundle checks are then `info`,
    "not checked").

    `role` is "client" or "server". For a server chain, `sni` (else `server_ip`) is the name the
    leaf must carry. For a client chain, `ca_names` are the DER names the server listed in its
    CertificateRequest. `anchors`, when given, adds the `ca_bundle` check. Never raises.

    A capture repeats the same chains: everything but the time-dependent checks is computed
    once per (chain, role, names) and cached; validity (and the CA bundle's check) is judged
    for each call at its own `at`.
    """
    ders = tuple(ders)
    before, after, chain = _static_checks(
        ders, role, sni if role == "server" else None, server_ip if role == "server" else None,
        tuple(ca_names) if role == "client" else (),
    )  # fmt: skip
    per = tuple(
        (*b, _validity(cert_info(d), at), *a) for d, b, a in zip(ders, before, after, strict=True)
    )
    if anchors is not None and ders:
        chain = (*chain, validate(ders, role, at, anchors, sni=sni, server_ip=server_ip))
    return ChainReport(role, per, chain)


_Static = tuple[tuple[tuple[Check, ...], ...], tuple[tuple[Check, ...], ...], tuple[Check, ...]]


@bounded_cache(2048, CERT_CACHE_BYTES)
def _static_checks(
    ders: tuple[bytes, ...],
    role: str,
    sni: str | None,
    server_ip: str | None,
    ca_names: tuple[bytes, ...],
) -> _Static:
    """The checks that do not depend on the time, per certificate (those shown before its
    validity, those after it), and on the whole chain."""
    infos = [cert_info(d) for d in ders]
    links = _link(ders, infos)
    before: list[list[Check]] = [[] for _ in infos]
    after: list[list[Check]] = [[] for _ in infos]
    for i, info in enumerate(infos):
        checks = before[i]
        if info.error:
            checks.append(Check("parse", FAIL, info.error))
        elif info.notes:
            checks.append(Check("parse", WARN, "; ".join(info.notes)))
        j = links.issuer[i]
        if j == i:
            checks.append(
                Check("signature", PASS, "self-signed; its own key verifies the signature")
            )
        elif j is not None:
            where = "the next certificate" if j == i + 1 else "out of order"
            checks.append(Check("signature", PASS, f"signed by [{j}] {infos[j].name} ({where})"))
        elif links.bad[i] is not None:
            checks.append(Check("signature", FAIL, str(links.bad[i])))
        elif info.issuer_der:
            checks.append(
                Check(
                    "signature",
                    INFO,
                    f"not checked: its issuer {short_name(info.issuer_der)!r} was not sent "
                    "(--ca-bundle checks it)",
                )
            )
        checks = after[i]
        if i == 0 and (info.subject or info.key_type):
            checks.append(_purpose(info, role))
            if role == "server":
                checks.append(_name_check(info, sni, server_ip))
        checks.extend(_weak(info, role, i))
    # certificates that issued another: are they CAs allowed to?
    path = _walk(links)
    for i, j in enumerate(links.issuer):
        if j is None or j == i:
            continue
        problem = _ca_problem(infos[j], below=_intermediates_below(path, j, infos))
        if problem:
            after[j].append(Check("ca", FAIL, f"signs [{i}] {infos[i].name}, but {problem}"))
        elif not any(c.name == "ca" for c in after[j]):
            after[j].append(Check("ca", PASS, "a CA allowed to sign certificates"))
    chain = [_order(links, infos, path), _path(links, infos, path)]
    if role == "client" and ca_names:
        chain.append(_ca_listed(infos, ca_names))
    return (
        tuple(tuple(c) for c in before),
        tuple(tuple(c) for c in after),
        tuple(chain),
    )


def _intermediates_below(path: list[int], j: int, infos: Sequence[CertInfo]) -> int:
    """Non-self-issued intermediates between the leaf and certificate j on the path
    (what RFC 5280 4.2.1.9 pathLenConstraint counts)."""
    if j not in path:
        return 0
    return sum(1 for k in path[1 : path.index(j)] if not infos[k].self_signed)


def _order(links: _Links, infos: Sequence[CertInfo], path: list[int]) -> Check:
    n = len(infos)
    for i in range(n - 1):
        j = links.issuer[i]
        if i in path and j is not None and j != i and j != i + 1:
            return Check(
                "order",
                WARN,
                f"out of order: [{i + 1}] {infos[i + 1].name} does not certify [{i}] "
                f"{infos[i].name}, whose issuer is [{j}]; RFC 5246 7.4.2 asks for each "
                "certificate to be followed by its issuer (TLS 1.3 tolerates any order)",
            )
    return Check(
        "order", PASS, "each certificate is followed by its issuer" if n > 1 else "one certificate"
    )


def _path(links: _Links, infos: Sequence[CertInfo], path: list[int]) -> Check:
    last = path[-1]
    top = infos[last]
    shown = " -> ".join(f"[{k}]" for k in path)
    finding = ""
    if links.issuer[last] == last:
        end = f"ends at the self-signed root [{last}] {top.name}"
    elif links.bad[last] is not None:
        return Check("path", FAIL, f"broken after {shown}: {links.bad[last]}")
    elif top.issuer_der:
        issuer = short_name(top.issuer_der)
        end = (
            f"ends at [{last}] {top.name}; its issuer {issuer!r} was not sent (a root "
            "usually is not; --ca-bundle checks the chain against one)"
        )
        finding = "issuer_missing"
    else:
        return Check("path", FAIL, f"broken after {shown}: [{last}] cannot be read")
    unused = [k for k in range(len(infos)) if k not in path]
    if unused:
        extra = ", ".join(f"[{k}] {infos[k].name}" for k in unused)
        return Check("path", WARN, f"{shown} {end}; not part of the path: {extra}", finding)
    return Check("path", PASS, f"{shown} {end}", finding)


def _ca_listed(infos: Sequence[CertInfo], ca_names: Sequence[bytes]) -> Check:
    """RFC 5246 7.4.4 / RFC 8446 4.2.4: the names may be of a root or of a subordinate CA, so
    any issuer in the chain (or a CA certificate in it) on the list satisfies the server."""
    candidates: list[tuple[str, bytes]] = []
    for i, info in enumerate(infos):
        if info.issuer_der:
            candidates.append((f"issuer of [{i}]", info.issuer_der))
        if i > 0 and info.subject_der and info.is_ca:
            candidates.append((f"[{i}]", info.subject_der))
    for label, der in candidates:
        for name in ca_names:
            if der == name:
                return Check(
                    "ca_listed", PASS, f"{label} {short_name(der)!r} is listed by the server"
                )
            if same_name(der, name):
                return Check(
                    "ca_listed",
                    PASS,
                    f"{label} {short_name(der)!r} is listed by the server (the same name, "
                    "encoded differently)",
                )
    top = infos[-1] if infos else None
    chain_ca = short_name(top.issuer_der) if top and top.issuer_der else "?"
    asked = ", ".join(repr(short_name(n)) for n in ca_names)
    return Check(
        "ca_listed",
        FAIL,
        f"client chain issued by {chain_ca!r}, server asked for {asked}",
    )


__all__ = ["ChainReport", "check_chain"]
