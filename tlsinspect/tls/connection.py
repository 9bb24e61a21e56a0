"""Both directions of one TLS connection: bytes in, past-tense events out (h2 style).

`TlsConnection.receive(side, data, ts)` is fed each direction's reassembled stream bytes (side 0
or 1: the two directions of the TCP connection, in the order the flow first saw them) and returns
events. The connection tracks where each direction's encryption starts: after its
ChangeCipherSpec for TLS 1.2 and older, after the ServerHello for TLS 1.3 (where application_data
records carry the handshake and ChangeCipherSpec is only for middlebox compatibility).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecodeError
from . import messages as m
from . import registry as reg
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


@dataclass(frozen=True, slots=True)
class MessageMalformed:
    side: int
    ts: int
    msg_type: int
    reason: str


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


TlsEvent = TlsStarted | MessageSeen | MessageMalformed | StreamLost


class _Side:
    __slots__ = ("records", "handshake", "encrypted", "started")

    def __init__(self, midstream: bool) -> None:
        self.records = RecordLayer(midstream)
        self.handshake = HandshakeAssembler()
        self.encrypted = False
        self.started = False


class TlsConnection:
    __slots__ = ("sides", "version", "tls13", "null_cipher")

    def __init__(self, midstream: bool = False) -> None:
        self.sides = (_Side(midstream), _Side(midstream))
        self.version = 0  # negotiated version once a (non-retry) ServerHello is seen
        self.tls13 = False
        self.null_cipher = (
            False  # a *_WITH_NULL_* suite: records after ChangeCipherSpec stay readable
        )

    @property
    def started(self) -> bool:
        return self.sides[0].started or self.sides[1].started

    @property
    def given_up(self) -> bool:
        """Neither direction can become TLS any more (scan limit passed or stream lost)."""
        return all(s.records.state == DONE and not s.started for s in self.sides)

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
        for content_type, _version, payload in records:
            self._record(side, st, content_type, payload, ts, events)
        if st.records.error is not None:
            events.append(StreamLost(side, ts, st.records.error))
            st.records.error = None
        return events

    def lose(self, side: int, ts: int, reason: str) -> list[TlsEvent]:
        """The capture lost bytes of this direction: nothing after can be aligned to records."""
        st = self.sides[side]
        if st.records.state == DONE:
            return []
        st.records.close()
        return [StreamLost(side, ts, reason)] if st.started else []

    def _record(
        self, side: int, st: _Side, ct: int, payload: bytes, ts: int, events: list[TlsEvent]
    ) -> None:
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

    def _handshake(
        self, side: int, st: _Side, payload: bytes, ts: int, events: list[TlsEvent]
    ) -> None:
        try:
            messages = st.handshake.feed(payload)
        except DecodeError as exc:
            st.records.close()
            events.append(StreamLost(side, ts, str(exc)))
            return
        for msg_type, body in messages:
            try:
                msg = m.parse_handshake(msg_type, body, self.version)
            except DecodeError as exc:
                events.append(MessageMalformed(side, ts, msg_type, str(exc)))
                continue
            events.append(MessageSeen(side, ts, msg))
            if isinstance(msg, m.ServerHello):
                # From here on a TLS 1.3 handshake travels in application_data records.
                # A HelloRetryRequest exists only in TLS 1.3 but the real ServerHello follows.
                self.tls13 = msg.selected_version == 0x0304 or msg.retry_request
                if not msg.retry_request:
                    self.version = msg.selected_version
                    self.null_cipher = "_WITH_NULL_" in reg.name_of("cipher", msg.cipher_suite)
