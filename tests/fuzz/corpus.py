"""The recorded material the fuzz targets start from: captures cut into connections, streams,
handshake messages and certificates, and the key logs recorded with them.

Everything here comes from the captures of `captures/` (and `../shared/captures/` when it is
beside the checkout); nothing is invented. Each function is cached: a fuzzing process reads the
captures once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from tlsinspect.capture import open_capture
from tlsinspect.net.link import locate_tcp
from tlsinspect.tls.keylog import KeyLog, parse_keylog
from tlsinspect.tls.records import RecordLayer

ROOT = Path(__file__).resolve().parents[2]
OWN = ROOT / "captures"
SHARED = (ROOT / ".." / "shared" / "captures").resolve()

Packet = tuple[int, int, bytes, int, int]  # (ts ns, link type, frame, original length, iface)

#: Connections kept per capture (the first ones with payload), to bound start-up time.
PER_CAPTURE = 12
#: Largest capture read whole (the fuzz seeds are cut from them; bigger ones are skipped).
MAX_CAPTURE = 1 << 20


@dataclass
class Connection:
    """One TCP connection of a recorded capture, its packets in capture order."""

    capture: str
    packets: list[Packet]
    #: per packet: (side, tcp_start, payload_start, payload_end) or None for a non-TCP frame
    tcp: list[tuple[int, int, int, int] | None] = field(default_factory=list)

    def streams(self) -> tuple[bytes, bytes]:
        """Each side's payload bytes in sequence order (retransmitted bytes left out)."""
        out = [bytearray(), bytearray()]
        for side, pieces in enumerate(self.stream_map()):
            for pkt, start, end in pieces:
                out[side] += self.packets[pkt][2][start:end]
        return bytes(out[0]), bytes(out[1])

    def stream_map(self) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Per side, the (packet index, frame start, frame end) of each new piece of payload."""
        maps: tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]] = ([], [])
        nxt: list[int | None] = [None, None]
        for i, info in enumerate(self.tcp):
            if info is None:
                continue
            side, t, p0, p1 = info
            data = self.packets[i][2]
            seq = int.from_bytes(data[t + 4 : t + 8], "big")
            if data[t + 13] & 0x02:
                nxt[side] = (seq + 1) & 0xFFFFFFFF
                continue
            if p1 <= p0:
                continue
            expect = nxt[side]
            if expect is None:
                expect = seq
            skip = (expect - seq) & 0xFFFFFFFF
            if skip >= 1 << 31:  # a hole: take it as it comes (the capture lost bytes)
                skip = 0
            if skip >= p1 - p0:
                continue  # a retransmission
            maps[side].append((i, p0 + skip, p1))
            nxt[side] = (seq + (p1 - p0)) & 0xFFFFFFFF
        return maps


def capture_paths() -> list[Path]:
    own = sorted(p for p in OWN.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))
    if not own:
        raise RuntimeError(f"no recorded captures in {OWN}")
    shared = sorted(SHARED.glob("*.pcap*")) if SHARED.is_dir() else []
    return own + [p for p in shared if p.suffix in (".pcap", ".pcapng")]


@functools.cache
def packets_of(path: Path) -> list[Packet]:
    with open_capture(path) as src:
        return [(ts, lt, bytes(d), orig, iface) for ts, lt, d, orig, iface in src]


@functools.cache
def connections() -> list[Connection]:
    """The TCP connections of every recorded capture (at most PER_CAPTURE each)."""
    out = []
    for path in capture_paths():
        if path.stat().st_size > MAX_CAPTURE:
            continue
        by_key: dict[bytes, Connection] = {}
        sides: dict[bytes, int] = {}
        for p in packets_of(path):
            loc = locate_tcp(p[1], p[2])
            if loc is None:
                continue
            src, dst, t, end = loc
            data = p[2]
            key = src + dst + data[t : t + 4]
            rev = dst + src + data[t + 2 : t + 4] + data[t : t + 2]
            conn = by_key.get(key) or by_key.get(rev)
            if conn is None:
                if len(by_key) >= PER_CAPTURE * 2:
                    continue
                conn = by_key[key] = Connection(path.name, [])
                sides[key], sides[rev] = 0, 1
            doff = (data[t + 12] >> 4) * 4
            conn.packets.append(p)
            conn.tcp.append((sides[key], t, min(t + doff, end), end))
        kept = [c for c in by_key.values() if any(c.streams())]
        out += kept[:PER_CAPTURE]
    return out


def frames() -> list[tuple[int, bytes]]:
    """(link type, frame) of a few packets of every capture, every link type among them."""
    out = []
    for path in capture_paths():
        if path.stat().st_size > MAX_CAPTURE:
            continue
        pkts = packets_of(path)
        out += [(lt, data) for _ts, lt, data, _o, _i in pkts[:: max(1, len(pkts) // 8)]]
    return out


def records(conn: Connection) -> list[list[tuple[int, int, bytes]]]:
    """The TLS records of each side of a connection."""
    out = []
    for stream in conn.streams():
        layer = RecordLayer()
        out.append(layer.feed(stream))
    return out


@functools.cache
def handshake_messages() -> list[tuple[int, bytes, int]]:
    """(msg_type, body, negotiated version) of the plaintext handshake messages recorded."""
    from tlsinspect.tls.handshake import HandshakeAssembler
    from tlsinspect.tls.messages import parse_server_hello

    out = []
    for conn in connections():
        version = 0
        for side_records in records(conn):
            assembler = HandshakeAssembler()
            for ct, _v, payload in side_records:
                if ct == 20:
                    break  # after ChangeCipherSpec the handshake is encrypted
                if ct != 22:
                    continue
                try:
                    msgs = assembler.feed(payload)
                except Exception:  # noqa: BLE001 - a recorded damaged stream: keep what came
                    break
                for msg_type, body in msgs:
                    if msg_type == 2:
                        try:
                            version = parse_server_hello(body).selected_version
                        except Exception:  # noqa: BLE001
                            pass
                    out.append((msg_type, body, version))
    return out


@functools.cache
def certificates() -> list[bytes]:
    """The distinct DER certificates of the recorded plaintext Certificate messages."""
    from tlsinspect.tls.messages import parse_certificate

    seen: dict[bytes, None] = {}
    for msg_type, body, _v in handshake_messages():
        if msg_type == 11:
            try:
                cert = parse_certificate(body, tls13=False)
            except Exception:  # noqa: BLE001
                continue
            for der in cert.entries:
                seen.setdefault(der)
    return list(seen)


@functools.cache
def keylog_texts() -> list[bytes]:
    """The key logs recorded with the captures."""
    paths = sorted(OWN.glob("*.keylog"))
    if SHARED.is_dir():
        paths += sorted(SHARED.glob("*sslkeylog*")) + sorted(SHARED.glob("*.keys.txt"))
    return [p.read_bytes() for p in paths]


@functools.cache
def keylog() -> KeyLog:
    """Every recorded key log, merged: the secrets of every keyed capture."""
    merged = KeyLog()
    for text in keylog_texts():
        merged.merge(parse_keylog(text))
    return merged


@functools.cache
def keyed_connections() -> list[Connection]:
    """The connections whose client random is in the recorded key logs."""
    keys = keylog()
    out = []
    for conn in connections():
        hello = next(
            (b for t, b, _v in _messages_of(conn) if t == 1 and len(b) >= 34),
            None,
        )
        if hello is not None and hello[2:34] in keys:
            out.append(conn)
    return out


def _messages_of(conn: Connection) -> list[tuple[int, bytes, int]]:
    from tlsinspect.tls.handshake import HandshakeAssembler

    out = []
    for side_records in records(conn):
        assembler = HandshakeAssembler()
        for ct, _v, payload in side_records:
            if ct != 22:
                break
            try:
                out += [(t, b, 0) for t, b in assembler.feed(payload)]
            except Exception:  # noqa: BLE001
                break
    return out
