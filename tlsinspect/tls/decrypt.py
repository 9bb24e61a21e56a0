"""TLS record decryption with logged secrets: key schedules and record protection, sans-IO.

This module owns the cryptography of reading protected records once the secrets are known from a
key log (see keylog.py): the TLS 1.3 key schedule from a traffic secret (RFC 8446 sections 7.1
to 7.3) and its record protection (section 5.2 to 5.4), and the TLS 1.0 to 1.2 key expansion
from a master secret (RFC 2246 and RFC 5246 section 6.3) with AEAD (RFC 5288, RFC 6655,
RFC 7905) and CBC record protection (RFC 5246 section 6.2.3.2, RFC 4346, RFC 2246, RFC 7366).
It never reads files or keys by itself and knows nothing of connections: `RecordDecryptor` is
one direction of one session, fed the records of that direction in order.

The observer is passive: nothing here is secret from the owner of the capture, so checks need
not be constant-time; what matters is telling a wrong key from a right one, which the AEAD tag
or the HMAC does. Every failure is a DecodeError whose message starts "decryption failed".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from ..errors import DecodeError, UnsupportedCipher
from . import registry as reg
from ._iana import CIPHER_SUITES

WRONG_KEY = "decryption failed: wrong key or corrupted record"

AES_GCM = "AES-GCM"
AES_CCM = "AES-CCM"
CHACHA20_POLY1305 = "ChaCha20-Poly1305"
AES_CBC = "AES-CBC"

TLS10, TLS11, TLS12, TLS13 = 0x0301, 0x0302, 0x0303, 0x0304

_BLOCK = 16  # AES block size
_MASTER_SECRET_LEN = 48  # RFC 5246 section 8.1
_RANDOM_LEN = 32
# RFC 8446 section 5.2: TLSCiphertext.length must not exceed 2^14 + 256.
_TLS13_MAX_CIPHERTEXT = 2**14 + 256


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
    suite = _tls13_suite(cipher_suite)
    return hkdf_expand_label(secret, "traffic upd", b"", suite.hash.digest_size, suite.hash)


def _tls13_suite(cipher_suite: int) -> CipherSuite:
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
    return _BLOCK if version == TLS10 else 0  # TLS 1.1 and later carry the IV in each record


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


# -- record protection -------------------------------------------------------------------------

_Aead = AESGCM | AESCCM | ChaCha20Poly1305


def _make_aead(suite: CipherSuite, key: bytes) -> _Aead:
    if suite.cipher == AES_GCM:
        return AESGCM(key)
    if suite.cipher == AES_CCM:
        return AESCCM(key, tag_length=suite.tag_len)
    return ChaCha20Poly1305(key)


def _xor_nonce(iv: bytes, seq: int) -> bytes:
    """The 64-bit sequence number, left-padded to the IV length, XORed with the IV
    (RFC 8446 section 5.3, RFC 7905 section 2)."""
    return (int.from_bytes(iv, "big") ^ seq).to_bytes(len(iv), "big")


def _header(seq: int, content_type: int, version: int, length: int) -> bytes:
    """seq_num + TLSCompressed.type + version + length: the TLS 1.2 AEAD additional data
    (RFC 5246 section 6.2.3.3) and the start of the HMAC input (section 6.2.3.1)."""
    return (
        seq.to_bytes(8, "big")
        + bytes([content_type])
        + version.to_bytes(2, "big")
        + length.to_bytes(2, "big")
    )


def _too_short(n: int, need: int, suite: CipherSuite) -> DecodeError:
    return DecodeError(
        f"decryption failed: record of {n} bytes is too short for {suite.name} "
        f"(at least {need} bytes)"
    )


class RecordDecryptor:
    """Decrypts the protected records of one direction of one session, in order.

    Build one with `for_tls13` or `for_tls12`. It keeps the direction's sequence number (RFC 5246
    section 6.1, RFC 8446 section 5.3), which advances with every record passed to `decrypt`,
    decrypted or not, since the sender numbered each one; a TLS 1.0 CBC direction also keeps the
    IV chained from the previous record (RFC 2246 section 6.2.3.2).

    Attributes:
        suite: the cipher suite's parameters.
        version: the negotiated version (0x0301 to 0x0304).
        seq: the sequence number of the next record.
    """

    __slots__ = ("suite", "version", "seq", "_secret", "_aead", "_iv", "_mac_key", "_key", "_etm")

    def __init__(
        self,
        suite: CipherSuite,
        version: int,
        key: bytes,
        iv: bytes,
        mac_key: bytes = b"",
        encrypt_then_mac: bool = False,
        traffic_secret: bytes | None = None,
    ) -> None:
        """Prefer `for_tls13` and `for_tls12`, which derive key, IV and MAC key."""
        self.suite = suite
        self.version = version
        self.seq = 0
        self._secret = traffic_secret
        self._key = key
        self._iv = iv
        self._mac_key = mac_key
        self._etm = encrypt_then_mac and not suite.aead  # RFC 7366 section 3: CBC only
        self._aead = _make_aead(suite, key) if suite.aead else None

    @classmethod
    def for_tls13(cls, cipher_suite: int, traffic_secret: bytes) -> RecordDecryptor:
        """A TLS 1.3 direction keyed with a traffic secret (client/server handshake, early or
        application traffic secret from the key log), sequence number 0.

        Raises:
            UnsupportedCipher: not a supported TLS 1.3 suite.
            DecodeError: the secret's length is not the suite's hash length.
        """
        suite = _tls13_suite(cipher_suite)
        _check_tls13_secret(suite, traffic_secret)
        key, iv = traffic_keys(suite, traffic_secret)
        return cls(suite, TLS13, key, iv, traffic_secret=bytes(traffic_secret))

    @classmethod
    def for_tls12(
        cls,
        cipher_suite: int,
        version: int,
        master_secret: bytes,
        client_random: bytes,
        server_random: bytes,
        is_client: bool,
        encrypt_then_mac: bool = False,
    ) -> RecordDecryptor:
        """A TLS 1.0, 1.1 or 1.2 direction keyed from the master secret (the key log's
        CLIENT_RANDOM line), starting after that direction's ChangeCipherSpec.

        Args:
            version: the negotiated version, 0x0301 to 0x0303.
            is_client: the records to decrypt are the client's (else the server's).
            encrypt_then_mac: the ServerHello accepted the encrypt_then_mac extension
                (RFC 7366); it only changes CBC suites.

        Raises:
            UnsupportedCipher: the suite is not supported, is a TLS 1.3 suite, does not exist in
                `version`, or `version` is not TLS 1.0 to 1.2 (SSL 3.0 has its own MAC and key
                derivation).
            DecodeError: the master secret is not 48 bytes or a random not 32.
        """
        suite = suite_for(cipher_suite)
        if version not in (TLS10, TLS11, TLS12):
            raise UnsupportedCipher(
                f"decryption of {reg.name_of('version', version)} records is not supported"
            )
        if suite.tls13:
            raise UnsupportedCipher(f"cipher suite {suite.name} is a TLS 1.3 cipher suite")
        if version < suite.min_version:
            raise UnsupportedCipher(
                f"cipher suite {suite.name} does not exist in {reg.name_of('version', version)}"
            )
        if len(master_secret) != _MASTER_SECRET_LEN:
            raise DecodeError(
                f"decryption failed: master secret of {len(master_secret)} bytes "
                f"(expected {_MASTER_SECRET_LEN})"
            )
        if len(client_random) != _RANDOM_LEN or len(server_random) != _RANDOM_LEN:
            raise DecodeError("decryption failed: client and server randoms must be 32 bytes")
        km = key_material(
            suite,
            version,
            bytes(master_secret),
            bytes(client_random),
            bytes(server_random),
            is_client,
        )
        return cls(suite, version, km.key, km.iv, km.mac_key, encrypt_then_mac)

    @property
    def traffic_secret(self) -> bytes | None:
        """The TLS 1.3 traffic secret in use (None for TLS 1.2 and older)."""
        return self._secret

    def rekey(self, traffic_secret: bytes) -> None:
        """Switch this TLS 1.3 direction to a new traffic secret and restart its sequence at 0:
        from the handshake to the application traffic secret once the direction has sent its
        Finished (RFC 8446 section 7.1), or to the next one after a KeyUpdate (section 7.2).

        Raises:
            DecodeError: not a TLS 1.3 direction, or a secret of the wrong length.
        """
        if self.version != TLS13:
            raise DecodeError("decryption failed: only a TLS 1.3 direction is re-keyed")
        _check_tls13_secret(self.suite, traffic_secret)
        key, iv = traffic_keys(self.suite, traffic_secret)
        self._secret = bytes(traffic_secret)
        self._key, self._iv = key, iv
        self._aead = _make_aead(self.suite, key)
        self.seq = 0

    def key_update(self) -> None:
        """Follow a KeyUpdate this direction sent (RFC 8446 section 4.6.3): re-key with
        HKDF-Expand-Label(secret, "traffic upd", "", Hash.length) (section 7.2)."""
        if self._secret is None:
            raise DecodeError("decryption failed: only a TLS 1.3 direction is re-keyed")
        self.rekey(next_traffic_secret(self.suite.code, self._secret))

    def decrypt(self, content_type: int, version: int, payload: bytes) -> tuple[int, bytes]:
        """Decrypt the next record of this direction.

        Args:
            content_type: the record header's type (application_data for every protected
                TLS 1.3 record).
            version: the record header's version, as on the wire; it is part of the additional
                data or MAC input.
            payload: the record's fragment, after the 5-byte header.

        Returns:
            (content type, plaintext): in TLS 1.3 the real type from TLSInnerPlaintext, padding
            removed (RFC 8446 section 5.4); in TLS 1.2 and older the header's type. In TLS 1.3 a
            record whose header type is not application_data is not protected (RFC 8446
            section 5: a ChangeCipherSpec, or an alert sent before the keys were known): it is
            returned as it is and takes no sequence number.

        Raises:
            DecodeError: the tag or MAC does not match (wrong key or damaged record; the
                message is WRONG_KEY), or the record is too short or badly formed for the suite.
                Nothing else.
        """
        if self.version == TLS13:
            if content_type != reg.APPLICATION_DATA:
                return content_type, bytes(payload)
            return self._decrypt_tls13(content_type, version, payload)
        seq = self.seq
        self.seq += 1
        if self._aead is not None:
            return content_type, self._decrypt_aead12(seq, content_type, version, payload)
        return content_type, self._decrypt_cbc(seq, content_type, version, payload)

    def _decrypt_tls13(self, content_type: int, version: int, payload: bytes) -> tuple[int, bytes]:
        """RFC 8446 section 5.2: the additional data is the record header; the nonce is the IV
        XOR the sequence number (section 5.3)."""
        assert self._aead is not None
        seq = self.seq
        self.seq += 1
        n = len(payload)
        if n < self.suite.tag_len + 1:
            raise _too_short(n, self.suite.tag_len + 1, self.suite)
        if n > _TLS13_MAX_CIPHERTEXT:
            raise DecodeError(
                f"decryption failed: protected record of {n} bytes exceeds 2^14 + 256 "
                "(RFC 8446 section 5.2)"
            )
        aad = bytes([content_type]) + version.to_bytes(2, "big") + n.to_bytes(2, "big")
        try:
            inner = self._aead.decrypt(_xor_nonce(self._iv, seq), bytes(payload), aad)
        except InvalidTag:
            raise DecodeError(WRONG_KEY) from None
        # RFC 8446 section 5.4: zeros pad the content; the last non-zero byte is its type.
        end = len(inner.rstrip(b"\x00"))
        if end == 0:
            raise DecodeError(
                "decryption failed: TLSInnerPlaintext holds no content type (RFC 8446 section 5.4)"
            )
        return inner[end - 1], inner[: end - 1]

    def _decrypt_aead12(self, seq: int, content_type: int, version: int, payload: bytes) -> bytes:
        """AES-GCM and AES-CCM (RFC 5288 section 3, RFC 6655 section 3): nonce = 4-byte salt +
        the 8-byte explicit nonce that starts the record; ChaCha20-Poly1305 (RFC 7905
        section 2): nonce = IV XOR sequence number, no explicit part. Additional data: RFC 5246
        section 6.2.3.3, with the plaintext length."""
        assert self._aead is not None
        suite = self.suite
        if suite.cipher == CHACHA20_POLY1305:
            explicit = 0
            nonce = _xor_nonce(self._iv, seq)
        else:
            explicit = 8
            nonce = self._iv + bytes(payload[:explicit])
        n = len(payload)
        if n < explicit + suite.tag_len:
            raise _too_short(n, explicit + suite.tag_len, suite)
        aad = _header(seq, content_type, version, n - explicit - suite.tag_len)
        try:
            return self._aead.decrypt(nonce, bytes(payload[explicit:]), aad)
        except InvalidTag:
            raise DecodeError(WRONG_KEY) from None

    def _decrypt_cbc(self, seq: int, content_type: int, version: int, payload: bytes) -> bytes:
        """AES-CBC with HMAC: MAC-then-encrypt (RFC 5246 section 6.2.3.2), or encrypt-then-MAC
        when negotiated (RFC 7366 section 3). TLS 1.1 and later start each record with its IV
        (RFC 4346 section 6.2.3.2); TLS 1.0 chains it from the last ciphertext block of the
        previous record (RFC 2246 section 6.2.3.2)."""
        assert self.suite.mac_hash is not None
        mac_len = self.suite.mac_hash.digest_size
        explicit_iv = _BLOCK if self.version >= TLS11 else 0
        data = bytes(payload)
        n = len(data)
        if self._etm:
            need = explicit_iv + _BLOCK + mac_len
            if n < need:
                raise _too_short(n, need, self.suite)
            data, mac = data[: n - mac_len], data[n - mac_len :]
        elif n < explicit_iv + max(_BLOCK, mac_len + 1):
            raise _too_short(n, explicit_iv + max(_BLOCK, mac_len + 1), self.suite)
        if len(data) % _BLOCK:
            raise DecodeError(
                f"decryption failed: CBC data of {len(data)} bytes is not a whole number of "
                f"{_BLOCK}-byte blocks"
            )
        if explicit_iv:
            iv, ciphertext = data[:explicit_iv], data[explicit_iv:]
        else:
            # The sender chains from what it sent, whether or not this record verifies.
            iv, ciphertext = self._iv, data
            self._iv = data[-_BLOCK:]
        if self._etm:
            self._check_mac(_header(seq, content_type, version, len(data)) + data, mac)
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        plain = decryptor.update(ciphertext) + decryptor.finalize()
        # RFC 5246 section 6.2.3.2: padding_length bytes, each holding padding_length, then
        # padding_length itself.
        pad = plain[-1]
        tail = pad + 1 + (0 if self._etm else mac_len)
        if tail > len(plain) or plain[-pad - 1 :] != bytes([pad]) * (pad + 1):
            raise DecodeError(WRONG_KEY)
        if self._etm:
            return plain[: len(plain) - pad - 1]
        content = plain[: len(plain) - tail]
        mac = plain[len(content) : len(plain) - pad - 1]
        self._check_mac(_header(seq, content_type, version, len(content)) + content, mac)
        return content

    def _check_mac(self, data: bytes, mac: bytes) -> None:
        assert self.suite.mac_hash is not None
        h = hmac.HMAC(self._mac_key, self.suite.mac_hash)
        h.update(data)
        try:
            h.verify(mac)
        except InvalidSignature:
            raise DecodeError(WRONG_KEY) from None


def _check_tls13_secret(suite: CipherSuite, secret: bytes) -> None:
    if len(secret) != suite.hash.digest_size:
        raise DecodeError(
            f"decryption failed: traffic secret of {len(secret)} bytes does not fit "
            f"{suite.name} ({suite.hash.digest_size} expected)"
        )


__all__ = [
    "AES_CBC",
    "AES_CCM",
    "AES_GCM",
    "CHACHA20_POLY1305",
    "SUITES",
    "WRONG_KEY",
    "CipherSuite",
    "KeyMaterial",
    "RecordDecryptor",
    "UnsupportedCipher",
    "hkdf_expand_label",
    "key_material",
    "next_traffic_secret",
    "prf_tls10",
    "prf_tls12",
    "suite_for",
    "traffic_keys",
]
