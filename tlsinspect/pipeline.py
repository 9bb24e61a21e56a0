"""The one loop: raw packets -> TCP flows -> TLS events -> sessions, each logged exactly once.

Hot path design (measured on the benchmark capture, see benchmarks/bench.py): a flow is keyed by
the raw bytes of (source address, destination address, source port, destination port), sliced
straight out of the frame, and both directions' keys point at the flow. The common frame
(Ethernet + IPv4 without options + TCP) is recognised inline with a few byte compares; any other
frame goes through `net.link.locate_tcp`. Once a flow's verdict is decided its entries become the
`_DONE` sentinel, its buffers are dropped, and its later packets cost one dict lookup and one
flag test (Zeek's disable_analyzer_after_detection). A session is logged when it is decided, on
a reset, on the close of both directions, when it idles out (packet time), or at end of capture.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .capture.skip import SkipFilter
from .classify import Decision, Origin, classify
from .model import Verdict
from .net.fragments import Defragmenter
from .net.ip import format_addr
from .net.link import header_cut, locate_fragment, locate_tcp
from .net.reassembly import Gap, HalfStream
from .session import SessionBuilder, SessionFacts
from .tls.connection import KeySource, TlsConnection
from .tls.keylog import KeyLog, keylog_from_secrets, parse_keylog
from .x509 import cert_info

_SEQ = struct.Struct(">I")


class _Done:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<decided flow>"


_DONE = _Done()
_STALE = _Done()  # a decided flow that saw no packet since the last sweep of decided flows

IDLE_TIMEOUT_NS = 300 * 10**9  # an undecided flow silent this long (packet time) is logged
# Decided flows are swept at most this often (packet time): one sweep marks them stale, the next
# forgets those still stale, so a decided flow idle for 5 to 10 minutes is forgotten, as Zeek's
# tcp_inactivity_timeout does. Its later packets then start a new, joined-late flow.
DECIDED_SWEEP_NS = 300 * 10**9
SWEEP_EVERY = 1 << 16  # packets between idle sweeps, or:
SWEEP_EVERY_NS = 10 * 10**9  # packet time between them (a live capture may see few packets)
# Session IDs and tickets remembered to link a resumption to its full handshake: the newest
# ones, about 1 KB each with their origin (16 MB at most, the largest part of a long live
# capture's memory). A resumption of an older one is still `resumed`, without its origin.
MAX_RESUMABLE = 1 << 14

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


def iso_time(ts_ns: int) -> str:
    dt = datetime.fromtimestamp(ts_ns // 10**9, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ts_ns % 10**9) // 1000:06d}Z"


@dataclass(slots=True)
class SessionRecord:
    """A logged session: its facts and its decision."""

    index: int
    facts: SessionFacts
    decision: Decision
    client: tuple[str, int]
    server: tuple[str, int]
    origin: Origin | None = None


@dataclass(slots=True)
class Stats:
    packets: int = 0
    tcp_packets: int = 0
    not_tcp: int = 0
    truncated: int = 0  # packets cut by the capture's snaplen
    # frames skipped because their bytes end inside a header before the TCP payload (a
    # snaplen shorter than the headers, a damaged frame), by the header: {"IPv4 header": 3}
    cut_short: dict[str, int] = field(default_factory=dict)
    fragments: int = 0  # IP fragments met
    reassembled: int = 0  # IP datagrams put back together from them
    flows: int = 0
    sessions: int = 0
    problems: list[str] = field(default_factory=list)


class _Flow:
    __slots__ = ("keys", "streams", "conn", "builder", "fin", "last_ts")

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


def _ticket_key(ticket: bytes) -> bytes:
    """A session ticket as a key of the resumption table: its 16-byte BLAKE2b digest, so that
    the table's memory does not depend on ticket sizes (often 200+ bytes in TLS 1.3)."""
    return b"tk:" + hashlib.blake2b(ticket, digest_size=16).digest()


def _reverse(key: bytes) -> bytes:
    n = (len(key) - 4) // 2
    return key[n : 2 * n] + key[:n] + key[2 * n + 2 :] + key[2 * n : 2 * n + 2]


