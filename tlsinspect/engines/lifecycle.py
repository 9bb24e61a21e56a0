"""The life of a flow, shared by both engines: when a session is logged, and how.

Each engine reads the wire its own way (`builtin`: raw frames through tlsinspect's TCP and TLS
layers; `tshark`: Wireshark's dissection) and feeds the same TLS events to a `SessionBuilder`.
What happens to a connection from then on is decided here, once for both (Zeek's
`finalize_ssl` / `log_record`): a session is logged exactly once, when its verdict is decided,
on a reset, on the close of both directions, when it idles out (packet time), when its address
pair is reused by a new connection, or at the end of the capture. Logging settles the roles
when nothing else did (the higher port is the client), records how the connection ended,
decides (`classify`), links a resumption to its full handshake and builds the `SessionRecord`.

Memory is bounded here too, whatever the capture holds (a SYN flood, a scan, thousands of
half-sent ClientHellos): `Limits`, derived from one figure, the peak RSS allowed (200 MB by
default), caps the flows followed at once, the bytes they hold in their buffers in total, and
the decided flows remembered. When a cap is reached the engine evicts flows in `evict_order`
(those that never showed TLS first, then those without a ClientHello, then the least recently
seen) down to 7/8 of the cap, so that the sort is paid once per eighth of the cap. An evicted
flow that showed TLS is logged as an incomplete session, its `ended` and the anomaly
`flow_evicted` saying which limit; one that did not is only counted (`Evictions`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ..anomalies import Anomaly
from ..classify import Origin, classify
from ..model import EndKind, Verdict, iso_time
from ..net.ip import format_addr
from ..record import SessionRecord, build_record
from ..session import SessionBuilder, SessionFacts
from ..x509 import Anchors, cert_info

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

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

# The peak RSS allowed by default, and what the limits are derived from (see Limits.for_memory).
MEMORY_LIMIT_MB = 200
MIN_MEMORY_LIMIT_MB = 100
# Memory taken whatever the capture: the interpreter with tlsinspect and cryptography loaded
# (38 MB measured), the resumption table (MAX_RESUMABLE: 16 MB at most), the certificate caches
# (x509.cache: 4 MB of DER in each of four, with what is computed from them, and 1 MB in each
# of five caches of names: about 25 MB at most), the frames read and the records being written.
RESERVED_MB = 80
# What a followed flow costs besides its buffered bytes: its TCP, TLS and session objects
# (6.2 KB measured on CPython 3.11 for a flow with a partial ClientHello), with a margin.
FLOW_COST = 8 * 1024
# What a decided flow remembered costs: its two table entries, keyed by the raw addresses.
DECIDED_COST = 256
# Evictions go down to this fraction of the cap reached, so they are rare and done in bulk.
EVICT_TO = 7 / 8

IDLE = f"idle for more than {IDLE_TIMEOUT_NS // 10**9} s"
REUSED = "its address/port pair was reused by a new connection"
CAPTURE_ENDS = "the capture ends"
BOTH_CLOSED = "connection closed by both sides"


@dataclass(frozen=True, slots=True)
class Limits:
    """What an engine holds at most. `flows`: connections followed at once (not yet decided, or
    decided and still watched); `buffered`: bytes all of them hold, in total: waiting for the
    rest of a record, of a handshake message or of a hole in the TCP stream, and the handshake
    messages read, which their sessions may keep (certificate chains, hellos); `decided`: decided
    flows whose later packets are skipped at the cost of a lookup (past it, the oldest are
    forgotten, and a later packet of theirs starts a flow seen from the middle, as after the
    sweep of idle decided flows). `memory_mb`: the peak RSS they were derived from."""

    flows: int
    buffered: int
    decided: int
    memory_mb: int = MEMORY_LIMIT_MB

    @classmethod
    def for_memory(cls, memory_mb: int = MEMORY_LIMIT_MB) -> Limits:
        """The limits that keep the peak RSS under `memory_mb`: RESERVED_MB for the
        interpreter and the tables of fixed size, then of the rest 40% for flows (FLOW_COST
        each), 40% for their buffered bytes and 20% for decided flows (DECIDED_COST each).

        Raises:
            ValueError: `memory_mb` is below MIN_MEMORY_LIMIT_MB.
        """
        if memory_mb < MIN_MEMORY_LIMIT_MB:
            raise ValueError(
                f"a memory limit of {memory_mb} MB is too small: at least "
                f"{MIN_MEMORY_LIMIT_MB} MB is needed"
            )
        rest = (memory_mb - RESERVED_MB) << 20
        return cls(
            flows=rest * 2 // 5 // FLOW_COST,
            buffered=rest * 2 // 5,
            decided=rest // 5 // DECIDED_COST,
            memory_mb=memory_mb,
        )

    def describe(self, limit: str) -> str:
        """The words of one limit reached ("flows", "buffered" or "decided")."""
        if limit == "flows":
            return f"{self.flows:,} connections followed at once"
        if limit == "buffered":
            return f"{self.buffered / (1 << 20):.0f} MB of handshake bytes held in all"
        return f"{self.decided:,} decided connections remembered"


DEFAULT_LIMITS = Limits.for_memory()


class _Evictable(Protocol):
    last_ts: int

    @property
    def facts(self) -> SessionFacts: ...


E = TypeVar("E", bound=_Evictable)


def evict_order(flows: Iterable[E]) -> list[E]:
    """The flows in the order they are evicted: those that never showed TLS, then those
    without a ClientHello, then the least recently seen."""
    return sorted(
        flows,
        key=lambda f: (f.facts.tls_seen, f.facts.client_hello is not None, f.last_ts),
    )


def excess(n: int, cap: int) -> int:
    """How many to evict when `n` reached `cap`: down to EVICT_TO of it."""
    return max(0, n - int(cap * EVICT_TO))


def evicted(facts: SessionFacts, limits: Limits, limit: str) -> tuple[EndKind, str]:
    """Note in `facts` that its flow is evicted at `limit`: the anomaly, and how to log it."""
    why = limits.describe(limit)
    facts.anomalies.append(
        Anomaly(
            "flow_evicted",
            "capture",
            f"{why} reached (the memory limit is {limits.memory_mb} MB): the rest of the "
            "connection is not read",
        )
    )
    return EndKind.EVICTED, f"evicted from memory ({why} reached)"


@dataclass(slots=True)
class Evictions:
    """Flows evicted, by the limit reached; `sessions`: those logged (they showed TLS);
    `forgotten`: decided flows forgotten before their time."""

    by_limit: dict[str, int] = field(default_factory=dict)
    sessions: int = 0
    forgotten: int = 0

    def add(self, limit: str, logged: bool) -> None:
        self.by_limit[limit] = self.by_limit.get(limit, 0) + 1
        self.sessions += logged

    def problems(self, limits: Limits) -> list[str]:
        """The report's sentences on them (none when nothing was evicted)."""
        out = []
        total = sum(self.by_limit.values())
        if total:
            where = ", ".join(
                f"{n:,} at {limits.describe(k)}" for k, n in sorted(self.by_limit.items())
            )
            others = ", the others were not TLS" if self.sessions < total else ""
            out.append(
                f"connections evicted to keep memory under {limits.memory_mb} MB: {total:,} "
                f"({where}); {self.sessions:,} of them showed TLS and are reported as "
                f"incomplete sessions (anomaly flow_evicted){others} (--memory-limit raises "
                "the limits)"
            )
        if self.forgotten:
            out.append(
                f"decided connections forgotten early to keep memory under "
                f"{limits.memory_mb} MB: {self.forgotten:,} (past {limits.describe('decided')}; "
                "a later packet of theirs starts a connection seen from the middle)"
            )
        return out


