"""The session record: one TLS session, decided and explained, built once when it is logged.

As Zeek's `SSL::Info` is filled while a connection runs and written once by `log_record`, a
`SessionRecord` is made once, by the engine that logs the session (`build_record`), from its
facts (`session.SessionFacts`) and its decision (`classify`). Everything the outputs say of a
session is in it: the chain checks (with the CA bundle, when one was given), the diagnosis,
what is known of the client authentication, the anomalies, the STARTTLS protocol, the full
handshake a resumption resumes. Every report (JSON, CSV, table, HTML, DataFrame, policy) only
projects this value; none runs a check or a diagnosis, parses a certificate or reads bytes.

The record is frozen. Its `facts` are the builder's, handed over when the session is logged: no
engine touches them again.
"""

from __future__ import annotations

from dataclasses import dataclass

from .anomalies import Anomaly, ordered
from .classify import Decision, Origin
from .diagnose import chain_reports, diagnose
from .errors import DecodeError
from .model import packet_datetime
from .session import SessionFacts
from .tls import extensions as ext
from .tls.starttls import starttls_protocol
from .x509 import Anchors, ChainReport


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """What is known of the client authentication, however it is known: from the messages
    when they were seen or decrypted, from the record sizes for TLS 1.3 without keys (None
    where those do not tell)."""

    cert_requested: bool | None  # the server sent a CertificateRequest
    client_cert_sent: bool | None  # a non-empty chain; None: no Certificate message, or unknown
    client_cert_verify: bool | None  # the client sent CertificateVerify


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A logged session: what was seen, what was decided, and why."""

    index: int  # order of logging, from 1
    facts: SessionFacts
    decision: Decision
    client: tuple[str, int]  # (address text, port)
    server: tuple[str, int]
    origin: Origin | None  # the full handshake a resumption resumes, when the capture has it
    client_checks: ChainReport | None  # None: no client chain
    server_checks: ChainReport | None
    diagnosis: str | None  # why it ended as it did, in plain words; None: nothing to explain
    auth: ClientAuth
    starttls: str | None  # the plaintext protocol upgraded to TLS, None for TLS from the start
    anomalies: tuple[Anomaly, ...]  # problems met dissecting it: lost bytes, malformed messages
    # what the server chose besides the version and cipher: the application protocol (ALPN,
    # RFC 7301) and the key exchange group (the TLS 1.3 key share, RFC 8446 4.2.8, or the
    # ECDHE curve of a TLS 1.2 ServerKeyExchange, RFC 8422 5.4); None when not shown
    server_alpn: str | None = None
    server_group: int | None = None
    # the capture file the session's first packet came from (of a series: the file where it
    # started); None when the packets came from no file (a live capture)
    file: str | None = None


def server_choices(f: SessionFacts) -> tuple[str | None, int | None]:
    """The ALPN protocol of the ServerHello and the key exchange group, when they are named (a
    malformed extension names nothing)."""
    sh = f.server_hello
    if sh is None:
        return None, None
    alpn, group = None, f.server_curve
    data = ext.find(sh.extensions, ext.ALPN)
    if data is not None:
        try:
            alpn = next(iter(ext.alpn(data)), None)
        except DecodeError:
            alpn = None
    data = ext.find(sh.extensions, ext.KEY_SHARE)
    if data is not None and len(data) >= 2:
        group = int.from_bytes(data[:2], "big")
    return alpn, group


def client_auth(f: SessionFacts, d: Decision) -> ClientAuth:
    """The client authentication as the messages show it, or as the record sizes do for TLS 1.3
    without keys (a CertificateRequest seen plaintext or decrypted always wins)."""
    sh = f.server_hello
    hidden = f.tls13 and not f.decrypted and sh is not None and not sh.psk_accepted
    if f.cert_request is not None or not hidden:
        return ClientAuth(
            f.cert_request is not None,
            None if f.client_certs is None else bool(f.client_certs),
            f.client_cert_verify is not None,
        )
    sizes = d.sizes
    if sizes is None:
        return ClientAuth(None, None, None)
    # an empty Certificate was sent when asked: False; no Certificate message: None
    sent = sizes.client_certificate if sizes.cert_requested else None
    return ClientAuth(sizes.cert_requested, sent, sizes.client_verify)


def anomalies(f: SessionFacts) -> tuple[Anomaly, ...]:
    """The problems met while dissecting a session, in the order of the output. A stream lost
    to a message too large to read is said once, by that anomaly."""
    said = {a.role for a in f.anomalies if a.name == "message_too_large"}
    lost = [Anomaly("stream_lost", role, why) for role, why in f.lost.items() if role not in said]
    return ordered(lost + f.anomalies + _times(f))


def _times(f: SessionFacts) -> list[Anomaly]:
    """The session's packet times that are no dates, said once."""
    bad = [
        f"{what} {ts:,} ns since 1970"
        for what, ts in (("first packet", f.start_ts), ("last packet", f.end_ts or f.start_ts))
        if packet_datetime(ts) is None
    ]
    if not bad:
        return []
    return [Anomaly("time_not_a_date", "capture", "; ".join(bad) + " (shown as @<ns>)")]


def build_record(
    index: int,
    facts: SessionFacts,
    decision: Decision,
    client: tuple[str, int],
    server: tuple[str, int],
    origin: Origin | None = None,
    *,
    anchors: Anchors | None = None,
    starttls: str | None = None,
    file: str | None = None,
) -> SessionRecord:
    """The record of a session being logged. `anchors` (a CA bundle) adds the `ca_bundle` check
    to both chains; `starttls` names the protocol before TLS when the engine knows it (tshark
    dissected it), else the preamble bytes the builder kept tell."""
    client_checks, server_checks = chain_reports(facts, server[0], anchors)
    server_alpn, server_group = server_choices(facts)
    return SessionRecord(
        index=index,
        facts=facts,
        decision=decision,
        client=client,
        server=server,
        origin=origin,
        client_checks=client_checks,
        server_checks=server_checks,
        diagnosis=diagnose(facts, decision, client_checks, server_checks),
        auth=client_auth(facts, decision),
        starttls=starttls if starttls is not None else starttls_protocol(facts.preamble),
        anomalies=anomalies(facts),
        server_alpn=server_alpn,
        server_group=server_group,
        file=file,
    )
