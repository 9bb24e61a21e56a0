"""The tshark engine: Wireshark's dissectors in place of tlsinspect's own, same sessions out.

`capture.tshark` reads what tshark dissected (TCP reassembly, TLS records, handshake fields,
decryption with a key log); this module turns each record into the events tlsinspect's own TLS
layer emits (`MessageSeen` with the same `tls.messages` values, built from tshark's fields instead
of parsed bytes) and feeds them to the same `SessionBuilder`, `classify` and `session_dict`. So
the two engines share every decision, and only the reading of the wire differs: which is what
`tlsinspect compare` checks.

Flows follow the pipeline's rules (a session is logged when its verdict is decided, on a reset,
on the close of both directions, after 300 s idle in packet time, or at the end of the capture;
a 4-tuple reused by a new connection logs the old one), keyed by tshark's `tcp.stream`.

What tshark does not tell, or tells differently, is said where it is filled:
- `starttls` comes from the protocol tshark dissected before TLS on the connection;
- lost bytes are tshark's "previous segment not captured" not filled later by a retransmission
  or an out-of-order segment;
- hello extensions keep their type; their data only where tshark shows it raw (session ticket).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import tempfile
from argparse import Namespace
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ..capture import open_capture
from ..capture.tshark import (
    PREAMBLE_BYTES,
    Fields,
    TsharkError,
    TsharkMissing,
    TsharkPacket,
    TsharkRecord,
    find_tshark,
    read_packets,
    tls_server_ports,
)
from ..classify import classify
from ..errors import TlsInspectError
from ..pipeline import (
    DECIDED_SWEEP_NS,
    IDLE_TIMEOUT_NS,
    SWEEP_EVERY_NS,
    Analyzer,
    SessionRecord,
)
from ..report.export import CertExport, write_and_tell
from ..report.schema import session_dict
from ..report.stream import STREAMED_FORMATS, write_streamed
from ..report.table import count, render
from ..session import SessionBuilder, SessionFacts
from ..tls import messages as m
from ..tls import registry as reg
from ..tls.connection import MessageSeen, StreamLost, TlsEvent, TlsStarted
from ..x509 import Anchors

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
WATCH_RECORDS = 256  # as tls.connection: records decrypted after the handshake, for a late request
SWEEP_EVERY = 1 << 16

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


def _server_hello(f: Fields) -> m.ServerHello:
    exts = _extensions(f)
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
    return m.OtherHandshake(t, length)


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


def _addr_bytes(text: str) -> bytes:
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return text.encode()


class TsharkAnalyzer:
    """Feeds `TsharkPacket`s through the shared session logic; `run()` yields SessionRecords
    as they are logged, like `pipeline.Analyzer.run`."""

    def __init__(self, decrypting: bool = False) -> None:
        self.decrypting = decrypting  # a key log was given to tshark
        self.flows: dict[int, _Flow] = {}
        self.by_tuple: dict[tuple[str, int, str, int], _Flow] = {}
        # tcp.stream of logged connections -> time of their last packet: their later packets are
        # skipped; forgotten once idle as long as the built-in engine forgets decided flows
        self.done: dict[int, int] = {}
        self.connections = 0  # TCP connections logged
        self.starttls: dict[int, str] = {}  # session index -> protocol, for the output dicts
        self.lost_streams: dict[int, int] = {}  # session index -> tshark's tcp.stream
        self.packets = 0
        self._ready: list[SessionRecord] = []
        # the sessions a resumption may resume: kept by a pipeline.Analyzer that reads no
        # packet, so both engines link resumptions by the same rules
        self._resumptions = Analyzer()
        self._index = 0

    def run(self, packets: Iterable[TsharkPacket]) -> Iterator[SessionRecord]:
        next_sweep = SWEEP_EVERY
        sweep_at = 0
        ts = 0
        for pkt in packets:
            self.packets += 1
            ts = pkt.ts
            self._packet(pkt)
            if self.packets >= next_sweep or ts >= sweep_at:
                next_sweep = self.packets + SWEEP_EVERY
                sweep_at = ts + SWEEP_EVERY_NS
                self._sweep(ts)
            if self._ready:
                yield from self._ready
                self._ready.clear()
        self.finish()
        yield from self._ready
        self._ready.clear()

    def finish(self) -> None:
        for flow in list(self.flows.values()):
            self._log(flow, "eof", "the capture ends")

    def _sweep(self, now: int) -> None:
        for stream, last in list(self.done.items()):
            if now - last > DECIDED_SWEEP_NS:
                del self.done[stream]
        for flow in list(self.flows.values()):
            if now - flow.last_ts > IDLE_TIMEOUT_NS:
                self._log(flow, "idle", f"idle for more than {IDLE_TIMEOUT_NS // 10**9} s")

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
                self._log(old, "reuse", "its address/port pair was reused by a new connection")
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
        if flags & RST:
            self._log(flow, "rst", f"connection reset by the {builder.facts.role(side)}")
        elif flags & FIN:
            flow.fin[side] = True
            facts = builder.facts
            if facts.end_kind is None:
                facts.end_kind = "fin"
                facts.closed_ts = pkt.ts
                facts.closed_after = facts.last_message.get(facts.role(1 - side), "")
                facts.ended = f"connection closed by the {facts.role(side)}"
            if flow.fin[1 - side]:
                self._log(flow, "fin", "connection closed by both sides")

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
                later = (ch is not None and ch.post_handshake_auth) if f.tls13 else True
                flow.watch = WATCH_RECORDS if later and not flow.requested else 0

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

    def _log(self, flow: _Flow, end_kind: str | None = None, ended: str = "") -> None:
        self.flows.pop(flow.stream, None)
        self.done[flow.stream] = flow.last_ts
        self.connections += 1
        key = (*flow.ends[0], *flow.ends[1])
        if self.by_tuple.get(key) is flow:
            del self.by_tuple[key]
        builder = flow.builder
        facts = builder.facts
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
        if facts.client_side is None:
            builder.set_client(0 if facts.ports[0] >= facts.ports[1] else 1, "port")
        if not facts.tls_seen:
            return
        if end_kind is not None and (facts.end_kind is None or end_kind == "rst"):
            facts.end_kind, facts.ended = end_kind, ended
            if end_kind == "rst" and facts.closed_ts is None:
                facts.closed_ts = flow.last_ts
        facts.end_ts = max(facts.end_ts, flow.last_ts)
        origin = self._resumptions.origin_of(facts)
        decision = classify(facts, origin)
        c = facts.client_side or 0
        client = flow.ends[c]
        server = flow.ends[1 - c]
        self._index += 1
        record = SessionRecord(self._index, facts, decision, client, server, origin)
        named = [STARTTLS_NAMES[p] for p in flow.before_tls if p in STARTTLS_NAMES]
        if named:  # else the preamble bytes tell, as for the built-in engine
            self.starttls[self._index] = named[0]
        if any(h is not None for h in flow.hole):
            self.lost_streams[self._index] = flow.stream
        self._resumptions.remember(record)
        self._ready.append(record)

    def session(self, r: SessionRecord, anchors: Anchors | None = None) -> dict[str, object]:
        """The JSON object of a record, with what only tshark tells filled in."""
        d = session_dict(r, anchors)
        if r.index in self.starttls:
            d["starttls"] = self.starttls[r.index]
        return d


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
    """One capture read with tshark: iterate `records()`; `analyzer.session(r)` for dicts."""

    def __init__(self, path: str, keylogs: list[str] | None = None) -> None:
        self.path = path
        self.keylogs = keylogs
        self.analyzer = TsharkAnalyzer(decrypting=bool(keylogs))
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
        finally:
            if keylog is not None and self.keylogs and keylog not in self.keylogs:
                os.unlink(keylog)

    def sessions(self, anchors: Anchors | None = None) -> list[dict[str, object]]:
        """Every session's JSON object, in start-time order (as the default command's json)."""
        out = [self.analyzer.session(r, anchors) for r in self.records()]
        out.sort(key=lambda s: (str(s["start_time"]), int(s["index"])))  # type: ignore[call-overload]
        return out


# -- the default command with --engine tshark -------------------------------------------------


def analyze_main(args: Namespace, anchors: Anchors | None, exporter: CertExport | None) -> int:
    """`tlsinspect --engine tshark CAPTURE`: the default command's report, from tshark.

    Same formats, fields, exit codes and `--output`/`--export-certs`/`--ca-bundle` handling as
    the built-in engine (cli.analyze_main parses the arguments and loads the CA bundle).
    """
    name = "tlsinspect"
    try:  # tshark reads many formats, and some text files: accept what the built-in engine does
        open_capture(args.capture).close()
    except TlsInspectError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{name}: {args.capture}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for k in args.keylog or ():
        if not os.path.isfile(k):
            print(f"{name}: key log {k}: No such file", file=sys.stderr)
            return 2
    try:
        find_tshark()
    except TsharkMissing as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    out: TextIO = sys.stdout
    if args.output:
        try:
            out = open(args.output, "w", encoding="utf-8", newline="")  # closed below
        except OSError as exc:
            print(f"{name}: {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    run = TsharkRun(args.capture, args.keylog)
    records: Iterable[SessionRecord] = run.records()
    if exporter is not None:
        records = exporter.tap(records)
    try:
        if args.format in STREAMED_FORMATS:
            write_streamed(args.format, records, out, lambda r: run.analyzer.session(r, anchors))
        else:
            sessions = [run.analyzer.session(r, anchors) for r in records]
            sessions.sort(key=lambda s: (str(s["start_time"]), int(s["index"])))  # type: ignore[call-overload]
            if args.format == "json":
                json.dump(sessions, out, indent=2)
                out.write("\n")
            else:
                header = (
                    f"{args.capture}: tshark engine, {count(run.analyzer.packets, 'TCP packet')}, "
                    f"{count(run.analyzer.connections, 'TCP connection')}, "
                    f"{count(len(sessions), 'TLS session')}"
                )
                out.write(render(sessions, header, run.problems))
        out.flush()
    except TsharkError as exc:
        print(f"{name}: {args.capture}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        if out is not sys.stdout:
            out.close()
    for p in run.problems if args.format != "table" else ():
        print(f"{name}: {args.capture}: {p}", file=sys.stderr)  # as the built-in engine does
    if exporter is not None:
        return write_and_tell(exporter, args.export_certs, name)
    return 0
