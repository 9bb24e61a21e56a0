"""Who signed whom: `signature_problem` (does one certificate's key verify another's signature)
and the issuer links of a chain as sent (`_link`, `_walk`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

from ..errors import CertificateError
from .cache import CERT_CACHE_BYTES, bounded_cache
from .facts import CertInfo, _load, cert_info
from .names import same_name


def _verify_signature(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Verify `cert`'s signature with `issuer`'s public key by hand, for the algorithms that
    `verify_directly_issued_by` refuses (SHA-1, MD5): raises on failure."""
    key = issuer.public_key()
    sig, tbs = cert.signature, cert.tbs_certificate_bytes
    h = cert.signature_hash_algorithm
    params = cert.signature_algorithm_parameters
    if isinstance(key, rsa.RSAPublicKey) and h is not None:
        pad = params if isinstance(params, padding.PSS | padding.PKCS1v15) else padding.PKCS1v15()
        key.verify(sig, tbs, pad, h)
    elif isinstance(key, ec.EllipticCurvePublicKey) and h is not None:
        key.verify(sig, tbs, ec.ECDSA(h))
    elif isinstance(key, dsa.DSAPublicKey) and h is not None:
        key.verify(sig, tbs, h)
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        key.verify(sig, tbs)
    else:
        raise CertificateError(
            f"cannot verify a {cert.signature_algorithm_oid.dotted_string} signature"
        )


@bounded_cache(8192, CERT_CACHE_BYTES)
def signature_problem(der: bytes, issuer_der: bytes) -> str | None:
    """None when the certificate `issuer_der` issued `der`: its subject is `der`'s issuer and
    its public key verifies `der`'s signature. Otherwise why not, in words."""
    cert, issuer = _load(der), _load(issuer_der)
    if cert is None or issuer is None:
        return "unreadable certificate"
    if not same_name(cert_info(der).issuer_der, cert_info(issuer_der).subject_der):
        return "the issuer name is not the other certificate's subject"
    try:
        cert.verify_directly_issued_by(issuer)
        return None
    except InvalidSignature:
        return "the signature does not verify with the issuer's key"
    except Exception:  # noqa: BLE001 - an algorithm the method refuses (SHA-1, MD5), an
        pass  # unsupported or damaged key: check by hand, which says what went wrong
    try:
        _verify_signature(cert, issuer)
        return None
    except InvalidSignature:
        return "the signature does not verify with the issuer's key"
    except Exception as exc:  # noqa: BLE001 - unsupported key or algorithm
        return f"the signature could not be checked: {exc}"


@dataclass(frozen=True, slots=True)
class _Links:
    """For each certificate of a chain, which other one issued it."""

    issuer: tuple[int | None, ...]  # index of the issuer in the chain; i itself when self-signed
    bad: tuple[str | None, ...]  # why a name-matching candidate (or itself) did not verify


def _link(ders: Sequence[bytes], infos: Sequence[CertInfo]) -> _Links:
    issuer: list[int | None] = []
    bad: list[str | None] = []
    n = len(ders)
    for i, info in enumerate(infos):
        found: int | None = None
        why: str | None = None
        if info.issuer_der:
            # the next certificate first (the order the RFCs ask for), then the others
            order = [i + 1, *range(n)] if i + 1 < n else list(range(n))
            for j in dict.fromkeys(order):
                if j == i and not info.self_signed:
                    continue
                if not same_name(info.issuer_der, infos[j].subject_der):
                    continue
                problem = signature_problem(ders[i], ders[j])
                if problem is None:
                    found, why = j, None
                    break
                if why is None:
                    why = f"[{j}] {infos[j].name} has the issuer's name but {problem}"
        issuer.append(found)
        bad.append(why)
    return _Links(tuple(issuer), tuple(bad))


def _walk(links: _Links, start: int = 0) -> list[int]:
    """The path from `start` following issuers, without repeating a certificate."""
    path = [start]
    while True:
        nxt = links.issuer[path[-1]]
        if nxt is None or nxt in path:
            return path
        path.append(nxt)


__all__ = ["signature_problem"]