def closing(
    facts: SessionFacts, fin: list[bool], side: int, flags: int, ts: int
) -> tuple[EndKind, str, str | None] | None:
    """A packet with FIN or RST from `side`: note the close in the facts; return how to log the
    session when this ends the connection (a reset, or the second FIN): the end kind, the words
    and who ended it; else None."""
    role = facts.role(side)
    if flags & RST:
        return EndKind.RST, f"connection reset by the {role}", role
    if flags & FIN:
        fin[side] = True
        if facts.end_kind is None:
            facts.end_kind = EndKind.FIN
            facts.closed_ts = ts
            facts.closed_after = facts.last_message.get(facts.role(1 - side), "")
            facts.ended = f"connection closed by the {role}"
            facts.closed_by = role
        if fin[1 - side]:
            return EndKind.FIN, BOTH_CLOSED, None
    return None


class SweepClock:
    """When the idle sweeps run: every SWEEP_EVERY packets, or every SWEEP_EVERY_NS of packet
    time (a live capture may see few packets); the first packet starts the clock."""

    __slots__ = ("next_packet", "next_ts")

    def __init__(self) -> None:
        self.next_packet = SWEEP_EVERY
        self.next_ts = 0

    def due(self, n: int, ts: int) -> bool:
        """Packet number `n` came at `ts`: is a sweep due (and then the next one set)?"""
        if n >= self.next_packet or ts >= self.next_ts:
            self.next_packet = n + SWEEP_EVERY
            self.next_ts = ts + SWEEP_EVERY_NS
            return True
        return False


