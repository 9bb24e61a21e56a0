"""Compressed TLS content, undone: RFC 8879 certificate compression and RFC 3749 record compression.

Two unrelated kinds of compression reach a TLS observer, and both are only readable once the
bytes are decrypted with a key log (or were never encrypted):

- `CompressedCertificate` (RFC 8879, handshake type 25) replaces a TLS 1.3 Certificate message
  on either side when the peer offered the compress_certificate extension (27) in its
  ClientHello or CertificateRequest. `parse_compressed_certificate` decompresses it (zlib from
  the standard library, brotli and zstd from their PyPI packages) and parses the result as the
  Certificate message it stands for, so the rest of tlsinspect sees an ordinary chain.
- TLS-level compression (RFC 3749, ServerHello compression_method 1, "DEFLATE"): every record
  after a direction's ChangeCipherSpec carries TLSCompressed data, one persistent compression
  stream per direction flushed at the end of each record (section 2.1: Z_SYNC_FLUSH or
  Z_FULL_FLUSH). `RecordInflater` is one direction of it.

Pure: bytes in, values out; no I/O. Bounded by construction: an uncompressed certificate over
MAX_UNCOMPRESSED bytes is refused before it is inflated, output is asked for in at most that
many bytes plus one, and a decompressed record over 2^14 bytes (RFC 5246 section 6.2.2) is
refused. Every failure is a DecodeError.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import ClassVar

from ..errors import DecodeError
from . import messages as m
from . import registry as reg
from .handshake import MAX_MESSAGE
from .reader import Reader

ZLIB, BROTLI, ZSTD = 1, 2, 3
#: RFC 8879 section 7.3, CertificateCompressionAlgorithm.
ALGORITHMS = {ZLIB: "zlib", BROTLI: "brotli", ZSTD: "zstd"}

#: RFC 8879 section 4 caps uncompressed_length at 2^24 (a u24 cannot say more); tlsinspect
#: refuses more than it accepts for any handshake message (handshake.MAX_MESSAGE, 1 MiB), so a
#: compressed chain is held to the same bound as a plain one.
MAX_UNCOMPRESSED = min(1 << 24, MAX_MESSAGE)

#: RFC 3749 section 2: compression method 1 is DEFLATE.
DEFLATE = 1
#: RFC 5246 section 6.2.2: TLSCompressed.length <= 2^14 + 1024 and decompression must not give
#: more than 2^14 bytes.
MAX_PLAINTEXT = 1 << 14


@dataclass(frozen=True, slots=True)
class CompressedCertificate(m.Certificate):
    """A Certificate message that travelled compressed (RFC 8879 section 4).

    It is a `messages.Certificate` (entries, context, entry_extensions) as decompressed, with
    what the wire said about the compression; its msg_type is 25 so that the handshake history
    names the message that was sent.
    """

    msg_type: ClassVar[int] = reg.COMPRESSED_CERTIFICATE
    algorithm: int = 0
    uncompressed_length: int = 0
    compressed_length: int = 0

    @property
    def algorithm_name(self) -> str:
        return ALGORITHMS.get(self.algorithm, f"unknown({self.algorithm})")


def _bad(reason: str) -> DecodeError:
    return DecodeError(f"CompressedCertificate: {reason}")


def _inflate_zlib(data: bytes, limit: int) -> bytes:
    # RFC 8879 section 4: zlib is the RFC 1950 format (header and Adler-32), not raw DEFLATE.
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise _bad(f"zlib data does not decompress ({exc})") from None
    if len(out) <= limit and not d.eof:
        raise _bad("zlib data ends before its stream does")
    return out


def _inflate_brotli(data: bytes, limit: int) -> bytes:
    try:
        import brotli
    except ImportError:  # a dependency, but a stripped install can lack it
        raise _bad("brotli is not installed (pip install brotli)") from None
    d = brotli.Decompressor()
    try:
        out = d.process(data, output_buffer_limit=limit + 1)
    except brotli.error as exc:
        raise _bad(f"brotli data does not decompress ({exc})") from None
    if len(out) <= limit and not d.is_finished():
        raise _bad("brotli data ends before its stream does")
    return bytes(out)


def _inflate_zstd(data: bytes, limit: int) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise _bad("zstandard is not installed (pip install zstandard)") from None
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    try:
        out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise _bad(f"zstd data does not decompress ({exc})") from None
    return bytes(out)


_INFLATE = {ZLIB: _inflate_zlib, BROTLI: _inflate_brotli, ZSTD: _inflate_zstd}


def decompress_certificate(algorithm: int, uncompressed_length: int, data: bytes) -> bytes:
    """The Certificate message body a CompressedCertificate carries.

    Raises:
        DecodeError: unknown algorithm, uncompressed_length above MAX_UNCOMPRESSED, data that
            does not decompress, or a result whose length is not uncompressed_length
            (RFC 8879 section 4: the peer must then abort with bad_certificate).
    """
    inflate = _INFLATE.get(algorithm)
    if inflate is None:
        raise _bad(f"unknown compression algorithm {algorithm}")
    if uncompressed_length > MAX_UNCOMPRESSED:
        raise _bad(
            f"uncompressed_length {uncompressed_length:,} exceeds the limit of "
            f"{MAX_UNCOMPRESSED:,} bytes"
        )
    out = inflate(bytes(data), uncompressed_length)
    if len(out) != uncompressed_length:
        more = "more than " if len(out) > uncompressed_length else ""
        raise _bad(
            f"{ALGORITHMS[algorithm]} data decompresses to {more}{len(out):,} bytes, "
            f"uncompressed_length says {uncompressed_length:,}"
        )
    return out


def parse_compressed_certificate(body: bytes, version: int) -> CompressedCertificate:
    """Parse a CompressedCertificate body (RFC 8879 section 4) and the Certificate inside it.

    struct { CertificateCompressionAlgorithm algorithm; uint24 uncompressed_length;
    opaque compressed_certificate_message<1..2^24-1>; } CompressedCertificate;

    The compressed bytes are the body of the Certificate message the sender would otherwise
    have sent (without the 4-byte handshake header); `version` is the negotiated one, and the
    message exists only in TLS 1.3, whose Certificate carries a context and entry extensions.

    Raises:
        DecodeError: the framing does not add up, the data does not decompress to exactly
            uncompressed_length bytes, or the result is not a Certificate body.
    """
    r = Reader(body, "CompressedCertificate")
    algorithm = r.u16("algorithm")
    uncompressed_length = r.u24("uncompressed_length")
    data = r.vec24("compressed_certificate_message")
    r.expect_end()
    if not data:
        raise _bad("empty compressed_certificate_message (at least 1 byte)")
    inner = decompress_certificate(algorithm, uncompressed_length, data)
    cert = m.parse_certificate(inner, version == 0x0304 or version == 0)
    return CompressedCertificate(
        cert.entries,
        cert.context,
        cert.entry_extensions,
        algorithm=algorithm,
        uncompressed_length=uncompressed_length,
        compressed_length=len(data),
    )


class RecordInflater:
    """One direction of RFC 3749 DEFLATE record compression: TLSCompressed -> TLSPlaintext.

    The sender keeps one compression stream for the whole connection direction and flushes it
    at the end of every record (RFC 3749 section 2.1), so each record inflates on its own once
    the ones before it have. RFC 3749 names DEFLATE (RFC 1951), and OpenSSL's COMP_zlib, the
    implementation met in practice, uses zlib's defaults: deflateInit, the RFC 1950 stream with
    its 2-byte header, inflate with Z_SYNC_FLUSH. The first record's first two bytes tell which
    (a zlib header is a multiple of 31 with method 8); raw DEFLATE is read otherwise.
    """

    __slots__ = ("_d", "records")

    def __init__(self) -> None:
        self._d: zlib._Decompress | None = None
        self.records = 0

    def inflate(self, data: bytes) -> bytes:
        """The plaintext of the next compressed record of this direction.

        Raises:
            DecodeError: the data does not continue the stream, or inflates to more than 2^14
                bytes (RFC 5246 section 6.2.2).
        """
        if self._d is None:
            zlib_header = (
                len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            )
            self._d = zlib.decompressobj(15 if zlib_header else -15)
        self.records += 1
        try:
            out = self._d.decompress(bytes(data), MAX_PLAINTEXT + 1)
        except zlib.error as exc:
            raise DecodeError(
                f"record {self.records} does not inflate (TLS DEFLATE compression): {exc}"
            ) from None
        if len(out) > MAX_PLAINTEXT or self._d.unconsumed_tail:
            raise DecodeError(
                f"record {self.records} inflates to more than 2^14 bytes (RFC 5246 section 6.2.2)"
            )
        return out


__all__ = [
    "ALGORITHMS",
    "BROTLI",
    "DEFLATE",
    "MAX_PLAINTEXT",
    "MAX_UNCOMPRESSED",
    "ZLIB",
    "ZSTD",
    "CompressedCertificate",
    "RecordInflater",
    "decompress_certificate",
    "parse_compressed_certificate",
]
