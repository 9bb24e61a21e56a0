"""Trust anchors (`Anchors`, `load_anchors`) and the `ca_bundle` check (`validate`): is a chain
trusted by a CA bundle at the capture time, by our own path check and by `cryptography`'s
verifier.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import CertificateError
from .checks import (
    FAIL,
    INFO,
    NO_CAPTURE_TIME,
    PASS,
    WARN,
    Check,
    _ca_problem,
    _name_check,
    _purpose,
    _validity,
)
from .facts import CertInfo, _load, cert_info
from .identity import _ip
from .names import same_name, short_name
from .signatures import _link, signature_problem


@dataclass(frozen=True, slots=True)
class Anchors:
    """Trust anchors from a CA bundle (every certificate in it is trusted, as for a
    `cryptography` Store). Build with `load_anchors`."""

    ders: tuple[bytes, ...]

    @classmethod
    def from_pem(cls, pem: bytes) -> Anchors:
        """Raises CertificateError (a ValueError) when the bytes hold no PEM certificate; its
        message is cryptography's."""
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError as exc:
            raise CertificateError(str(exc)) from exc
        return cls(tuple(c.public_bytes(Encoding.DER) for c in certs))


load_anchors = Anchors.from_pem


def validate(
    ders: Sequence[bytes],
    role: str,
    at: datetime | None,
    anchors: Anchors,
    *,
    sni: str | None = None,
    server_ip: str | None = None,
) -> Check:
    """The `ca_bundle` check: is the chain trusted by `anchors` at `at`?

    Two opinions. Our own path check (RFC 5280 6.1 reduced: signatures, validity, CA flags and
    path lengths, the leaf's purpose, the server's name; every anchor is trusted as it is, like
    a `cryptography` Store) says why a chain fails. `cryptography`'s verifier (its RFC 5280 and
    CA/Browser Forum policy) is asked as well; when it rejects a chain our check accepts, the
    result is `warn` with its reason (SHA-1 signatures, missing extensions, ...): the chain
    holds cryptographically but a strict verifier would refuse it.
    """
    if at is None:  # trust depends on the validity periods at that time
        return Check("ca_bundle", INFO, NO_CAPTURE_TIME)
    own = _own_path(ders, role, at, anchors, sni=sni, server_ip=server_ip)
    strict = _cryptography_opinion(ders, anchors, at, role, sni or server_ip or "")
    if own is not None:
        return Check("ca_bundle", FAIL, f"not trusted: {own}")
    infos = [cert_info(d) for d in ders]
    trail = _trusted_trail(ders, infos, anchors)
    if strict is None or strict.startswith("not available"):
        return Check("ca_bundle", PASS, f"trusted: {trail}")
    return Check(
        "ca_bundle",
        WARN,
        f"trusted: {trail}; but cryptography's stricter verifier refuses it: {strict}",
    )


def _anchor_for(der: bytes, info: CertInfo, anchors: Anchors) -> tuple[int | None, str | None]:
    """(index of the anchor that is or issued this certificate, why a name-matching anchor did
    not verify)."""
    why = None
    for k, a in enumerate(anchors.ders):
        if a == der:
            return k, None
    for k, a in enumerate(anchors.ders):
        ai = cert_info(a)
        if info.issuer_der and same_name(info.issuer_der, ai.subject_der):
            problem = signature_problem(der, a)
            if problem is None:
                return k, None
            why = why or f"bundle certificate {ai.name!r} has the issuer's name but {problem}"
    return None, why


def _trusted_path(
    ders: Sequence[bytes], infos: Sequence[CertInfo], anchors: Anchors
) -> tuple[list[int], int | None, str | None]:
    """Chain indexes from the leaf up to the first certificate an anchor vouches for, that
    anchor's index, and why the path stops if no anchor is reached."""
    links = _link(ders, infos)
    path = [0]
    while True:
        i = path[-1]
        k, why = _anchor_for(ders[i], infos[i], anchors)
        j = links.issuer[i]
        if k is not None:
            if j is not None and j not in path and ders[j] == anchors.ders[k]:
                path.append(j)  # the chain holds the anchor itself: show it on the path
            return path, k, None
        if j is None or j in path:
            if j == i:
                twin = [
                    a
                    for a in anchors.ders
                    if same_name(cert_info(a).subject_der, infos[i].subject_der)
                ]
                hint = " (the bundle holds another certificate of that name)" if twin else ""
                return (
                    path,
                    None,
                    f"it ends at the self-signed [{i}] {infos[i].name}, which is not in the "
                    f"CA bundle{hint}",
                )
            reason = why or links.bad[i]
            if reason:
                return path, None, reason
            issuer = short_name(infos[i].issuer_der) if infos[i].issuer_der else "?"
            return (
                path,
                None,
                (
                    f"the issuer {issuer!r} of [{i}] {infos[i].name} is neither in the chain "
                    "nor in the CA bundle"
                ),
            )
        path.append(j)


