"""Certificates: facts from DER (`cert_info`) and the checks on a chain (`check_chain`).

Owns everything tlsinspect says about a certificate: its identity (names, SANs, serial, validity,
key, signature algorithm, basic constraints, key usages), and whether a chain as sent holds
together: each certificate signed by the next, valid at the time of the capture, fit for its
role, naming the server the client asked for, issued by a CA the server listed, and, given trust
anchors, trusted.

Pure: DER bytes and a time in, values out. No files, no clock ("now" never enters: the caller
passes the capture's packet time), no logging. Certificates are parsed with `cryptography`, once
per distinct DER (`lru_cache`; Zeek keeps its certificate cache by SHA-256 the same way); a
certificate `cryptography` refuses is read by hand as far as its DER goes (`read_tbs`), so that
the report can still show what it held and why it failed.

References: RFC 5280 (profile, 4.1 structure, 4.2.1.x extensions, 6.1 path validation, 7.1
name comparison), RFC 6125 section 6 (service identity: DNS-ID, wildcards, CN fallback),
RFC 5246 7.4.2 / RFC 8446 4.4.2 (certificate_list order), RFC 5246 7.4.4 / RFC 8446 4.2.4
(certificate_authorities), CA/Browser Forum Baseline Requirements 6.3.2 (398-day server
certificates since 2020-09-01).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
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

# Signature algorithms: OpenSSL's long name and the hash they use (None: the scheme fixes it).
_SIGNATURES: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.2": ("md2WithRSAEncryption", "md2"),
    "1.2.840.113549.1.1.4": ("md5WithRSAEncryption", "md5"),
    "1.2.840.113549.1.1.5": ("sha1WithRSAEncryption", "sha1"),
    "1.2.840.113549.1.1.14": ("sha224WithRSAEncryption", "sha224"),
    "1.2.840.113549.1.1.11": ("sha256WithRSAEncryption", "sha256"),
    "1.2.840.113549.1.1.12": ("sha384WithRSAEncryption", "sha384"),
    "1.2.840.113549.1.1.13": ("sha512WithRSAEncryption", "sha512"),
    "1.2.840.113549.1.1.10": ("rsassaPss", None),  # the hash is in the parameters
    "1.2.840.10045.4.1": ("ecdsa-with-SHA1", "sha1"),
    "1.2.840.10045.4.3.1": ("ecdsa-with-SHA224", "sha224"),
    "1.2.840.10045.4.3.2": ("ecdsa-with-SHA256", "sha256"),
    "1.2.840.10045.4.3.3": ("ecdsa-with-SHA384", "sha384"),
    "1.2.840.10045.4.3.4": ("ecdsa-with-SHA512", "sha512"),
    "1.2.840.10040.4.3": ("dsa_with_SHA1", "sha1"),
    "2.16.840.1.101.3.4.3.2": ("dsa_with_SHA256", "sha256"),
    "1.3.101.112": ("ED25519", None),
    "1.3.101.113": ("ED448", None),
}
_KEY_ALGORITHMS = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.113549.1.1.10": "RSA-PSS",
    "1.2.840.10045.2.1": "EC",
    "1.2.840.10040.4.1": "DSA",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
}
_EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "serverAuth",
    "1.3.6.1.5.5.7.3.2": "clientAuth",
    "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "1.3.6.1.5.5.7.3.8": "timeStamping",
    "1.3.6.1.5.5.7.3.9": "OCSPSigning",
    "2.5.29.37.0": "anyExtendedKeyUsage",
}
_KEY_USAGES = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)

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


# --------------------------------------------------------------------------------------------
# Names


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


def _elements(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, header_start, content_start, content_end) of each DER element in der[start:end]."""
    out = []
    pos = start
    while pos < end:
        if pos + 2 > end:
            raise ValueError("DER element header cut short")
        head = pos
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
        out.append((tag, head, pos, pos + n))
        pos += n
    return out


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


