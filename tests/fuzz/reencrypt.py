"""Damage what a key log decrypts: the `decrypted` target's connections, re-encrypted.

Without the keys a fuzzer reaches only the ciphertext, which then fails to authenticate. Here a
keyed connection of the recorded captures is decrypted once with the recorded key log, noting
for each protected record the key, IV and sequence number it was read with; an input then edits
the plaintexts (TLS 1.3 EncryptedExtensions, CertificateRequest, Certificate, CertificateVerify,
Finished, NewSessionTicket, KeyUpdate, alerts; TLS 1.2 Finished, renegotiations), and the edited
records are encrypted again under the same keys, so that the parsers behind decryption see them.
AEAD suites only (AES-GCM, AES-CCM, ChaCha20-Poly1305); CBC records keep their ciphertext.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import corpus
from corpus import Connection

from tlsinspect.engines.builtin import CaptureKeys
from tlsinspect.tls import decrypt as d
from tlsinspect.tls.connection import TlsConnection
from tlsinspect.tls.records import RecordLayer


@dataclass
class Protected:
    """How one record of a side's stream was decrypted."""

    index: int  # the record's index among its side's records
    content_type: int  # the record header's
    version: int  # the record header's
    inner: int  # the content type of the plaintext
    plain: bytes
    tls13: bool
    aead: object
    iv: bytes
    seq: int
    explicit: bytes  # TLS 1.2 AES-GCM/CCM: the explicit nonce that starts the record
    tag_len: int


@dataclass
class Keyed:
    conn: Connection
    records: list[list[tuple[int, int, bytes]]]  # per side: (type, version, payload)
    prefix: tuple[bytes, bytes]  # per side: the bytes before the first record (STARTTLS)
    suffix: tuple[bytes, bytes]  # per side: the bytes after the last whole record
    protected: list[dict[int, Protected]]  # per side: record index -> how it was decrypted


def _feed_order(conn: Connection) -> list[tuple[int, int]]:
    """(side, bytes) of each packet's new payload, in capture order."""
    maps = conn.stream_map()
    return [(side, end - start) for pkt, side, start, end in
            sorted((p, s, a, b) for s in (0, 1) for p, a, b in maps[s])]  # fmt: skip


@functools.cache
def keyed() -> list[Keyed]:
    """The keyed connections with at least one AEAD record decrypted."""
    out = []
    log = CaptureKeys([b"\n".join(corpus.keylog_texts())], [])
    original = d.RecordDecryptor.decrypt
    for conn in corpus.keyed_connections():
        tls = TlsConnection(False, log)
        calls: list[tuple[int, bytes, Protected]] = []

        def spy(self, ct, version, payload, _tls=tls, _calls=calls):  # noqa: ANN001
            seq = self.seq
            inner, plain = original(self, ct, version, payload)
            if self._aead is None or (self.version == d.TLS13 and ct != 23):
                return inner, plain
            side = 0 if self in (_tls.sides[0].decryptor, _tls.sides[0].early) else 1
            if self.version == d.TLS13 or self.suite.cipher == d.CHACHA20_POLY1305:
                explicit = b""
            else:
                explicit = bytes(payload[:8])
            p = Protected(-1, ct, version, inner, bytes(plain), self.version == d.TLS13,
                          self._aead, self._iv, seq, explicit, self.suite.tag_len)  # fmt: skip
            _calls.append((side, bytes(payload), p))
            return inner, plain

        d.RecordDecryptor.decrypt = spy  # type: ignore[method-assign]
        try:
            streams = conn.streams()
            pos = [0, 0]
            for side, n in _feed_order(conn):
                tls.receive(side, streams[side][pos[side] : pos[side] + n], 0)
                pos[side] += n
        finally:
            d.RecordDecryptor.decrypt = original  # type: ignore[method-assign]
        records, starts, ends = [], [], []
        for stream in streams:
            layer = RecordLayer()
            records.append(layer.feed(stream))
            start = layer.start or 0
            starts.append(stream[:start])
            ends.append(stream[start + sum(5 + len(r[2]) for r in records[-1]) :])
        protected: list[dict[int, Protected]] = [{}, {}]
        nxt = [0, 0]
        for side, payload, p in calls:
            recs = records[side]
            j = nxt[side]
            while j < len(recs) and recs[j][2] != payload:
                j += 1
            if j == len(recs):
                continue
            p.index = j
            protected[side][j] = p
            nxt[side] = j + 1
        if protected[0] or protected[1]:
            out.append(Keyed(conn, records, (starts[0], starts[1]), (ends[0], ends[1]), protected))
    return out