def _trusted_trail(ders: Sequence[bytes], infos: Sequence[CertInfo], anchors: Anchors) -> str:
    path, k, _ = _trusted_path(ders, infos, anchors)
    shown = " -> ".join(f"[{i}]" for i in path)
    if k is None:
        return shown
    a = cert_info(anchors.ders[k])
    if anchors.ders[k] == ders[path[-1]]:
        return f"{shown}, which is the bundle's {a.name!r}"
    return f"{shown} -> bundle's {a.name!r}"


def _own_path(
    ders: Sequence[bytes],
    role: str,
    at: datetime,
    anchors: Anchors,
    *,
    sni: str | None,
    server_ip: str | None,
) -> str | None:
    """Why the chain is not trusted by the anchors, or None when it is."""
    infos = [cert_info(d) for d in ders]
    if not infos:
        return "no certificate"
    if infos[0].error and not infos[0].subject_der:
        return f"the leaf cannot be read ({infos[0].error})"
    path, k, why = _trusted_path(ders, infos, anchors)
    if k is None:
        return why
    chain = [infos[i] for i in path]
    anchor = cert_info(anchors.ders[k])
    if anchors.ders[k] != ders[path[-1]]:
        chain.append(anchor)
    # OpenSSL checks the validity of every certificate up to and including the anchor
    for depth, info in enumerate(chain):
        v = _validity(info, at)
        if v.result == FAIL:
            return f"[{depth}] {info.name} {v.detail}"
    for depth in range(1, len(chain)):
        below = sum(1 for c in chain[1:depth] if not c.self_signed)
        problem = _ca_problem(chain[depth], below)
        if problem:
            return f"{chain[depth].name} signs {chain[depth - 1].name}, but {problem}"
    p = _purpose(chain[0], role)
    if p.result == FAIL:
        return f"the leaf's {p.detail}"
    if role == "server":
        nc = _name_check(chain[0], sni, server_ip)
        if nc.result == FAIL:
            return f"name mismatch: {nc.detail}"
    return None


_NOISE = re.compile(r" \(encountered processing <Certificate\(subject=<Name\(([^)]*)\)>.*?\)>\)")


def _cryptography_opinion(
    ders: Sequence[bytes], anchors: Anchors, at: datetime, role: str, host: str
) -> str | None:
    """None when cryptography's verifier accepts the chain, else its reason (cleaned up).
    "not available" when this cryptography has no verifier (before 43) or cannot be asked.
    `host` is the name a server chain must carry (its SNI, else its address)."""
    try:
        from cryptography.x509 import verification as v
    except ImportError:
        return "not available"
    try:
        certs = [c for c in (_load(d) for d in ders) if c is not None]
        roots = [c for c in (_load(d) for d in anchors.ders) if c is not None]
        if not certs or _load(ders[0]) is None or not roots:
            return "not available"
        builder = v.PolicyBuilder().store(v.Store(roots)).time(at)
        if role == "server":
            addr = _ip(host)
            subject: x509.DNSName | x509.IPAddress = (
                x509.IPAddress(addr) if addr is not None else x509.DNSName(host)
            )
            builder.build_server_verifier(subject).verify(certs[0], certs[1:])
        else:
            builder.build_client_verifier().verify(certs[0], certs[1:])
        return None
    except v.VerificationError as exc:
        text = str(exc).removeprefix("validation failed: ")
        text = _NOISE.sub(r" (at \1)", text)
        return text.split(": AlgorithmIdentifier", 1)[0]
    except Exception as exc:  # noqa: BLE001 - the verifier failing on odd input is no verdict
        return f"not available ({type(exc).__name__}: {exc})"


__all__ = ["Anchors", "load_anchors", "validate"]
