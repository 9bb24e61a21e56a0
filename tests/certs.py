"""Test certificates made with `cryptography`: the one factory of the tests that need their own
(the recorded captures bring theirs, see captures/README.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)  # the default "capture time" of the tests

_KEYS: dict[str, Any] = {}


def private_key(kind: str) -> Any:
    """A private key of `kind` ("ec" P-256, "p384", "ed25519", "rsa" 2048 bits or "rsaN" N bits,
    with an optional ":label"): made once per kind and label, keys being slow to make."""
    if kind not in _KEYS:
        if kind.startswith("rsa"):
            bits = int(kind.split(":")[0][3:] or 2048)
            _KEYS[kind] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        elif kind.startswith("p384"):
            _KEYS[kind] = ec.generate_private_key(ec.SECP384R1())
        elif kind.startswith("ed25519"):
            _KEYS[kind] = ed25519.Ed25519PrivateKey.generate()
        else:
            _KEYS[kind] = ec.generate_private_key(ec.SECP256R1())
    return _KEYS[kind]


@dataclass
class Made:
    cert: x509.Certificate
    key: Any

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def name(self) -> x509.Name:
        return self.cert.subject

    def save(self, cert_path: Path, key_path: Path) -> None:
        """The certificate and its key (PKCS#8, unencrypted) as PEM files, for a TLS server."""
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def name(cn: str, org: str | None = "Example Unit Tests") -> x509.Name:
    """C=US, O=`org`, CN=`cn`; only the CN when `org` is None."""
    if org is None:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make(
    cn: str,
    issuer: Made | None = None,
    *,
    key: str = "ec",
    subject: x509.Name | None = None,
    ca: bool | None = False,
    path_length: int | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = None,
    san: Sequence[x509.GeneralName] = (),
    ku: str | None = None,
    start: datetime = T0 - timedelta(days=10),
    days: int = 200,
    not_after: datetime | None = None,
    serial: int = 0x1234ABCD,
    issuer_name: x509.Name | None = None,
    signer: Made | None = None,
    key_ids: bool = True,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> Made:
    """A certificate for `cn` (subject `name(cn)` unless `subject` is given), issued by `issuer`
    or self-signed. `ca` None leaves basic constraints out; `ku` "ca", "sig" or "enc" sets key
    usage, None leaves it out; `key_ids` adds the subject and authority key identifiers (RFC 5280
    4.2.1.1-2); `extra` adds (extension, critical) pairs as they are. Valid from `start` for
    `days`, or until `not_after`; `signer` signs in place of the issuer (a forgery)."""
    private = private_key(f"{key}:{cn}")
    signing = signer or issuer
    sign_key = signing.key if signing else private
    subject = subject or name(cn)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or (issuer.name if issuer else subject))
        .public_key(private.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(not_after or start + timedelta(days=days))
    )
    if key_ids:
        public = private.public_key()
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(sign_key.public_key()),
            critical=False,
        )
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    if ku is not None:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=ku == "sig",
                content_commitment=False,
                key_encipherment=ku == "enc",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ku == "ca",
                crl_sign=ku == "ca",
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    for extension, critical in extra:
        b = b.add_extension(extension, critical=critical)
    algorithm = None if isinstance(sign_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Made(b.sign(sign_key, algorithm), private)
