"""Derive damaged or rearranged captures from real recorded ones, for end-to-end tests.

The packets stay the real ones recorded from real TLS stacks; only their presence, order or
length changes, the way a lossy tap, a busy capture host or a late start would change them.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

from helpers import Packet, locate_tcp, tcp_info


def finished(path: Path) -> Path:
    """Date the file an hour back: a capture its writer finished, not one still being written
    (a file cut short and modified seconds ago is said to be maybe still being written)."""
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def write(path: Path, packets: list[Packet], snaplen: int = 262144) -> Path:
    """Classic pcap, nanosecond resolution; all packets must share one link type."""
    linktypes = {p[1] for p in packets}
    assert len(linktypes) == 1, linktypes
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, snaplen, linktypes.pop()))
        for ts, _lt, data, orig_len, _ in packets:
            f.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(data), orig_len))
            f.write(data)
    return path


def data_packets(packets: list[Packet], idx: list[int], from_port: int | None = None) -> list[int]:
    """Of the given indexes, those carrying payload (optionally only those sent from a port)."""
    out = []
    for i in idx:
        info = tcp_info(packets[i])
        if info and info[3] > 0 and (from_port is None or info[0] == from_port):
            out.append(i)
    return out


def split(p: Packet, at: int) -> tuple[Packet, Packet]:
    """Cut a TCP segment's payload in two segments at payload offset `at` (a re-segmentation)."""
    ts, lt, data, _orig, iface = p
    loc = locate_tcp(lt, data)
    assert loc is not None
    _, _, t, end = loc
    doff = (data[t + 12] >> 4) * 4
    payload = data[t + doff : end]
    assert 0 < at < len(payload)
    ip = _ip_start(data, t)
    seq = int.from_bytes(data[t + 4 : t + 8], "big")

    def make(part: bytes, seq_: int) -> Packet:
        head = bytearray(data[: t + doff])
        head[t + 4 : t + 8] = seq_.to_bytes(4, "big")
        if head[ip] >> 4 == 4:
            head[ip + 2 : ip + 4] = (t - ip + doff + len(part)).to_bytes(2, "big")
        else:
            head[ip + 4 : ip + 6] = (t - ip - 40 + doff + len(part)).to_bytes(2, "big")
        frame = bytes(head) + part
        return (ts, lt, frame, len(frame), iface)

    return make(payload[:at], seq), make(payload[at:], (seq + at) & 0xFFFFFFFF)


def _ip_start(data: bytes, t: int) -> int:
    """Offset of the IP header just before the TCP header at t (IPv4 without options, or IPv6)."""
    if t >= 20 and data[t - 20] == 0x45:
        return t - 20
    assert data[t - 40] >> 4 == 6, "only IPv4 without options or plain IPv6"
    return t - 40


def fragment(p: Packet, size: int, ident: int, reverse: bool = False) -> list[Packet]:
    """Cut a TCP packet's IP datagram into fragments of at most `size` payload bytes (a multiple
    of 8), as a router on a path with a smaller MTU does (IPv4: MF and offset in the header;
    IPv6: a fragment header, as the sending host does); `reverse` sends the last one first.
    Packets whose IP payload fits are returned as they are."""
    assert size % 8 == 0
    ts, lt, data, _orig, iface = p
    loc = locate_tcp(lt, data)
    if loc is None:
        return [p]
    _, _, t, end = loc
    ip = _ip_start(data, t)
    payload = data[t:end]
    if len(payload) <= size:
        return [p]
    link = data[:ip]
    out = []
    for off in range(0, len(payload), size):
        part = payload[off : off + size]
        more = off + size < len(payload)
        if data[ip] >> 4 == 4:
            head = bytearray(data[ip:t])
            head[2:4] = (len(head) + len(part)).to_bytes(2, "big")
            head[4:6] = (ident & 0xFFFF).to_bytes(2, "big")
            head[6:8] = ((0x2000 if more else 0) | off >> 3).to_bytes(2, "big")
            head[10:12] = b"\x00\x00"
            head[10:12] = _checksum(bytes(head)).to_bytes(2, "big")
            frame = link + bytes(head) + part
        else:
            head = bytearray(data[ip : ip + 40])
            nh = head[6]
            head[6] = 44
            head[4:6] = (8 + len(part)).to_bytes(2, "big")
            frag = bytes((nh, 0)) + (off | more).to_bytes(2, "big") + ident.to_bytes(4, "big")
            frame = link + bytes(head) + frag + part
        out.append((ts, lt, frame, len(frame), iface))
    return out[::-1] if reverse else out


def _checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
