"""TLS key schedules, sans-IO: what a cipher suite needs, and the keys a logged secret gives.

The TLS 1.3 key schedule from a traffic secret (RFC 8446 sections 7.1 to 7.3) and the TLS 1.0 to
1.2 key expansion from a master secret (RFC 2246 and RFC 5246 section 6.3), with the table of
cipher suites that decrypt.py can read. Pure functions of their arguments: no records, no state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from ..errors import UnsupportedCipher
from . import registry as reg
from ._iana import CIPHER_SUITES

AES_GCM = "AES-GCM"
AES_CCM = "AES-CCM"
CHACHA20_POLY1305 = "ChaCha20-Poly1305"
AES_CBC = "AES-CBC"

TLS10, TLS11, TLS12, TLS13 = 0x0301, 0x0302, 0x0303, 0x0304

AES_BLOCK = 16  # bytes


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """What record protection needs to know of a cipher suite.

    `hash` is the HKDF hash in TLS 1.3 (RFC 8446 appendix B.4) and the PRF hash in TLS 1.2
    (RFC 5246 section 5; the suites' RFCs name it). `mac_hash` is the HMAC hash of a CBC suite,
    None for AEAD suites. `tag_len` is the AEAD tag length (16, or 8 for the CCM_8 suites).
    """

    code: int
    name: str
    tls13: bool
    cipher: str
    key_len: int
    hash: hashes.HashAlgorithm
    mac_hash: hashes.HashAlgorithm | None = None
    tag_len: int = 16

    @property
    def aead(self) -> bool:
        return self.mac_hash is None

    @property
    def min_version(self) -> int:
        """Oldest version the suite exists in: the AEAD, SHA-256 and SHA-384 suites came with
        TLS 1.2 (RFC 5246 section 1.2); the *_CBC_SHA suites exist since TLS 1.0 (RFC 3268,
        RFC 4279, RFC 4492)."""
        if self.tls13:
            return TLS13
        if self.mac_hash is not None and self.mac_hash.name == "sha1":
            return TLS10
        return TLS12


_HASHES: dict[str, hashes.HashAlgorithm] = {
    "SHA": hashes.SHA1(),
    "SHA256": hashes.SHA256(),
    "SHA384": hashes.SHA384(),
}
_TLS13_NAME = re.compile(
    r"TLS_(?P<cipher>AES_128_GCM|AES_256_GCM|CHACHA20_POLY1305|AES_128_CCM|AES_128_CCM_8)"
    r"_(?P<hash>SHA256|SHA384)"
)
_TLS12_NAME = re.compile(
    r"TLS_\w+?_WITH_(?P<cipher>AES_(?:128|256)_(?:GCM|CBC|CCM|CCM_8)|CHACHA20_POLY1305)"
    r"(?:_(?P<hash>SHA|SHA256|SHA384))?"
)
# RFC 7905 section 2 assigns the ChaCha20-Poly1305 suites 0xCCA8 to 0xCCAE. Wireshark gives the
# same names to 0xCC13 to 0xCC15, the pre-standard draft suites, whose nonce and AEAD differ.
_CHACHA_CODES = range(0xCCA8, 0xCCAF)


def _suite_from_name(code: int, name: str) -> CipherSuite | None:
    m = _TLS13_NAME.fullmatch(name)
    tls13 = m is not None and 0x1300 <= code <= 0x13FF
    if not tls13:
        m = _TLS12_NAME.fullmatch(name)
    if m is None:
        return None
    cipher_name, hash_name = m["cipher"], m["hash"]
    key_len = 32 if cipher_name.startswith(("AES_256", "CHACHA20")) else 16
    if "CCM" in cipher_name:
        # RFC 6655 section 3 and RFC 7251 section 2: the TLS 1.2 CCM suites whose names carry
        # no hash use the SHA-256 PRF.
        hash_name = hash_name or "SHA256"
    if hash_name is None or (hash_name == "SHA" and not cipher_name.endswith("CBC")):
        return None
    if cipher_name == "CHACHA20_POLY1305":
        if not tls13 and code not in _CHACHA_CODES:
            return None
        return CipherSuite(code, name, tls13, CHACHA20_POLY1305, key_len, _HASHES[hash_name])
    if cipher_name.endswith("GCM"):
        return CipherSuite(code, name, tls13, AES_GCM, key_len, _HASHES[hash_name])
    if "CCM" in cipher_name:
        tag_len = 8 if cipher_name.endswith("_8") else 16
        return CipherSuite(code, name, tls13, AES_CCM, key_len, _HASHES[hash_name], tag_len=tag_len)
    # RFC 5246 section 5: TLS 1.2 suites use the SHA-256 PRF unless they name a stronger hash
    # (SHA-384 for the *_SHA384 suites, RFC 5289 section 3.2).
    mac = _HASHES[hash_name]
    prf = mac if hash_name == "SHA384" else _HASHES["SHA256"]
    return CipherSuite(code, name, False, AES_CBC, key_len, prf, mac_hash=mac, tag_len=0)


def _build_table() -> dict[int, CipherSuite]:
    table = {}
    for code, name in CIPHER_SUITES.items():
        suite = _suite_from_name(code, name)
        if suite is not None:
            table[code] = suite
    return table


#: The cipher suites this module decrypts, by IANA number.
SUITES: dict[int, CipherSuite] = _build_table()


def suite_for(cipher_suite: int) -> CipherSuite:
    """The parameters of a supported cipher suite.

    Raises:
        UnsupportedCipher: the suite is not in SUITES.
    """
    suite = SUITES.get(cipher_suite)
    if suite is None:
        raise UnsupportedCipher(
            f"cipher suite {reg.name_of('cipher', cipher_suite)} (0x{cipher_suite:04x}) "
            "not supported for decryption"
        )
    return suite


# -- TLS 1.3 key schedule ----------------------------------------------------------------------


def hkdf_expand_label(
    secret: bytes, label: str, context: bytes, length: int, algorithm: hashes.HashAlgorithm
) -> bytes:
    """HKDF-Expand-Label (RFC 8446 section 7.1): HKDF-Expand(secret, HkdfLabel, length), with
    HkdfLabel = length (u16) || "tls13 " + label (u8 vector) || context (u8 vector)."""
    full_label = b"tls13 " + label.encode("ascii")
    info = (
        length.to_bytes(2, "big")
        + bytes([len(full_label)])
        + full_label
        + bytes([len(context)])
        + context
    )
    return HKDFExpand(algorithm=algorithm, length=length, info=info).derive(secret)


def traffic_keys(suite: CipherSuite, secret: bytes) -> tuple[bytes, bytes]:
    """The write key and IV of a TLS 1.3 traffic secret (RFC 8446 section 7.3)."""
    key = hkdf_expand_label(secret, "key", b"", suite.key_len, suite.hash)
    iv = hkdf_expand_label(secret, "iv", b"", 12, suite.hash)
    return key, iv


def next_traffic_secret(cipher_suite: int, secret: bytes) -> bytes:
    """The traffic secret after a KeyUpdate (RFC 8446 section 7.2):
    HKDF-Expand-Label(secret, "traffic upd", "", Hash.length).

    Raises:
        UnsupportedCipher: `cipher_suite` is not a supported TLS 1.3 suite.
    """
    suite = tls13_suite(cipher_suite)
    return hkdf_expand_label(secret, "traffic upd", b"", suite.hash.digest_size, suite.hash)


def tls13_suite(cipher_suite: int) -> CipherSuite:
    suite = suite_for(cipher_suite)
    if not suite.tls13:
        raise UnsupportedCipher(f"cipher suite {suite.name} is not a TLS 1.3 cipher suite")
    return suite


# -- TLS 1.0 to 1.2 key expansion --------------------------------------------------------------


def _p_hash(secret: bytes, seed: bytes, length: int, algorithm: hashes.HashAlgorithm) -> bytes:
    """P_hash (RFC 5246 section 5): HMAC(secret, A(i) + seed) for A(i) = HMAC(secret, A(i-1))."""
    out = bytearray()
    a = seed
    while len(out) < length:
        h = hmac.HMAC(secret, algorithm)
        h.update(a)
        a = h.finalize()
        h = hmac.HMAC(secret, algorithm)
        h.update(a + seed)
        out += h.finalize()
    return bytes(out[:length])


def prf_tls12(
    secret: bytes, label: bytes, seed: bytes, length: int, algorithm: hashes.HashAlgorithm
) -> bytes:
    """The TLS 1.2 PRF (RFC 5246 section 5): P_<hash>(secret, label + seed)."""
    return _p_hash(secret, label + seed, length, algorithm)


def prf_tls10(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """The TLS 1.0 and 1.1 PRF (RFC 2246 section 5, RFC 4346 section 5):
    P_MD5(S1, label + seed) XOR P_SHA1(S2, label + seed), S1 and S2 the two halves of the secret
    (sharing the middle byte when its length is odd)."""
    half = (len(secret) + 1) // 2
    md5 = _p_hash(secret[:half], label + seed, length, hashes.MD5())
    sha1 = _p_hash(secret[len(secret) - half :], label + seed, length, hashes.SHA1())
    return bytes(x ^ y for x, y in zip(md5, sha1, strict=True))


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """One direction's share of the key block (RFC 5246 section 6.3)."""

    mac_key: bytes
    key: bytes
    iv: bytes


def _fixed_iv_len(suite: CipherSuite, version: int) -> int:
    if suite.cipher == CHACHA20_POLY1305:
        return 12  # RFC 7905 section 2
    if suite.aead:
        return 4  # the implicit "salt": RFC 5288 section 3, RFC 6655 section 3
    return AES_BLOCK if version == TLS10 else 0  # TLS 1.1 and later carry the IV in each record


def key_material(
    suite: CipherSuite,
    version: int,
    master_secret: bytes,
    client_random: bytes,
    server_random: bytes,
    is_client: bool,
) -> KeyMaterial:
    """The keys of one direction of a TLS 1.0 to 1.2 session (RFC 5246 section 6.3):
    key_block = PRF(master_secret, "key expansion", server_random + client_random), cut into
    client and server MAC keys, client and server keys, client and server IVs, in that order.
    `is_client`: the keys the client writes with (else the server's)."""
    mac_len = suite.mac_hash.digest_size if suite.mac_hash is not None else 0
    iv_len = _fixed_iv_len(suite, version)
    size = 2 * (mac_len + suite.key_len + iv_len)
    seed = server_random + client_random
    if version >= TLS12:
        block = prf_tls12(master_secret, b"key expansion", seed, size, suite.hash)
    else:
        block = prf_tls10(master_secret, b"key expansion", seed, size)
    own = 0 if is_client else 1
    mac_at = own * mac_len
    key_at = 2 * mac_len + own * suite.key_len
    iv_at = 2 * (mac_len + suite.key_len) + own * iv_len
    return KeyMaterial(
        block[mac_at : mac_at + mac_len],
        block[key_at : key_at + suite.key_len],
        block[iv_at : iv_at + iv_len],
    )


__all__ = [
    "AES_CBC",
    "AES_CCM",
    "AES_GCM",
    "CHACHA20_POLY1305",
    "SUITES",
    "CipherSuite",
    "KeyMaterial",
    "UnsupportedCipher",
    "hkdf_expand_label",
    "key_material",
    "next_traffic_secret",
    "prf_tls10",
    "prf_tls12",
    "suite_for",
    "tls13_suite",
    "traffic_keys",
]
