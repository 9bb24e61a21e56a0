"""The checks on one certificate (`Check`, results PASS/WARN/FAIL/INFO, the names in `CHECKS`):
validity at the capture time, purpose, server name, key and signature strength, lifetime, and
whether an issuer is a CA allowed to sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from .facts import CertInfo
from .identity import match_server_name

WEAK_HASHES = frozenset({"md2", "md5", "sha1"})
MIN_RSA_BITS = 2048  # NIST SP 800-131A, CA/B Forum BR 6.1.5
MIN_EC_BITS = 256
# CA/B Forum BR 6.3.2: server certificates issued on or after 2020-09-01 may be valid for at
# most 398 days; from 2018-03-01 the limit was 825 days. Earlier certificates are not judged.
_LIFETIME_RULES = (
    (datetime(2020, 9, 1, tzinfo=timezone.utc), 398),
    (datetime(2018, 3, 1, tzinfo=timezone.utc), 825),
)

# Check results. "info" states a fact that is neither good nor bad (e.g. no SNI to compare).
PASS, WARN, FAIL, INFO = "pass", "warn", "fail", "info"


@dataclass(frozen=True, slots=True)
class Check:
    """One check: its name (stable, see CHECKS), `pass`/`warn`/`fail`/`info`, and what was found."""

    name: str
    result: str
    detail: str
    # what a program may test without reading `detail`: "issuer_missing" for a path that ends
    # at a certificate whose issuer is not in the chain; "" otherwise (not in the output)
    finding: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"check": self.name, "result": self.result, "detail": self.detail}


CHECKS: dict[str, str] = {
    # per certificate
    "parse": "cryptography could read the certificate (warn: it read it, with a warning)",
    "signature": "signed by the next certificate of the chain (or self-signed, verified)",
    "validity": "valid at the time of the capture",
    "ca": "a certificate that signs another is a CA allowed to: basicConstraints, keyCertSign, "
    "pathLenConstraint",
    "purpose": "the leaf may authenticate its side: EKU clientAuth / serverAuth when present, "
    "key usage",
    "name": "the server leaf names the server the client asked for (SNI, else its address)",
    "key_strength": "RSA or DSA key of 2048 bits or more, EC curve of 256 bits or more",
    "signature_hash": "not signed with MD5 or SHA-1",
    "lifetime": "a server leaf's validity within the CA/Browser Forum limit (398 days)",
    # per chain
    "order": "each certificate is followed by its issuer (RFC 5246 7.4.2)",
    "path": "the chain links up to a self-signed root or to a certificate whose issuer is absent",
    "ca_listed": "the client chain is issued by a CA the server listed in its CertificateRequest",
    "ca_bundle": "the chain is trusted by the given CA bundle at the time of the capture",
}


def _day(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t else "?"


#: The detail of a time-dependent check when the capture time is no date (a damaged timestamp).
NO_CAPTURE_TIME = "not checked: the capture time is not a date (a damaged packet timestamp)"


def _validity(info: CertInfo, at: datetime | None) -> Check:
    nb, na = info.not_before, info.not_after
    if nb is None or na is None:
        return Check("validity", INFO, "validity period unreadable")
    if at is None:
        return Check("validity", INFO, NO_CAPTURE_TIME)
    if at < nb:
        return Check(
            "validity",
            FAIL,
            f"not yet valid: valid from {_day(nb)}, {_ago(nb - at)} after the capture",
        )
    if at > na:
        return Check("validity", FAIL, f"expired on {_day(na)}, {_ago(at - na)} before the capture")
    return _valid(nb, na)


@lru_cache(maxsize=4096)
def _valid(nb: datetime, na: datetime) -> Check:
    return Check("validity", PASS, f"valid at the capture time ({nb:%Y-%m-%d} .. {na:%Y-%m-%d})")


def _ago(d: timedelta) -> str:
    if d.days >= 2:
        return f"{d.days} days"
    hours = int(d.total_seconds() // 3600)
    return f"{hours} hours" if hours >= 2 else f"{int(d.total_seconds())} seconds"


def _purpose(info: CertInfo, role: str) -> Check:
    """RFC 5280 4.2.1.12: when EKU is present the certificate is for those purposes only;
    anyExtendedKeyUsage allows all. Key usage as OpenSSL's ssl_client/ssl_server purposes ask:
    digitalSignature for a client; for a server one of digitalSignature, keyEncipherment,
    keyAgreement."""
    want = "clientAuth" if role == "client" else "serverAuth"
    eku, ku = info.extended_key_usage, info.key_usage
    if eku is not None and want not in eku and "anyExtendedKeyUsage" not in eku:
        shown = ", ".join(eku) or "empty"
        return Check("purpose", FAIL, f"extended key usage {shown} does not include {want}")
    if ku is not None:
        need = (
            ("digitalSignature",)
            if role == "client"
            else ("digitalSignature", "keyEncipherment", "keyAgreement")
        )
        if not any(u in ku for u in need):
            return Check(
                "purpose", FAIL, f"key usage {', '.join(ku) or 'empty'} lacks {' or '.join(need)}"
            )
    if eku is None:
        return Check("purpose", PASS, f"no extended key usage: any purpose, {want} included")
    return Check("purpose", PASS, f"extended key usage includes {want}")


def _name_check(info: CertInfo, sni: str | None, server_ip: str | None) -> Check:
    host = sni or server_ip
    if not host:
        return Check("name", INFO, "no SNI and no server address to compare with")
    m = match_server_name(info, host)
    what = f"SNI {host!r}" if sni else f"no SNI; the server address {host}"
    if m.matched:
        return Check("name", PASS, f"{what} matches {m.matched}")
    offered = ", ".join(m.presented) or "no DNS or IP name"
    return Check("name", FAIL, f"{what} matches none of the certificate's names ({offered})")


def _weak(info: CertInfo, role: str, depth: int) -> list[Check]:
    out = []
    bits = info.key_bits
    if info.key_type in ("RSA", "RSA-PSS", "DSA") and bits is not None and bits < MIN_RSA_BITS:
        out.append(
            Check("key_strength", WARN, f"{info.key_type} key of {bits} bits (< {MIN_RSA_BITS})")
        )
    elif info.key_type == "EC" and bits is not None and bits < MIN_EC_BITS:
        out.append(Check("key_strength", WARN, f"EC key on {info.key_curve} ({bits} bits)"))
    # The signature of a self-signed certificate is not relied on (a trust anchor is trusted
    # for itself, RFC 5280 6.1), so only the others are judged on their hash.
    if info.signature_hash in WEAK_HASHES and not info.self_signed:
        out.append(
            Check(
                "signature_hash",
                WARN,
                f"signed with {info.signature_algorithm} "
                f"({info.signature_hash.upper()} is broken for signatures)",
            )
        )
    if role == "server" and depth == 0 and info.not_before and info.not_after:
        days = (info.not_after - info.not_before).total_seconds() / 86400
        for since, limit in _LIFETIME_RULES:
            if info.not_before >= since:
                if days > limit:
                    out.append(
                        Check(
                            "lifetime",
                            WARN,
                            f"valid for {days:.0f} days; publicly trusted server certificates "
                            f"issued since {since:%Y-%m-%d} may be valid for {limit} at most",
                        )
                    )
                break
    return out


def _ca_problem(info: CertInfo, below: int) -> str | None:
    if info.is_ca is None:
        return "it has no basicConstraints extension (not a CA, RFC 5280 4.2.1.9)"
    if not info.is_ca:
        return "it is not a CA (basicConstraints CA:FALSE)"
    if info.key_usage is not None and "keyCertSign" not in info.key_usage:
        return "its key usage lacks keyCertSign"
    if info.path_length is not None and below > info.path_length:
        return (
            f"its pathLenConstraint {info.path_length} allows fewer intermediates than the "
            f"{below} below it"
        )
    return None


__all__ = ["CHECKS", "FAIL", "INFO", "PASS", "WARN", "Check"]