class _Timed(Protocol):
    last_ts: int


F = TypeVar("F", bound=_Timed)


def idle(flows: Iterable[F], now: int) -> list[F]:
    """The flows silent for longer than IDLE_TIMEOUT_NS at packet time `now`: to be logged."""
    return [f for f in flows if now - f.last_ts > IDLE_TIMEOUT_NS]


def _ticket_key(ticket: bytes) -> bytes:
    """A session ticket as a key of the resumption table: its 16-byte BLAKE2b digest, so that
    the table's memory does not depend on ticket sizes (often 200+ bytes in TLS 1.3)."""
    return b"tk:" + hashlib.blake2b(ticket, digest_size=16).digest()


class Logbook:
    """Where an engine logs its sessions: numbered in order, decided, linked to the full
    handshake they resume, made records, and queued in `ready` for the engine to yield."""

    def __init__(self, anchors: Anchors | None = None) -> None:
        self.anchors = anchors  # a CA bundle: the `ca_bundle` check of every chain
        self.ready: list[SessionRecord] = []
        self.sessions = 0
        # the capture file a session starting at a time (ns) comes from (the engine's source)
        self.file_of: Callable[[int], str] | None = None
        self._resumable: OrderedDict[bytes, Origin] = OrderedDict()

    def log(
        self,
        builder: SessionBuilder,
        end_kind: EndKind | None,
        ended: str,
        last_ts: int,
        ends: tuple[tuple[str, int], tuple[str, int]] | None = None,
        starttls: str | None = None,
        by: str | None = None,
    ) -> SessionRecord | None:
        """Log a connection whose last packet came at `last_ts`; None when it was not TLS.

        `end_kind`/`ended`: how it ended when that is why it is logged (None: its verdict was
        decided); `by`: who ended it that way (a reset's sender). `ends`: its endpoints as text
        (side 0, side 1), else made from the facts.
        """
        facts = builder.facts
        if facts.client_side is None:  # no SYN, no hello: the ephemeral (higher) port is the client
            builder.set_client(0 if facts.ports[0] >= facts.ports[1] else 1, "port")
        if not facts.tls_seen:
            return None
        if end_kind is not None and (facts.end_kind is None or end_kind == EndKind.RST):
            facts.end_kind, facts.ended, facts.closed_by = end_kind, ended, by
            if end_kind == EndKind.RST and facts.closed_ts is None:
                facts.closed_ts = last_ts
        facts.end_ts = max(facts.end_ts, last_ts)
        origin = self.origin_of(facts)
        c = facts.client_side or 0
        if ends is None:
            ends = (
                (format_addr(facts.addrs[0]), facts.ports[0]),
                (format_addr(facts.addrs[1]), facts.ports[1]),
            )
        self.sessions += 1
        record = build_record(
            self.sessions,
            facts,
            classify(facts, origin),
            ends[c],
            ends[1 - c],
            origin,
            anchors=self.anchors,
            starttls=starttls,
            file=None if self.file_of is None else self.file_of(facts.start_ts),
        )
        self.remember(record)
        self.ready.append(record)
        return record

    def origin_of(self, f: SessionFacts) -> Origin | None:
        """The full handshake a resumption resumes, if the capture showed it (by ticket or ID)."""
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
        """Keep a completed full handshake's session ID and tickets, for its resumptions."""
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
