"""Mutators: a structure-aware one for recorded captures, and a plain byte one for the seeds.

`mutate_capture(seed)` takes a recorded TCP connection (or two), finds its structure - packets,
TCP headers, each side's stream, the TLS records in it, the plaintext handshake messages and the
length fields inside ClientHello, ServerHello, Certificate (down to the certificates' DER),
CertificateRequest and the hello extensions - changes a few of those fields, TCP sequence
numbers and flags, IP lengths, timestamps, the order of packets or their captured lengths, then
writes the packets as a pcap or pcapng file (a pcapng one may embed the key log in a Decryption
Secrets Block) and may cut or damage that file. One capture in five is rather a keyed
connection whose decrypted records are edited and encrypted again (reencrypt.py). The same seed
gives the same bytes.

`mutate_bytes(rng, seeds)` is the byte-level mutator the CI slice uses in place of libFuzzer:
bit flips, interesting values, insertions, deletions, repeats, truncation and splicing.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import corpus
from corpus import Connection, Packet

# -- writing captures -------------------------------------------------------------------------


def serialize(
    packets: list[Packet],
    fmt: str = "pcap",
    keylog: bytes | None = None,
    snaplen: int = 262144,
) -> bytes:
    """The packets as a capture file: "pcap" (µs), "pcap_ns", "pcap_be", "pcapng" or
    "pcapng_be"; pcapng gets one interface per link type, and `keylog` in a DSB first."""
    if fmt.startswith("pcap") and not fmt.startswith("pcapng"):
        order = ">" if fmt.endswith("_be") else "<"
        ns = fmt.endswith("_ns")
        linktype = packets[0][1] if packets else 1
        out = [struct.pack(order + "IHHiIII", 0xA1B23C4D if ns else 0xA1B2C3D4, 2, 4, 0, 0,
                           snaplen, linktype)]  # fmt: skip
        for ts, _lt, data, orig_len, _ in packets:
            sec, frac = divmod(ts, 10**9)
            out.append(struct.pack(order + "IIII", sec & 0xFFFFFFFF,
                                   frac if ns else frac // 1000, len(data), orig_len))  # fmt: skip
            out.append(data)
        return b"".join(out)
    order = ">" if fmt.endswith("_be") else "<"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)

    out = [block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    ifaces: dict[int, int] = {}
    for p in packets:
        if p[1] not in ifaces:
            ifaces[p[1]] = len(ifaces)
            tsresol = struct.pack(order + "HH", 9, 1) + b"\x09\x00\x00\x00"  # if_tsresol: ns
            end = struct.pack(order + "HH", 0, 0)
            out.append(block(1, struct.pack(order + "HHI", p[1], 0, snaplen) + tsresol + end))
    if keylog:
        out.append(block(0x0A, struct.pack(order + "II", 0x544C534B, len(keylog)) + keylog))
    for ts, lt, data, orig_len, _ in packets:
        body = struct.pack(order + "IIIII", ifaces[lt], ts >> 32 & 0xFFFFFFFF, ts & 0xFFFFFFFF,
                           len(data), orig_len) + data  # fmt: skip
        out.append(block(6, body))
    return b"".join(out)


# -- the structure of a connection -------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A length (or other integer) field: where each of its bytes is, as (packet, frame offset),
    most significant first."""

    kind: str
    where: tuple[tuple[int, int], ...]


