#!/usr/bin/env python3
"""Write captures whose traffic is made to grow an analyzer's memory: floods, scans, half-open
handshakes, with what they hold (their manifest), to check that tlsinspect's memory stays bounded.

    python3 captures/hostile_flood.py OUTDIR [--size small|large]

Each capture is classic pcap (Ethernet, IPv4, TCP, microsecond timestamps), its connections
packed within a few seconds of capture time, none of them ever finished:

| file | what each connection sends | small | large |
| --- | --- | ---: | ---: |
| `half_open.pcap` | a SYN, then the first 200 bytes of a ClientHello | 50,000 | 200,000 |
| `partial_hello.pcap` | a SYN, then a 64 KB ClientHello cut 100 bytes before 64 KiB | 2,000 | 8,000 |
| `syn_flood.pcap` | a SYN from a new address and port, nothing else | 50,000 | 200,000 |
| `port_scan.pcap` | a SYN to the next port, answered by a RST (closed port) | 50,000 | 200,000 |
| `reset_flood.pcap` | a SYN, the first 200 bytes of a ClientHello, a RST from the server | 50,000 | 200,000 |

The ClientHello is a real one, the first of `captures/tls12.pcapng` (OpenSSL through Python's
`ssl`); for `partial_hello.pcap` it is grown to 65,535 bytes with its padding extension (RFC
7685, type 21; added when it has none) and cut in records of 16 KiB, as a client offering a very
large post-quantum key share or many certificate authorities would send it. Every connection has
its own 4-tuple (clients 10.x.y.z, servers 10.200.0.1 and up, port 443).

`OUTDIR/manifest.json` says, per file, how many connections it holds and how many of them show
TLS (those the analyzer must report as sessions).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "captures" / "tls12.pcapng"

SIZES = {"small": (50_000, 2_000), "large": (200_000, 8_000)}
MSS = 1448
HELLO_PART = 200  # bytes of the ClientHello a half-open connection sends
LARGE_HELLO = 0xFFFF  # bytes of the grown ClientHello message (header included)
CUT = 64 * 1024 - 100  # stream bytes a partial-hello connection sends
RECORD = 16 * 1024  # handshake bytes per record of the grown hello
START_US = 1_717_405_200 * 10**6  # 2024-06-03 09:00:00 UTC
STEP_US = 20  # between packets: 200,000 connections of two packets in 8 s

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CLIENT_MAC = bytes.fromhex("020000000a01")
SERVER_MAC = bytes.fromhex("020000000c01")
# Ethernet, IPv4 (no options, checksum left 0), TCP without options
FRAME = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH")
PCAP_FILE_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")


def recorded_client_hello(path: Path = SOURCE) -> bytes:
    """The first ClientHello record of a recorded capture (its record header included)."""
    sys.path.insert(0, str(ROOT))
    from tlsinspect.capture import open_capture
    from tlsinspect.net.link import locate_tcp

    with open_capture(path) as source:
        for _ts, linktype, data, _orig, _iface in source:
            loc = locate_tcp(linktype, data)
            if loc is None:
                continue
            _, _, t, end = loc
            payload = data[t + (data[t + 12] >> 4) * 4 : end]
            if len(payload) > 9 and payload[0] == 22 and payload[5] == 1:
                return bytes(payload[: 5 + int.from_bytes(payload[3:5], "big")])
    raise SystemExit(f"{path}: no ClientHello found")


def grown_hello(record: bytes, size: int = LARGE_HELLO) -> bytes:
    """The ClientHello message of `record` grown to `size` bytes by its padding extension."""
    msg = bytearray(record[5:])
    i = 4 + 2 + 32
    i += 1 + msg[i]  # session_id
    i += 2 + int.from_bytes(msg[i : i + 2], "big")  # cipher_suites
    i += 1 + msg[i]  # compression_methods
    ext_start = i + 2
    exts = bytes(msg[ext_start : ext_start + int.from_bytes(msg[i : i + 2], "big")])
    kept, j = [], 0
    while j + 4 <= len(exts):
        etype, elen = struct.unpack_from("!HH", exts, j)
        if etype != 21:  # a padding extension already there is made anew at the size wanted
            kept.append(exts[j : j + 4 + elen])
        j += 4 + elen
    head = bytes(msg[4:i])
    others = b"".join(kept)
    fixed = len(head) + 2 + len(others) + 4
    pad_len = size - 4 - fixed
    if pad_len < 0:
        raise SystemExit(f"a ClientHello of {size} bytes cannot hold this one")
    body = head + struct.pack("!H", len(others) + 4 + pad_len) + others
    body += struct.pack("!HH", 21, pad_len) + bytes(pad_len)
    return struct.pack("!I", (1 << 24) | len(body)) + body


def records(message: bytes, version: bytes) -> bytes:
    """A handshake message cut in records of RECORD bytes."""
    out = []
    for i in range(0, len(message), RECORD):
        part = message[i : i + RECORD]
        out.append(b"\x16" + version + struct.pack("!H", len(part)) + part)
    return b"".join(out)


class _Writer:
    """Classic pcap out, microsecond timestamps, one packet every STEP_US."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.f.write(PCAP_FILE_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.us = START_US
        self.packets = 0
        self.buf: list[bytes] = []

    def frame(
        self,
        src: tuple[bytes, int],
        dst: tuple[bytes, int],
        seq: int,
        ack: int,
        flags: int,
        payload: bytes = b"",
    ) -> None:
        to_server = dst[1] == 443 or src[1] > dst[1]
        macs = (SERVER_MAC, CLIENT_MAC) if to_server else (CLIENT_MAC, SERVER_MAC)
        total = 40 + len(payload)
        head = FRAME.pack(
            macs[0], macs[1], 0x0800,
            0x45, 0, total, self.packets & 0xFFFF, 0x4000, 64, 6, 0, src[0], dst[0],
            src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 502, 0, 0,
        )  # fmt: skip
        n = len(head) + len(payload)
        self.buf.append(PCAP_RECORD.pack(self.us // 10**6, self.us % 10**6, n, n))
        self.buf.append(head)
        if payload:
            self.buf.append(payload)
        self.us += STEP_US
        self.packets += 1
        if len(self.buf) > 1 << 15:
            self.flush()

    def flush(self) -> None:
        self.f.write(b"".join(self.buf))
        self.buf.clear()

    def close(self) -> None:
        self.flush()
        self.f.close()


def _endpoints(n: int) -> Iterator[tuple[tuple[bytes, int], tuple[bytes, int]]]:
    """n distinct (client, server) endpoint pairs."""
    for i in range(n):
        client = bytes((10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF))
        server = bytes((10, 200, 0, 1 + (i >> 24)))
        yield (client, 1024 + (i * 7919) % 60000), (server, 443)


def half_open(path: Path, n: int, hello: bytes, rst: bool = False) -> int:
    """n connections: a SYN, the first HELLO_PART bytes of the ClientHello (then a RST from the
    server when `rst`)."""
    w = _Writer(path)
    part = hello[:HELLO_PART]
    for i, (c, s) in enumerate(_endpoints(n)):
        isn = (i * 2654435761) & 0xFFFFFFFF
        w.frame(c, s, isn, 0, SYN)
        w.frame(c, s, isn + 1, 1, PSH | ACK, part)
        if rst:
            w.frame(s, c, 1, isn + 1 + len(part), RST | ACK)
    w.close()
    return w.packets


def partial_hello(path: Path, n: int, hello: bytes) -> int:
    """n connections each sending the grown ClientHello up to CUT bytes, in MSS segments."""
    stream = records(grown_hello(hello), hello[1:3])[:CUT]
    w = _Writer(path)
    for i, (c, s) in enumerate(_endpoints(n)):
        isn = (i * 2654435761) & 0xFFFFFFFF
        w.frame(c, s, isn, 0, SYN)
        for off in range(0, len(stream), MSS):
            w.frame(c, s, isn + 1 + off, 1, ACK, stream[off : off + MSS])
    w.close()
    return w.packets


def syn_flood(path: Path, n: int) -> int:
    """n SYNs from as many endpoints, never answered."""
    w = _Writer(path)
    for i, (c, s) in enumerate(_endpoints(n)):
        w.frame(c, s, i * 2654435761, 0, SYN)
    w.close()
    return w.packets


def port_scan(path: Path, n: int) -> int:
    """A SYN scan of n ports (cycling over 1-65535 and servers), each answered by a RST."""
    w = _Writer(path)
    client = (bytes((10, 9, 9, 9)), 40000)
    for i in range(n):
        server = (bytes((10, 200, 1 + i // 65535, 1)), 1 + i % 65535)
        isn = (i * 2654435761) & 0xFFFFFFFF
        w.frame(client, server, isn, 0, SYN)
        w.frame(server, client, 0, isn + 1, RST | ACK)
    w.close()
    return w.packets


def generate(out: Path, size: str) -> dict[str, dict[str, int]]:
    """Write every capture of `size` into `out`; return (and write) the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    n, m = SIZES[size]
    hello = recorded_client_hello()
    manifest = {
        "half_open.pcap": {
            "connections": n,
            "tls": n,
            "packets": half_open(out / "half_open.pcap", n, hello),
        },
        "partial_hello.pcap": {
            "connections": m,
            "tls": m,
            "packets": partial_hello(out / "partial_hello.pcap", m, hello),
        },
        "syn_flood.pcap": {
            "connections": n,
            "tls": 0,
            "packets": syn_flood(out / "syn_flood.pcap", n),
        },
        "port_scan.pcap": {
            "connections": n,
            "tls": 0,
            "packets": port_scan(out / "port_scan.pcap", n),
        },
        "reset_flood.pcap": {
            "connections": n,
            "tls": n,
            "packets": half_open(out / "reset_flood.pcap", n, hello, rst=True),
        },
    }
    (out / "manifest.json").write_text(json.dumps({"size": size, "files": manifest}, indent=2))
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("out", type=Path, help="directory to write the captures into")
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    args = p.parse_args(argv)
    for name, facts in generate(args.out, args.size).items():
        print(f"{args.out / name}: {facts['connections']:,} connections, "
              f"{facts['packets']:,} packets")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
