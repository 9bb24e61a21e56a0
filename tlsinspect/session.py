"""Folds one connection's TLS events into the facts of a session (Zeek's Info record).

The builder only records what was seen, per direction; which direction is the client is settled
by the TCP SYN when the capture has it, else by who sent the ClientHello. `decided` tells the
pipeline that nothing later in the connection can change the verdict, so the flow's payload can
be forgotten. The verdict itself is made by `classify`, from these facts, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .anomalies import Anomaly
from .infer import Inference, View, infer_handshake
from .model import CLIENT, SERVER, EndKind
from .tls import messages as m
from .tls import registry as reg
from .tls.connection import (
    KeysMissing,
    MessageMalformed,
    MessageNotRead,
    MessageSeen,
    StreamLost,
    TlsEvent,
    TlsStarted,
)

MAX_HISTORY = 64  # messages kept per session for the report
MAX_KEY_PROBLEMS = 4  # key problems noted per session (the first ones)
MAX_ENCRYPTED = 64  # encrypted records after the ServerHello whose sizes are kept (evidence)
# Alerts and malformed messages kept per session (the first ones; and the first fatal alert in
# any case, which decides): a peer sending thousands of them costs no more.
MAX_ALERTS = 16
MAX_MALFORMED = 16
# A TLS 1.3 client that offered post-handshake authentication, seen without keys, is followed
# for this many more records: its answer to a later CertificateRequest shows in their sizes.
PHA_WATCH = 24


# The names a `history` entry has besides the handshake messages' own (registry.name_of
# ("handshake", type)): what an observer sees of records it cannot read, and the rest.
ENCRYPTED_HANDSHAKE = "encrypted_handshake"  # a TLS 1.3 client's second flight, or a Finished
# after ChangeCipherSpec (TLS <= 1.2), or the server's first encrypted TLS 1.3 record
ENCRYPTED_DATA = "encrypted_data"  # encrypted records (TLS 1.3), the first few of them
EARLY_DATA = "early_data"  # 0-RTT records a client sent before the ServerHello
APPLICATION_DATA = "application_data"  # TLS <= 1.2 application data, the first two records
CHANGE_CIPHER_SPEC = "change_cipher_spec"
ENCRYPTED_ALERT = "encrypted_alert"  # an alert after ChangeCipherSpec (TLS <= 1.2)
HELLO_RETRY_REQUEST = "hello_retry_request"
ALERT = "alert:"  # followed by the alert's RFC name: "alert:unknown_ca"


@dataclass(slots=True)
class AlertSeen:
    sender: str  # CLIENT | SERVER
    ts: int
    level: int | None  # None when the alert was encrypted
    description: int | None
    after: str  # the last handshake message the sender's peer had sent, for diagnosis
    # the sender had already sent application data: an alert on a connection that served data
    # (a reset after the exchange), not the end of a handshake
    late: bool = False

    @property
    def fatal(self) -> bool:
        return self.level == 2

    def to_dict(self) -> dict[str, object]:
        return {
            "sender": self.sender,
            "level": reg.name_of("alert_level", self.level) if self.level else None,
            "description": reg.name_of("alert", self.description)
            if self.description is not None
            else None,
            "encrypted": self.level is None,
        }


@dataclass(slots=True)
class SessionFacts:
    """What was seen in one TLS connection. Lists are per role where the role matters."""

    start_ts: int
    addrs: tuple[bytes, bytes]  # (side 0 address, side 1 address)
    ports: tuple[int, int]
    client_side: int | None = None
    roles_from: str = ""  # "syn", "client_hello", "server_hello", "port"
    end_ts: int = 0
    preamble: dict[str, bytes] = field(default_factory=dict)  # role -> first preamble bytes
    client_hello: m.ClientHello | None = None
    client_hellos: int = 0
    hello_ts: int | None = None  # time of the first ClientHello (Zeek's ssl.log `ts`)
    certs_ts: dict[str, int] = field(default_factory=dict)  # role -> ts of its Certificate
    server_hello: m.ServerHello | None = None
    retry_request: bool = False
    server_certs: tuple[bytes, ...] | None = None
    client_certs: tuple[bytes, ...] | None = None
    cert_request: m.CertificateRequest | None = None
    server_key_exchange: bool = False
    server_curve: int | None = None  # the ECDHE group of a TLS <= 1.2 ServerKeyExchange
    server_hello_done: bool = False
    client_key_exchange: bool = False
    client_cert_verify: m.CertificateVerify | None = None
    # tickets issued: plaintext in TLS 1.2, decrypted in TLS 1.3 (OpenSSL sends two)
    session_tickets: list[bytes] = field(default_factory=list)
    ccs: dict[str, int] = field(default_factory=dict)  # role -> ts of its ChangeCipherSpec
    finished: dict[str, int] = field(default_factory=dict)  # role -> ts of its (encrypted) Finished
    app_data: dict[str, int] = field(default_factory=dict)  # role -> count of encrypted records
    # (role, length) of the encrypted records after the ServerHello, in order: what an observer
    # without keys sees of a TLS 1.3 handshake
    after_hello: list[tuple[str, int]] = field(default_factory=list)
    alerts: list[AlertSeen] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, message name)
    end_kind: EndKind | None = None  # None while open
    ended: str | None = None  # how it ended, in words: "connection reset by the server"
    # who ended it as `ended` says (the role whose FIN or RST it was); None when the capture
    # ended, the connection idled out or its address pair was reused
    closed_by: str | None = None
    closed_ts: int | None = None  # time of the first FIN or RST
    closed_after: str = ""  # the last message the closer's peer had sent by then
    lost: dict[str, str] = field(default_factory=dict)  # role -> why its stream was lost
    # malformed messages and key problems, in the order found (`record` adds the lost streams)
    anomalies: list[Anomaly] = field(default_factory=list)
    tls_seen: bool = False
    last_message: dict[str, str] = field(default_factory=dict)  # role -> last message name
    decrypted: bool = False  # some records were decrypted with the key log
    finished_read: set[str] = field(default_factory=set)  # roles whose Finished was read
    later_request: str | None = None  # "renegotiation" or "post-handshake" client authentication
    renegotiation_seen: bool = False  # encrypted handshake records after the handshake (TLS 1.2)
    server_after_done: int = 0  # server records after a TLS <= 1.2 handshake completed
    # what the first of them was: "alert" (the server refused late, or closed at once), "data"
    server_first_after: str | None = None
    post_records: int = 0  # encrypted records after the handshake completed
    server_reply: list[int] = field(default_factory=list)  # TLS 1.3: lengths of the server's
    # first two records after the client's second flight
    # the last inference from record sizes, with what it was made from (records seen, end)
    _sized: tuple[int, str | None, Inference] | None = field(default=None, repr=False)

    @property
    def key_problems(self) -> int:
        """How many records the key log could not decrypt were noted (at most MAX_KEY_PROBLEMS)."""
        return sum(a.name == "keys_missing" for a in self.anomalies)

    def role(self, side: int) -> str:
        if self.client_side is None:
            return f"side{side}"
        return CLIENT if side == self.client_side else SERVER

    @property
    def version(self) -> int:
        sh = self.server_hello
        return sh.selected_version if sh else 0

    @property
    def tls13(self) -> bool:
        return reg.is_tls13(self.version)  # drafts too (0x7f17: "TLS 1.3 (draft 23)")

    @property
    def early_data_sent(self) -> bool:
        """The client sent 0-RTT records before the ServerHello."""
        return any(name == EARLY_DATA for role, name in self.history if role == CLIENT)

    def size_view(self) -> View:
        """What the TLS 1.3 inference reads of this session (seen without keys)."""
        sh, ch = self.server_hello, self.client_hello
        assert sh is not None
        return View(
            records=self.after_hello,
            hash_len=48 if sh.cipher_suite == 0x1302 else 32,
            tag=self.aead_tag,
            early_data=self.early_data_sent,
            closed=self.end_kind is not None and self.end_kind.closed,
            extensions=ch is None or any(t in reg.ALPS_EXTENSIONS for t, _ in ch.extensions),
        )

    def sized(self) -> Inference:
        """The TLS 1.3 inference from record sizes, made again only when a record or the end
        was added since the last time, and not at all once settled."""
        key = (len(self.after_hello), self.end_kind)
        cached = self._sized
        # a settled inference stays: later records only add to the server's answer after a record
        # that was not an alert, and only narrow the padding a client may have used
        if cached is not None and (cached[:2] == key or cached[2].settled):
            return cached[2]
        inf = infer_handshake(self.size_view())
        self._sized = (*key, inf)
        return inf

    @property
    def handshake_done(self) -> bool:
        """Both sides have finished the handshake (as far as an observer without keys can tell)."""
        if self.tls13:
            if CLIENT not in self.finished:
                return False
            if self.decrypted:  # wait for a second ticket: a resumption may name either
                return len(self.server_reply) > 1
            if self.server_hello is not None and self.server_hello.psk_accepted:
                return bool(self.server_reply)
            # without keys: once the record sizes decide, and the server's answer to the
            # client's flight shows it went on (an alert-sized answer may be a refusal)
            if len(self.after_hello) >= MAX_ENCRYPTED:
                return True
            if not self.server_reply and self.end_kind is None:
                return False  # nothing from the server since the client's flight: no answer yet
            return self.sized().settled
        return CLIENT in self.finished and SERVER in self.finished

    @property
    def aead_tag(self) -> int:
        sh = self.server_hello
        return 8 if sh is not None and sh.cipher_suite == 0x1305 else 16  # CCM_8 has 8

    @property
    def alert_size(self) -> int:
        """Length of a record holding one TLS 1.3 alert: 2 bytes, the inner type, the tag."""
        return 2 + 1 + self.aead_tag

    def alert(self, a: AlertSeen) -> None:
        """Keep an alert: the first MAX_ALERTS, and the first fatal one in any case."""
        if len(self.alerts) < MAX_ALERTS or (a.fatal and not a.late and self.fatal_alert is None):
            self.alerts.append(a)

    @property
    def fatal_alert(self) -> AlertSeen | None:
        for a in self.alerts:
            if a.fatal and not a.late:
                return a
        return None


class SessionBuilder:
    __slots__ = ("facts", "_pending")

    def __init__(self, facts: SessionFacts) -> None:
        self.facts = facts
        self._pending: list[TlsEvent] = []  # events seen before the roles were known

    @property
    def decided(self) -> bool:
        """Nothing later can change the verdict or the messages reported. A handshake aborted by
        a fatal alert is not decided yet: the peer's own alerts until the close still count."""
        f = self.facts
        if not f.handshake_done:
            return False
        if f.tls13:
            ch = f.client_hello
            if f.decrypted or ch is None or not ch.post_handshake_auth:
                return True
            return len(f.after_hello) >= MAX_ENCRYPTED or f.post_records >= PHA_WATCH
        if f.renegotiation_seen:
            return True
        # TLS <= 1.2: wait for the server's first record after the handshake. Without a
        # CertificateRequest, the classic server asks for the client certificate in a
        # renegotiation, whose HelloRequest is that record; with one, a server that checks the
        # client's chain late refuses it there with an alert.
        # an alert first: wait for the close that says it was a refusal, or data after it
        return f.server_after_done > (1 if f.server_first_after == "alert" else 0)

    def set_client(self, side: int, how: str) -> None:
        f = self.facts
        if f.client_side is None:
            f.client_side = side
            f.roles_from = how
            pending, self._pending = self._pending, []
            for ev in pending:
                self.apply(ev)

    def apply(self, ev: TlsEvent) -> None:
        f = self.facts
        if f.client_side is None:
            if isinstance(ev, MessageSeen) and isinstance(ev.msg, m.ClientHello):
                self.set_client(ev.side, "client_hello")
            elif isinstance(ev, MessageSeen) and isinstance(ev.msg, m.ServerHello):
                self.set_client(1 - ev.side, "server_hello")
            else:
                if len(self._pending) < MAX_HISTORY:
                    self._pending.append(ev)
                return
        role = f.role(ev.side)
        f.end_ts = max(f.end_ts, ev.ts)
        if isinstance(ev, MessageSeen):
            if ev.decrypted:
                f.decrypted = True
                if (
                    f.tls13
                    and role == SERVER
                    and CLIENT in f.finished
                    and not isinstance(ev.msg, m.Alert)
                    and len(f.server_reply) < 2
                ):
                    f.server_reply.append(0)  # the server went on after the client's Finished
            self._message(role, ev.msg, ev.ts)
        elif isinstance(ev, KeysMissing):
            if f.key_problems < MAX_KEY_PROBLEMS:
                f.anomalies.append(Anomaly("keys_missing", role, ev.reason))
        elif isinstance(ev, TlsStarted):
            f.tls_seen = True
            if ev.preamble_len:
                f.preamble[role] = ev.preamble
        elif isinstance(ev, MessageMalformed):
            name = reg.name_of("handshake", ev.msg_type) if ev.msg_type >= 0 else "alert"
            if sum(a.name == "malformed_message" for a in f.anomalies) < MAX_MALFORMED:
                f.anomalies.append(Anomaly("malformed_message", role, ev.reason, name))
        elif isinstance(ev, MessageNotRead):
            name = reg.name_of("handshake", ev.msg_type)
            why = (
                f"its header claims {ev.length:,} bytes, more than the {ev.limit:,} read of one "
                f"message: not read ({ev.seen:,} bytes of it were in the capture), nor anything "
                f"after it from the {role}"
            )
            f.anomalies.append(Anomaly("message_too_large", role, why, name))
            f.lost.setdefault(role, f"{name}: {why}")
        elif isinstance(ev, StreamLost):
            f.lost.setdefault(role, ev.reason)

    def _encrypted(self, role: str, msg: m.EncryptedRecord, ts: int) -> None:
        f = self.facts
        ct = msg.content_type
        if f.server_hello is not None and len(f.after_hello) < MAX_ENCRYPTED:
            f.after_hello.append((role, msg.length))
        if ct == reg.ALERT:  # TLS <= 1.2 after ChangeCipherSpec
            peer = SERVER if role == CLIENT else CLIENT
            f.alert(AlertSeen(role, ts, None, None, f.last_message.get(peer, "")))
            self._server_after(role, "alert")
            self._note(role, ENCRYPTED_ALERT)
            return
        if ct == reg.HANDSHAKE:  # TLS <= 1.2 after ChangeCipherSpec: Finished, then renegotiation
            if f.handshake_done:
                f.renegotiation_seen = True
            f.finished.setdefault(role, ts)
            self._note(role, ENCRYPTED_HANDSHAKE)
            return
        if f.handshake_done:
            self._server_after(role, "data")
            f.post_records += 1
        n = f.app_data.get(role, 0)
        f.app_data[role] = n + 1
        if f.server_hello is None:
            if n == 0:
                self._note(
                    role, EARLY_DATA if role == CLIENT and f.client_hello else ENCRYPTED_DATA
                )
            return
        if f.tls13:
            # The first encrypted record a TLS 1.3 client sends after the ServerHello starts its
            # second flight (Certificate, CertificateVerify, Finished); the server's records after
            # that show the handshake went on.
            if role == CLIENT and CLIENT not in f.finished:
                f.finished[CLIENT] = ts
                self._note(role, ENCRYPTED_HANDSHAKE)
            elif role == SERVER and CLIENT in f.finished:
                if len(f.server_reply) < 2:
                    f.server_reply.append(msg.length)
                    self._note(role, ENCRYPTED_DATA)
            elif role == SERVER and n == 0:
                self._note(role, ENCRYPTED_HANDSHAKE)
            elif n < 3:
                self._note(role, ENCRYPTED_DATA)
            return
        if role in f.ccs:
            f.finished.setdefault(role, ts)
        if n < 2:
            self._note(role, APPLICATION_DATA)

    def _server_after(self, role: str, what: str) -> None:
        """Count the server's records after a TLS <= 1.2 handshake, and name the first."""
        f = self.facts
        if role == SERVER and not f.tls13 and f.server_hello is not None and f.handshake_done:
            if not f.server_after_done:
                f.server_first_after = what
            f.server_after_done += 1

    def _sent_data(self, role: str) -> bool:
        """This side sent application data records (readable as such: TLS 1.2, or decrypted)."""
        f = self.facts
        return f.app_data.get(role, 0) > 0 and (not f.tls13 or f.decrypted)

    def _note(self, role: str, name: str) -> None:
        f = self.facts
        f.last_message[role] = name
        h = f.history
        if len(h) < MAX_HISTORY:
            h.append((role, name))

    def _message(self, role: str, msg: object, ts: int) -> None:
        f = self.facts
        f.tls_seen = True
        if isinstance(msg, m.EncryptedRecord):
            self._encrypted(role, msg, ts)
            return
        if isinstance(msg, m.Alert):
            peer_last = f.last_message.get(SERVER if role == CLIENT else CLIENT, "")
            late = f.handshake_done and self._sent_data(role)
            f.alert(AlertSeen(role, ts, msg.level, msg.description, peer_last, late))
            self._server_after(role, "alert")
            self._note(role, f"{ALERT}{msg.name}")
            return
        if isinstance(msg, m.ChangeCipherSpec):
            f.ccs.setdefault(role, ts)
            self._note(role, CHANGE_CIPHER_SPEC)
            return
        name = reg.name_of("handshake", msg.msg_type)  # type: ignore[attr-defined]
        if isinstance(msg, m.ClientHello):
            f.client_hellos += 1
            if f.hello_ts is None:
                f.hello_ts = ts
            if f.client_hello is None or (f.retry_request and f.server_hello is None):
                f.client_hello = msg
        elif isinstance(msg, m.ServerHello):
            if msg.retry_request:
                f.retry_request = True
                name = HELLO_RETRY_REQUEST
            else:
                f.server_hello = msg
        elif isinstance(msg, m.Certificate):
            f.certs_ts[role] = ts
            if role == SERVER:
                f.server_certs = msg.entries
            else:
                f.client_certs = msg.entries
        elif isinstance(msg, m.CertificateRequest):
            f.cert_request = msg
            if CLIENT in f.finished and SERVER in f.finished:
                # asked for after the handshake: TLS 1.3 post-handshake authentication, or a
                # TLS 1.2 renegotiation
                f.later_request = "renegotiation" if f.client_hellos > 1 else "post-handshake"
        elif isinstance(msg, m.CertificateVerify):
            if role == CLIENT:
                f.client_cert_verify = msg
        elif isinstance(msg, m.Finished):
            f.finished.setdefault(role, ts)  # readable only with a NULL cipher (or decrypted)
            f.finished_read.add(role)
        elif isinstance(msg, m.NewSessionTicket):
            if len(f.session_tickets) < 4:
                f.session_tickets.append(msg.ticket)
        elif isinstance(msg, m.OtherHandshake):
            t = msg.msg_type
            if t == reg.SERVER_KEY_EXCHANGE:
                f.server_key_exchange = True
                sh = f.server_hello
                if sh is not None and "ECDH" in reg.name_of("cipher", sh.cipher_suite):
                    f.server_curve = msg.named_group
            elif t == reg.SERVER_HELLO_DONE:
                f.server_hello_done = True
            elif t == reg.CLIENT_KEY_EXCHANGE:
                f.client_key_exchange = True
        self._note(role, name)
