"""The tshark engine: Wireshark's dissectors in place of tlsinspect's own, same sessions out.

`capture.tshark` reads what tshark dissected (TCP reassembly, TLS records, handshake fields,
decryption with a key log); this module turns each record into the events tlsinspect's own TLS
layer emits (`MessageSeen` with the same `tls.messages` values, built from tshark's fields
instead of parsed bytes), feeds them to the same `SessionBuilder` and logs the sessions through
`engines.lifecycle`. So the two engines share every decision, and only the reading of the wire
differs: which is what `tlsinspect compare` checks.

Flows follow the rules of `engines.lifecycle` (a session is logged when its verdict is decided,
on a reset, on the close of both directions, after 300 s idle in packet time, or at the end of
the capture; a 4-tuple reused by a new connection logs the old one), keyed by tshark's
`tcp.stream`.

What tshark does not tell, or tells differently, is said where it is filled:
- `starttls` comes from the protocol tshark dissected before TLS on the connection;
- lost bytes are tshark's "previous segment not captured" not filled later by a retransmission
  or an out-of-order segment;
- hello extensions keep their type; their data only where tshark shows it raw (session ticket).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..capture.tshark import (
    PREAMBLE_BYTES,
    Fields,
    TsharkPacket,
    TsharkRecord,
    read_packets,
    tls_server_ports,
)
from ..model import EndKind
from ..record import SessionRecord
from ..session import SessionBuilder, SessionFacts
from ..tls import messages as m
from ..tls import registry as reg
from ..tls.connection import (
    WATCH_RECORDS,
    MessageSeen,
    StreamLost,
    TlsEvent,
    TlsStarted,
    records_to_watch,
)
from ..x509 import Anchors
from . import lifecycle
from .lifecycle import ACK, FIN, RST, SYN

# tshark's name of the protocol carried before TLS -> the `starttls` value of the JSON output
STARTTLS_NAMES = {
    "smtp": "smtp",
    "imap": "imap",
    "pop": "pop3",
    "ftp": "ftp",
    "xmpp": "xmpp",
    "ldap": "ldap",
    "pgsql": "postgresql",
    "mysql": "mysql",
}
_NOT_APPLICATION = frozenset({"tls", "data", "tcp.segments", "tcp", "ssl"})


# -- tshark fields -> tls.messages values ----------------------------------------------------


def _first(f: Fields, name: str, default: str = "") -> str:
    values = f.get(name)
    return values[0] if values else default


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return default


def _bytes(f: Fields, name: str) -> bytes:
    """A bytes field, from its raw hex when tshark gave it (else its colon-separated text)."""
    raw = f.get(name + "_raw")
    text = raw[0] if raw else _first(f, name)
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        return b""


def _extensions(f: Fields) -> tuple[tuple[int, bytes], ...]:
    out = []
    for item in f.get("extensions", ()):
        t, _, data = item.partition(":")
        try:
            out.append((int(t), bytes.fromhex(data)))
        except ValueError:
            continue
    return tuple(out)


def _versions(f: Fields) -> tuple[int, ...]:
    return tuple(_int(v) for v in f.get("tls.handshake.extensions.supported_version", ()))


def _client_hello(f: Fields, sslv2: bool = False) -> m.ClientHello:
    exts = _extensions(f)
    types = {t for t, _ in exts}
    ticket = next((d for t, d in exts if t == 35), b"")
    random = _bytes(f, "tls.handshake.random")
    if sslv2 and not random:
        random = _bytes(f, "tls.handshake.challenge").rjust(32, b"\x00")[-32:]
    return m.ClientHello(
        legacy_version=_int(_first(f, "tls.handshake.version", "0")),
        random=random,
        session_id=_bytes(f, "tls.handshake.session_id"),
        cipher_suites=tuple(_int(c) for c in f.get("tls.handshake.ciphersuite", ())),
        compression_methods=bytes(_int(c) & 0xFF for c in f.get("tls.handshake.comp_method", ())),
        extensions=exts,
        server_name=_first(f, "tls.handshake.extensions_server_name") or None,
        alpn=tuple(f.get("tls.handshake.extensions_alpn_str", ())),
        supported_versions=_versions(f),
        session_ticket=ticket or None,
        psk_offered=41 in types,
        psk_identities=tuple(
            bytes.fromhex(h)
            for h in f.get("tls.handshake.extensions.psk.identity.identity_raw", ())
        ),
        early_data=42 in types,
        post_handshake_auth=49 in types,
        ech=0xFE0D in types,
        sslv2=sslv2,
    )


def _server_extensions(f: Fields) -> tuple[tuple[int, bytes], ...]:
    """The ServerHello's extensions, with the bodies tshark dissects rather than keeps raw
    rebuilt from its fields: the key share group (RFC 8446 4.2.8: an entry, or a
    HelloRetryRequest's selected group) and the ALPN protocol (RFC 7301 3.1)."""
    out = []
    for t, data in _extensions(f):
        if t == 51 and not data:
            group = _first(f, "tls.handshake.extensions_key_share_group") or _first(
                f, "tls.handshake.extensions_key_share_selected_group"
            )
            data = _int(group).to_bytes(2, "big") if group else b""
        elif t == 16 and not data:
            names = [n.encode() for n in f.get("tls.handshake.extensions_alpn_str", ())]
            entries = b"".join(len(n).to_bytes(1, "big") + n for n in names)
            data = len(entries).to_bytes(2, "big") + entries if names else b""
        out.append((t, data))
    return tuple(out)


def _server_hello(f: Fields) -> m.ServerHello:
    exts = _server_extensions(f)
    legacy = _int(_first(f, "tls.handshake.version", "0"))
    versions = _versions(f)
    random = _bytes(f, "tls.handshake.random")
    return m.ServerHello(
        legacy_version=legacy,
        random=random,
        session_id=_bytes(f, "tls.handshake.session_id"),
        cipher_suite=_int(_first(f, "tls.handshake.ciphersuite", "0")),
        compression_method=_int(_first(f, "tls.handshake.comp_method", "0")),
        extensions=exts,
        selected_version=versions[0] if versions else legacy,
        retry_request=random == m.HRR_RANDOM,
        psk_accepted=any(t == 41 for t, _ in exts),
    )


def _certificates(f: Fields) -> tuple[bytes, ...]:
    raw = f.get("tls.handshake.certificate_raw")
    texts = raw if raw else f.get("tls.handshake.certificate", [])
    out = []
    for text in texts:
        try:
            out.append(bytes.fromhex(text.replace(":", "")))
        except ValueError:
            out.append(b"")
    return tuple(out)


def _distinguished_names(f: Fields) -> tuple[bytes, ...]:
    """The DER names of a CertificateRequest: tshark's `dnames` bytes are the vector's content,
    each name prefixed by its 2-byte length (RFC 5246 7.4.4, RFC 8446 4.2.4)."""
    out = []
    for text in f.get("tls.handshake.dnames_raw", ()):
        data = bytes.fromhex(text)
        i = 0
        while i + 2 <= len(data):
            n = int.from_bytes(data[i : i + 2], "big")
            out.append(data[i + 2 : i + 2 + n])
            i += 2 + n
    return tuple(out)


def _message(f: Fields, sslv2: bool = False) -> object:
    t = _int(_first(f, "tls.handshake.type", "-1"), -1)
    length = _int(_first(f, "tls.handshake.length", "0"))
    if t == reg.CLIENT_HELLO or sslv2:
        return _client_hello(f, sslv2)
    if t == reg.SERVER_HELLO:
        return _server_hello(f)
    if t == reg.CERTIFICATE:
        return m.Certificate(
            _certificates(f), _bytes(f, "tls.handshake.certificate_request_context")
        )
    if t == reg.CERTIFICATE_REQUEST:
        return m.CertificateRequest(
            cert_types=tuple(_int(c) for c in f.get("tls.handshake.cert_type", ())),
            sig_algs=tuple(_int(a) for a in f.get("tls.handshake.sig_hash_alg", ())),
            ca_names=_distinguished_names(f),
            context=_bytes(f, "tls.handshake.certificate_request_context"),
        )
    if t == reg.CERTIFICATE_VERIFY:
        scheme = _first(f, "tls.handshake.sig_hash_alg")
        sig_len = _first(f, "tls.handshake.client_cert_vrfy.sig_len") or _first(
            f, "tls.handshake.sig_len", "0"
        )
        return m.CertificateVerify(_int(scheme) if scheme else None, _int(sig_len))
    if t == reg.NEW_SESSION_TICKET:
        return m.NewSessionTicket(
            _int(_first(f, "tls.handshake.session_ticket_lifetime_hint", "0")),
            _bytes(f, "tls.handshake.session_ticket"),
        )
    if t == reg.FINISHED:
        return m.Finished(length)
    curve = _first(f, "tls.handshake.server_named_curve")
    return m.OtherHandshake(t, length, _int(curve) if curve else None)


# -- flows ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Flow:
    stream: int
    ends: tuple[tuple[str, int], tuple[str, int]]  # (side 0, side 1) endpoints
    builder: SessionBuilder
    last_ts: int
    fin: list[bool] = field(default_factory=lambda: [False, False])
    started: list[bool] = field(default_factory=lambda: [False, False])
    encrypted: list[bool] = field(default_factory=lambda: [False, False])  # after a TLS <= 1.2 CCS
    hole: list[int | None] = field(default_factory=lambda: [None, None])  # ts of an unfilled hole
    before_tls: list[str] = field(default_factory=list)  # protocols seen before TLS started
    preamble: list[bytes] = field(default_factory=lambda: [b"", b""])  # bytes before TLS
    null_cipher: bool = False
    watch: int = 0  # decrypted records left to follow after the handshake
    requested: bool = False  # a decrypted CertificateRequest since the last ClientHello
    finished: set[str] = field(default_factory=set)  # roles whose decrypted Finished was read

    @property
    def facts(self) -> SessionFacts:
        return self.builder.facts


def _addr_bytes(text: str) -> bytes:
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return text.encode()


class TsharkAnalyzer:
    """Feeds `TsharkPacket`s through the shared session logic; `run()` yields SessionRecords
    as they are logged, like `engines.builtin.Analyzer.run`."""

    def __init__(
        self,
        decrypting: bool = False,
        anchors: Anchors | None = None,
        limits: lifecycle.Limits = lifecycle.DEFAULT_LIMITS,
    ) -> None:
        self.decrypting = decrypting  # a key log was given to tshark
        # The limits of flows followed and decided flows remembered; tshark buffers the bytes
        # itself (its memory is its own), so `limits.buffered` does not apply here.
        self.limits = limits
        self.evicted = lifecycle.Evictions()
        self.flows: dict[int, _Flow] = {}
        self.by_tuple: dict[tuple[str, int, str, int], _Flow] = {}
        # tcp.stream of logged connections -> time of their last packet: their later packets are
        # skipped; forgotten once idle as long as the built-in engine forgets decided flows
        self.done: dict[int, int] = {}
        self.connections = 0  # TCP connections logged
        self.lost_streams: dict[int, int] = {}  # session index -> tshark's tcp.stream
        self.packets = 0
        self.logbook = lifecycle.Logbook(anchors)
        self._ready = self.logbook.ready

    def run(self, packets: Iterable[TsharkPacket]) -> Iterator[SessionRecord]:
        clock = lifecycle.SweepClock()
        for pkt in packets:
            self.packets += 1
            self._packet(pkt)
            if clock.due(self.packets, pkt.ts):
                self._sweep(pkt.ts)
            if self._ready:
                yield from self._ready
                self._ready.clear()
        self.finish()
        yield from self._ready
        self._ready.clear()

    def finish(self) -> None:
        for flow in list(self.flows.values()):
            self._log(flow, EndKind.EOF, lifecycle.CAPTURE_ENDS)

    def _sweep(self, now: int) -> None:
        for stream, last in list(self.done.items()):
            if now - last > lifecycle.DECIDED_SWEEP_NS:
                del self.done[stream]
        for flow in lifecycle.idle(self.flows.values(), now):
            self._log(flow, EndKind.IDLE, lifecycle.IDLE)

    def _packet(self, pkt: TsharkPacket) -> None:
        if pkt.stream in self.done:
            if not pkt.flags & SYN or pkt.flags & ACK:
                self.done[pkt.stream] = pkt.ts
                return
            # a new connection that tshark kept in the old one's tcp.stream (a 4-tuple reused
            # while the old one was not closed both ways): a new session, as the built-in
            # engine starts one on a SYN for a decided flow
            del self.done[pkt.stream]
        flags = pkt.flags
        flow = self.flows.get(pkt.stream)
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        if flow is None:
            if not pkt.payload_len and not flags & SYN:
                return
            old = self.by_tuple.get(key) or self.by_tuple.get(
                (pkt.dst, pkt.dport, pkt.src, pkt.sport)
            )
            if old is not None and old.stream in self.flows:
                self._log(old, EndKind.REUSE, lifecycle.REUSED)
            self._limit()
            facts = SessionFacts(
                start_ts=pkt.ts,
                addrs=(_addr_bytes(pkt.src), _addr_bytes(pkt.dst)),
                ports=(pkt.sport, pkt.dport),
            )
            flow = _Flow(
                pkt.stream,
                ((pkt.src, pkt.sport), (pkt.dst, pkt.dport)),
                SessionBuilder(facts),
                pkt.ts,
            )
            self.flows[pkt.stream] = flow
            self.by_tuple[key] = flow
        side = 0 if (pkt.src, pkt.sport) == flow.ends[0] else 1
        flow.last_ts = pkt.ts
        builder = flow.builder
        if flags & SYN:
            builder.set_client(side if not flags & ACK else 1 - side, "syn")
        if pkt.lost_before and flow.hole[side] is None:
            flow.hole[side] = pkt.ts
        elif pkt.filled:
            flow.hole[side] = None
        if pkt.records:
            self._records(flow, side, pkt)
            if builder.decided and not self._watching(flow):
                self._log(flow)
                return
        elif pkt.payload_len and not flow.started[side]:
            app = _application(pkt.protocols)
            if app and app not in flow.before_tls:
                flow.before_tls.append(app)
            if len(flow.preamble[side]) < PREAMBLE_BYTES:
                flow.preamble[side] = (flow.preamble[side] + pkt.payload)[:PREAMBLE_BYTES]
        if flags & (FIN | RST):
            closed = lifecycle.closing(builder.facts, flow.fin, side, flags, pkt.ts)
            if closed is not None:
                self._log(flow, *closed)

    def _watching(self, flow: _Flow) -> bool:
        """As tls.connection: after a decrypted handshake, follow the connection a while for a
        renegotiation or a post-handshake CertificateRequest."""
        return self.decrypting and flow.watch > 0

    def _follow(self, flow: _Flow, role: str, msg: object) -> None:
        """Track a decrypted handshake message as tls.connection does to set its watch."""
        if isinstance(msg, m.ClientHello):  # a renegotiation: follow it to its end
            flow.watch = WATCH_RECORDS
            flow.requested = False
            flow.finished.clear()
        elif isinstance(msg, m.CertificateRequest):
            flow.requested = True
        elif isinstance(msg, m.Finished):
            flow.finished.add(role)
            if len(flow.finished) == 2:
                flow.finished.clear()
                f = flow.builder.facts
                ch = f.client_hello
                pha = ch is not None and ch.post_handshake_auth
                flow.watch = records_to_watch(f.tls13, pha, flow.requested)

    def _records(self, flow: _Flow, side: int, pkt: TsharkPacket) -> None:
        """Apply the events of a packet's records, one record at a time (a record's meaning
        depends on those before it: a ChangeCipherSpec after the ServerHello)."""
        ts = pkt.ts
        builder = flow.builder
        if not flow.started[side]:
            flow.started[side] = True
            pre = flow.preamble[side]
            builder.apply(TlsStarted(side, ts, pre, len(pre), False))
        for rec in pkt.records:
            events = self._record(flow, side, ts, rec, builder.facts)
            for ev in events:
                if isinstance(ev, MessageSeen) and ev.decrypted:
                    self._follow(flow, builder.facts.role(side), ev.msg)
                builder.apply(ev)
            if flow.watch > 0 and events and getattr(events[0], "decrypted", False):
                flow.watch -= 1

    def _record(
        self, flow: _Flow, side: int, ts: int, rec: TsharkRecord, f: SessionFacts
    ) -> list[TlsEvent]:
        # a record tshark read after this side's TLS <= 1.2 ChangeCipherSpec was decrypted
        # (or sent with a NULL cipher, which the builder treats as plaintext)
        decrypted = rec.decrypted or (flow.encrypted[side] and not flow.null_cipher)
        ct = rec.inner_type if rec.inner_type is not None else rec.content_type
        if rec.sslv2:
            return [MessageSeen(side, ts, _message(fl, sslv2=True)) for fl in rec.messages[:1]]
        if rec.encrypted:
            if (
                ct == reg.HANDSHAKE
                and not rec.decrypted
                and not flow.encrypted[side]
                and (f.client_hello is not None or f.server_hello is not None)
            ):
                return []  # a fragment of a message that a later record completes
            return [MessageSeen(side, ts, m.EncryptedRecord(ct, rec.length), rec.decrypted)]
        if ct == reg.HANDSHAKE:
            out: list[TlsEvent] = []
            for fl in rec.messages:
                msg = _message(fl)
                if isinstance(msg, m.ServerHello) and not msg.retry_request:
                    flow.null_cipher = "_WITH_NULL_" in reg.name_of("cipher", msg.cipher_suite)
                out.append(MessageSeen(side, ts, msg, decrypted))
            return out
        if ct == reg.CHANGE_CIPHER_SPEC:
            if f.server_hello is not None and not f.tls13:
                flow.encrypted[side] = True
            return [MessageSeen(side, ts, m.ChangeCipherSpec(), rec.decrypted)]
        if ct == reg.ALERT and rec.alert is not None:
            return [MessageSeen(side, ts, m.Alert(*rec.alert), decrypted)]
        return [MessageSeen(side, ts, m.EncryptedRecord(ct, rec.length), rec.decrypted)]

    def _limit(self) -> None:
        """Before a new flow: evict flows, and forget decided ones, past the limits (down to
        7/8 of them), as the built-in engine does."""
        limits = self.limits
        if len(self.flows) >= limits.flows:
            n = lifecycle.excess(len(self.flows), limits.flows)
            for flow in lifecycle.evict_order(self.flows.values())[:n]:
                logged = self._log(flow, *lifecycle.evicted(flow.facts, limits, "flows"))
                self.evicted.add("flows", logged)
        if len(self.done) > limits.decided:
            n = lifecycle.excess(len(self.done), limits.decided)
            for stream in list(itertools.islice(self.done, n)):
                del self.done[stream]
            self.evicted.forgotten += n

    def _log(
        self, flow: _Flow, end_kind: EndKind | None = None, ended: str = "", by: str | None = None
    ) -> bool:
        """Log its session (True if it showed TLS) and forget the flow."""
        self.flows.pop(flow.stream, None)
        self.done[flow.stream] = flow.last_ts
        self.connections += 1
        key = (*flow.ends[0], *flow.ends[1])
        if self.by_tuple.get(key) is flow:
            del self.by_tuple[key]
        builder = flow.builder
        if end_kind is not None and not builder.decided:
            for side in (0, 1):
                if flow.hole[side] is not None and flow.started[side]:
                    builder.apply(
                        StreamLost(
                            side,
                            flow.hole[side] or flow.last_ts,
                            "tshark: a previous segment was not captured",
                        )
                    )
        named = [STARTTLS_NAMES[p] for p in flow.before_tls if p in STARTTLS_NAMES]
        # else the preamble bytes tell, as for the built-in engine
        record = self.logbook.log(
            builder, end_kind, ended, flow.last_ts, flow.ends, named[0] if named else None, by
        )
        if record is not None and any(h is not None for h in flow.hole):
            self.lost_streams[record.index] = flow.stream
        return record is not None


def _application(protocols: str) -> str | None:
    """The protocol tshark dissected above TCP in a packet, if any."""
    names = protocols.split(":")
    if "tcp" not in names:
        return None
    after = [n for n in names[names.index("tcp") + 1 :] if n not in _NOT_APPLICATION]
    return after[0] if after else None


# -- running it on a file ---------------------------------------------------------------------


def merged_keylog(paths: list[str] | None) -> str | None:
    """One key log file for tshark (which takes one): the path given, or a temporary file
    holding all of them (the caller removes it)."""
    if not paths:
        return None
    if len(paths) == 1:
        return paths[0]
    fd, tmp = tempfile.mkstemp(prefix="tlsinspect-keys-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        for p in paths:
            with open(p, "rb") as f:
                out.write(f.read().rstrip(b"\n") + b"\n")
    return tmp


class TsharkRun:
    """One capture read with tshark: iterate `records()`, then `problems` says what tshark could
    not read and `decode_as` the ports it was told to read as TLS."""

    def __init__(
        self,
        path: str,
        keylogs: list[str] | None = None,
        anchors: Anchors | None = None,
        limits: lifecycle.Limits = lifecycle.DEFAULT_LIMITS,
    ) -> None:
        self.path = path
        self.keylogs = keylogs
        self.analyzer = TsharkAnalyzer(decrypting=bool(keylogs), anchors=anchors, limits=limits)
        self.analyzer.logbook.file_of = lambda _ts: path
        self.decode_as: list[int] = []
        self.problems: list[str] = []  # what tshark could not read (a capture cut short)

    def records(self) -> Iterator[SessionRecord]:
        keylog = merged_keylog(self.keylogs)
        try:
            self.decode_as = tls_server_ports(self.path)
            packets = read_packets(
                self.path, keylog=keylog, decode_as=self.decode_as, problems=self.problems
            )
            yield from self.analyzer.run(packets)
            self.problems.extend(self.analyzer.evicted.problems(self.analyzer.limits))
        finally:
            if keylog is not None and self.keylogs and keylog not in self.keylogs:
                os.unlink(keylog)