def _name_parts(der: bytes) -> list[tuple[str, str]]:
    """(dotted OID, value text) of each attribute of a DER Name, in wire order; raises
    ValueError or IndexError on bad DER."""
    (tag, s, e), *_ = _der_items(der, 0, len(der))
    if tag != 0x30:
        raise ValueError("not a SEQUENCE")
    parts = []
    for _set, ss, se in _der_items(der, s, e):
        for _, as_, ae in _der_items(der, ss, se):
            (_otag, os_, oe), (vtag, vs, ve) = _der_items(der, as_, ae)[:2]
            raw = der[vs:ve]
            enc = _STRING_TAGS.get(vtag)
            parts.append((_oid(der[os_:oe]), raw.decode(enc, "replace") if enc else raw.hex()))
    return parts


@lru_cache(maxsize=4096)
def name_from_der(der: bytes) -> str:
    """A DER-encoded X.501 Name (as in CertificateRequest's CA list) as text, in wire order."""
    try:
        return ", ".join(f"{_SHORT_BY_DOTTED.get(o, o)}={v}" for o, v in _name_parts(der))
    except (ValueError, IndexError) as exc:
        return f"<unreadable name {der[:16].hex()}...: {exc}>"


@lru_cache(maxsize=4096)
def _cn_from_der(der: bytes) -> str | None:
    try:
        cns = [v for o, v in _name_parts(der) if o == "2.5.4.3"]
    except (ValueError, IndexError):
        return None
    return cns[-1] if cns else None


@lru_cache(maxsize=4096)
def short_name(der: bytes) -> str:
    """The CN of a DER Name, or the whole name as text when it has none (for messages)."""
    return _cn_from_der(der) or name_from_der(der)


@lru_cache(maxsize=4096)
def _normalized_name(der: bytes) -> tuple[tuple[str, str], ...] | None:
    """A Name reduced for comparison as RFC 5280 7.1 allows (case folded, inner white space
    collapsed), so that two encodings of the same name compare equal; None if unreadable."""
    try:
        return tuple((o, " ".join(v.casefold().split())) for o, v in _name_parts(der))
    except (ValueError, IndexError):
        return None


def same_name(a: bytes, b: bytes) -> bool:
    """Two DER Names are the same name: byte-equal, or equal after RFC 5280 normalisation."""
    if a == b:
        return True
    na = _normalized_name(a)
    return na is not None and na == _normalized_name(b)