def seal(p: Protected, plain: bytes, inner: int) -> bytes:
    """The record (header included) holding `plain` as `p`'s keys protect it."""
    aead = p.aead
    if p.tls13:
        body = plain + bytes((inner,))
        n = len(body) + p.tag_len
        aad = bytes((p.content_type,)) + p.version.to_bytes(2, "big") + n.to_bytes(2, "big")
        sealed = aead.encrypt(d._xor_nonce(p.iv, p.seq), body, aad)  # type: ignore[attr-defined]
        return aad + sealed
    nonce = p.iv + p.explicit if p.explicit else d._xor_nonce(p.iv, p.seq)
    aad = d._header(p.seq, p.content_type, p.version, len(plain))
    sealed = p.explicit + aead.encrypt(nonce, plain, aad)  # type: ignore[attr-defined]
    return (
        bytes((p.content_type,))
        + p.version.to_bytes(2, "big")
        + len(sealed).to_bytes(2, "big")
        + sealed
    )


_INNER = (22, 21, 23, 20, 24)


@functools.cache
def messages() -> list[bytes]:
    """Whole handshake messages (header included) to splice in: the plaintext ones of the
    recorded captures and those the key logs decrypt, one of each type and length."""
    seen: dict[tuple[int, int], bytes] = {}
    for msg_type, body, _v in corpus.handshake_messages():
        seen.setdefault(
            (msg_type, len(body)), bytes((msg_type,)) + len(body).to_bytes(3, "big") + body
        )
    for k in keyed():
        for side in k.protected:
            for p in side.values():
                pos, plain = 0, p.plain
                while p.inner == 22 and pos + 4 <= len(plain):
                    n = int.from_bytes(plain[pos + 1 : pos + 4], "big")
                    seen.setdefault((plain[pos], n), plain[pos : pos + 4 + n])
                    pos += 4 + n
    return [seen[key] for key in sorted(seen)]


def edit(k: Keyed, data: bytes) -> tuple[bytes, bytes]:
    """Both sides' streams with the plaintext edits of `data` (4 bytes each: side and kind,
    u16 position among that side's decrypted bytes, u8 value). The kinds: xor a byte, set a
    byte, set a u16, set a u24 (a length), delete, repeat, truncate a record, change its inner
    content type, splice in a recorded handshake message."""
    plains = [{j: bytearray(p.plain) for j, p in k.protected[s].items()} for s in (0, 1)]
    inners = [{j: p.inner for j, p in k.protected[s].items()} for s in (0, 1)]
    for i in range(0, len(data) - 3, 4):
        op, pos, value = data[i], int.from_bytes(data[i + 1 : i + 3], "big"), data[i + 3]
        side = op & 1
        if not plains[side]:
            side = 1 - side
        sizes = [(j, len(b)) for j, b in plains[side].items()]
        total = sum(n for _j, n in sizes) or 1
        pos %= total
        j = sizes[-1][0]
        for index, n in sizes:
            j = index
            if pos < n:
                break
            pos -= n
        b = plains[side][j]
        kind = (op >> 1) % 9
        if kind == 0 and b:
            b[pos] ^= value or 1
        elif kind == 1 and b:
            b[pos] = value
        elif kind == 2:
            b[pos : pos + 2] = value.to_bytes(2, "big")
        elif kind == 3:
            b[pos : pos + 3] = (value * (1 + (op >> 4))).to_bytes(3, "big")
        elif kind == 4:
            del b[pos : pos + value + 1]
        elif kind == 5:
            b[pos:pos] = b[pos : pos + value + 1]
        elif kind == 6:
            del b[pos:]
        elif kind == 7:
            inners[side][j] = _INNER[value % len(_INNER)]
        else:  # a recorded message spliced in (before the message at `pos`, if one starts there)
            pool = messages()
            b[pos:pos] = pool[(value | (op >> 5) << 8) % len(pool)]
    streams = []
    for side in (0, 1):
        out = bytearray(k.prefix[side])
        for j, (ct, version, payload) in enumerate(k.records[side]):
            p = k.protected[side].get(j)
            if p is not None and (plains[side][j] != p.plain or inners[side][j] != p.inner):
                out += seal(p, bytes(plains[side][j]), inners[side][j])
            else:
                out += bytes((ct,)) + version.to_bytes(2, "big") + len(payload).to_bytes(2, "big")
                out += payload
        streams.append(bytes(out + k.suffix[side]))
    return streams[0], streams[1]


def capture_of(data: bytes) -> bytes | None:
    """The capture a `decrypted` input stands for (its connection, edited and re-encrypted,
    as a pcap or pcapng file): a crash found there becomes a `pipeline` regression with it."""
    from mutator import repacketize, serialize

    conns = keyed()
    if not data or not conns:
        return None
    k = conns[data[0] % len(conns)]
    packets = repacketize(k.conn, edit(k, data[1:]))
    return serialize(packets, "pcap" if len({p[1] for p in packets}) == 1 else "pcapng")