class Structure:
    """Where the fields of a connection's packets are."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.fields: list[Field] = []
        self.tcp: list[tuple[int, int]] = []  # (packet, TCP header offset)
        self.payload: list[tuple[int, int]] = []  # plaintext handshake bytes
        for i, info in enumerate(conn.tcp):
            if info is not None:
                self.tcp.append((i, info[1]))
        for side_map in conn.stream_map():
            where = [(pkt, off) for pkt, start, end in side_map for off in range(start, end)]
            stream = bytes(conn.packets[p][2][o] for p, o in where)
            self._records(stream, where)

    def _add(self, kind: str, where: list[tuple[int, int]], at: int, width: int) -> None:
        if at + width <= len(where):
            self.fields.append(Field(kind, tuple(where[at : at + width])))

    def _records(self, stream: bytes, where: list[tuple[int, int]]) -> None:
        from tlsinspect.tls.records import RecordLayer

        layer = RecordLayer()
        layer.feed(stream)
        if layer.start is None:
            return
        pos = layer.start
        hs = bytearray()
        hs_where: list[tuple[int, int]] = []
        plain = True
        while pos + 5 <= len(stream):
            ct = stream[pos]
            n = int.from_bytes(stream[pos + 3 : pos + 5], "big")
            self._add("record length", where, pos + 3, 2)
            if ct == 20:
                plain = False
            elif ct == 22 and plain:
                hs += stream[pos + 5 : pos + 5 + n]
                hs_where += where[pos + 5 : pos + 5 + n]
            pos += 5 + n
        self.payload += hs_where
        self._handshake(bytes(hs), hs_where)

    def _handshake(self, hs: bytes, where: list[tuple[int, int]]) -> None:
        pos = 0
        while pos + 4 <= len(hs):
            msg_type = hs[pos]
            n = int.from_bytes(hs[pos + 1 : pos + 4], "big")
            self._add("handshake length", where, pos + 1, 3)
            body = pos + 4
            w = _Walker(self, hs, where, body, min(body + n, len(hs)))
            try:
                if msg_type == 1:
                    w.client_hello()
                elif msg_type == 2:
                    w.server_hello()
                elif msg_type == 11:
                    w.certificate()
                elif msg_type == 13:
                    w.certificate_request()
            except IndexError:
                pass  # a message cut by the end of the capture: the fields before count
            pos = body + n


class _Walker:
    """Records the vector length fields of one handshake message body."""

    def __init__(self, s: Structure, buf: bytes, where: list, pos: int, end: int) -> None:
        self.s, self.buf, self.where, self.pos, self.end = s, buf, where, pos, end

    def _int(self, width: int) -> int:
        if self.pos + width > self.end:
            raise IndexError
        v = int.from_bytes(self.buf[self.pos : self.pos + width], "big")
        self.pos += width
        return v

    def vec(self, kind: str, width: int) -> tuple[int, int]:
        """A vector's length field: recorded; returns (start, end) of its content."""
        self.s._add(kind, self.where, self.pos, width)
        n = self._int(width)
        start = self.pos
        self.pos = min(start + n, self.end)
        return start, self.pos

    def client_hello(self) -> None:
        self.pos += 34
        self.vec("ClientHello session_id", 1)
        self.vec("ClientHello cipher_suites", 2)
        self.vec("ClientHello compression_methods", 1)
        self.extensions("ClientHello")

    def server_hello(self) -> None:
        self.pos += 34
        self.vec("ServerHello session_id", 1)
        self.pos += 3
        self.extensions("ServerHello")

    def extensions(self, msg: str) -> None:
        if self.pos >= self.end:
            return
        start, end = self.vec(f"{msg} extensions", 2)
        self.pos = start
        while self.pos + 4 <= end:
            ext_type = self._int(2)
            a, b = self.vec(f"{msg} extension {ext_type} length", 2)
            # the vector inside, when the extension is one (server_name, alpn, key_share, ...)
            inner = self.buf[a:b]
            if len(inner) >= 2 and int.from_bytes(inner[:2], "big") == len(inner) - 2:
                self.s._add(f"{msg} extension {ext_type} vector", self.where, a, 2)
                if ext_type == 0 and len(inner) >= 5:
                    self.s._add("server_name host_name", self.where, a + 3, 2)
            elif len(inner) >= 1 and inner[0] == len(inner) - 1:
                self.s._add(f"{msg} extension {ext_type} vector", self.where, a, 1)
            self.pos = b

    def certificate(self) -> None:
        start, end = self.vec("Certificate certificate_list", 3)
        self.pos = start
        while self.pos + 3 <= end:
            a, b = self.vec("Certificate cert_data", 3)
            self.der(a, b, depth=0)
            self.pos = b

    def der(self, pos: int, end: int, depth: int) -> None:
        """DER length fields of a certificate, three levels down (certificate, tbsCertificate,
        its elements)."""
        while pos + 2 <= end:
            tag, first = self.buf[pos], self.buf[pos + 1]
            if first < 0x80:
                width, n, at = 1, first, pos + 1
            else:
                width = first & 0x7F
                if not 1 <= width <= 3:
                    return
                at = pos + 2
                n = int.from_bytes(self.buf[at : at + width], "big")
            self.s._add(f"DER length (depth {depth})", self.where, at, width)
            content = at + width
            if tag & 0x20 and depth < 2:
                self.der(content, min(content + n, end), depth + 1)
            pos = content + n

    def certificate_request(self) -> None:
        self.vec("CertificateRequest certificate_types", 1)
        # TLS 1.2: supported_signature_algorithms, then certificate_authorities
        if self.pos + 2 <= self.end:
            n = int.from_bytes(self.buf[self.pos : self.pos + 2], "big")
            after = self.pos + 2 + n
            if after + 2 <= self.end:
                self.vec("CertificateRequest signature_algorithms", 2)
        start, end = self.vec("CertificateRequest certificate_authorities", 2)
        self.pos = start
        while self.pos + 2 <= end:
            self.vec("CertificateRequest distinguished name", 2)