# --------------------------------------------------------------------------------------------
# Reading the TBSCertificate by hand (RFC 5280 4.1), for raw names and unparsable certificates


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
        raise ValueError(f"time has tag 0x{tag:02x}")
    return datetime.strptime(text.rstrip("Z"), "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


def read_tbs(der: bytes) -> RawTbs:
    """Read a certificate's TBSCertificate by hand; never raises. What could not be read is
    left at None and `error` says where reading stopped."""
    got: dict[str, object] = {}
    step = "Certificate SEQUENCE"
    try:
        (tag, _h, s, e), *_ = _elements(der, 0, len(der))
        if tag != 0x30:
            raise ValueError("not a SEQUENCE")
        step = "TBSCertificate"
        (tag, _h, s, e), *_ = _elements(der, s, e)
        items = _elements(der, s, e)
        if tag != 0x30 or not items:
            raise ValueError("not a SEQUENCE")
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
            raise ValueError(f"tag 0x{tag:02x}, not INTEGER")
        got["serial"] = format(int.from_bytes(der[vs:ve], "big", signed=True), "x")
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
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        return RawTbs(**got, error=f"{step}: {exc or type(exc).__name__}")  # type: ignore[arg-type]
    return RawTbs(**got)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# One certificate


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What one certificate says. Built once per DER by `cert_info`."""

    sha256: str
    subject: str
    issuer: str
    subject_cn: str | None
    issuer_cn: str | None
    serial: str | None
    not_before: datetime | None
    not_after: datetime | None
    self_signed: bool  # subject and issuer are the same name (self-issued)
    error: str | None = None  # why cryptography could not read it (all or part), if so
    subject_der: bytes = b""  # the names exactly as encoded, for comparing with CA lists
    issuer_der: bytes = b""
    san: tuple[str, ...] = ()  # "DNS:x", "IP:x", "URI:x", "email:x", "DirName:x", ...
    key_type: str | None = None  # RSA, EC, Ed25519, Ed448, DSA
    key_bits: int | None = None
    key_curve: str | None = None  # secp256r1, ...
    signature_algorithm: str | None = None  # OpenSSL's name: sha256WithRSAEncryption
    signature_hash: str | None = None  # sha256, sha1, md5; None when the scheme fixes it
    is_ca: bool | None = None  # basicConstraints cA; None without the extension
    path_length: int | None = None
    key_usage: tuple[str, ...] | None = None  # None without the extension
    extended_key_usage: tuple[str, ...] | None = None  # None without the extension
    version: int | None = None
    notes: tuple[str, ...] = ()  # what cryptography warned about while reading it

    @property
    def name(self) -> str:
        """How messages name this certificate: its CN, else its subject."""
        return self.subject_cn or self.subject or f"sha256 {self.sha256[:16]}"

    @property
    def key(self) -> str | None:
        """ "RSA 2048", "EC secp256r1", "Ed25519"."""
        if self.key_type is None:
            return None
        if self.key_curve:
            return f"{self.key_type} {self.key_curve}"
        return f"{self.key_type} {self.key_bits}" if self.key_bits else self.key_type

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
            "san": list(self.san),
            "key_type": self.key_type,
            "key_bits": self.key_bits,
            "key_curve": self.key_curve,
            "signature_algorithm": self.signature_algorithm,
            "is_ca": self.is_ca,
            "key_usage": None if self.key_usage is None else list(self.key_usage),
            "extended_key_usage": None
            if self.extended_key_usage is None
            else list(self.extended_key_usage),
        }


def _san_text(gn: x509.GeneralName) -> str:
    if isinstance(gn, x509.DNSName):
        return f"DNS:{gn.value}"
    if isinstance(gn, x509.IPAddress):
        return f"IP:{gn.value}"
    if isinstance(gn, x509.UniformResourceIdentifier):
        return f"URI:{gn.value}"
    if isinstance(gn, x509.RFC822Name):
        return f"email:{gn.value}"
    if isinstance(gn, x509.DirectoryName):
        return f"DirName:{format_name(gn.value)}"
    if isinstance(gn, x509.RegisteredID):
        return f"RID:{gn.value.dotted_string}"
    if isinstance(gn, x509.OtherName):
        return f"othername:{gn.type_id.dotted_string}"
    return f"other:{gn!r}"


def _key_facts(cert: x509.Certificate) -> tuple[str | None, int | None, str | None]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 448, None
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    return type(key).__name__, None, None


def _signature_facts(
    oid: str | None, cert: x509.Certificate | None
) -> tuple[str | None, str | None]:
    if oid is None:
        return None, None
    name, digest = _SIGNATURES.get(oid, (oid, None))
    if oid == "1.2.840.113549.1.1.10" and cert is not None:  # RSASSA-PSS: hash in parameters
        try:
            h = cert.signature_hash_algorithm
            digest = h.name if h is not None else None
        except Exception:  # noqa: BLE001 - an unknown PSS hash leaves it unnamed
            digest = None
    return name, digest


def _ext_value(cert: x509.Certificate, cls: type[x509.ExtensionType], errors: list[str]) -> object:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except Exception as exc:  # noqa: BLE001 - a malformed extension is reported, not fatal
        errors.append(f"{cls.__name__}: {exc}")
        return None


@lru_cache(maxsize=4096)
def cert_info(der: bytes) -> CertInfo:
    """What a DER certificate says; never raises. A certificate `cryptography` cannot load is
    read by hand as far as its DER allows, and `error` says why loading failed. What
    `cryptography` only warns about (a serial number that is not positive, ...) goes to
    `notes` rather than to the user's terminal."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = _cert_info(der)
    if caught:
        notes = tuple(dict.fromkeys(str(w.message).split(". ")[0] for w in caught))
        info = replace(info, notes=notes)
    return info


def _cert_info(der: bytes) -> CertInfo:
    digest = hashlib.sha256(der).hexdigest()
    raw = read_tbs(der)
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as exc:  # noqa: BLE001 - any refusal is reported, with what could be read
        return _unparsed(digest, raw, f"not a readable certificate: {exc}")
    errors: list[str] = []
    try:
        subject, issuer = format_name(cert.subject), format_name(cert.issuer)
        subject_cn, issuer_cn = _cn(cert.subject), _cn(cert.issuer)
        self_signed = cert.subject == cert.issuer
        subject_der = raw.subject_der or cert.subject.public_bytes()
        issuer_der = raw.issuer_der or cert.issuer.public_bytes()
        serial = format(cert.serial_number, "x")
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    except Exception as exc:  # noqa: BLE001
        return _unparsed(digest, raw, f"partly unreadable: {exc}")
    try:
        key_type, key_bits, key_curve = _key_facts(cert)
    except Exception as exc:  # noqa: BLE001 - an unsupported key is shown by its OID
        errors.append(f"public key: {exc}")
        key_type, key_bits, key_curve = (
            _KEY_ALGORITHMS.get(raw.key_oid or "", raw.key_oid),
            None,
            None,
        )
    sig_name, sig_hash = _signature_facts(cert.signature_algorithm_oid.dotted_string, cert)
    san: tuple[str, ...] = ()
    ext = _ext_value(cert, x509.SubjectAlternativeName, errors)
    if isinstance(ext, x509.SubjectAlternativeName):
        san = tuple(_san_text(gn) for gn in ext)
    is_ca = path_length = None
    ext = _ext_value(cert, x509.BasicConstraints, errors)
    if isinstance(ext, x509.BasicConstraints):
        is_ca, path_length = ext.ca, ext.path_length
    key_usage: tuple[str, ...] | None = None
    ext = _ext_value(cert, x509.KeyUsage, errors)
    if isinstance(ext, x509.KeyUsage):
        usages = [label for attr, label in _KEY_USAGES if getattr(ext, attr)]
        if ext.key_agreement:
            usages += ["encipherOnly"] if ext.encipher_only else []
            usages += ["decipherOnly"] if ext.decipher_only else []
        key_usage = tuple(usages)
    eku: tuple[str, ...] | None = None
    ext = _ext_value(cert, x509.ExtendedKeyUsage, errors)
    if isinstance(ext, x509.ExtendedKeyUsage):
        eku = tuple(_EKU_NAMES.get(o.dotted_string, o.dotted_string) for o in ext)
    return CertInfo(
        sha256=digest,
        subject=subject,
        issuer=issuer,
        subject_cn=subject_cn,
        issuer_cn=issuer_cn,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        self_signed=self_signed,
        error=f"partly unreadable: {'; '.join(errors)}" if errors else None,
        subject_der=subject_der,
        issuer_der=issuer_der,
        san=san,
        key_type=key_type,
        key_bits=key_bits,
        key_curve=key_curve,
        signature_algorithm=sig_name,
        signature_hash=sig_hash,
        is_ca=is_ca,
        path_length=path_length,
        key_usage=key_usage,
        extended_key_usage=eku,
        version=cert.version.value + 1,
    )


def _unparsed(digest: str, raw: RawTbs, why: str) -> CertInfo:
    """A certificate cryptography refused, with the fields `read_tbs` could read."""
    read = [
        label
        for label, value in (
            ("version", raw.version),
            ("serial", raw.serial),
            ("signature algorithm", raw.signature_oid),
            ("issuer", raw.issuer_der),
            ("validity", raw.not_after),
            ("subject", raw.subject_der),
            ("key algorithm", raw.key_oid),
        )
        if value
    ]
    tail = f"; read by hand: {', '.join(read)}" if read else ""
    if raw.error:
        tail += f" (stopped at {raw.error})"
    sig_name, sig_hash = _signature_facts(raw.signature_oid, None)
    return CertInfo(
        sha256=digest,
        subject=name_from_der(raw.subject_der) if raw.subject_der else "",
        issuer=name_from_der(raw.issuer_der) if raw.issuer_der else "",
        subject_cn=_cn_from_der(raw.subject_der) if raw.subject_der else None,
        issuer_cn=_cn_from_der(raw.issuer_der) if raw.issuer_der else None,
        serial=raw.serial,
        not_before=raw.not_before,
        not_after=raw.not_after,
        self_signed=bool(raw.subject_der) and same_name(raw.subject_der, raw.issuer_der),
        error=why + tail,
        subject_der=raw.subject_der,
        issuer_der=raw.issuer_der,
        key_type=_KEY_ALGORITHMS.get(raw.key_oid or "", raw.key_oid),
        signature_algorithm=sig_name,
        signature_hash=sig_hash,
        version=raw.version,
    )


@lru_cache(maxsize=4096)
def _load(der: bytes) -> x509.Certificate | None:
    """The certificate for signature checks (`cert_info` reports what is odd about it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return x509.load_der_x509_certificate(der)
        except Exception:  # noqa: BLE001 - unparsable: cert_info says why
            return None


# --------------------------------------------------------------------------------------------
# Signatures


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
        raise ValueError(f"cannot verify a {cert.signature_algorithm_oid.dotted_string} signature")


@lru_cache(maxsize=8192)
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


# --------------------------------------------------------------------------------------------
# Server identity (RFC 6125 section 6)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def dns_name_matches(pattern: str, host: str) -> bool:
    """A DNS-ID from a certificate matches a host name (RFC 6125 6.4.1 and 6.4.3).

    Case-insensitive, a trailing dot ignored. A wildcard is honoured only as the whole leftmost
    label and stands for exactly one label ("*.example.com" matches "a.example.com", not
    "example.com" nor "a.b.example.com"); it needs two labels after it, as OpenSSL requires.
    Partial-label wildcards ("w*.example.com"), which 6.4.3 lets a client accept, are refused
    here as RFC 9525 and the browsers and Python do. A-labels are compared as ASCII.
    """
    p = pattern.rstrip(".").lower()
    h = host.rstrip(".").lower()
    if not p or not h:
        return False
    if "*" not in p:
        return p == h
    first, _, rest = p.partition(".")
    if first != "*" or "*" in rest or rest.count(".") < 1:
        return False
    head, _, tail = h.partition(".")
    return bool(head) and tail == rest


@dataclass(frozen=True, slots=True)
class NameMatch:
    matched: str | None  # the identifier that matched ("DNS:*.example.test"), None if none
    presented: tuple[str, ...]  # what the certificate offers for the comparison


def match_server_name(info: CertInfo, host: str) -> NameMatch:
    """Whether a server certificate names `host` (a DNS name, or an IP address in text).

    DNS names are compared with the DNS SANs; IP addresses with the IP SANs (RFC 6125 leaves
    IPs to RFC 5280; RFC 2818 3.1 asks for an iPAddress SAN). The subject CN counts only when
    the certificate has no DNS, URI or IP SAN at all (RFC 6125 6.4.4).
    """
    dns = [s[4:] for s in info.san if s.startswith("DNS:")]
    ips = [s[3:] for s in info.san if s.startswith("IP:")]
    has_ids = bool(dns or ips or any(s.startswith("URI:") for s in info.san))
    presented = tuple(f"DNS:{d}" for d in dns) + tuple(f"IP:{i}" for i in ips)
    addr = _ip(host)
    if addr is not None:
        for i in ips:
            if _ip(i) == addr:
                return NameMatch(f"IP:{i}", presented)
        return NameMatch(None, presented)
    for d in dns:
        if dns_name_matches(d, host):
            return NameMatch(f"DNS:{d}", presented)
    if not has_ids and info.subject_cn:
        if dns_name_matches(info.subject_cn, host):
            return NameMatch(f"CN:{info.subject_cn}", (f"CN:{info.subject_cn}",))
        return NameMatch(None, (f"CN:{info.subject_cn}",))
    return NameMatch(None, presented)


# --------------------------------------------------------------------------------------------
# Chain checks


@dataclass(frozen=True, slots=True)
class Check:
    """One check: its name (stable, see CHECKS), `pass`/`warn`/`fail`/`info`, and what was found."""

    name: str
    result: str
    detail: str

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


@dataclass(frozen=True, slots=True)
class Anchors:
    """Trust anchors from a CA bundle (every certificate in it is trusted, as for a
    `cryptography` Store). Build with `load_anchors`."""

    ders: tuple[bytes, ...]

    @classmethod
    def from_pem(cls, pem: bytes) -> Anchors:
        """Raises ValueError when the bytes hold no PEM certificate."""
        certs = x509.load_pem_x509_certificates(pem)
        return cls(tuple(c.public_bytes(Encoding.DER) for c in certs))


load_anchors = Anchors.from_pem


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


def _day(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t else "?"


def _validity(info: CertInfo, at: datetime) -> Check:
    nb, na = info.not_before, info.not_after
    if nb is None or na is None:
        return Check("validity", INFO, "validity period unreadable")
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


def check_chain(
    ders: Sequence[bytes],
    role: str,
    at: datetime,
    *,
    sni: str | None = None,
    server_ip: str | None = None,
    ca_names: Sequence[bytes] = (),
    anchors: Anchors | None = None,
) -> ChainReport:
    """Check a certificate chain as sent (leaf first) at the capture time `at` (aware, UTC).

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


@lru_cache(maxsize=2048)
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
                    "signature", INFO, f"issuer {short_name(info.issuer_der)!r} is not in the chain"
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
    if links.issuer[last] == last:
        end = f"ends at the self-signed root [{last}] {top.name}"
    elif links.bad[last] is not None:
        return Check("path", FAIL, f"broken after {shown}: {links.bad[last]}")
    elif top.issuer_der:
        issuer = short_name(top.issuer_der)
        end = f"ends at [{last}] {top.name}, whose issuer {issuer!r} is not in the chain"
    else:
        return Check("path", FAIL, f"broken after {shown}: [{last}] cannot be read")
    unused = [k for k in range(len(infos)) if k not in path]
    if unused:
        extra = ", ".join(f"[{k}] {infos[k].name}" for k in unused)
        return Check("path", WARN, f"{shown} {end}; not part of the path: {extra}")
    return Check("path", PASS, f"{shown} {end}")


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


# --------------------------------------------------------------------------------------------
# Validation against trust anchors


def validate(
    ders: Sequence[bytes],
    role: str,
    at: datetime,
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
    own = _own_path(ders, role, at, anchors, sni=sni, server_ip=server_ip)
    strict = _cryptography_opinion(ders, role, at, anchors, sni=sni, server_ip=server_ip)
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
    ders: Sequence[bytes],
    role: str,
    at: datetime,
    anchors: Anchors,
    *,
    sni: str | None,
    server_ip: str | None,
) -> str | None:
    """None when cryptography's verifier accepts the chain, else its reason (cleaned up).
    "not available" when this cryptography has no verifier (before 43) or cannot be asked."""
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
            host = sni or server_ip or ""
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


__all__ = [
    "Anchors",
    "CHECKS",
    "CertInfo",
    "ChainReport",
    "Check",
    "NameMatch",
    "RawTbs",
    "cert_info",
    "check_chain",
    "dns_name_matches",
    "format_name",
    "load_anchors",
    "match_server_name",
    "name_from_der",
    "read_tbs",
    "same_name",
    "short_name",
    "signature_problem",
    "validate",
]
