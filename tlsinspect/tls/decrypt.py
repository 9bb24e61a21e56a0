"""TLS record decryption with logged secrets: record protection, sans-IO.

This module reads protected records once the secrets are known from a key log (see keylog.py),
with the keys keyschedule.py derives: TLS 1.3 record protection (RFC 8446 sections 5.2 to 5.4),
and TLS 1.0 to 1.2 AEAD (RFC 5288, RFC 6655, RFC 7905) and CBC record protection (RFC 5246
section 6.2.3.2, RFC 4346, RFC 2246, RFC 7366). It never reads files or keys by itself and knows
nothing of connections: `RecordDecryptor` is one direction of one session, fed the records of
that direction in order.

The observer is passive: nothing here is secret from the owner of the capture, so checks need
not be constant-time; what matters is telling a wrong key from a right one, which the AEAD tag
or the HMAC does. Every failure is a DecodeError whose message starts "decryption failed".
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from ..errors import DecodeError, UnsupportedCipher
from . import registry as reg
from .keyschedule import (
    AES_BLOCK,
    AES_CCM,
    AES_GCM,
    CHACHA20_POLY1305,
    TLS10,
    TLS11,
    TLS12,
    TLS13,
    CipherSuite,
    key_material,
    next_traffic_secret,
    suite_for,
    tls13_suite,
    traffic_keys,
)

WRONG_KEY = "decryption failed: wrong key or corrupted record"

_MASTER_SECRET_LEN = 48  # RFC 5246 section 8.1
_RANDOM_LEN = 32
# RFC 8446 section 5.2: TLSCiphertext.length must not exceed 2^14 + 256.
_TLS13_MAX_CIPHERTEXT = 2**14 + 256

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
        suite = tls13_suite(cipher_suite)
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
        explicit_iv = AES_BLOCK if self.version >= TLS11 else 0
        data = bytes(payload)
        n = len(data)
        if self._etm:
            need = explicit_iv + AES_BLOCK + mac_len
            if n < need:
                raise _too_short(n, need, self.suite)
            data, mac = data[: n - mac_len], data[n - mac_len :]
        elif n < explicit_iv + max(AES_BLOCK, mac_len + 1):
            raise _too_short(n, explicit_iv + max(AES_BLOCK, mac_len + 1), self.suite)
        if len(data) % AES_BLOCK:
            raise DecodeError(
                f"decryption failed: CBC data of {len(data)} bytes is not a whole number of "
                f"{AES_BLOCK}-byte blocks"
            )
        if explicit_iv:
            iv, ciphertext = data[:explicit_iv], data[explicit_iv:]
        else:
            # The sender chains from what it sent, whether or not this record verifies.
            iv, ciphertext = self._iv, data
            self._iv = data[-AES_BLOCK:]
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


__all__ = ["WRONG_KEY", "RecordDecryptor", "UnsupportedCipher"]
