"""The test PKI: one certificate factory for every recorder.

``issue`` makes any certificate the recorders need (CA or leaf, RSA or EC, with a validity in
the past, a padding extension, a SHA-1 signature); ``build_pki`` makes the PKI of ``record.py``
and of the per-stack recorders (``with_expired_client`` adds their expired client);
``record_certs.py`` builds its own certificates with ``issue``."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .core import SERVER_NAME, RecordingError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
ROOT_CA = "Test Root CA"
CLIENT_CA = "Test Client Intermediate CA"

VALIDITY = (datetime.timedelta(hours=-1), datetime.timedelta(days=3650))
"""From an hour ago for ten years: the validity of every certificate of ``build_pki``."""
EXPIRED = (datetime.timedelta(days=-30), datetime.timedelta(days=-1))
"""From 30 days ago until yesterday: the validity of the expired client."""

PADDING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.32473.1")
"""A private extension under the example enterprise number of RFC 5612, used to make
certificates large."""
BIG_CHAIN_DEPTH = 3
BIG_CHAIN_PADDING = 3072
"""Bytes of padding extension per certificate of the big chain: with 4096-bit RSA keys the four
certificates the client sends make a Certificate message of about 18 KB, more than one record."""


@dataclass(frozen=True)
class Identity:
    """A leaf certificate with its key and the chain its owner sends, leaf first."""

    cn: str
    cert: Path
    key: Path
    chain: Path
    extra: Path
    sent: tuple[str, ...]


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key."""

    name: x509.Name
    key: PrivateKey
    cert: x509.Certificate

    @property
    def cn(self) -> str:
        return str(self.name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    root: Path
    server: Identity
    clients: dict[str, Identity]
    issuers: dict[str, Issued] = field(default_factory=dict, repr=False, compare=False)
    """The CAs by common name, with their keys, for certificates made after the PKI."""

    def client(self, name: str | None) -> Identity | None:
        return None if name is None else self.clients[name]


def name(country: str, org: str, cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def spiffe(who: str, domain: str = "example.test") -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(f"spiffe://{domain}/{who}")


def new_key(kind: str) -> PrivateKey:
    """``ec`` (P-256), ``rsa`` (2048 bits) or ``rsaBITS``."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:] or 2048))
    return ec.generate_private_key(ec.SECP256R1())


def _padding_extension(size: int) -> x509.UnrecognizedExtension:
    """A non-critical extension whose value is an OCTET STRING of ``size`` bytes (256 to 65535)."""
    text = b"Example Test PKI padding to make this certificate large. "
    data = (text * (size // len(text) + 1))[:size]
    return x509.UnrecognizedExtension(PADDING_OID, b"\x04\x82" + size.to_bytes(2, "big") + data)


def _key_usage(ca: bool, rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=not ca and rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def issue(
    subject: x509.Name,
    kind: str,
    issuer: Issued | None,
    *,
    ca: bool = False,
    path_length: int | None = None,
    usage: Sequence[x509.ObjectIdentifier] = (),
    san: Sequence[x509.GeneralName] = (),
    padding: int = 0,
    valid: tuple[datetime.timedelta, datetime.timedelta] = VALIDITY,
    sha1: bool = False,
) -> Issued:
    """A certificate for ``subject`` with a new ``kind`` key (see ``new_key``), issued by
    ``issuer`` (self-signed when None), valid from ``valid[0]`` to ``valid[1]`` from now;
    ``sha1`` signs it with sha1WithRSAEncryption (the issuer's key must be RSA)."""
    key = new_key(kind)
    signer = issuer.key if issuer else key
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid[0])
        .not_valid_after(now + valid[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca, kind.startswith("rsa")), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    if padding:
        builder = builder.add_extension(_padding_extension(padding), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    if sha1:
        if not isinstance(signer, rsa.RSAPrivateKey):
            raise RecordingError("a SHA-1 signature is made with an RSA issuer here")
        cert = _resign_sha1(cert, signer)
    return Issued(subject, key, cert)


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")  # OID 1.2.840.113549.1.1.11
SHA1_RSA = bytes.fromhex("06092a864886f70d010105")  # OID 1.2.840.113549.1.1.5


def _resign_sha1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate signed with sha1WithRSAEncryption. cryptography no longer signs
    with SHA-1, so the TBSCertificate's signature algorithm is swapped (both OIDs have the same
    length) and the new TBS is signed by hand (RFC 5280 4.1.1)."""
    tbs = cert.tbs_certificate_bytes
    if tbs.count(SHA256_RSA) != 1:
        raise RecordingError("cannot find the signature algorithm in the TBS")
    tbs = tbs.replace(SHA256_RSA, SHA1_RSA)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _tlv(0x30, SHA1_RSA + b"\x05\x00")
    der = _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def pem(*certs: Issued) -> bytes:
    return b"".join(c.pem() for c in certs)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_identity(folder: Path, leaf: Issued, *extra: Issued, stem: str | None = None) -> Identity:
    """``STEM.pem``, ``STEM.key``, ``STEM-extra.pem`` (what is sent besides the leaf) and
    ``STEM-chain.pem`` (all of it, leaf first) in ``folder``; ``stem`` is the leaf's CN unless
    given."""
    stem = stem or leaf.cn
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.pem").write_bytes(pem(leaf))
    (folder / f"{stem}.key").write_bytes(key_pem(leaf.key))
    (folder / f"{stem}-extra.pem").write_bytes(pem(*extra))
    (folder / f"{stem}-chain.pem").write_bytes(pem(leaf, *extra))
    return Identity(
        cn=leaf.cn,
        cert=folder / f"{stem}.pem",
        key=folder / f"{stem}.key",
        chain=folder / f"{stem}-chain.pem",
        extra=folder / f"{stem}-extra.pem",
        sent=(leaf.cn, *(c.cn for c in extra)),
    )


def _client(who: str, issuer: Issued, country: str, org: str) -> Issued:
    return issue(
        name(country, org, f"client-{who}"), "ec", issuer, usage=[CLIENT_AUTH], san=[spiffe(who)]
    )


def _big_chain(root: Issued) -> list[Issued]:
    """client-dave and the three intermediate CAs above him, leaf first."""
    chain: list[Issued] = []
    issuer = root
    for n in range(1, BIG_CHAIN_DEPTH + 1):
        issuer = issue(
            name("US", "Example Test PKI", f"Test Big Chain Intermediate CA {n}"),
            "rsa4096",
            issuer,
            ca=True,
            path_length=BIG_CHAIN_DEPTH - n,
            padding=BIG_CHAIN_PADDING,
        )
        chain.insert(0, issuer)
    leaf = issue(
        name("US", "Example Clients", "client-dave"),
        "rsa4096",
        issuer,
        usage=[CLIENT_AUTH],
        san=[spiffe("dave")],
        padding=BIG_CHAIN_PADDING,
    )
    return [leaf, *chain]


def _server(root: Issued, kind: str, addresses: Sequence[str]) -> Issued:
    san: list[x509.GeneralName] = [x509.DNSName(SERVER_NAME), x509.DNSName("localhost")]
    san += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    return issue(
        name("US", "Example Servers", SERVER_NAME), kind, root, usage=[SERVER_AUTH], san=san
    )


def build_pki(work: Path, export: Path | None, big_chain: bool = False) -> Pki:
    """Create the test PKI: certificates and chains in ``work``, public certificates also in
    ``export``; private keys stay in ``work`` only. ``big_chain`` adds client-dave, whose chain
    runs through three intermediate CAs, all with 4096-bit RSA keys and a padding extension."""
    root = issue(name("US", "Example Test PKI", ROOT_CA), "rsa", None, ca=True)
    intermediate = issue(
        name("US", "Example Test PKI", CLIENT_CA), "ec", root, ca=True, path_length=0
    )
    rogue = issue(name("ZZ", "Rogue Certificates Ltd", "Rogue CA"), "ec", None, ca=True)
    public = {"test-root-ca.pem": root, "test-client-intermediate-ca.pem": intermediate}
    public["rogue-ca.pem"] = rogue
    server = write_identity(work, _server(root, "rsa", ("127.0.0.1", "::1")), root)
    clients = {
        who: write_identity(work, _client(who, intermediate, "US", "Example Clients"), intermediate)
        for who in ("alice", "bob", "carol")
    }
    mallory = _client("mallory", rogue, "ZZ", "Rogue Certificates Ltd")
    clients["mallory"] = write_identity(work, mallory, rogue)
    if big_chain:
        dave, *cas = _big_chain(root)
        public.update({f"{ca.cn.lower().replace(' ', '-')}.pem": ca for ca in cas})
        clients["dave"] = write_identity(work, dave, *cas)
    for file_name, cert in public.items():
        (work / file_name).write_bytes(cert.pem())
    if export is not None:
        export.mkdir(parents=True, exist_ok=True)
        for file_name, cert in public.items():
            (export / file_name).write_bytes(cert.pem())
        for identity in (server, *clients.values()):
            (export / identity.cert.name).write_bytes(identity.cert.read_bytes())
    issuers = {c.cn: c for c in (root, intermediate, rogue)}
    return Pki(root=work / "test-root-ca.pem", server=server, clients=clients, issuers=issuers)


def with_expired_client(pki: Pki, work: Path, key: str, who: str) -> Pki:
    """``pki`` plus client-WHO among its clients as ``key``: issued by the Test Client
    Intermediate CA like alice, bob and carol, but valid from 30 days ago until yesterday."""
    intermediate = pki.issuers[CLIENT_CA]
    leaf = issue(
        name("US", "Example Clients", f"client-{who}"),
        "ec",
        intermediate,
        usage=[CLIENT_AUTH],
        san=[spiffe(who)],
        valid=EXPIRED,
    )
    return replace(pki, clients={**pki.clients, key: write_identity(work, leaf, intermediate)})


def with_ec_server(pki: Pki, work: Path, key: str) -> Pki:
    """``pki`` plus, among its clients as ``key``, a server identity like ``pki.server`` (same
    name, same root) with a P-256 key, in ``work/KEY/``."""
    root = pki.issuers[ROOT_CA]
    server = _server(root, "ec", ("127.0.0.1",))
    identity = write_identity(work / key, server, root, stem="server")
    return replace(pki, clients={**pki.clients, key: identity})
