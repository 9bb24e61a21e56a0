#!/usr/bin/env python3
"""Throughput benchmark: tlsinspect against tshark on a large synthetic capture of real handshakes.

    python benchmarks/bench.py                   # builds benchmarks/bench.pcap if needed, measures
    python benchmarks/bench.py --json out.json   # also writes the figures as JSON
    python benchmarks/bench.py --packets 4000000 --repeat 3 --no-tshark --profile

Synthesis (deterministic for a given --seed and set of recorded captures): every TCP connection
of ``captures/*.pcap*`` is read with the project's own reader, its payload-carrying packets are
kept in order with their direction, cut to a 1448-byte MSS, and the connection is replayed many
times as Ethernet/IPv4/TCP frames with new addresses (clients 10.x.y.z, servers 10.200.0.n on
443 or their service's standard port), fresh ephemeral ports and ISNs, a SYN/SYN-ACK/ACK opening
and a FIN/FIN/ACK close. Connections whose handshake completed get bulk data after their first
request/response, on a record boundary: TLS application_data records (16 KiB of random-looking
bytes each) sent by the server in 1448-byte segments, acked by the client every 2 segments, so
that most packets are bulk data. About 128 connections are in
flight at any time, their packets interleaved with increasing timestamps as on a busy 1 Gbit/s
link. The file is classic pcap (microsecond timestamps, Ethernet) and is cached next to a small
``.meta.json`` describing it; it is rebuilt with --regenerate, when missing, or when the
parameters or the recorded captures changed.

Measurements, each as a whole process (wall time around the process, peak RSS from its own
rusage, best of --repeat runs):

- a bare loop that only walks the pcap record headers in Python (the ceiling for any Python
  design);
- ``python -m tlsinspect --format jsonl FILE``, on the file and on a file of 1/4 the packets (its
  peak memory should not depend on the capture size);
- ``tshark -n -r FILE -Y tls.handshake.type -T fields ...`` extracting the same handshake facts.

The outputs are kept and compared: TLS sessions per verdict against the verdicts of the replayed
connections in their original captures, and TCP streams with a ClientHello (and with a
CertificateRequest) in tshark's output.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import inspect
import json
import os
import platform
import pstats
import random
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_FILE = HERE / "bench.pcap"
CAPTURES = ROOT / "captures"
TSHARK = "/usr/bin/tshark"

#: Bump when the synthesis changes, so that cached files are rebuilt.
GENERATOR_VERSION = 5

MSS = 1448
PACKETS_PER_CONNECTION = 250  # --packets / this = replayed connections (4000 for 1 M packets)
CONCURRENCY = 128
RECORD_BODY = 16 * 1024 + 24  # 16 KiB of plaintext, AEAD nonce and tag
RECORD_WIRE = 5 + RECORD_BODY
LINK_BPS = 1_000_000_000
START_NS = 1_717_405_200 * 10**9  # 2024-06-03 09:00:00 UTC
POOL_SIZE = 4 << 20
FLUSH_AT = 64 << 20

CLIENT_MAC = bytes.fromhex("020000000a01")
SERVER_MAC = bytes.fromhex("020000000c01")
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

PCAP_FILE_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")
# Ethernet, IPv4 (no options, checksum left 0), TCP without options
FRAME = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH")
SYN_OPTIONS = bytes.fromhex("020405b401030307")  # MSS 1460, NOP, window scale 7


# -- recorded connections ------------------------------------------------------------------


@dataclass(slots=True)
class Template:
    """One recorded TCP connection, ready to be replayed."""

    name: str
    server: str  # the recorded server (capture, port): replays of one server share an address
    server_port: int  # the port it is replayed on
    segments: list[tuple[int, bytes, bool]]  # (0 client->server / 1 back, payload, last of write)
    bulk_at: int | None  # bulk data goes after this many segments; None: never (failed, ...)
    closer: int  # the side that sent the first FIN (or RST)
    verdict: str  # what tlsinspect says about the recorded connection


def load_templates(paths: Sequence[Path]) -> list[Template]:
    """Every TCP connection with payload of the given captures, as replay templates."""
    import tlsinspect
    from tlsinspect.capture import open_capture
    from tlsinspect.net.ip import format_addr
    from tlsinspect.net.link import locate_tcp

    templates: list[Template] = []
    for path in paths:
        # verdicts per 4-tuple, in order: a 4-tuple may be reused by a later connection
        verdicts: dict[tuple[object, ...], list[str]] = {}
        for s in sorted(tlsinspect.sessions(path), key=lambda s: (s["start_time"], s["index"])):
            ident = (s["client_ip"], s["client_port"], s["server_ip"], s["server_port"])
            verdicts.setdefault(ident, []).append(str(s["verdict"]))
        conns: dict[tuple[bytes, bytes, int, int], dict] = {}
        order: list[dict] = []
        with open_capture(path) as source:
            for _ts, linktype, data, orig_len, _iface in source:
                loc = locate_tcp(linktype, data)
                if loc is None:
                    continue
                src, dst, t, end = loc
                sport, dport, seq = struct.unpack_from("!HHI", data, t)
                flags = data[t + 13]
                payload = bytes(data[t + (data[t + 12] >> 4) * 4 : end])
                key = (src, dst, sport, dport)
                rkey = (dst, src, dport, sport)
                conn = conns.get(key)
                side = 0
                if conn is None and rkey in conns:
                    conn, side = conns[rkey], 1
                if conn is None or (flags & SYN and not flags & ACK and conn["packets"]):
                    conn = {"key": key, "client": None, "packets": [], "next": {}, "closer": None}
                    conns[key] = conn
                    conns.pop(rkey, None)
                    order.append(conn)
                    side = 0
                if flags & SYN:
                    conn["client"] = side if not flags & ACK else 1 - side
                    conn["next"][side] = (seq + 1) & 0xFFFFFFFF
                if flags & (FIN | RST) and conn["closer"] is None:
                    conn["closer"] = side
                if orig_len > len(data):
                    conn["cut"] = True
                if not payload:
                    continue
                expected = conn["next"].get(side)
                if expected is not None and seq != expected:
                    delta = (expected - seq) & 0xFFFFFFFF
                    if delta > 1 << 30:
                        conn["cut"] = True  # bytes missing: not worth replaying
                        continue
                    if delta >= len(payload):
                        continue  # a retransmission
                    payload = payload[delta:]
                    seq = expected
                conn["next"][side] = (seq + len(payload)) & 0xFFFFFFFF
                conn["packets"].append((side, payload))
        for conn in order:
            if not conn["packets"]:
                continue
            client = conn["client"] if conn["client"] is not None else conn["packets"][0][0]
            src, dst, sport, dport = conn["key"]
            addrs, ports = (src, dst), (sport, dport)
            ident = (
                format_addr(addrs[client]),
                ports[client],
                format_addr(addrs[1 - client]),
                ports[1 - client],
            )
            known = verdicts.get(ident)
            verdict = known.pop(0) if known else "none"
            if conn.get("cut"):
                continue
            packets = [(side ^ client, p) for side, p in conn["packets"]]
            closer = conn["closer"] ^ client if conn["closer"] is not None else 0
            templates.append(
                Template(
                    name=f"{path.name}:{ident[1]}->{ident[3]}",
                    server=f"{path.name}:{ident[3]}",
                    server_port=_service_port(packets[0][1], ident[3]),
                    segments=_cut(packets),
                    # bulk data only where the recorded handshake completed: a refusal by a
                    # padded alert (Java's are 35 bytes) must not be followed by server data
                    bulk_at=_bulk_point(packets) if verdict in COMPLETED else None,
                    closer=closer,
                    verdict=verdict,
                )
            )
    return templates


#: Standard ports of the services recorded with a plaintext preamble (STARTTLS and the like).
_SERVICE_PORTS = frozenset({21, 25, 110, 143, 389, 587, 3306, 5222, 5432})
#: Plaintext greetings -> standard port, for a preamble recorded on a test port.
_GREETINGS = {b"220": 25, b"* OK": 143, b"+OK": 110}


def _service_port(first: bytes, recorded: int) -> int:
    """The port to replay on: 443 for TLS from the first byte, the service's standard port else.

    Several recordings use test ports (8401-8495, 12345, 2525); tshark picks a dissector by port
    (the lower one first), so a replay on such a port whose random client port is registered for
    another protocol (44818 is EtherNet/IP) would not be dissected as TLS by tshark.
    """
    if first[0] == 0x16 or first[0] & 0x80:
        return 443
    if recorded in _SERVICE_PORTS:
        return recorded
    for greeting, port in _GREETINGS.items():
        if first.startswith(greeting):
            return port
    return recorded


def _cut(packets: list[tuple[int, bytes]]) -> list[tuple[int, bytes, bool]]:
    """Cut each recorded write (loopback captures carry up to 64 KiB) to the Ethernet MSS."""
    out = []
    for side, payload in packets:
        for off in range(0, len(payload), MSS):
            piece = payload[off : off + MSS]
            out.append((side, piece, off + MSS >= len(payload)))
    return out


class _Records:
    """TLS record boundaries in one direction of a recorded connection.

    Records are followed from the first packet that starts with a record header (after a
    STARTTLS-like plaintext preamble, if any).
    """

    __slots__ = ("data", "next")

    def __init__(self) -> None:
        self.data = bytearray()
        self.next: int | None = None  # offset of the next record header

    def feed(self, payload: bytes) -> list[tuple[int, int]]:
        """Add a packet's payload; (content type, length) of the records that start in it."""
        if self.next is None:
            if not (20 <= payload[0] <= 23 and len(payload) > 1 and payload[1] == 3):
                self.data += payload
                return []
            self.next = len(self.data)
        self.data += payload
        records = []
        while self.next + 5 <= len(self.data):
            length = int.from_bytes(self.data[self.next + 3 : self.next + 5], "big")
            records.append((self.data[self.next], length))
            self.next += 5 + length
        return records

    @property
    def aligned(self) -> bool:
        """The bytes so far end at a record boundary."""
        return self.next == len(self.data)


