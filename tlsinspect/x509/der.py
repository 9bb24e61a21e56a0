"""Raw DER reading (X.690): the elements of a DER buffer, OIDs, times, and the fields of a
TBSCertificate read by hand (RFC 5280 4.1), for certificates `cryptography` refuses.

Pure and without `cryptography`. Malformed DER raises CertificateError (a ValueError); `read_tbs`
never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import CertificateError


def _elements(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, header_start, content_start, content_end) of each DER element in der[start:end]."""
    out = []
    pos = start
    while pos < end:
        if pos + 2 > end:
            raise CertificateError("DER element header cut short")
        head = pos
        tag = der[pos]
        n = der[pos + 1]
        pos += 2
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 4:
                raise CertificateError("bad DER length")
            n = int.from_bytes(der[pos : pos + k], "big")
            pos += k
        if pos + n > end:
            raise CertificateError("DER element runs past its parent")
        out.append((tag, head, pos, pos + n))
        pos += n
    return out


def serial_text(value: int) -> str:
    """A certificate's serial number as OpenSSL (`openssl x509 -serial`, `i2a_ASN1_INTEGER`)
    and Zeek's x509.log print it: the upper-case hex of its magnitude in whole bytes, so "01"
    and "075DA2...", not "1" and "75da2..."; "-" before a negative one (RFC 5280 4.1.2.2
    forbids them, some CAs issued them). The DER content octets (X.690 8.3), which tshark's
    `x509af.serialNumber` shows, have one more leading 00 when the first byte is 0x80 or more:
    the sign byte is not part of the number, and OpenSSL and Zeek leave it out."""
    magnitude = abs(value)
    octets = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "big")
    return ("-" if value < 0 else "") + octets.hex().upper()


def _der_items(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, content_start, content_end) of each DER element between start and end."""
    return [(tag, s, e) for tag, _h, s, e in _elements(der, start, end)]


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


@dataclass(frozen=True, slots=True)
class RawTbs:
    """The fields of a certificate read straight from its DER, as far as the DER goes."""

    version: int | None = None
    serial: str | None = None
    signature_oid: str | None = None
    issuer_der: bytes = b""
    subject_der: bytes = b""
    not_before: datetime | None = None
    not_after: datetime | None = None
    key_oid: str | None = None
    error: str | None = None  # where reading stopped, if it did


def _der_time(tag: int, body: bytes) -> datetime:
    text = body.decode("ascii")
    if tag == 0x17:  # UTCTime, RFC 5280 4.1.2.5.1: YY < 50 is 20YY
        year = int(text[:2])
        text = f"{2000 + year if year < 50 else 1900 + year}{text[2:]}"
    elif tag != 0x18:
        raise CertificateError(f"time has tag 0x{tag:02x}")
    return datetime.strptime(text.rstrip("Z"), "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


def read_tbs(der: bytes) -> RawTbs:
    """Read a certificate's TBSCertificate by hand; never raises. What could not be read is
    left at None and `error` says where reading stopped."""
    got: dict[str, object] = {}
    step = "Certificate SEQUENCE"
    try:
        (tag, _h, s, e), *_ = _elements(der, 0, len(der))
        if tag != 0x30:
            raise CertificateError("not a SEQUENCE")
        step = "TBSCertificate"
        (tag, _h, s, e), *_ = _elements(der, s, e)
        items = _elements(der, s, e)
        if tag != 0x30 or not items:
            raise CertificateError("not a SEQUENCE")
        i = 0
        got["version"] = 1
        if items[0][0] == 0xA0:  # [0] EXPLICIT Version, v1 when absent
            step = "version"
            (_t, _h2, vs, ve), *_ = _elements(der, items[0][2], items[0][3])
            got["version"] = int.from_bytes(der[vs:ve], "big") + 1
            i = 1
        step = "serialNumber"
        tag, _h2, vs, ve = items[i]
        if tag != 0x02:
            raise CertificateError(f"tag 0x{tag:02x}, not INTEGER")
        got["serial"] = serial_text(int.from_bytes(der[vs:ve], "big", signed=True))
        step = "signature"
        _t, _h2, vs, ve = items[i + 1]
        (_t, _h3, os_, oe), *_ = _elements(der, vs, ve)
        got["signature_oid"] = _oid(der[os_:oe])
        step = "issuer"
        _t, h, _vs, ve = items[i + 2]
        got["issuer_der"] = der[h:ve]
        step = "validity"
        _t, _h2, vs, ve = items[i + 3]
        (t1, _a, s1, e1), (t2, _b, s2, e2) = _elements(der, vs, ve)[:2]
        got["not_before"] = _der_time(t1, der[s1:e1])
        got["not_after"] = _der_time(t2, der[s2:e2])
        step = "subject"
        _t, h, _vs, ve = items[i + 4]
        got["subject_der"] = der[h:ve]
        step = "subjectPublicKeyInfo"
        _t, _h2, vs, ve = items[i + 5]
        (_t, _h3, as_, ae), *_ = _elements(der, vs, ve)
        (_t, _h4, os_, oe), *_ = _elements(der, as_, ae)
        got["key_oid"] = _oid(der[os_:oe])
    except (ValueError, IndexError, UnicodeDecodeError) as exc:  # CertificateError is a ValueError
        return RawTbs(**got, error=f"{step}: {exc or type(exc).__name__}")  # type: ignore[arg-type]
    return RawTbs(**got)  # type: ignore[arg-type]


__all__ = ["RawTbs", "read_tbs"]