# -- mutations --------------------------------------------------------------------------------


def _new_value(rng: random.Random, old: int, width: int) -> int:
    top = (1 << (8 * width)) - 1
    choice = rng.randrange(9)
    if choice == 0:
        v = 0
    elif choice == 1:
        v = top
    elif choice == 2:
        v = old + 1
    elif choice == 3:
        v = old - 1
    elif choice == 4:
        v = old + rng.randint(-16, 16)
    elif choice == 5:
        v = old * 2
    elif choice == 6:
        v = old // 2
    elif choice == 7:
        v = 1 << rng.randrange(8 * width)
    else:
        v = rng.randrange(top + 1)
    return v & top


def _set_field(frames: list[bytearray], f: Field, value: int) -> None:
    width = len(f.where)
    for k, (pkt, off) in enumerate(f.where):
        if off < len(frames[pkt]):  # (an earlier mutation may have cut the frame)
            frames[pkt][off] = (value >> (8 * (width - 1 - k))) & 0xFF


def _get_field(frames: list[bytearray], f: Field) -> int:
    v = 0
    for pkt, off in f.where:
        v = v << 8 | (frames[pkt][off] if off < len(frames[pkt]) else 0)
    return v


_TCP_FLAGS = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x12, 0x11, 0x14)


def mutate_connection(rng: random.Random, conn: Connection) -> tuple[list[Packet], list[str]]:
    """A few mutations of one connection's packets, and what they were."""
    s = structure(conn)
    frames = [bytearray(p[2]) for p in conn.packets]
    meta = [[p[0], p[1], p[3], p[4]] for p in conn.packets]  # ts, linktype, orig_len, iface
    done: list[str] = []
    order = list(range(len(frames)))
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 5))):
        op = rng.randrange(10)
        if op <= 3 and s.fields:  # a length field (the most common mutation)
            f = rng.choice(s.fields)
            old = _get_field(frames, f)
            new = _new_value(rng, old, len(f.where))
            _set_field(frames, f, new)
            done.append(f"{f.kind} {old} -> {new}")
        elif op == 4 and s.tcp:  # a TCP sequence number
            pkt, t = rng.choice(s.tcp)
            if t + 8 > len(frames[pkt]):
                continue
            seq = int.from_bytes(frames[pkt][t + 4 : t + 8], "big")
            delta = rng.choice((1, -1, 1 << 31, rng.randrange(1 << 32), rng.randint(-3000, 3000)))
            frames[pkt][t + 4 : t + 8] = ((seq + delta) & 0xFFFFFFFF).to_bytes(4, "big")
            done.append(f"packet {pkt}: TCP seq {delta:+}")
        elif op == 5 and s.tcp:  # TCP flags
            pkt, t = rng.choice(s.tcp)
            if t + 14 > len(frames[pkt]):
                continue
            flip = rng.choice(_TCP_FLAGS)
            frames[pkt][t + 13] ^= flip
            done.append(f"packet {pkt}: TCP flags ^ 0x{flip:02x}")
        elif op == 6 and len(order) > 1:  # packet order
            kind = rng.randrange(4)
            i, j = sorted(rng.sample(range(len(order)), 2))
            if kind == 0:
                order[i], order[j] = order[j], order[i]
                done.append(f"packets {i} and {j} swapped")
            elif kind == 1:
                order.insert(j, order.pop(i))
                done.append(f"packet {i} moved to {j}")
            elif kind == 2:
                order.insert(j, order[i])
                done.append(f"packet {i} repeated at {j}")
            else:
                del order[i]
                done.append(f"packet {i} dropped")
        elif op == 7:  # a frame cut (a snaplen, or damage)
            pkt = rng.randrange(len(frames))
            cut = rng.randrange(len(frames[pkt]) + 1)
            snap = rng.random() < 0.5
            del frames[pkt][cut:]
            if not snap:
                meta[pkt][2] = len(frames[pkt])
            done.append(f"packet {pkt} cut at {cut}" + (" (snaplen)" if snap else ""))
        elif op == 8 and s.payload and rng.random() < 0.2:  # an IP length
            pkt, t = rng.choice(s.tcp)
            ip = _ip_start(frames[pkt], t) if t <= len(frames[pkt]) else None
            if ip is None:
                continue
            at = ip + 2 if frames[pkt][ip] >> 4 == 4 else ip + 4
            old = int.from_bytes(frames[pkt][at : at + 2], "big")
            new = _new_value(rng, old, 2)
            frames[pkt][at : at + 2] = new.to_bytes(2, "big")
            done.append(f"packet {pkt}: IP length {old} -> {new}")
        elif op == 8 and s.payload:  # a byte of a plaintext handshake message
            pkt, off = rng.choice(s.payload)
            if off >= len(frames[pkt]):
                continue
            frames[pkt][off] ^= 1 << rng.randrange(8)
            done.append(f"packet {pkt}: handshake byte at {off} flipped")
        else:  # a timestamp
            pkt = rng.randrange(len(frames))
            ts = meta[pkt][0]
            meta[pkt][0] = rng.choice((ts - 10**9, ts + 301 * 10**9, 0, ts // 2, ts + 1))
            done.append(f"packet {pkt}: timestamp {meta[pkt][0]}")
    packets = [
        (meta[i][0], meta[i][1], bytes(frames[i]), max(meta[i][2], len(frames[i])), meta[i][3])
        for i in order
    ]
    return packets, done


_STRUCTURES: dict[int, Structure] = {}


def structure(conn: Connection) -> Structure:
    s = _STRUCTURES.get(id(conn))
    if s is None:
        s = _STRUCTURES[id(conn)] = Structure(conn)
    return s


def mutate_capture(seed: int) -> tuple[bytes, list[str]]:
    """A capture made from recorded connections with a few structure-aware mutations; the
    same seed gives the same capture. Returns the file's bytes and what was done."""
    rng = random.Random(seed)
    conns = corpus.connections()
    conn = conns[rng.randrange(len(conns))]
    if rng.random() < 0.2:  # what the key log decrypts, edited and encrypted again
        from reencrypt import edit, keyed

        k = rng.choice(keyed())
        conn = k.conn
        edits = bytes(rng.randrange(256) for _ in range(4 * rng.randint(1, 3)))
        packets = repacketize(conn, edit(k, edits))
        done = [f"decrypted records edited ({edits.hex()})"]
    else:
        packets, done = mutate_connection(rng, conn)
    if rng.random() < 0.1:  # a second connection interleaved, or the same one again (reuse)
        other = conn if rng.random() < 0.5 else conns[rng.randrange(len(conns))]
        more, done2 = mutate_connection(rng, other)
        done.append(f"with {'itself' if other is conn else other.capture} ({'; '.join(done2)})")
        at = rng.randrange(len(packets) + 1)
        packets[at:at] = [p for p in more if p[1] == packets[0][1]] if packets else more
    fmt = rng.choice(("pcap", "pcap_ns", "pcap_be", "pcapng", "pcapng", "pcapng_be"))
    if len({p[1] for p in packets}) > 1 and not fmt.startswith("pcapng"):
        fmt = "pcapng"
    keylog = None
    if fmt.startswith("pcapng") and rng.random() < 0.3:
        keylog = b"\n".join(corpus.keylog_texts())
    data = bytearray(serialize(packets, fmt, keylog))
    done.insert(0, f"{conn.capture}, {len(packets)} packets, {fmt}")
    if rng.random() < 0.05:
        cut = rng.randrange(len(data) + 1)
        del data[cut:]
        done.append(f"file cut at {cut}")
    elif rng.random() < 0.05 and len(data) > 32:
        at = rng.randrange(24, len(data) - 4) & ~3
        data[at : at + 4] = rng.randrange(1 << 32).to_bytes(4, "little")
        done.append(f"file word at {at} overwritten")
    return bytes(data), done


# -- bytes ------------------------------------------------------------------------------------

_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x8000, 0x7FFF, 0xFFFFFF, 0x4000, 0x4800)


def mutate_bytes(rng: random.Random, seeds: list[bytes], max_len: int) -> bytes:
    """A seed with 1 to 4 byte-level mutations (the libFuzzer kinds, without coverage)."""
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        n = len(data)
        op = rng.randrange(8)
        if op == 0 and n:
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            data[rng.randrange(n)] = rng.randrange(256)
        elif op == 2 and n >= 2:
            width = rng.choice((1, 2, 3))
            at = rng.randrange(max(1, n - width + 1))
            v = rng.choice(_INTERESTING) & ((1 << (8 * width)) - 1)
            data[at : at + width] = v.to_bytes(width, "big")
        elif op == 3:
            at = rng.randrange(n + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 4 and n:
            at = rng.randrange(n)
            del data[at : at + rng.randint(1, 64)]
        elif op == 5 and n:
            at = rng.randrange(n)
            piece = data[at : at + rng.randint(1, 64)]
            to = rng.randrange(n + 1)
            data[to:to] = piece
        elif op == 6 and n:
            del data[rng.randrange(n) :]
        else:
            other = rng.choice(seeds)
            if other:
                at = rng.randrange(len(other))
                data[rng.randrange(n + 1) :] = other[at:]
    return bytes(data[:max_len])


def _ip_start(data: bytes, t: int) -> int | None:
    """Where the IP header before the TCP header at `t` starts (IPv4 with options, IPv6)."""
    for ihl in range(20, 64, 4):
        if t - ihl >= 0 and data[t - ihl] == 0x40 | ihl // 4:
            return t - ihl
    if t >= 40 and data[t - 40] >> 4 == 6:
        return t - 40
    return None


def repacketize(conn: Connection, streams: tuple[bytes, bytes]) -> list[Packet]:
    """The connection's packets carrying `streams` in place of its own: each packet with
    payload takes as many bytes as it had (a side's last takes all that is left), with its
    sequence number and IP length set to match."""
    maps = conn.stream_map()
    last = {pieces[-1][0]: side for side, pieces in enumerate(maps) if pieces}
    first = {side: pieces[0][0] for side, pieces in enumerate(maps) if pieces}
    pos = [0, 0]
    seq0: dict[int, int] = {}
    out = []
    for i, p in enumerate(conn.packets):
        info = conn.tcp[i]
        if info is None or info[3] <= info[2]:
            out.append(p)
            continue
        side, t, p0, p1 = info
        data = p[2]
        if first.get(side) == i:
            seq0[side] = int.from_bytes(data[t + 4 : t + 8], "big")
        piece = next((a, b) for pkt, a, b in maps[side] if pkt == i) if any(
            pkt == i for pkt, _a, _b in maps[side]
        ) else None  # fmt: skip
        if piece is None:
            continue  # a retransmission: left out
        n = len(streams[side]) - pos[side] if last.get(i) == side else piece[1] - piece[0]
        payload = streams[side][pos[side] : pos[side] + n]
        head = bytearray(data[:p0])
        seq = (seq0[side] + pos[side]) & 0xFFFFFFFF
        pos[side] += len(payload)
        head[t + 4 : t + 8] = seq.to_bytes(4, "big")
        ip = _ip_start(data, t)
        if ip is not None and head[ip] >> 4 == 4:
            head[ip + 2 : ip + 4] = min(0xFFFF, p0 - ip + len(payload)).to_bytes(2, "big")
        elif ip is not None:
            head[ip + 4 : ip + 6] = min(0xFFFF, p0 - ip - 40 + len(payload)).to_bytes(2, "big")
        frame = bytes(head) + payload
        out.append((p[0], p[1], frame, len(frame), p[4]))
    return out