COMPLETED = frozenset({"mutual", "one-way", "cert-requested-not-sent", "resumed"})


def _bulk_point(packets: list[tuple[int, bytes]]) -> int | None:
    """Where bulk data fits: after the server's last application_data answer to the client's.

    That is, after the last server packet that starts an application_data record, follows one
    from the client, and ends at a record boundary (the bulk records must not cut a recorded
    record). The last, not the first: bulk data before a later exchange (a post-handshake
    CertificateRequest and the client's answer) would push that exchange past what an observer
    without keys follows, and change what the recorded connection shows. A 19-byte TLS 1.3
    record is taken for an encrypted alert (2 bytes, the inner content type and a 16-byte tag),
    not data. A point after which the client still sends more than an alert (35 bytes: Java pads
    its alerts) is dropped: the server's record may sit inside the client's answer to a
    post-handshake request. Counted in MSS segments. None when the connection never got that far (a failed
    handshake).
    """
    walkers = (_Records(), _Records())
    client_data = False
    segments = 0
    point = None
    for side, payload in packets:
        segments += -(-len(payload) // MSS)
        sizes = [n for t, n in walkers[side].feed(payload) if t == 23]
        data = any(n > 19 for n in sizes)
        if side == 0:
            client_data = client_data or data
            if any(n > 35 for n in sizes):
                point = None  # the client goes on (the rest of an answer): not after this
        elif client_data and data and walkers[1].aligned:
            point = segments
    return point


# -- synthesis -----------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """Which template each replayed connection uses and how much bulk data it carries."""

    templates: list[Template]
    picks: list[int]
    bulk_segments: list[int]


def make_plan(templates: list[Template], packets: int, rng: random.Random) -> Plan:
    conns = max(len(templates), round(packets / PACKETS_PER_CONNECTION))
    picks: list[int] = []
    while len(picks) < conns:
        cycle = list(range(len(templates)))
        rng.shuffle(cycle)
        picks.extend(cycle)
    picks = picks[:conns]
    base = sum(3 + len(templates[i].segments) + 3 for i in picks)
    bulky = [n for n, i in enumerate(picks) if templates[i].bulk_at is not None]
    bulk = [0] * conns
    budget = packets - base
    if budget > 0 and bulky:
        # heavy-tailed transfer sizes: most are small, a few are large
        weights = [rng.lognormvariate(0.0, 1.0) for _ in bulky]
        total_w = sum(weights)
        for n, w in zip(bulky, weights, strict=True):
            bulk[n] = int(budget * w / total_w * 2 / 3)  # 3 packets per 2 data segments
        missing = packets - base - sum(s + (s + 1) // 2 for s in bulk)
        k = 0
        while missing > 0:  # rounding: top up, 2 segments and their ACK at a time
            n = bulky[k % len(bulky)]
            before = bulk[n] + (bulk[n] + 1) // 2
            bulk[n] += 2
            missing -= bulk[n] + (bulk[n] + 1) // 2 - before
            k += 1
    return Plan(templates, picks, bulk)


def expected_verdicts(plan: Plan) -> dict[str, int]:
    """Replayed connections per verdict that tlsinspect gives their recorded originals."""
    return dict(Counter(plan.templates[i].verdict for i in plan.picks).most_common())


class Replay:
    """One replayed connection: yields its frames (without timestamps) in order."""

    __slots__ = ("tpl", "client", "server", "cport", "sport", "nxt", "ipid", "bulk", "pool", "rng")

    def __init__(
        self,
        tpl: Template,
        client: bytes,
        server: bytes,
        cport: int,
        bulk_segments: int,
        pool: bytes,
        rng: random.Random,
    ) -> None:
        self.tpl = tpl
        self.client = client
        self.server = server
        self.cport = cport
        self.sport = tpl.server_port
        self.nxt = [rng.getrandbits(32), rng.getrandbits(32)]
        self.ipid = [rng.getrandbits(16), rng.getrandbits(16)]
        self.bulk = bulk_segments
        self.pool = pool
        self.rng = rng

    def _frame(
        self, side: int, flags: int, payload: bytes | memoryview, opts: bytes = b""
    ) -> bytes:
        nxt = self.nxt
        ipid = self.ipid[side]
        self.ipid[side] = (ipid + 1) & 0xFFFF
        total = 40 + len(opts) + len(payload)
        ack = nxt[1 - side] if flags & ACK else 0
        if side == 0:
            macs = (SERVER_MAC, CLIENT_MAC)
            ips = (self.client, self.server)
            ports = (self.cport, self.sport)
            ttl, win = 64, 502
        else:
            macs = (CLIENT_MAC, SERVER_MAC)
            ips = (self.server, self.client)
            ports = (self.sport, self.cport)
            ttl, win = 57, 509
        head = FRAME.pack(
            macs[0], macs[1], 0x0800,
            0x45, 0, total, ipid, 0x4000, ttl, 6, 0, ips[0], ips[1],
            ports[0], ports[1], nxt[side], ack, (5 + len(opts) // 4) << 4, flags, win, 0, 0,
        )  # fmt: skip
        return head + opts if opts else head

    def frames(self) -> Iterator[tuple[bytes, bytes | memoryview]]:
        nxt = self.nxt
        frame = self._frame
        yield frame(0, SYN, b"", SYN_OPTIONS), b""
        nxt[0] = (nxt[0] + 1) & 0xFFFFFFFF
        yield frame(1, SYN | ACK, b"", SYN_OPTIONS), b""
        nxt[1] = (nxt[1] + 1) & 0xFFFFFFFF
        yield frame(0, ACK, b""), b""
        tpl = self.tpl
        for n, (side, payload, last) in enumerate(tpl.segments):
            if n == tpl.bulk_at and self.bulk:
                yield from self._bulk()
            yield frame(side, PSH | ACK if last else ACK, payload), payload
            nxt[side] = (nxt[side] + len(payload)) & 0xFFFFFFFF
        if tpl.bulk_at == len(tpl.segments) and self.bulk:
            yield from self._bulk()
        first = tpl.closer
        yield frame(first, FIN | ACK, b""), b""
        nxt[first] = (nxt[first] + 1) & 0xFFFFFFFF
        yield frame(1 - first, FIN | ACK, b""), b""
        nxt[1 - first] = (nxt[1 - first] + 1) & 0xFFFFFFFF
        yield frame(first, ACK, b""), b""

    def _bulk(self) -> Iterator[tuple[bytes, bytes | memoryview]]:
        """application_data records from the server, 2 segments per client ACK."""
        total = self.bulk * MSS
        full, rest = divmod(total, RECORD_WIRE)
        bodies = [RECORD_BODY] * full
        if rest >= 6:
            bodies.append(rest - 5)
        elif rest:
            bodies[-1] += rest
        pool = self.pool
        rng = self.rng
        parts = []
        for body in bodies:
            off = rng.randrange(POOL_SIZE - body)
            parts.append(struct.pack("!BHH", 23, 0x0303, body))
            parts.append(pool[off : off + body])
        stream = memoryview(b"".join(parts))
        nxt = self.nxt
        frame = self._frame
        count = self.bulk
        for n in range(count):
            piece = stream[n * MSS : (n + 1) * MSS]
            yield frame(1, PSH | ACK if n == count - 1 else ACK, piece), piece
            nxt[1] = (nxt[1] + MSS) & 0xFFFFFFFF
            if n & 1 or n == count - 1:
                yield frame(0, ACK, b""), b""


@dataclass(slots=True)
class Synthesis:
    packets: int = 0
    bytes: int = 0  # file size
    connections: int = 0
    bulk_connections: int = 0
    bulk_packets: int = 0
    templates: int = 0
    expected_verdicts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    seconds_of_traffic: float = 0.0


def synthesise(path: Path, packets: int, seed: int, sources: Sequence[Path]) -> Synthesis:
    t0 = time.perf_counter()
    rng = random.Random(seed)
    templates = load_templates(sources)
    if not templates:
        raise SystemExit(f"no TCP connection with payload in {', '.join(map(str, sources))}")
    plan = make_plan(templates, packets, rng)
    pool = rng.randbytes(POOL_SIZE)
    clients = [
        bytes((10, rng.randrange(0, 200), rng.randrange(256), rng.randrange(1, 255)))
        for _ in range(2048)
    ]
    servers: dict[str, bytes] = {}
    for tpl in templates:
        servers.setdefault(tpl.server, bytes((10, 200, 0, len(servers) % 254 + 1)))
    used: set[tuple[bytes, int, bytes, int]] = set()

    def start(n: int) -> Iterator[tuple[bytes, bytes | memoryview]]:
        tpl = plan.templates[plan.picks[n]]
        server = servers[tpl.server]
        while True:
            client = rng.choice(clients)
            cport = rng.randrange(32768, 61000)
            key = (client, cport, server, tpl.server_port)
            if key not in used:
                used.add(key)
                break
        return Replay(tpl, client, server, cport, plan.bulk_segments[n], pool, rng).frames()

    out = Synthesis(
        connections=len(plan.picks),
        bulk_connections=sum(1 for s in plan.bulk_segments if s),
        bulk_packets=sum(s + (s + 1) // 2 for s in plan.bulk_segments),
        templates=len(templates),
        expected_verdicts=expected_verdicts(plan),
    )
    pack_record = PCAP_RECORD.pack
    randrange = rng.randrange
    tmp = path.with_name(path.name + ".part")
    now = START_NS
    count = 0
    with open(tmp, "wb") as f:
        buf = bytearray(PCAP_FILE_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        written = 0
        active = [start(n) for n in range(min(CONCURRENCY, len(plan.picks)))]
        waiting = len(active)
        while active:
            i = randrange(len(active))
            try:
                head, payload = next(active[i])
            except StopIteration:
                if waiting < len(plan.picks):
                    active[i] = start(waiting)
                    waiting += 1
                else:
                    active[i] = active[-1]
                    active.pop()
                continue
            size = len(head) + len(payload)
            now += (size + 24) * 8 * 10**9 // LINK_BPS + randrange(2000)
            buf += pack_record(now // 10**9, now // 1000 % 1_000_000, size, size)
            buf += head
            buf += payload
            count += 1
            if len(buf) >= FLUSH_AT:
                f.write(buf)
                written += len(buf)
                buf.clear()
        f.write(buf)
        written += len(buf)
    os.replace(tmp, path)
    out.packets = count
    out.bytes = written
    out.duration_s = time.perf_counter() - t0
    out.seconds_of_traffic = (now - START_NS) / 1e9
    return out


def source_captures() -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(CAPTURES / "*.pcap*")))


def fingerprint(packets: int, seed: int, sources: Sequence[Path]) -> str:
    h = hashlib.sha256(f"{GENERATOR_VERSION}:{packets}:{seed}".encode())
    for p in sources:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def ensure_capture(path: Path, packets: int, seed: int, regenerate: bool) -> Synthesis:
    """The synthetic capture at ``path``: reused when it matches, else (re)built."""
    sources = source_captures()
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_path = path.with_name(path.name + ".meta.json")
    fp = fingerprint(packets, seed, sources)
    if not regenerate and path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if meta.get("fingerprint") == fp and meta.get("bytes") == path.stat().st_size:
            meta.pop("fingerprint")
            syn = Synthesis(**meta)
            # tlsinspect may have changed since: ask it again about the recorded connections
            plan = make_plan(load_templates(sources), packets, random.Random(seed))
            syn.expected_verdicts = expected_verdicts(plan)
            print(
                f"reusing {_rel(path)}: {syn.packets:,} packets, {syn.bytes / 1e6:,.0f} MB, "
                f"{syn.connections:,} connections (synthesised in {syn.duration_s:.1f} s)"
            )
            return syn
    print(f"synthesising {_rel(path)} ({packets:,} packets, seed {seed}) ...", flush=True)
    syn = synthesise(path, packets, seed, sources)
    meta_path.write_text(json.dumps({"fingerprint": fp, **asdict(syn)}, indent=2) + "\n")
    print(
        f"  {syn.packets:,} packets, {syn.bytes / 1e6:,.0f} MB, {syn.connections:,} connections "
        f"from {syn.templates} recorded ones ({syn.bulk_connections:,} with bulk data, "
        f"{syn.bulk_packets / syn.packets:.0%} of the packets are bulk), "
        f"{syn.seconds_of_traffic:.1f} s of traffic; synthesis took {syn.duration_s:.1f} s"
    )
    return syn


# -- measurements ----------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    name: str
    command: list[str]
    packets: int
    bytes: int
    wall_s: float
    cpu_s: float
    peak_rss_kb: int
    output: str = field(default="", repr=False)

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.wall_s

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.wall_s

    def figures(self) -> dict[str, object]:
        return {
            "command": " ".join("<code>" if "\n" in c else c for c in self.command),
            "packets": self.packets,
            "bytes": self.bytes,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "packets_per_s": round(self.packets_per_s),
            "mb_per_s": round(self.mb_per_s, 2),
            "peak_rss_mb": round(self.peak_rss_kb / 1024, 1),
        }


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


#: python -I -S -c MEASURE_HELPER RESULT CMD...: run CMD (same stdout, stderr), write its wall
#: time, CPU time, peak RSS and exit code to RESULT as JSON.
MEASURE_HELPER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
import json
with open(sys.argv[1], "w") as f:
    json.dump({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss,
               "returncode": os.waitstatus_to_exitcode(status)}, f)
"""


def measure(name: str, cmd: list[str], syn: Synthesis, repeat: int, keep_output: bool) -> Run:
    """Run ``cmd`` ``repeat`` times; the fastest run's wall time, the highest peak RSS.

    Each run goes through MEASURE_HELPER, a tiny process that starts the command and reads its
    rusage: a child forked straight from this (large) process would report this process's own
    peak RSS, as Linux keeps the high-water mark of the memory a process leaves behind at exec.
    """
    best: Run | None = None
    peak = 0
    for _ in range(repeat):
        with (
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
            tempfile.TemporaryDirectory() as tmp,
        ):
            result = Path(tmp) / "rusage.json"
            helper = [sys.executable, "-I", "-S", "-c", MEASURE_HELPER, str(result)]
            proc = subprocess.run(helper + cmd, stdout=out, stderr=err, cwd=ROOT, env=_env())
            if proc.returncode != 0 or not result.exists():
                err.seek(0)
                raise SystemExit(
                    f"{name} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                    + err.read().decode(errors="replace")[-2000:]
                )
            usage = json.loads(result.read_text())
            output = ""
            if keep_output:
                out.seek(0)
                output = out.read().decode()
        peak = max(peak, usage["maxrss_kb"])
        run = Run(name, cmd, syn.packets, syn.bytes, usage["wall_s"], usage["cpu_s"], 0, output)
        if best is None or run.wall_s < best.wall_s:
            best = run
    assert best is not None
    best.peak_rss_kb = peak
    print(
        f"  {name:<22} {best.wall_s:8.2f} s  {best.packets_per_s:>11,.0f} packets/s  "
        f"{best.mb_per_s:8.1f} MB/s  peak RSS {peak / 1024:7.1f} MB",
        flush=True,
    )
    return best


def walk(path: str) -> None:
    """The bare loop: only walk the pcap record headers, reading 1 MiB at a time.

    It runs on its own (``walk_cmd``), so it imports what it needs itself. The chunks are read
    into one reused buffer (joining each new chunk to the previous one's tail measured 3x slower).
    """
    import struct

    unpack = struct.Struct("<12xI").unpack_from
    chunk = 1 << 20
    buf = bytearray(2 * chunk)
    packets = 0
    nbytes = 0
    with open(path, "rb", buffering=0) as f:
        end = f.readinto(memoryview(buf)[:chunk])
        pos = 24
        while True:
            limit = end - 16
            while pos <= limit:
                caplen = unpack(buf, pos)[0]
                nxt = pos + 16 + caplen
                if nxt > end:
                    break
                packets += 1
                nbytes += caplen
                pos = nxt
            rest = end - pos
            buf[:rest] = buf[pos:end]
            if rest + chunk > len(buf):
                buf.extend(bytes(rest + chunk - len(buf)))
            got = f.readinto(memoryview(buf)[rest : rest + chunk])
            if not got:
                break
            end = rest + got
            pos = 0
    print(packets, nbytes)


def walk_cmd(path: Path) -> list[str]:
    """The bare loop in a lean process: only the source of ``walk``, no other import."""
    source = inspect.getsource(walk) + "\nimport sys\nwalk(sys.argv[1])\n"
    return [sys.executable, "-I", "-S", "-c", source, str(path)]


def tlsinspect_cmd(path: Path) -> list[str]:
    return [sys.executable, "-m", "tlsinspect", "--format", "jsonl", str(path)]


def tshark_cmd(path: Path) -> list[str]:
    return [
        TSHARK, "-n", "-r", str(path), "-o", "tcp.reassemble_out_of_order:TRUE",
        "-Y", "tls.handshake.type", "-T", "fields",
        "-e", "tcp.stream", "-e", "tls.handshake.type",
        "-e", "tls.handshake.certificate_length", "-e", "tls.alert_message.desc",
    ]  # fmt: skip


def _tshark_version() -> str:
    out = subprocess.run([TSHARK, "-v"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def tlsinspect_facts(output: str) -> dict[str, object]:
    sessions = [json.loads(line) for line in output.splitlines() if line.strip()]
    return {
        "sessions": len(sessions),
        "verdicts": dict(Counter(s["verdict"] for s in sessions).most_common()),
        # a CertificateRequest seen in plaintext (as tshark sees it without keys), and those a
        # TLS 1.3 session's record sizes showed
        "cert_requested": sum(
            1 for s in sessions if s["cert_requested"] and s["basis"] != "inferred"
        ),
        "cert_requested_inferred": sum(
            1 for s in sessions if s["cert_requested"] and s["basis"] == "inferred"
        ),
    }


def tshark_facts(output: str) -> dict[str, object]:
    types: dict[str, set[str]] = {}
    for line in output.splitlines():
        cols = line.split("\t")
        if len(cols) >= 2:
            types.setdefault(cols[0], set()).update(cols[1].split(","))
    return {
        "streams": len(types),
        "client_hello_streams": sum(1 for t in types.values() if "1" in t),
        "certificate_request_streams": sum(1 for t in types.values() if "13" in t),
    }


def profile(path: Path, top: int = 15) -> list[dict[str, object]]:
    """Run tlsinspect under cProfile; print and return the top functions by own time."""
    with tempfile.TemporaryDirectory() as tmp:
        prof = Path(tmp) / "tlsinspect.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(prof)] + tlsinspect_cmd(path)[1:]
        print(f"\nprofile: {' '.join(cmd[:5])} ... {' '.join(cmd[6:])}", flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, cwd=ROOT, env=_env(), check=True)
        print(f"  ({time.perf_counter() - t0:.1f} s under the profiler)")
        stats = pstats.Stats(str(prof))
        rows = []
        entries = stats.stats  # type: ignore[attr-defined]
        for (filename, line, func), (cc, nc, tt, ct, _callers) in sorted(
            entries.items(), key=lambda kv: kv[1][2], reverse=True
        )[:top]:
            where = os.path.relpath(filename, ROOT) if filename.startswith(str(ROOT)) else filename
            rows.append(
                {
                    "function": f"{where}:{line}({func})",
                    "ncalls": nc if nc == cc else f"{nc}/{cc}",
                    "tottime_s": round(tt, 3),
                    "cumtime_s": round(ct, 3),
                }
            )
        total = sum(v[2] for v in entries.values())
        print(f"  top {top} by tottime (total {total:.1f} s):")
        print(f"  {'tottime':>8} {'cumtime':>8} {'ncalls':>12}  function")
        for r in rows:
            print(
                f"  {r['tottime_s']:8.3f} {r['cumtime_s']:8.3f} {r['ncalls']!s:>12}  "
                f"{r['function']}"
            )
        return rows


# -- main ------------------------------------------------------------------------------------


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", type=Path, default=DEFAULT_FILE, help="synthetic capture (cached)")
    p.add_argument("--packets", type=int, default=1_000_000, help="packets to synthesise")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthesis")
    p.add_argument("--regenerate", action="store_true", help="rebuild the capture(s)")
    p.add_argument("--repeat", type=int, default=1, help="best of N runs of each measurement")
    p.add_argument("--no-tshark", action="store_true", help="skip tshark")
    p.add_argument(
        "--no-scaling", action="store_true", help="skip the run on a capture of 1/4 the packets"
    )
    p.add_argument(
        "--profile", action="store_true", help="also profile tlsinspect (cProfile, top 15)"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    args = p.parse_args(argv)
    if args.packets < 1000 or args.repeat < 1:
        p.error("--packets must be at least 1000 and --repeat at least 1")
    sys.path.insert(0, str(ROOT))

    path: Path = args.file
    syn = ensure_capture(path, args.packets, args.seed, args.regenerate)
    quarter_path = path.with_name(f"{path.stem}-quarter{path.suffix}")
    quarter = None
    if not args.no_scaling:
        quarter = ensure_capture(quarter_path, args.packets // 4, args.seed, args.regenerate)

    print(f"\nmeasuring (best of {args.repeat}):", flush=True)
    walk_run = measure(
        "bare record loop",
        walk_cmd(path),
        syn,
        args.repeat,
        keep_output=True,
    )
    walked = walk_run.output.split()
    if int(walked[0]) != syn.packets:
        print(f"WARNING: the bare loop counted {walked[0]} packets, not {syn.packets}")
    runs = [walk_run]
    ti = measure("tlsinspect", tlsinspect_cmd(path), syn, args.repeat, keep_output=True)
    runs.append(ti)
    ti_quarter = None
    if quarter is not None:
        ti_quarter = measure(
            "tlsinspect (1/4 file)", tlsinspect_cmd(quarter_path), quarter, args.repeat, True
        )
        runs.append(ti_quarter)
    ts = None
    if not args.no_tshark:
        if not os.path.exists(TSHARK):
            print(f"  {TSHARK} is not installed: tshark skipped")
        else:
            ts = measure("tshark", tshark_cmd(path), syn, args.repeat, keep_output=True)
            runs.append(ts)

    # -- agreement
    print("\nagreement:")
    ti_facts = tlsinspect_facts(ti.output)
    expected = syn.expected_verdicts
    print(f"  replayed connections       {syn.connections:,}, expected verdicts {expected}")
    print(f"  tlsinspect TLS sessions    {ti_facts['sessions']:,}, verdicts {ti_facts['verdicts']}")
    problems = []
    if ti_facts["sessions"] != syn.connections:
        problems.append(
            f"tlsinspect logged {ti_facts['sessions']:,} TLS sessions, but {syn.connections:,} "
            "connections were replayed"
        )
    if ti_facts["verdicts"] != expected:
        problems.append(
            "tlsinspect's verdicts differ from the verdicts of the replayed connections in "
            "their original captures"
        )
    quarter_facts = None
    if ti_quarter is not None and quarter is not None:
        quarter_facts = tlsinspect_facts(ti_quarter.output)
        if quarter_facts["sessions"] != quarter.connections:
            problems.append(
                f"on the 1/4 file tlsinspect logged {quarter_facts['sessions']:,} TLS sessions, "
                f"but {quarter.connections:,} connections were replayed"
            )
    ts_facts = None
    if ts is not None:
        ts_facts = tshark_facts(ts.output)
        print(
            f"  tshark streams             {ts_facts['streams']:,}, with a ClientHello "
            f"{ts_facts['client_hello_streams']:,}"
        )
        print(
            f"  CertificateRequest seen    tlsinspect {ti_facts['cert_requested']:,}, tshark "
            f"{ts_facts['certificate_request_streams']:,} streams (and inferred from TLS 1.3 "
            f"record sizes by tlsinspect: {ti_facts['cert_requested_inferred']:,})"
        )
        if ts_facts["certificate_request_streams"] != ti_facts["cert_requested"]:
            problems.append(
                f"tshark saw a CertificateRequest in {ts_facts['certificate_request_streams']:,} "
                f"TCP streams, tlsinspect in {ti_facts['cert_requested']:,} sessions"
            )
        if ts_facts["client_hello_streams"] != ti_facts["sessions"]:
            problems.append(
                f"tshark saw a ClientHello in {ts_facts['client_hello_streams']:,} TCP streams, "
                f"tlsinspect logged {ti_facts['sessions']:,} sessions"
            )
    for msg in problems:
        print(f"\n!!! WARNING: {msg} !!!", file=sys.stderr)
    if not problems:
        print("  ok: every replayed connection is one session with its original verdict")

    # -- summary
    print(
        f"\n{_rel(path)}: {syn.packets:,} packets, {syn.bytes / 1e6:,.0f} MB, "
        f"{syn.connections:,} TLS handshakes; {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs\n"
    )
    header = ["", "packets", "MB", "wall s", "packets/s", "MB/s", "peak RSS MB"]
    rows = [header]
    for r in runs:
        rows.append(
            [
                r.name,
                f"{r.packets:,}",
                f"{r.bytes / 1e6:,.0f}",
                f"{r.wall_s:.2f}",
                f"{r.packets_per_s:,.0f}",
                f"{r.mb_per_s:,.1f}",
                f"{r.peak_rss_kb / 1024:,.1f}",
            ]
        )
    ratios: dict[str, float] = {}
    if ts is not None:
        ratios = {
            "wall": ti.wall_s / ts.wall_s,
            "packets_per_s": ti.packets_per_s / ts.packets_per_s,
            "mb_per_s": ti.mb_per_s / ts.mb_per_s,
            "peak_rss": ti.peak_rss_kb / ts.peak_rss_kb,
        }
        rows.append(
            [
                "tlsinspect / tshark",
                "",
                "",
                f"{ratios['wall']:.2f}x",
                f"{ratios['packets_per_s']:.2f}x",
                f"{ratios['mb_per_s']:.2f}x",
                f"{ratios['peak_rss']:.2f}x",
            ]
        )
    print(_table(rows))
    if ts is not None:
        print(
            f"\ntlsinspect reads {ratios['packets_per_s']:.1f}x as many packets per second as "
            f"tshark, with {ratios['peak_rss']:.0%} of its peak memory"
        )
    if ti_quarter is not None:
        print(
            f"peak RSS of tlsinspect: {ti_quarter.peak_rss_kb / 1024:.1f} MB on 1/4 of the "
            f"packets, {ti.peak_rss_kb / 1024:.1f} MB on all of them"
        )

    prof_rows = profile(path) if args.profile else None

    if args.json:
        figures: dict[str, object] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "tshark": _tshark_version() if ts is not None else None,
            },
            "capture": {"path": str(path), **asdict(syn)},
            "runs": {r.name: r.figures() for r in runs},
            "ratios_tlsinspect_over_tshark": {k: round(v, 3) for k, v in ratios.items()},
            "agreement": {
                "tlsinspect": ti_facts,
                "tlsinspect_quarter": quarter_facts,
                "tshark": ts_facts,
                "problems": problems,
            },
        }
        if quarter is not None:
            figures["quarter_capture"] = {"path": str(quarter_path), **asdict(quarter)}
        if prof_rows is not None:
            figures["profile_top_tottime"] = prof_rows
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
