"""Hostile captures made from a real recorded handshake: what once made sessions vanish or runs
end in a traceback.

    python -m captures.hostile_lost OUTDIR

Every capture re-wraps the TCP payload of one recorded connection of `captures/tls12.pcapng`
(the mutual TLS 1.2 session on port 8401: OpenSSL through Python's `ssl`, a CertificateRequest
answered with a client chain and CertificateVerify): the recorded bytes of both directions are
cut into new segments (SYN, data, FIN of both sides) with their own sequence numbers, so a
change of length in one direction keeps the stream consistent. Only the bytes each case is about
are changed; the TLS bytes are the recorded ones. Files written (N is 1 and 1000: one
connection, or 1,000 of them on distinct client addresses, where the count matters):

``hello_claims_16m_N.pcap``
    the ClientHello's handshake header claims 2^24-1 bytes (the largest length a handshake
    message can have); the rest of the connection follows as recorded, so the client's later
    handshake records arrive as if they continued that message.
``hello_70000_N.pcap``
    the ClientHello padded to a 70,000-byte message (a padding extension, RFC 7685, filling
    the extensions block, and unassigned cipher suite values, which a server ignores), sent
    whole in records of 2^14 bytes; the rest of the connection as recorded.
``tunnel_D.pcap`` (D = 8, 9, 10, 16, 17)
    each frame inside D levels of tunnels, counted as `tlsinspect.net.link` counts them: an
    outer IPv4 header (IP in IP, GRE, the UDP of VXLAN) is one level, and so is the Ethernet
    header inside VXLAN and an MPLS label stack; the outer Ethernet frame has an 802.1Q tag.
``no_record_*.pcap[ng]``
    captures with packets in them but no record that can be read: a pcap whose first record
    header claims more bytes than any packet has (``damaged``), a pcap cut inside its first
    record header (``cut``), a pcapng whose packets name an interface no block describes
    (``no_interface``), a pcap of its file header alone (``header``), a pcapng whose packets
    are in blocks of a type that holds none (``other_blocks``).
``no_tcp_linktype.pcap``
    the connection's frames under a link type no decoder of tlsinspect reads (147, USER0).
``time_tsresol.pcapng``
    a legal pcapng whose interface has no ``if_tsresol`` (so microseconds) while its
    timestamps are nanoseconds: every time lands after the year 50,000.
``time_damaged.pcapng`` / ``time_damaged.pcap`` / ``time_offset.pcapng``
    the first packet's timestamp damaged (high word all ones: year 584,000 and more; a pcap's
    seconds and fraction all ones: year 2106, a fraction over a second), and an interface
    whose ``if_tsoffset`` puts its times before year 1.
``short_frames.pcap``
    the connection, with a copy of each of its first frames cut inside one of its headers
    (Ethernet, 802.1Q tag, IPv4, TCP) inserted before it.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tlsinspect.capture import open_capture
from tlsinspect.net.link import locate_tcp

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "tls12.pcapng"
SOURCE_PORT = 8401  # the mutual session of tls12.pcapng
SIZES = (1, 1000)
DEPTHS = (8, 9, 10, 16, 17)

MAX_MESSAGE_CLAIM = (1 << 24) - 1
BIG_HELLO = 70_000
MAX_FRAGMENT = 1 << 14  # RFC 8446 5.1: a record carries at most 2^14 bytes
MSS = 1448
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PADDING_EXTENSION = 21
# cipher suite values IANA has not assigned (0x6000-0x68FF): a server skips what it does not know
_UNASSIGNED_SUITES = range(0x6000, 0x6900)

Segment = tuple[int, bytes]  # (0: client -> server, 1: server -> client; payload)
Packet = tuple[int, int, bytes, int, int]  # (ts_ns, linktype, frame, orig_len, iface)


# -- the recorded connection -----------------------------------------------------------------


def recorded(path: Path = SOURCE, server_port: int = SOURCE_PORT) -> tuple[list[Segment], int]:
    """The payloads of the first connection to `server_port`, in recorded order, without
    retransmissions: (side, bytes) with side 0 for the client; and the time of its SYN (the
    re-wrapped connections start then: the certificates' validity is judged at that time)."""
    out: list[Segment] = []
    start = 0
    nxt: dict[int, int] = {}
    with open_capture(path) as source:
        for ts, linktype, data, _orig, _iface in source:
            loc = locate_tcp(linktype, data)
            if loc is None:
                continue
            _, _, t, end = loc
            sport, dport, seq = struct.unpack_from("!HHI", data, t)
            if server_port not in (sport, dport):
                continue
            side = 0 if dport == server_port else 1
            flags = data[t + 13]
            if flags & SYN:
                if side == 0 and side in nxt:
                    break  # a second connection to that port
                nxt[side] = (seq + 1) & 0xFFFFFFFF
                start = start or ts
                continue
            payload = bytes(data[t + (data[t + 12] >> 4) * 4 : end])
            if not payload or side not in nxt:
                continue
            delta = (nxt[side] - seq) & 0xFFFFFFFF
            if delta >= len(payload) and delta < 1 << 31:
                continue  # a retransmission
            if delta < 1 << 31:
                payload = payload[delta:]
            nxt[side] = (nxt[side] + len(payload)) & 0xFFFFFFFF
            out.append((side, payload))
    if not out:
        raise SystemExit(f"{path}: no connection to port {server_port}")
    return out, start


def _records(stream: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(content type, version, payload) of the TLS records of a stream that starts with one."""
    pos = 0
    while pos + 5 <= len(stream):
        ct, version, length = struct.unpack_from("!BHH", stream, pos)
        yield ct, version, stream[pos + 5 : pos + 5 + length]
        pos += 5 + length


def _split_first_message(segments: list[Segment]) -> tuple[bytes, bytes, int, int]:
    """The client's stream as (the first handshake message, the bytes after its records, the
    record version, the length of its records)."""
    client = b"".join(p for side, p in segments if side == 0)
    handshake = bytearray()
    pos = 0
    version = 0x0301
    for ct, record_version, payload in _records(client):
        assert ct == 22, "the recorded client starts with a handshake record"
        version = record_version
        handshake += payload
        pos += 5 + len(payload)
        if len(handshake) >= 4 and len(handshake) >= 4 + int.from_bytes(handshake[1:4], "big"):
            break
    length = int.from_bytes(handshake[1:4], "big")
    assert len(handshake) == 4 + length, "the ClientHello ends with a record"
    return bytes(handshake), client[pos:], version, pos


def _with_client_stream(
    segments: list[Segment], old_first: int, stream: bytes, new_first: int
) -> list[Segment]:
    """The connection with the client's stream replaced by `stream`, whose first `new_first`
    bytes stand for the recorded first `old_first` (no shorter): the recorded segments' cut
    points are kept, those after the changed bytes moved by the change of length."""
    delta = new_first - old_first
    assert delta >= 0
    out: list[Segment] = []
    old = new = 0
    last = max(i for i, (side, _) in enumerate(segments) if side == 0)
    for i, (side, payload) in enumerate(segments):
        if side == 1:
            out.append((side, payload))
            continue
        old += len(payload)
        end = old + delta if old >= old_first else old
        if i == last:
            end = len(stream)
        out.append((0, stream[new:end]))
        new = end
    return [(s, p) for s, p in out if p]


def claiming(segments: list[Segment], claim: int) -> list[Segment]:
    """The ClientHello's handshake header made to claim `claim` bytes; nothing else changed."""
    hello, rest, version, old = _split_first_message(segments)
    body = hello[4:]
    first = _record_bytes(hello[:1] + claim.to_bytes(3, "big") + body, version)
    return _with_client_stream(segments, old, first + rest, len(first))


def padded(segments: list[Segment], size: int) -> list[Segment]:
    """The ClientHello padded to a `size`-byte message: its padding extension (or a new one)
    fills the extensions block, unassigned cipher suites the rest; sent in full records."""
    hello, rest, version, old = _split_first_message(segments)
    body = hello[4:]
    pos = 34
    sid_len = body[pos]
    pos += 1 + sid_len
    cs_len = int.from_bytes(body[pos : pos + 2], "big")
    suites = body[pos + 2 : pos + 2 + cs_len]
    pos += 2 + cs_len
    comp = body[pos : pos + 1 + body[pos]]
    pos += len(comp)
    exts = body[pos + 2 :]
    kept = bytearray()
    i = 0
    while i + 4 <= len(exts):
        etype, elen = struct.unpack_from("!HH", exts, i)
        if etype != PADDING_EXTENSION:
            kept += exts[i : i + 4 + elen]
        i += 4 + elen
    head = body[:34] + body[34 : 35 + sid_len]
    fixed = len(head) + 2 + len(comp) + 2 + len(kept) + 4  # + the padding extension's header
    pad = min(0xFFFF - len(kept) - 4, size - 4 - fixed - len(suites))
    extra = size - 4 - fixed - pad - len(suites)
    assert extra % 2 == 0 and extra // 2 <= len(_UNASSIGNED_SUITES)
    suites += b"".join(v.to_bytes(2, "big") for v in _UNASSIGNED_SUITES[: extra // 2])
    extensions = bytes(kept) + struct.pack("!HH", PADDING_EXTENSION, pad) + bytes(pad)
    new_body = (
        head
        + len(suites).to_bytes(2, "big")
        + suites
        + comp
        + len(extensions).to_bytes(2, "big")
        + extensions
    )
    message = hello[:1] + len(new_body).to_bytes(3, "big") + new_body
    assert len(message) == size, (len(message), size)
    first = _record_bytes(message, version)
    return _with_client_stream(segments, old, first + rest, len(first))


def _record_bytes(message: bytes, version: int) -> bytes:
    """A handshake message in records of at most 2^14 bytes."""
    return b"".join(
        struct.pack("!BHH", 22, version, len(message[i : i + MAX_FRAGMENT]))
        + message[i : i + MAX_FRAGMENT]
        for i in range(0, len(message), MAX_FRAGMENT)
    )


# -- frames ----------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 0) -> bytes:
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000,
                                   64, proto, 0, src, dst))  # fmt: skip
    header[10:12] = _checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + payload


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
    """A TCP header without options (checksum left 0: no reader of these captures checks it)."""
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload


def ethernet(payload: bytes, ethertype: int = 0x0800, vlan: int | None = None) -> bytes:
    macs = bytes.fromhex("020000000002020000000001")
    if vlan is not None:
        return macs + struct.pack("!HHH", 0x8100, vlan, ethertype) + payload
    return macs + struct.pack("!H", ethertype) + payload


class Connection:
    """One client/server pair: the segments of a connection as IPv4 packets (SYN, data cut to
    the MSS, FIN from each side), with sequence and acknowledgment numbers that agree."""

    def __init__(self, n: int, server_port: int = 443) -> None:
        self.client = bytes([10, 1 + n // 65536 % 200, n // 256 % 256, n % 256])
        self.server = bytes([10, 250, 0, 1])
        self.cport = 40000 + n % 20000
        self.sport = server_port

    def packets(self, segments: Sequence[Segment]) -> Iterator[bytes]:
        """The IPv4 packets of the connection, in order."""
        seq = [1000, 5000]
        ends = ((self.client, self.cport), (self.server, self.sport))

        def pkt(side: int, flags: int, payload: bytes = b"") -> bytes:
            (src, sp), (dst, dp) = ends[side], ends[1 - side]
            ack = seq[1 - side] if flags & ACK else 0
            segment = tcp(sp, dp, seq[side] & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, payload)
            seq[side] += len(payload) + (1 if flags & (SYN | FIN) else 0)
            return ipv4(src, dst, 6, segment)

        yield pkt(0, SYN)
        yield pkt(1, SYN | ACK)
        yield pkt(0, ACK)
        for side, payload in segments:
            for i in range(0, len(payload), MSS):
                yield pkt(side, PSH | ACK, payload[i : i + MSS])
        yield pkt(0, FIN | ACK)
        yield pkt(1, FIN | ACK)
        yield pkt(0, ACK)


def connections(
    segments: Sequence[Segment],
    flows: int,
    start_ns: int,
    frame: Callable[[bytes], bytes] = ethernet,
) -> list[Packet]:
    """`flows` copies of a connection on distinct client addresses, 1 ms apart, interleaved by
    time as a busy link interleaves them (each packet 10 us after the previous of its flow)."""
    out: list[Packet] = []
    for n in range(flows):
        t = start_ns + n * 1_000_000
        for k, ip in enumerate(Connection(n).packets(segments)):
            data = frame(ip)
            out.append((t + k * 10_000, 1, data, len(data), 0))
    out.sort(key=lambda p: p[0])
    return out


# -- tunnels -----------------------------------------------------------------------------------


def _ipip(inner: bytes) -> bytes:
    return ipv4(b"\xc0\x00\x02\x01", b"\xc0\x00\x02\x02", 4, inner)


def _gre(inner: bytes) -> bytes:
    return ipv4(b"\xc0\x00\x02\x03", b"\xc0\x00\x02\x04", 47, struct.pack("!HH", 0, 0x0800) + inner)


def _vxlan(inner: bytes) -> bytes:
    payload = bytes.fromhex("0800000000000100") + ethernet(inner)  # VXLAN header, VNI 1
    udp = struct.pack("!HHHH", 49152, 4789, 8 + len(payload), 0) + payload
    return ipv4(b"\xc0\x00\x02\x05", b"\xc0\x00\x02\x06", 17, udp)


def _gre_mpls(inner: bytes) -> bytes:
    label = (100 << 12 | 1 << 8 | 64).to_bytes(4, "big")  # label 100, bottom of stack, TTL 64
    gre = struct.pack("!HH", 0, 0x8847) + label + inner
    return ipv4(b"\xc0\x00\x02\x07", b"\xc0\x00\x02\x08", 47, gre)


# (wrapper, the levels it adds as net.link counts them)
_TUNNELS: tuple[tuple[Callable[[bytes], bytes], int], ...] = (
    (_gre, 1),
    (_vxlan, 2),  # the outer IPv4/UDP, and the Ethernet frame inside
    (_ipip, 1),
    (_gre_mpls, 2),  # the outer IPv4/GRE, and the MPLS label stack
)


def tunnelled(depth: int) -> Callable[[bytes], bytes]:
    """A frame maker putting an IPv4 packet inside `depth` levels of tunnels."""

    def frame(ip: bytes) -> bytes:
        left = depth
        k = 0
        while left:
            wrap, cost = _TUNNELS[k % len(_TUNNELS)]
            if cost > left:
                wrap, cost = _ipip, 1
            ip = wrap(ip)
            left -= cost
            k += 1
        return ethernet(ip, vlan=7)

    return frame


# -- files -------------------------------------------------------------------------------------


def write_pcap(
    path: Path, packets: Sequence[Packet], nanoseconds: bool = False, linktype: int = 1
) -> Path:
    """Classic pcap, little-endian, micro- or nanosecond timestamps, Ethernet by default."""
    unit = 1 if nanoseconds else 1000
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D if nanoseconds else 0xA1B2C3D4, 2, 4, 0, 0,
                            262144, linktype))  # fmt: skip
        for ts, _lt, data, orig, _ in packets:
            f.write(struct.pack("<IIII", ts // 10**9, ts % 10**9 // unit, len(data), orig))
            f.write(data)
    return path


def _block(btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + bytes(-len(value) % 4)


def pcapng_bytes(
    packets: Sequence[Packet],
    timestamps: Sequence[int],
    options: bytes = b"",
    interfaces: int = 1,
) -> bytes:
    """A one-section pcapng (little-endian): `interfaces` Ethernet IDBs with `options` (end of
    options added), an EPB per packet with its raw 64-bit timestamp from `timestamps`."""
    out = bytearray(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
    idb = struct.pack("<HHI", 1, 0, 262144) + (options + _option(0, b"") if options else b"")
    for _ in range(interfaces):
        out += _block(1, idb)
    for (_, _, data, orig, _), ts in zip(packets, timestamps, strict=True):
        head = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), orig)
        out += _block(6, head + data)
    return bytes(out)


def write(out: Path) -> list[Path]:
    """Write every capture into `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    segments, t0 = recorded()
    written = []
    for n in SIZES:
        claim = connections(claiming(segments, MAX_MESSAGE_CLAIM), n, t0)
        written.append(write_pcap(out / f"hello_claims_16m_{n}.pcap", claim))
        big = connections(padded(segments, BIG_HELLO), n, t0)
        written.append(write_pcap(out / f"hello_70000_{n}.pcap", big))
    for depth in DEPTHS:
        packets = connections(segments, 1, t0, tunnelled(depth))
        written.append(write_pcap(out / f"tunnel_{depth}.pcap", packets))
    written += _no_record(out, connections(segments, 1, t0))
    written += _times(out, connections(segments, 1, t0))
    written.append(write_pcap(out / "short_frames.pcap", _short_frames(segments, t0)))
    # the Ethernet frames under a link type no decoder reads (147, LINKTYPE_USER0)
    written.append(
        write_pcap(out / "no_tcp_linktype.pcap", connections(segments, 1, t0), linktype=147)
    )
    return written


def _no_record(out: Path, packets: list[Packet]) -> list[Path]:
    whole = write_pcap(out / "no_record_damaged.pcap", packets).read_bytes()
    damaged = bytearray(whole)
    damaged[32:36] = struct.pack("<I", 0x7FFFFFFF)  # the first record's captured length
    (out / "no_record_damaged.pcap").write_bytes(damaged)
    (out / "no_record_cut.pcap").write_bytes(whole[: 24 + 10])
    ns = [ts // 1000 for ts, *_ in packets]  # microseconds: the default resolution
    epbs = pcapng_bytes(packets, ns, interfaces=0)
    (out / "no_record_no_interface.pcapng").write_bytes(epbs)
    (out / "no_record_header.pcap").write_bytes(whole[:24])
    header = pcapng_bytes([], [])  # its section header and interface description block
    other = b"".join(_block(0xB00B, data) for _, _, data, _, _ in packets)  # not packet blocks
    (out / "no_record_other_blocks.pcapng").write_bytes(header + other)
    names = (
        "damaged.pcap",
        "cut.pcap",
        "no_interface.pcapng",
        "header.pcap",
        "other_blocks.pcapng",
    )
    return [out / f"no_record_{n}" for n in names]


def _times(out: Path, packets: list[Packet]) -> list[Path]:
    ns = [ts for ts, *_ in packets]
    us = [ts // 1000 for ts in ns]
    (out / "time_tsresol.pcapng").write_bytes(pcapng_bytes(packets, ns))
    damaged = [us[0] | 0xFFFFFFFF << 32, *us[1:]]
    (out / "time_damaged.pcapng").write_bytes(pcapng_bytes(packets, damaged))
    offset = _option(14, struct.pack("<q", -(1 << 62)))  # if_tsoffset, seconds
    (out / "time_offset.pcapng").write_bytes(pcapng_bytes(packets, us, offset))
    pcap = bytearray(write_pcap(out / "time_damaged.pcap", packets).read_bytes())
    pcap[24:32] = b"\xff" * 8  # the first record's seconds and microseconds
    (out / "time_damaged.pcap").write_bytes(pcap)
    return [out / n for n in ("time_tsresol.pcapng", "time_damaged.pcapng",
                              "time_offset.pcapng", "time_damaged.pcap")]  # fmt: skip


# (where a frame is cut: in which header of an 802.1Q-tagged Ethernet/IPv4/TCP frame)
SHORT_CUTS = {"Ethernet header": 9, "802.1Q tag": 16, "IPv4 header": 27, "TCP header": 45}


def _short_frames(segments: list[Segment], t0: int) -> list[Packet]:
    """The connection with 802.1Q-tagged frames, and before each of its first frames a copy
    of it cut inside one of its headers, in turn."""
    packets = connections(segments, 1, t0, lambda ip: ethernet(ip, vlan=7))
    cuts = list(SHORT_CUTS.values())
    out = []
    for k, (ts, lt, data, orig, iface) in enumerate(packets):
        if k < 2 * len(cuts):
            n = cuts[k % len(cuts)]
            out.append((ts - 1000, lt, data[:n], orig, iface))
        out.append((ts, lt, data, orig, iface))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="directory to write the captures into")
    args = p.parse_args(argv)
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
