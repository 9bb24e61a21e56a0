"""Both directions of one TLS connection: bytes in, past-tense events out (h2 style).

`TlsConnection.receive(side, data, ts)` is fed each direction's reassembled stream bytes (side 0
or 1: the two directions of the TCP connection, in the order the flow first saw them) and returns
events. The connection tracks where each direction's encryption starts: after its
ChangeCipherSpec for TLS 1.2 and older, after the ServerHello for TLS 1.3 (where application_data
records carry the handshake and ChangeCipherSpec is only for middlebox compatibility).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import DecodeError, MessageTooLarge
from . import messages as m
from . import registry as reg
from .compression import DEFLATE, RecordInflater, parse_compressed_certificate
from .decrypt import RecordDecryptor
from .handshake import HandshakeAssembler
from .records import DONE, RECORDS, SSLV2_HELLO, RecordLayer


@dataclass(frozen=True, slots=True)
class TlsStarted:
    side: int
    ts: int
    preamble: bytes  # the first bytes before TLS (STARTTLS dialogue), up to 256
    preamble_len: int
    midstream: bool  # the stream was joined after its handshake


@dataclass(frozen=True, slots=True)
class MessageSeen:
    side: int
    ts: int
    msg: object  # a messages.* value: handshake message, Alert, ChangeCipherSpec, EncryptedRecord
    decrypted: bool = False  # read from a record decrypted with a key log


@dataclass(frozen=True, slots=True)
class KeysMissing:
    """This direction is encrypted and the key log has no secret for it, or the secret is wrong."""

    side: int
    ts: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageMalformed:
    side: int
    ts: int
    msg_type: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageNotRead:
    """A handshake message claims more bytes than are read of one (tls.handshake.MAX_MESSAGE):
    it is not read, nor anything after it in this direction (which is lost from there)."""

    side: int
    ts: int
    msg_type: int
    length: int  # what its header claims
    limit: int
    seen: int  # bytes of it in the capture's records up to then, header included


@dataclass(frozen=True, slots=True)
class StreamLost:
    """This direction can no longer be parsed: a gap in the capture or bytes that are not TLS."""

    side: int
    ts: int
    reason: str


def _strip_null_mac(ct: int, payload: bytes) -> bytes:
    """The plaintext of a NULL-cipher record: its messages, without the MAC that follows them."""
    if ct == reg.ALERT:
        return payload[:2]
    if len(payload) >= 4:
        n = 4 + int.from_bytes(payload[1:4], "big")
        if n <= len(payload):
            return payload[:n]
    return payload


TlsEvent = TlsStarted | MessageSeen | MessageMalformed | MessageNotRead | StreamLost | KeysMissing


class KeySource(Protocol):
    """Secrets by client random and NSS key log label (tls.keylog.KeyLog is one)."""

    def get(self, client_random: bytes, label: str) -> bytes | None: ...

    @property
    def active(self) -> bool: ...  # a key log was given: say so when it lacks a session's keys


# Records after the handshake still decrypted, per direction, to find a renegotiation or a
# post-handshake CertificateRequest (the classic "ask for the client certificate later").
WATCH_RECORDS = 256
# After a TLS <= 1.2 handshake with a CertificateRequest, records still decrypted until the
# server's first one: a server that checks the client's chain only after its own Finished
# refuses it with an encrypted alert there (tlslite-ng's Checker does). The count bounds a
# client that keeps sending while the server says nothing.
LATE_ALERT_RECORDS = 16


def records_to_watch(tls13: bool, post_handshake_auth: bool, cert_requested: bool) -> int:
    """Once both sides' Finished were read (decrypted): how many more records to follow for a
    later client authentication. A TLS <= 1.2 server may renegotiate; a TLS 1.3 server may send
    a post-handshake CertificateRequest only to a client that offered it; a server that already
    asked in the handshake has had its answer. Both engines follow this rule."""
    later = post_handshake_auth if tls13 else True
    return WATCH_RECORDS if later and not cert_requested else 0


class _Side:
    __slots__ = (
        "records",
        "handshake",
        "encrypted",
        "started",
        "decryptor",
        "client",
        "failed",
        "finished",
        "early",
        "early_records",
        "inflater",
    )

    def __init__(self, midstream: bool, client: bool) -> None:
        self.records = RecordLayer(midstream)
        self.handshake = HandshakeAssembler()
        self.encrypted = False
        self.started = False
        self.decryptor: Any = None
        self.client = client  # this side sent the ClientHello (known once it is seen)
        self.failed = False  # decryption was tried and failed: stop trying
        self.finished = False  # this side's Finished was decrypted
        self.early: Any = None  # the client's 0-RTT decryptor, made when first needed
        self.early_records = 0  # application_data records sent before the ServerHello (0-RTT)
        # RFC 3749 DEFLATE: this direction's decrypted records are compressed (TLS <= 1.2)
        self.inflater: RecordInflater | None = None


class TlsConnection:
    __slots__ = (
        "sides",
        "version",
        "tls13",
        "null_cipher",
        "keys",
        "client_random",
        "server_random",
        "cipher_suite",
        "client_etm",
        "etm",
        "watch",
        "post_handshake_auth",
        "cert_requested",
        "compression",
        "late",
        "message_bytes",
    )

    def __init__(self, midstream: bool = False, keys: KeySource | None = None) -> None:
        self.sides = (_Side(midstream, False), _Side(midstream, False))
        self.version = 0  # negotiated version once a (non-retry) ServerHello is seen
        self.tls13 = False
        # a *_WITH_NULL_* suite: records after ChangeCipherSpec stay readable
        self.null_cipher = False
        self.keys = keys
        self.client_random = b""
        self.server_random = b""
        self.cipher_suite = 0
        self.client_etm = False
        self.etm = False  # encrypt_then_mac negotiated (RFC 7366)
        self.watch = 0  # records left to decrypt after the handshake (see WATCH_RECORDS)
        self.post_handshake_auth = False
        self.cert_requested = False
        self.compression = 0  # the ServerHello's compression_method (RFC 3749: 1 is DEFLATE)
        self.late = 0  # records left to decrypt waiting for the server's first (LATE_ALERT_RECORDS)
        # Bytes of the handshake messages read (a compressed Certificate's as decompressed): what
        # the session's facts may keep of them (chains, hellos, CA names) is at most this.
        self.message_bytes = 0

    @property
    def watching(self) -> bool:
        """Decryption goes on after the handshake, looking for a later client authentication
        or for a server's late refusal of the client's chain."""
        return (self.watch > 0 or self.late > 0) and any(
            s.decryptor is not None for s in self.sides
        )

    @property
    def started(self) -> bool:
        return self.sides[0].started or self.sides[1].started

    @property
    def given_up(self) -> bool:
        """Neither direction can become TLS any more (scan limit passed or stream lost)."""
        return all(s.records.state == DONE and not s.started for s in self.sides)

    @property
    def held(self) -> int:
        """Bytes this connection holds: those both directions keep waiting for the rest of a
        record or of a handshake message, and those of the messages read, which the session
        may keep (what the owner counts against its limit of buffered bytes)."""
        a, b = self.sides
        waiting = len(a.records.buf) + len(a.handshake.buf) + len(b.records.buf)
        return waiting + len(b.handshake.buf) + self.message_bytes

    def receive(self, side: int, data: bytes, ts: int) -> list[TlsEvent]:
        st = self.sides[side]
        records = st.records.feed(data)
        events: list[TlsEvent] = []
        if not st.started and st.records.state == RECORDS:
            st.started = True
            rl = st.records
            self.sides[1 - side].records.accept_alert = True
            joined = rl.joined_midstream
            st.encrypted = joined  # joined after the handshake: every record is protected
            events.append(TlsStarted(side, ts, rl.preamble, rl.start or 0, joined))
        for content_type, version, payload in records:
            self._record(side, st, content_type, version, payload, ts, events)
        if st.records.error is not None:
            events.append(StreamLost(side, ts, st.records.error))
            st.records.error = None
        return events

    def lose(self, side: int, ts: int, reason: str) -> list[TlsEvent]:
        """The capture lost bytes of this direction: nothing after can be aligned to records.

        Said even when this direction had not started TLS yet: its hello may be what was lost
        (a server flight missing whole), and a verdict must not read the silence as a refusal.
        """
        st = self.sides[side]
        if st.records.state == DONE:
            return []
        st.records.close()
        return [StreamLost(side, ts, reason)]

    def _record(
        self,
        side: int,
        st: _Side,
        ct: int,
        version: int,
        payload: bytes,
        ts: int,
        events: list[TlsEvent],
    ) -> None:
        # In TLS 1.2 every record after ChangeCipherSpec is protected, a renegotiation's own
        # ChangeCipherSpec included; in TLS 1.3 only application_data records are.
        if ct == reg.APPLICATION_DATA and not self.version:
            st.early_records += 1  # 0-RTT: the early-data decryptor's sequence starts after them
        if st.decryptor is not None and (ct == reg.APPLICATION_DATA or st.encrypted):
            if self._decrypt(side, st, ct, version, payload, ts, events):
                return
        if st.encrypted and self.null_cipher and ct in (reg.HANDSHAKE, reg.ALERT):
            payload = _strip_null_mac(ct, payload)  # NULL cipher: plaintext followed by a MAC
        elif (
            ct == reg.APPLICATION_DATA
            or ct == reg.HEARTBEAT
            or (st.encrypted and ct != reg.CHANGE_CIPHER_SPEC)
        ):
            events.append(MessageSeen(side, ts, m.EncryptedRecord(ct, len(payload))))
            return
        if ct == reg.HANDSHAKE:
            self._handshake(side, st, payload, ts, events)
        elif ct == reg.CHANGE_CIPHER_SPEC:
            events.append(MessageSeen(side, ts, m.ChangeCipherSpec()))
            # Only a TLS <= 1.2 ChangeCipherSpec after the ServerHello switches to the new keys;
            # in TLS 1.3 (also a client's before its second ClientHello) it is for middleboxes.
            if self.version and not self.tls13:
                st.encrypted = True
                if self.keys is not None:
                    self._keys_tls12(side, st, ts, events)
        elif ct == reg.ALERT:
            if len(payload) == 2:
                events.append(MessageSeen(side, ts, m.Alert(payload[0], payload[1])))
            else:  # a plaintext alert is 2 bytes; anything else was encrypted (as Wireshark reads it)
                events.append(MessageSeen(side, ts, m.EncryptedRecord(ct, len(payload))))
        elif ct == SSLV2_HELLO:
            try:
                events.append(MessageSeen(side, ts, m.parse_sslv2_client_hello(payload)))
            except DecodeError as exc:
                events.append(MessageMalformed(side, ts, reg.CLIENT_HELLO, str(exc)))

    # -- decryption with a key log ----------------------------------------------------------

    def _decrypt(
        self,
        side: int,
        st: _Side,
        ct: int,
        version: int,
        payload: bytes,
        ts: int,
        events: list[TlsEvent],
    ) -> bool:
        """Decrypt one record and dispatch its plaintext; False when it cannot be decrypted."""
        seq = st.decryptor.seq
        try:
            inner, plain = st.decryptor.decrypt(ct, version, payload)
        except DecodeError as exc:
            early = self._early_data(st, ct, version, payload)
            if early is None:
                st.decryptor = None
                st.failed = True
                events.append(KeysMissing(side, ts, str(exc)))
                return False
            st.decryptor.seq = seq  # that record was not under the handshake keys
            inner, plain = early  # 0-RTT data (or EndOfEarlyData) sent after the ServerHello
        if st.inflater is not None:
            try:
                plain = st.inflater.inflate(plain)
            except DecodeError as exc:
                st.decryptor = None  # the stream is out of step: nothing later inflates
                st.failed = True
                events.append(KeysMissing(side, ts, str(exc)))
                return True
        if self.watch:
            self.watch -= 1
        if self.late:
            self.late = 0 if not st.client else self.late - 1
        if inner == reg.HANDSHAKE:
            self._handshake(side, st, plain, ts, events, decrypted=True)
        elif inner == reg.CHANGE_CIPHER_SPEC:  # a TLS 1.2 renegotiation switches keys
            events.append(MessageSeen(side, ts, m.ChangeCipherSpec(), True))
            if self.keys is not None:
                self._keys_tls12(side, st, ts, events)
        elif inner == reg.ALERT and len(plain) == 2:
            events.append(MessageSeen(side, ts, m.Alert(plain[0], plain[1]), True))
        else:
            events.append(MessageSeen(side, ts, m.EncryptedRecord(inner, len(payload)), True))
        return True

    def _early_data(
        self, st: _Side, ct: int, version: int, payload: bytes
    ) -> tuple[int, bytes] | None:
        """Try the client's early traffic secret (RFC 8446 2.3): (inner type, plaintext)."""
        if not (self.tls13 and st.client):
            return None
        if st.early is None:
            secret = self._secret("CLIENT_EARLY_TRAFFIC_SECRET")
            if secret is None:
                return None
            try:
                st.early = RecordDecryptor.for_tls13(self.cipher_suite, secret)
            except (DecodeError, ValueError):
                return None
            st.early.seq = st.early_records  # those sent before the ServerHello came first
        try:
            inner, plain = st.early.decrypt(ct, version, payload)
        except DecodeError:
            return None
        return int(inner), bytes(plain)

    def _secret(self, label: str) -> bytes | None:
        assert self.keys is not None
        return self.keys.get(self.client_random, label)

    def _keys_tls13(self, ts: int, events: list[TlsEvent]) -> None:
        """Install both directions' TLS 1.3 handshake keys (after the ServerHello)."""
        for side, st in enumerate(self.sides):
            label = f"{'CLIENT' if st.client else 'SERVER'}_HANDSHAKE_TRAFFIC_SECRET"
            self._install(side, st, ts, events, label, RecordDecryptor.for_tls13, self.cipher_suite)

    def _keys_tls12(self, side: int, st: _Side, ts: int, events: list[TlsEvent]) -> None:
        def make(suite: int, master: bytes) -> Any:
            return RecordDecryptor.for_tls12(
                suite,
                self.version,
                master,
                self.client_random,
                self.server_random,
                st.client,
                encrypt_then_mac=self.etm,
            )

        self._install(side, st, ts, events, "CLIENT_RANDOM", make, self.cipher_suite)
        # RFC 3749 section 2: with DEFLATE negotiated, what the new keys protect is compressed,
        # in one stream per direction that starts with them (a renegotiation starts a new one)
        st.inflater = (
            RecordInflater() if st.decryptor is not None and self.compression == DEFLATE else None
        )

    def _install(
        self,
        side: int,
        st: _Side,
        ts: int,
        events: list[TlsEvent],
        label: str,
        make: Any,
        suite: int,
    ) -> None:
        secret = self._secret(label)
        if secret is None:
            st.decryptor = None
            if not st.failed and self.keys.active:  # type: ignore[union-attr]
                st.failed = True
                events.append(
                    KeysMissing(side, ts, f"no {label} in the key log for this client random")
                )
            return
        try:
            st.decryptor = make(suite, secret)
        except (DecodeError, ValueError) as exc:
            st.decryptor = None
            st.failed = True
            events.append(KeysMissing(side, ts, str(exc)))

    def _rekey_tls13(self, side: int, st: _Side, ts: int, events: list[TlsEvent]) -> None:
        label = "CLIENT_TRAFFIC_SECRET_0" if st.client else "SERVER_TRAFFIC_SECRET_0"
        self._install(side, st, ts, events, label, RecordDecryptor.for_tls13, self.cipher_suite)

    def _key_update(self, side: int, st: _Side, ts: int, events: list[TlsEvent]) -> None:
        """RFC 8446 7.2: the next secret is derived from the current one.

        A direction keyed for TLS 1.2 cannot follow one (a HelloRetryRequest decrypted in a
        TLS 1.2 renegotiation makes the connection look like TLS 1.3): its records after it
        cannot be decrypted, which is said as for any other key problem."""
        if st.decryptor is not None:
            try:
                st.decryptor.key_update()
            except DecodeError as exc:
                st.decryptor = None
                st.failed = True
                events.append(KeysMissing(side, ts, str(exc)))

    def _after_finished(self, st: _Side) -> None:
        """A side's Finished was read: once both are, keep decrypting a while only if the client
        may still be asked for a certificate (renegotiation, post-handshake authentication)."""
        st.finished = True
        if all(s.finished for s in self.sides):
            for s in self.sides:
                s.finished = False  # a renegotiation will finish again
            self.watch = records_to_watch(self.tls13, self.post_handshake_auth, self.cert_requested)
            if self.cert_requested and not self.tls13:
                self.late = LATE_ALERT_RECORDS

    def _handshake(
        self,
        side: int,
        st: _Side,
        payload: bytes,
        ts: int,
        events: list[TlsEvent],
        decrypted: bool = False,
    ) -> None:
        try:
            messages = st.handshake.feed(payload)
        except MessageTooLarge as exc:
            st.records.close()
            events.append(MessageNotRead(side, ts, exc.msg_type, exc.length, exc.limit, exc.seen))
            return
        except DecodeError as exc:
            st.records.close()
            events.append(StreamLost(side, ts, str(exc)))
            return
        for msg_type, body in messages:
            self.message_bytes += len(body)
            if msg_type == reg.COMPRESSED_CERTIFICATE and len(body) >= 5:
                self.message_bytes += int.from_bytes(body[2:5], "big")  # its uncompressed_length
            try:
                if msg_type == reg.COMPRESSED_CERTIFICATE:  # RFC 8879: a Certificate inside
                    msg: m.HandshakeMessage = parse_compressed_certificate(body, self.version)
                else:
                    msg = m.parse_handshake(msg_type, body, self.version)
            except DecodeError as exc:
                events.append(MessageMalformed(side, ts, msg_type, str(exc)))
                continue
            events.append(MessageSeen(side, ts, msg, decrypted))
            if isinstance(msg, m.ClientHello):
                st.client = True
                self.sides[1 - side].client = False
                self.client_random = msg.random
                self.post_handshake_auth = msg.post_handshake_auth
                self.client_etm = any(t == 22 for t, _ in msg.extensions)
                if decrypted:  # a renegotiation: follow it to its end
                    self.watch = WATCH_RECORDS
                    self.cert_requested = False
            elif isinstance(msg, m.ServerHello):
                # From here on a TLS 1.3 handshake travels in application_data records.
                # A HelloRetryRequest exists only in TLS 1.3 but the real ServerHello follows.
                self.tls13 = reg.is_tls13(msg.selected_version) or msg.retry_request
                if not msg.retry_request:
                    self.version = msg.selected_version
                    self.null_cipher = "_WITH_NULL_" in reg.name_of("cipher", msg.cipher_suite)
                    self.server_random = msg.random
                    self.cipher_suite = msg.cipher_suite
                    self.compression = 0 if self.tls13 else msg.compression_method
                    self.etm = self.client_etm and any(t == 22 for t, _ in msg.extensions)
                    if self.tls13 and self.keys is not None and self.client_random:
                        self._keys_tls13(ts, events)
            elif isinstance(msg, m.CertificateRequest):
                self.cert_requested = True
            elif isinstance(msg, m.Finished) and decrypted:
                if self.tls13 and not st.finished and not self.watch:
                    # RFC 8446 7.1: after its Finished a side sends under its application secret
                    self._rekey_tls13(side, st, ts, events)
                self._after_finished(st)
            elif msg.msg_type == reg.KEY_UPDATE and decrypted and self.tls13:
                self._key_update(side, st, ts, events)