class Analyzer:
    """Feeds raw packet tuples through the layers; `run()` yields SessionRecords as they are logged."""

    def __init__(self, keys: KeySource | None = None) -> None:
        self.keys = keys
        self.flows: dict[bytes, object] = {}
        self.active: dict[int, _Flow] = {}  # undecided flows, for idle sweeps and end of capture
        self.closing: set[bytes] = set()  # decided flows with one direction closed
        self.stats = Stats()
        self._ready: list[SessionRecord] = []
        self._resumable: OrderedDict[bytes, Origin] = OrderedDict()
        self._index = 0
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
        next_sweep = SWEEP_EVERY
        sweep_at = 0  # packet time of the next sweep (the first packet sets it)
        tcp = 0  # TCP packets, of decided flows included
        skip = None
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
            if n >= next_sweep or ts >= sweep_at:
                next_sweep = n + SWEEP_EVERY
                sweep_at = ts + SWEEP_EVERY_NS
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
                # a total length of 0 is what captures of TCP segmentation offload show
                end = 14 + ((data[16] << 8) | data[17]) or len(data)
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
            self._log(flow, "eof", "the capture ends")
        defrag, stats = self.defrag, self.stats
        if stats.cut_short:
            where = ", ".join(f"{n:,} in the {h}" for h, n in sorted(stats.cut_short.items()))
            stats.problems.append(
                f"frames skipped because they end inside their headers (a snaplen shorter than "
                f"the headers, or damage): {sum(stats.cut_short.values()):,} ({where})"
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
                self._log(flow, "reuse", "its address/port pair was reused by a new connection")
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
                if isinstance(chunk, Gap):
                    events = conn.lose(
                        side,
                        ts,
                        f"{chunk.length:,} bytes missing from the capture at stream offset {chunk.offset:,}",
                    )
                else:
                    events = conn.receive(side, chunk, ts)
                for ev in events:
                    builder.apply(ev)
            if builder.decided and not conn.watching:
                self._log(flow)
                return
            if conn.given_up:
                self._drop(flow)
                return
        if flags & RST:
            self._log(flow, "rst", f"connection reset by the {flow.builder.facts.role(side)}")
        elif flags & FIN:
            flow.fin[side] = True
            facts = flow.builder.facts
            if facts.end_kind is None:
                facts.end_kind = "fin"
                facts.closed_ts = ts
                facts.closed_after = facts.last_message.get(facts.role(1 - side), "")
                facts.ended = f"connection closed by the {facts.role(side)}"
            if flow.fin[1 - side]:
                self._log(flow, "fin", "connection closed by both sides")

    def _new_flow(self, key: bytes, ts: int, data: bytes, t: int, syn: bool) -> _Flow:
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
        for k in flow.keys:
            self.flows[k] = _DONE

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
        for flow in list(self.active.values()):
            if now - flow.last_ts > IDLE_TIMEOUT_NS:
                self._log(flow, "idle", f"idle for more than {IDLE_TIMEOUT_NS // 10**9} s")

    # -- logging a session -----------------------------------------------------------------

    def _log(self, flow: _Flow, end_kind: str | None = None, ended: str = "") -> None:
        self.active.pop(id(flow), None)
        for k in flow.keys:
            cur = self.flows.get(k)
            if isinstance(cur, tuple) and cur[0] is flow:
                self.flows[k] = _DONE
        builder = flow.builder
        facts = builder.facts
        if end_kind is not None and not builder.decided:
            for side in (0, 1):
                for chunk in flow.streams[side].flush():
                    if isinstance(chunk, Gap):
                        evs = flow.conn.lose(
                            side,
                            flow.last_ts,
                            f"{chunk.length:,} bytes missing from the capture at stream offset {chunk.offset:,}",
                        )
                    else:
                        evs = flow.conn.receive(side, chunk, flow.last_ts)
                    for ev in evs:
                        builder.apply(ev)
        if facts.client_side is None:  # no SYN, no hello: the ephemeral (higher) port is the client
            builder.set_client(0 if facts.ports[0] >= facts.ports[1] else 1, "port")
        if not facts.tls_seen:
            return  # not a TLS connection
        if end_kind is not None and (facts.end_kind is None or end_kind == "rst"):
            facts.end_kind, facts.ended = end_kind, ended
            if end_kind == "rst" and facts.closed_ts is None:
                facts.closed_ts = flow.last_ts
        facts.end_ts = max(facts.end_ts, flow.last_ts)
        origin = self.origin_of(facts)
        decision = classify(facts, origin)
        c, s = facts.client_side, 1 - facts.client_side  # type: ignore[operator]
        client = (format_addr(facts.addrs[c]), facts.ports[c])  # type: ignore[index]
        server = (format_addr(facts.addrs[s]), facts.ports[s])
        self._index += 1
        record = SessionRecord(self._index, facts, decision, client, server, origin)
        self.remember(record)
        self.stats.sessions += 1
        self._ready.append(record)

    def origin_of(self, f: SessionFacts) -> Origin | None:
        """The full handshake a resumption resumes, if the capture showed it (by ticket or ID).
        Public so that the tshark engine links resumptions by the same rules."""
        ch, sh = f.client_hello, f.server_hello
        if ch is None or sh is None:
            return None
        found = None
        if sh.psk_accepted:  # TLS 1.3: the ticket is the PSK identity (readable in the hello)
            for identity in ch.psk_identities:
                found = found or self._resumable.get(_ticket_key(identity))
            return found
        if f.tls13:  # RFC 8446 4.1.3: an echoed legacy_session_id is middlebox compatibility
            return None
        if ch.session_ticket:
            found = self._resumable.get(_ticket_key(ch.session_ticket))
        if found is None and ch.session_id and ch.session_id == sh.session_id:
            found = self._resumable.get(b"id:" + ch.session_id)
        return found

    def remember(self, r: SessionRecord) -> None:
        f = r.facts
        if r.decision.verdict not in (
            Verdict.MUTUAL,
            Verdict.ONE_WAY,
            Verdict.CERT_REQUESTED_NOT_SENT,
        ):
            return
        subject = None
        if f.client_certs:
            subject = cert_info(f.client_certs[0]).subject
        origin = Origin(
            r.decision.verdict, f"{r.client[0]}:{r.client[1]}", iso_time(f.start_ts), subject
        )
        keys = []
        if f.server_hello is not None and f.server_hello.session_id and not f.tls13:
            keys.append(b"id:" + f.server_hello.session_id)
        keys.extend(_ticket_key(t) for t in f.session_tickets)
        for k in keys:
            self._resumable[k] = origin
            self._resumable.move_to_end(k)
            if len(self._resumable) > MAX_RESUMABLE:
                self._resumable.popitem(last=False)
