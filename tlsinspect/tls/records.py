"""TLS record layer for one direction of a byte stream: finds where TLS starts, then cuts records.

Sans-IO: `feed(data)` takes stream bytes in order and returns the complete records found so far,
as `(content_type, version, payload)` tuples. Bytes that cannot be a record header end the
layer: the records before them are returned, `error` says why, and `state` becomes DONE. Until TLS is found the layer scans: a handshake
record holding a ClientHello or ServerHello anywhere in the first `SCAN_LIMIT` bytes (so a
plaintext preamble such as SMTP's STARTTLS, PostgreSQL's SSLRequest or MySQL's greeting is
skipped and kept for the report), an SSLv2-compatible ClientHello at the very start, an alert
answering the peer's hello, or - for a stream seen from the middle - a chain of application-data
records at the start. Detection is by content, never by port.
"""

from __future__ import annotations

from . import registry as reg

MAX_RECORD = 2**14 + 2048  # RFC 5246 6.2.3: TLSCiphertext.length limit
SCAN_LIMIT = 64 * 1024  # bytes of plaintext preamble scanned before giving up
PREAMBLE_KEEP = 256  # bytes of preamble kept to name the STARTTLS protocol
SSLV2_HELLO = -2  # pseudo content type of an SSLv2-compatible ClientHello record

SCANNING, RECORDS, DONE = 0, 1, 2


def _hello_at(buf: bytearray, i: int) -> bool | None:
    """Does a handshake record carrying a Client/ServerHello start at i? None: need more bytes."""
    if len(buf) < i + 11:
        return None
    if buf[i + 2] > 4 or buf[i + 5] not in (reg.CLIENT_HELLO, reg.SERVER_HELLO):
        return False
    length = (buf[i + 3] << 8) | buf[i + 4]
    hs_len = (buf[i + 6] << 16) | (buf[i + 7] << 8) | buf[i + 8]
    return (
        4 <= length <= MAX_RECORD
        and hs_len >= 38  # up to 2^24-1: a hello too large to read still shows TLS
        and buf[i + 9] == 3
        and buf[i + 10] <= 4
    )


def _plain_header(buf: bytearray, i: int) -> bool:
    return (
        reg.CHANGE_CIPHER_SPEC <= buf[i] <= reg.HEARTBEAT
        and buf[i + 1] == 3
        and buf[i + 2] <= 4
        and ((buf[i + 3] << 8) | buf[i + 4]) <= MAX_RECORD
    )


class RecordLayer:
    """One direction's record layer. `state` is SCANNING, RECORDS or DONE."""

    __slots__ = (
        "buf",
        "state",
        "offset",
        "start",
        "preamble",
        "accept_alert",
        "midstream",
        "joined_midstream",
        "error",
    )

    def __init__(self, midstream: bool = False) -> None:
        self.buf = bytearray()
        self.state = SCANNING
        self.offset = 0  # stream offset of buf[0]
        self.start: int | None = None  # stream offset where TLS starts
        self.preamble = b""  # the first PREAMBLE_KEEP bytes before TLS
        self.accept_alert = False  # the peer has started TLS: an alert may answer it
        self.midstream = midstream  # the capture has no start of this stream
        self.joined_midstream = False  # TLS was found by its protected records, not a hello
        # Why the stream stopped being TLS records, if it did. A text, not a DecodeError: the
        # call that meets the bad header also returns the records before it, which the owner
        # (TlsConnection.receive) must handle before it reports the loss (StreamLost, with this
        # text). Raising would lose them, or make the exception carry them back, for the same
        # output.
        self.error: str | None = None

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        if self.state == DONE:
            return []
        self.buf += data
        if self.state == SCANNING and not self._scan():
            return []
        return self._records()

    def close(self) -> None:
        self.state = DONE
        self.buf = bytearray()

    def _scan(self) -> bool:
        buf = self.buf
        if self.offset == 0 and buf:
            first = self._at_start(buf)
            if first is None:
                return False
            if first:
                return self._found(0)
        i = buf.find(b"\x16\x03", 1 if self.offset == 0 else 0)
        while i != -1:
            hit = _hello_at(buf, i)
            if hit is None:
                break  # wait for more bytes from i on
            if hit:
                return self._found(i)
            i = buf.find(b"\x16\x03", i + 1)
        keep_from = i if i != -1 else max(0, len(buf) - 1)
        self._drop_preamble(keep_from)
        if self.offset > SCAN_LIMIT:
            self.close()
        return False

    def _at_start(self, buf: bytearray) -> bool | None:
        """Recognise TLS at stream offset 0; None means wait for more bytes."""
        b0 = buf[0]
        if b0 & 0x80:  # SSLv2 record header with a 2-byte length
            if len(buf) < 5:
                return None
            return buf[2] == 1 and buf[3] in (0, 2, 3) and ((b0 & 0x7F) << 8 | buf[1]) >= 9
        if b0 == reg.HANDSHAKE:
            return _hello_at(buf, 0) if len(buf) >= 11 else None
        if len(buf) < 5:
            return None
        if b0 == reg.ALERT and self.accept_alert:
            return buf[1] == 3 and buf[3] == 0 and buf[4] == 2
        if self.midstream and _plain_header(buf, 0) and b0 != reg.HANDSHAKE:
            nxt = 5 + ((buf[3] << 8) | buf[4])
            if len(buf) < nxt + 5:
                return None
            self.joined_midstream = _plain_header(buf, nxt)
            return self.joined_midstream
        return False

    def _drop_preamble(self, upto: int) -> None:
        if upto <= 0:
            return
        if len(self.preamble) < PREAMBLE_KEEP:
            self.preamble += bytes(self.buf[: min(upto, PREAMBLE_KEEP - len(self.preamble))])
        del self.buf[:upto]
        self.offset += upto

    def _found(self, i: int) -> bool:
        self._drop_preamble(i)
        self.start = self.offset
        self.state = RECORDS
        return True

    def _records(self) -> list[tuple[int, int, bytes]]:
        buf = self.buf
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 5:
            ct = buf[pos]
            if ct & 0x80 and self.offset + pos == self.start:
                length = ((ct & 0x7F) << 8) | buf[pos + 1]
                if n - pos < 2 + length:
                    break
                out.append((SSLV2_HELLO, 0x0002, bytes(buf[pos + 2 : pos + 2 + length])))
                pos += 2 + length
                continue
            length = (buf[pos + 3] << 8) | buf[pos + 4]
            if not _plain_header(buf, pos):
                self.error = (
                    f"not a TLS record at stream offset {self.offset + pos}: "
                    f"header {bytes(buf[pos : pos + 5]).hex()}"
                    + (f" (length {length} exceeds {MAX_RECORD})" if length > MAX_RECORD else "")
                )
                self.close()
                return out  # the records before the bad header still count
            if n - pos < 5 + length:
                break
            out.append(
                (ct, (buf[pos + 1] << 8) | buf[pos + 2], bytes(buf[pos + 5 : pos + 5 + length]))
            )
            pos += 5 + length
        if pos:
            del buf[:pos]
            self.offset += pos
        return out
