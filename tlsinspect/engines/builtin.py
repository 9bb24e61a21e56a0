"""The one loop: raw packets -> TCP flows -> TLS events -> sessions, each logged exactly once.

Hot path design (measured on the benchmark capture, see benchmarks/bench.py): a flow is keyed by
the raw bytes of (source address, destination address, source port, destination port), sliced
straight out of the frame, and both directions' keys point at the flow. The common frame
(Ethernet + IPv4 without options + TCP) is recognised inline with a few byte compares; any other
frame goes through `net.link.locate_tcp`. Once a flow's verdict is decided its entries become the
`_DONE` sentinel, its buffers are dropped, and its later packets cost one dict lookup and one
flag test (Zeek's disable_analyzer_after_detection). A session is logged when it is decided, on
a reset, on the close of both directions, when it idles out (packet time), when it is evicted
to keep memory under the limit (`lifecycle.Limits`), or at end of capture. A connection logged
at its reset or close leaves the table at once, so a flood of reset connections costs nothing.

The limits are checked where memory grows, not per packet: the count of followed flows when a
flow is made, the bytes held across all flows when a packet of an undecided flow changed what
its buffers hold.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..capture.skip import SkipFilter
from ..model import EndKind
from ..net.fragments import Defragmenter
from ..net.link import MAX_NESTING, TOO_DEEP, header_cut, locate_fragment, locate_tcp
from ..net.reassembly import Gap, HalfStream
from ..record import SessionRecord
from ..session import SessionBuilder, SessionFacts
from ..tls.connection import KeySource, TlsConnection, TlsEvent
from ..tls.keylog import KeyLog, keylog_from_secrets, parse_keylog
from ..x509 import Anchors
from .lifecycle import (
    ACK,
    CAPTURE_ENDS,
    DECIDED_SWEEP_NS,
    DEFAULT_LIMITS,
    FIN,
    IDLE,
    REUSED,
    RST,
    SYN,
    Evictions,
    Limits,
    Logbook,
    SweepClock,
    closing,
    evict_order,
    evicted,
    excess,
    idle,
)

_SEQ = struct.Struct(">I")


class _Done:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<decided flow>"


_DONE = _Done()
_STALE = _Done()  # a decided flow that saw no packet since the last sweep of decided flows


@dataclass(slots=True)
class Stats:
    packets: int = 0
    tcp_packets: int = 0
    not_tcp: int = 0
    truncated: int = 0  # packets cut by the capture's snaplen
    # frames skipped because their bytes end inside a header before the TCP payload (a
    # snaplen shorter than the headers, a damaged frame), by the header: {"IPv4 header": 3}
    cut_short: dict[str, int] = field(default_factory=dict)
    too_deep: int = 0  # frames inside more than net.link.MAX_NESTING tunnels: not decoded
    fragments: int = 0  # IP fragments met
    reassembled: int = 0  # IP datagrams put back together from them
    flows: int = 0
    sessions: int = 0
    evicted: Evictions = field(default_factory=Evictions)  # flows evicted at a memory limit
    problems: list[str] = field(default_factory=list)


class _Flow:
    __slots__ = ("keys", "streams", "conn", "builder", "fin", "last_ts", "held")

    def __init__(
        self,
        keys: tuple[bytes, bytes],
        ts: int,
        facts: SessionFacts,
        midstream: bool,
        secrets: KeySource | None = None,
    ):
        self.keys = keys
        self.streams = (HalfStream(), HalfStream())
        self.conn = TlsConnection(midstream, secrets)
        self.builder = SessionBuilder(facts)
        self.fin = [False, False]
        self.last_ts = ts
        self.held = 0  # bytes its buffers held when last counted (Analyzer.held)

    @property
    def facts(self) -> SessionFacts:
        return self.builder.facts

    def holding(self) -> int:
        """Bytes it holds now: TLS records and messages waiting for the rest, those read (its
        session may keep them), TCP segments out of order."""
        a, b = self.streams
        return self.conn.held + a.pending_bytes + b.pending_bytes


class CaptureKeys:
    """The key log texts given by the user, plus the TLS key logs embedded in the capture's
    Decryption Secrets Blocks, merged as the reader meets them (a DSB precedes the packets it
    decrypts, so a lookup at ServerHello time sees it)."""

    def __init__(self, texts: list[bytes], secrets: list[tuple[int, bytes]]) -> None:
        self.log = KeyLog()
        for text in texts:
            self.log.merge(parse_keylog(text))
        self._secrets = secrets
        self._merged = 0
        self._given = bool(texts)

    @property
    def active(self) -> bool:
        """A key log was given or found in the capture."""
        self._merge()
        return self._given or len(self.log) > 0

    def get(self, client_random: bytes, label: str) -> bytes | None:
        self._merge()
        return self.log.get(client_random, label)

    def _merge(self) -> None:
        if self._merged < len(self._secrets):
            self.log.merge(keylog_from_secrets(self._secrets[self._merged :]))
            self._merged = len(self._secrets)


def _events(conn: TlsConnection, side: int, chunk: bytes | Gap, ts: int) -> list[TlsEvent]:
    """The TLS events of a piece of one direction's stream: bytes, or a hole in the capture."""
    if isinstance(chunk, Gap):
        where = f"{chunk.length:,} bytes missing from the capture at stream offset {chunk.offset:,}"
        return conn.lose(side, ts, where)
    return conn.receive(side, chunk, ts)


