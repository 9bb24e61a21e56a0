"""Certificate facts from DER, via `cryptography`, cached by SHA-256 (a chain repeats a lot)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from cryptography.x509.oid import NameOID

# OpenSSL's short names (what `openssl x509 -subject` and tshark print); others stay dotted.
_SHORT_BY_DOTTED = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.12": "title",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}


@dataclass(frozen=True, slots=True)
class CertInfo:
    sha256: str
    subject: str
    issuer: str
    subject_cn: str | None
    issuer_cn: str | None
    serial: str | None
    not_before: datetime | None
    not_after: datetime | None
    self_signed: bool
    error: str | None = None  # why cryptography could not read it, if it could not

    def to_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "subject_cn": self.subject_cn,
            "issuer_cn": self.issuer_cn,
            "serial": self.serial,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "sha256": self.sha256,
            "error": self.error,
        }


def format_name(name: x509.Name) -> str:
    """A distinguished name in certificate order, "C=US, O=Let's Encrypt, CN=R3" (as tshark)."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            key = _SHORT_BY_DOTTED.get(attr.oid.dotted_string, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def _cn(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    v = attrs[-1].value
    return v if isinstance(v, str) else v.hex()


def _der_items(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, content_start, content_end) of each DER element between start and end."""
    out = []
    pos = start
    while pos < end:
        tag = der[pos]
        n = der[pos + 1]
        pos += 2
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 4:
                raise ValueError("bad DER length")
            n = int.from_bytes(der[pos : pos + k], "big")
            pos += k
        if pos + n > end:
            raise ValueError("DER element runs past its parent")
        out.append((tag, pos, pos + n))
        pos += n
    return out


def _oid(body: bytes) -> str:
    arcs = [body[0] // 40 if body[0] < 80 else 2, body[0] % 40 if body[0] < 80 else body[0] - 80]
    value = 0
    for b in body[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(map(str, arcs))


_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def name_from_der(der: bytes) -> str:
    """A DER-encoded X.501 Name (as in CertificateRequest's CA list) as text, in wire order."""
    try:
        (tag, s, e), *_ = _der_items(der, 0, len(der))
        if tag != 0x30:
            raise ValueError("not a SEQUENCE")
        parts = []
        for _set, ss, se in _der_items(der, s, e):
            for _, as_, ae in _der_items(der, ss, se):
                (_otag, os_, oe), (vtag, vs, ve) = _der_items(der, as_, ae)[:2]
                dotted = _oid(der[os_:oe])
                raw = der[vs:ve]
                enc = _STRING_TAGS.get(vtag)
                value = raw.decode(enc, "replace") if enc else raw.hex()
                parts.append(f"{_SHORT_BY_DOTTED.get(dotted, dotted)}={value}")
        return ", ".join(parts)
    except (ValueError, IndexError) as exc:
        return f"<unreadable name {der[:16].hex()}...: {exc}>"


@lru_cache(maxsize=4096)
def cert_info(der: bytes) -> CertInfo:
    digest = hashlib.sha256(der).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as exc:  # noqa: BLE001
        return CertInfo(
            digest,
            "",
            "",
            None,
            None,
            None,
            None,
            None,
            False,
            f"not a readable certificate: {exc}",
        )
    try:
        subject, issuer = format_name(cert.subject), format_name(cert.issuer)
        return CertInfo(
            sha256=digest,
            subject=subject,
            issuer=issuer,
            subject_cn=_cn(cert.subject),
            issuer_cn=_cn(cert.issuer),
            serial=format(cert.serial_number, "x"),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            self_signed=cert.subject == cert.issuer,
        )
    except Exception as exc:  # noqa: BLE001
        return CertInfo(
            digest, "", "", None, None, None, None, None, False, f"partly unreadable: {exc}"
        )
