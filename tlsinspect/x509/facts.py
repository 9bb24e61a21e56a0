"""One certificate's facts (`cert_info` -> `CertInfo`): names, SANs, serial, validity, key,
signature algorithm, basic constraints, key usages. Parsed with `cryptography` once per distinct
DER (`cache.bounded_cache`: 4,096 certificates, 4 MB of DER); what `cryptography` refuses is read by hand (`der.read_tbs`) as far as its DER
goes.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, replace
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from .cache import CERT_CACHE_BYTES, bounded_cache
from .der import RawTbs, read_tbs, serial_text
from .names import _cn, _cn_from_der, format_name, name_from_der, rfc2253_from_der, same_name

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
# OpenSSL's names of the public key algorithms (`X509_get0_pubkey` OBJ_nid2ln: Zeek's `key_alg`).
_KEY_ALGORITHM_NAMES = {
    "1.2.840.113549.1.1.1": "rsaEncryption",
    "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.10045.2.1": "id-ecPublicKey",
    "1.2.840.10040.4.1": "dsaEncryption",
    "1.3.101.110": "X25519",
    "1.3.101.111": "X448",
    "1.3.101.112": "ED25519",
    "1.3.101.113": "ED448",
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


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What one certificate says. Built once per DER by `cert_info`."""

    sha256: str
    subject: str
    issuer: str
    subject_cn: str | None
    issuer_cn: str | None
    serial: str | None  # upper-case hex in whole bytes, as OpenSSL and Zeek: der.serial_text
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
    key_oid: str | None = None  # the subjectPublicKeyInfo algorithm, dotted
    rsa_exponent: int | None = None  # the public exponent of an RSA key
    loaded: bool = True  # cryptography loaded it (else its fields were read by hand)

    @property
    def key_algorithm(self) -> str | None:
        """The public key algorithm as OpenSSL names it (`rsaEncryption`, `id-ecPublicKey`),
        else its dotted OID."""
        if self.key_oid is None:
            return None
        return _KEY_ALGORITHM_NAMES.get(self.key_oid, self.key_oid)

    @property
    def subject_rfc2253(self) -> str:
        """The subject as RFC 2253 text, last RDN first, as OpenSSL (and Zeek) print it."""
        return rfc2253_from_der(self.subject_der) if self.subject_der else self.subject

    @property
    def issuer_rfc2253(self) -> str:
        """The issuer as RFC 2253 text, last RDN first, as OpenSSL (and Zeek) print it."""
        return rfc2253_from_der(self.issuer_der) if self.issuer_der else self.issuer

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
        """The fields of `_DICT_FIELDS`, in that order, as JSON values (times in ISO 8601)."""
        return {name: _json_value(getattr(self, name)) for name in _DICT_FIELDS}


# What CertInfo.to_dict gives (the JSON output's certificate fields), in order.
_DICT_FIELDS = (
    "subject",
    "issuer",
    "subject_cn",
    "issuer_cn",
    "serial",
    "not_before",
    "not_after",
    "sha256",
    "error",
    "san",
    "key_type",
    "key_bits",
    "key_curve",
    "signature_algorithm",
    "is_ca",
    "key_usage",
    "extended_key_usage",
)


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


# The general names shown as their value after a prefix (the others are told apart below).
_SAN_PREFIX: dict[type[x509.GeneralName], str] = {
    x509.DNSName: "DNS",
    x509.IPAddress: "IP",
    x509.UniformResourceIdentifier: "URI",
    x509.RFC822Name: "email",
}


def _san_text(gn: x509.GeneralName) -> str:
    prefix = _SAN_PREFIX.get(type(gn))
    if prefix is not None:
        return f"{prefix}:{gn.value}"
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


@bounded_cache(4096, CERT_CACHE_BYTES)
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
        serial = serial_text(cert.serial_number)
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    except Exception as exc:  # noqa: BLE001
        return _unparsed(digest, raw, f"partly unreadable: {exc}")
    exponent = None
    try:
        key_type, key_bits, key_curve = _key_facts(cert)
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            exponent = key.public_numbers().e
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
        key_oid=raw.key_oid,
        rsa_exponent=exponent,
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
        key_oid=raw.key_oid,
        loaded=False,
    )


@bounded_cache(4096, CERT_CACHE_BYTES)
def _load(der: bytes) -> x509.Certificate | None:
    """The certificate for signature checks (`cert_info` reports what is odd about it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return x509.load_der_x509_certificate(der)
        except Exception:  # noqa: BLE001 - unparsable: cert_info says why
            return None


__all__ = ["CertInfo", "cert_info"]