def _reverse(key: bytes) -> bytes:
    n = (len(key) - 4) // 2
    return key[n : 2 * n] + key[:n] + key[2 * n + 2 :] + key[2 * n : 2 * n + 2]


class Analyzer:
    """Feeds raw packet tuples through the layers; `run()` yields SessionRecords as they are logged."""

    def __init__(
        self,
        keys: KeySource | None = None,
        anchors: Anchors | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.keys = keys
        self.limits = limits
        self.held = 0  # bytes the buffers of all active flows hold (as last counted)
        self.flows: dict[bytes, object] = {}
        self.active: dict[int, _Flow] = {}  # undecided flows, for idle sweeps and end of capture
        self.closing: set[bytes] = set()  # decided flows with one direction closed
        self.stats = Stats()
        self.logbook = Logbook(anchors)
        self._ready = self.logbook.ready
        self._decided_swept = 0
        self.defrag = Defragmenter()

    def run(self, packets: Iterable[tuple[int, int, bytes, int, int]]) -> Iterator[SessionRecord]:
        flows = self.flows
        get = flows.get
        done = _DONE
        ready = self._ready
        stats = self.stats
        n = 0
        stale = _STALE
        due = SweepClock().due
        tcp = 0  # TCP packets, of decided flows included
        skip = None
        self.logbook.file_of = getattr(packets, "file_of", None)  # a capture file says which
        push = getattr(packets, "push_skip", None)
        if push is not None:
            # The hot path below, run inside a capture file reader's own loop: a packet of a
            # decided flow is then dropped there, before it costs a tuple, a copy of its bytes
            # and a generator step. (A frame of 47 bytes or less is not dropped there: the hot
            # path below skips it.) The first fragment of an IPv4 datagram (MF set) is not
            # skipped: its datagram is reassembled, and then skipped whole.
            skip = SkipFilter(1, 26, 38, flows, done, 47, 7, 20, 0x20)
            push(skip)
        for n, (ts, linktype, data, orig_len, _iface) in enumerate(packets, 1):  # noqa: B007
            if linktype == 1:
                # The hot path: a packet of a decided flow on Ethernet/IPv4 costs this lookup of
                # its raw address and port bytes (a 12-byte match cannot come from another flow).
                if get(data[26:38]) is done:
                    try:
                        # SYN, FIN or RST (closing, reuse) and a first fragment go the long way
                        if not data[47] & 7 and not data[20] & 0x20:
                            tcp += 1
                            continue
                    except IndexError:
                        tcp += 1
                        continue
            if due(n, ts):
                self._sweep(ts)
                if ready:
                    yield from ready
                    ready.clear()
            if (
                linktype == 1
                and len(data) >= 54  # first: a frame cut inside its headers takes the long way
                and data[12] == 8
                and data[13] == 0
                and data[14] == 0x45
                and data[23] == 6
                and not data[20] & 0x3F  # not a fragment (MF, offset)
                and not data[21]
            ):
                key = data[26:38]
                t = 34
                # a total length of 0 is what captures of TCP segmentation offload show: the
                # captured bytes tell the length (as net.ip.ipv4 reads it)
                end = 14 + ((data[16] << 8) | data[17]) if data[16] or data[17] else len(data)
            else:
                loc = locate_tcp(linktype, data)
                if loc is None:
                    frag = locate_fragment(linktype, data)
                    whole = None if frag is None else self.defrag.add(frag, ts)
                    if whole is not None:  # the last fragment of a datagram: go on with it
                        linktype, data, orig_len = 101, whole, len(whole)
                        loc = locate_tcp(101, data)
                    elif frag is not None:
                        continue  # counted by the defragmenter
                if loc is None or loc[2] + 20 > len(data):
                    cut = header_cut(linktype, data)
                    if cut is None:
                        stats.not_tcp += 1
                    elif cut == TOO_DEEP:
                        stats.too_deep += 1
                    else:
                        stats.cut_short[cut] = stats.cut_short.get(cut, 0) + 1
                    continue
                src, dst, t, end = loc
                key = src + dst + data[t : t + 4]
                if orig_len > len(data) and end == len(data):
                    end += orig_len - len(data)
            tcp += 1
            entry = get(key)
            if entry is done or entry is stale:
                if entry is stale:  # active again: keep it past the next sweep
                    flows[key] = flows[_reverse(key)] = done
                if data[t + 13] & 7:  # SYN, FIN or RST on a decided flow
                    self._closed_decided(key, data[t + 13])
                    if data[t + 13] & SYN and not data[t + 13] & ACK:
                        self._packet(None, key, ts, data, t, end)
                continue
            self._packet(entry, key, ts, data, t, end)  # type: ignore[arg-type]
            if ready:
                yield from ready
                ready.clear()
        skipped = skip.skipped if skip is not None else 0  # all TCP: they matched a flow
        stats.packets += n + skipped
        stats.tcp_packets += tcp + skipped
        self.finish()
        yield from ready
        ready.clear()

    def finish(self) -> None:
        """End of capture: log every session still open."""
        for flow in list(self.active.values()):
            self._log(flow, EndKind.EOF, CAPTURE_ENDS)
        defrag, stats = self.defrag, self.stats
        stats.problems.extend(stats.evicted.problems(self.limits))
        if stats.cut_short:
            where = ", ".join(f"{n:,} in the {h}" for h, n in sorted(stats.cut_short.items()))
            stats.problems.append(
                f"frames skipped because they end inside their headers (a snaplen shorter than "
                f"the headers, or damage): {sum(stats.cut_short.values()):,} ({where})"
            )
        if stats.not_tcp and not stats.tcp_packets and stats.packets:
            # said, so that a capture of a link type or tunnel not decoded is not silent
            stats.problems.append(
                f"no TCP in any of the {stats.not_tcp:,} packets read: not TCP, or of a link "
                "type or tunnel tlsinspect does not decode"
            )
        if stats.too_deep:
            stats.problems.append(
                f"frames skipped because their tunnels nest more than {MAX_NESTING} deep: "
                f"{stats.too_deep:,} (not decoded: the TCP and TLS inside them are not read, "
                "and their sessions not reported)"
            )
        defrag.finish()
        stats.fragments, stats.reassembled = defrag.fragments, defrag.reassembled
        if defrag.dropped:
            stats.problems.append(
                f"IP fragments left out: {defrag.dropped:,}, of datagrams that never completed "
                "(a fragment missing from the capture, or waiting more than "
                f"{defrag.timeout_ns // 10**9} s)"
            )
        if defrag.overlaps:
            stats.problems.append(
                f"IP fragments overlapping bytes of earlier ones: {defrag.overlaps:,} (the "
                "first bytes were kept)"
            )

    # -- per-packet work for flows not yet decided ------------------------------------------

    def _packet(
        self, entry: tuple[_Flow, int] | None, key: bytes, ts: int, data: bytes, t: int, end: int
    ) -> None:
        stats = self.stats
        flags = data[t + 13]
        doff = (data[t + 12] >> 4) * 4
        cap = len(data)
        missing = 0
        if end > cap:
            missing = end - cap
            end = cap
            stats.truncated += 1
        payload = data[t + doff : end] if t + doff < end else b""
        if t + doff > end and missing:
            missing -= t + doff - end
        if entry is None:
            if not payload and not flags & SYN and not missing:
                return
            flow = self._new_flow(key, ts, data, t, syn=bool(flags & SYN))
            side = 0
        else:
            flow, side = entry
            if (
                flags & SYN
                and not flags & ACK
                and flow.streams[side].next_seq is not None
                and (flow.streams[side].offset > 0 or flow.streams[1 - side].offset > 0)
            ):
                # the 4-tuple is reused by a new connection
                self._log(flow, EndKind.REUSE, REUSED)
                flow = self._new_flow(key, ts, data, t, syn=True)
                side = 0
        flow.last_ts = ts
        seq = _SEQ.unpack_from(data, t + 4)[0]
        stream = flow.streams[side]
        if flags & SYN:
            stream.syn(seq)
            if not flags & ACK:
                flow.builder.set_client(side, "syn")
            else:
                flow.builder.set_client(1 - side, "syn")
            seq = (seq + 1) & 0xFFFFFFFF
        if payload or missing:
            builder = flow.builder
            conn = flow.conn
            for chunk in stream.segment(seq, payload, missing):
                for ev in _events(conn, side, chunk, ts):
                    builder.apply(ev)
            if builder.decided and not conn.watching:
                self._log(flow)
                return
            if conn.given_up:
                self._drop(flow)
                return
            held = flow.holding()
            if held != flow.held:
                self.held += held - flow.held
                flow.held = held
                if self.held > self.limits.buffered:
                    self._evict("buffered")
                    if id(flow) not in self.active:
                        return
        if flags & (FIN | RST):
            closed = closing(flow.builder.facts, flow.fin, side, flags, ts)
            if closed is not None:
                self._log(flow, *closed)

    def _new_flow(self, key: bytes, ts: int, data: bytes, t: int, syn: bool) -> _Flow:
        if len(self.active) >= self.limits.flows:
            self._evict("flows")
        if len(self.flows) - 2 * len(self.active) > 2 * self.limits.decided:
            self._forget_decided()
        rev = _reverse(key)
        n = (len(key) - 4) // 2
        ports = ((data[t] << 8) | data[t + 1], (data[t + 2] << 8) | data[t + 3])
        facts = SessionFacts(start_ts=ts, addrs=(key[:n], key[n : 2 * n]), ports=ports)
        flow = _Flow((key, rev), ts, facts, midstream=not syn, secrets=self.keys)
        self.flows[key] = (flow, 0)
        self.flows[rev] = (flow, 1)
        self.active[id(flow)] = flow
        self.stats.flows += 1
        return flow

    def _closed_decided(self, key: bytes, flags: int) -> None:
        rev = _reverse(key)
        if flags & (RST | SYN) or rev in self.closing:
            self.flows.pop(key, None)
            self.flows.pop(rev, None)
            self.closing.discard(rev)
            self.closing.discard(key)
        else:
            self.closing.add(key)

    def _drop(self, flow: _Flow) -> None:
        """Not TLS: forget it, and skip its later packets."""
        self.active.pop(id(flow), None)
        self.held -= flow.held
        for k in flow.keys:
            self.flows[k] = _DONE

    # -- memory limits -----------------------------------------------------------------------

    def _evict(self, limit: str) -> None:
        """A limit is reached ("flows": too many followed; "buffered": too many bytes held):
        evict flows, in `lifecycle.evict_order`, down to 7/8 of it."""
        active = self.active
        if limit == "flows":
            victims = evict_order(active.values())[: excess(len(active), self.limits.flows)]
        else:
            over = excess(self.held, self.limits.buffered)
            victims = []
            for flow in evict_order(f for f in active.values() if f.held):
                if over <= 0:
                    break
                victims.append(flow)
                over -= flow.held
        record = self.stats.evicted.add
        for flow in victims:
            record(limit, self._log(flow, *evicted(flow.facts, self.limits, limit)))

    def _forget_decided(self) -> None:
        """Too many decided flows remembered: forget the oldest ones, down to 7/8 of the limit
        (their later packets then start flows seen from the middle)."""
        flows = self.flows
        n = excess(len(flows) - 2 * len(self.active), 2 * self.limits.decided)
        old = []
        for k, v in flows.items():
            if v is _DONE or v is _STALE:
                old.append(k)
                if len(old) >= n:
                    break
        before = len(flows)
        for k in old:
            for key in (k, _reverse(k)):
                if flows.pop(key, None) is not None:
                    self.closing.discard(key)
        self.stats.evicted.forgotten += (before - len(flows)) // 2

    def _sweep(self, now: int) -> None:
        if not self._decided_swept:
            self._decided_swept = now
        elif now - self._decided_swept > DECIDED_SWEEP_NS:
            self._decided_swept = now
            flows = self.flows
            for k, v in list(flows.items()):
                if v is _STALE:
                    del flows[k]
                    self.closing.discard(k)
                elif v is _DONE:
                    flows[k] = _STALE
        for flow in idle(self.active.values(), now):
            self._log(flow, EndKind.IDLE, IDLE)

    # -- logging a session -----------------------------------------------------------------

    def _log(
        self, flow: _Flow, end_kind: EndKind | None = None, ended: str = "", by: str | None = None
    ) -> bool:
        """Log its session (if it showed TLS: then True) and forget the flow: its table entries
        leave at once when a reset or the peers' close ended it, else they skip its later
        packets until the sweep of decided flows."""
        self.active.pop(id(flow), None)
        self.held -= flow.held
        flows = self.flows
        closed = end_kind is not None and end_kind.closed
        for k in flow.keys:
            cur = flows.get(k)
            if isinstance(cur, tuple) and cur[0] is flow:
                if closed:
                    del flows[k]
                else:
                    flows[k] = _DONE
        builder = flow.builder
        if end_kind is not None and not builder.decided:
            for side in (0, 1):
                for chunk in flow.streams[side].flush():
                    for ev in _events(flow.conn, side, chunk, flow.last_ts):
                        builder.apply(ev)
        if self.logbook.log(builder, end_kind, ended, flow.last_ts, by=by) is None:
            return False
        self.stats.sessions += 1
        return True
