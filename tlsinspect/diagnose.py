"""Why a session failed, in one plain-language line, from what the capture showed.

`diagnose(facts, decision, client, server)` joins three things the other layers found: the
verdict and its reason (`classify`), the alert and who sent it after which message (`session`),
and what is wrong with each certificate chain (`x509.check_chain`). "server rejected the client
certificate: unknown_ca" is what the wire says; "client chain issued by 'Rogue CA', server asked
for 'Test Root CA'" is the likely cause, and the line puts them together.

Pure: facts in, a string out (or None when there is nothing to explain: a mutual or one-way
session whose chains pass every check, and resumed sessions). It never guesses beyond the
evidence: when the checks find nothing, it says so, since a server's own policy (a pinned CA,
an access list) is invisible on the wire.
"""

from __future__ import annotations

from datetime import datetime

from .classify import Decision, shown
from .model import CLIENT, SERVER, Basis, Verdict, packet_datetime
from .session import CHANGE_CIPHER_SPEC, ENCRYPTED_HANDSHAKE, AlertSeen, SessionFacts
from .tls import registry as reg
from .x509 import FAIL, Anchors, ChainReport, cert_info, check_chain, short_name

# What an alert usually means when it ends a handshake (RFC 8446 6.2, RFC 5246 7.2.2), for the
# alerts that are not about a certificate.
_ALERT_HINTS = {
    "handshake_failure": "no acceptable set of security parameters (cipher suite, version, "
    "group or signature algorithm)",
    "protocol_version": "no TLS version both sides accept",
    "insufficient_security": "the peer wants stronger parameters than were offered",
    "unrecognized_name": "the server does not serve the name in the SNI",
    "no_application_protocol": "no ALPN protocol in common",
    "decode_error": "a message could not be parsed",
    "illegal_parameter": "a field was out of range or inconsistent",
    "unexpected_message": "a message came out of order",
    "decrypt_error": "a signature or Finished did not verify",
    "bad_record_mac": "a record did not decrypt (wrong keys or damaged data)",
    "internal_error": "the peer failed for reasons of its own",
    "inappropriate_fallback": "a version downgrade was detected",
    "missing_extension": "a required extension was missing",
    "unsupported_extension": "an extension was not allowed in that message",
}
_CLIENT_FLIGHT = {
    "certificate",
    "client_key_exchange",
    "certificate_verify",
    CHANGE_CIPHER_SPEC,
    ENCRYPTED_HANDSHAKE,
    "finished",
}
MAX_PROBLEMS = 3  # failed checks quoted in one line


def capture_time(ts_ns: int) -> datetime | None:
    """A packet timestamp (integer nanoseconds) as an aware UTC datetime, to the microsecond;
    None when it is no date (the validity checks then say "not checked")."""
    return packet_datetime(ts_ns)


def chain_reports(
    f: SessionFacts, server_ip: str | None, anchors: Anchors | None = None
) -> tuple[ChainReport | None, ChainReport | None]:
    """The checks on both chains of a session (None for a chain not sent or not seen).

    The validation time is the session's first packet: the certificates travel a few
    milliseconds later, well within any validity period's precision (RFC 5280 times are
    seconds). The server leaf is compared with the SNI, else with the server's address.
    """
    at = capture_time(f.start_ts)
    ch = f.client_hello
    sni = ch.server_name if ch is not None else None
    client = server = None
    if f.client_certs:
        cr = f.cert_request
        client = check_chain(
            f.client_certs, CLIENT, at, ca_names=cr.ca_names if cr else (), anchors=anchors
        )
    if f.server_certs:
        server = check_chain(
            f.server_certs, SERVER, at, sni=sni, server_ip=server_ip, anchors=anchors
        )
    return client, server


def _alert_name(a: AlertSeen) -> str | None:
    return None if a.description is None else reg.name_of("alert", a.description)


def _named(report: ChainReport | None, ders: tuple[bytes, ...] | None) -> list[str]:
    """Failed checks with the certificate's name in front: "'client-x' expired on ..."."""
    if report is None or not ders:
        return []
    out: list[str] = []
    for i, checks in enumerate(report.certs):
        name = cert_info(ders[i]).name if i < len(ders) else f"[{i}]"
        for c in checks:
            if c.result == FAIL:
                out.append(
                    f"{name!r} {c.detail}" if c.name == "validity" else f"{name!r}: {c.detail}"
                )
    out += _chain_failures(report, bool(out))
    return out[:MAX_PROBLEMS]


def _chain_failures(report: ChainReport, others: bool) -> list[str]:
    """The failed checks on the whole chain. The CA bundle's verdict mostly repeats a failure
    already named (an expiry, a name), so it is quoted only when nothing else failed."""
    out = []
    others = others or any(c.result == FAIL and c.name != "ca_bundle" for c in report.chain)
    for c in report.chain:
        if c.result != FAIL:
            continue
        if c.name == "ca_bundle":
            if not others:
                out.append(f"with the CA bundle, {c.detail}")
        else:
            out.append(c.detail)
    return out


def _chain_issuer(ders: tuple[bytes, ...] | None) -> str | None:
    """Who issued a chain: the issuer of its last certificate."""
    if not ders:
        return None
    top = cert_info(ders[-1])
    return short_name(top.issuer_der) if top.issuer_der else None


def _asked(f: SessionFacts) -> str:
    cr = f.cert_request
    if cr is None or not cr.ca_names:
        return ""
    return ", ".join(repr(short_name(n)) for n in cr.ca_names)


def _client_cause(f: SessionFacts, alert: str | None, client: ChainReport | None) -> str:
    """Evidence for a server's refusal of the client chain."""
    listed = client.find("ca_listed") if client else None
    issuer = _chain_issuer(f.client_certs)
    asked = _asked(f)
    parts: list[str] = []
    if alert in ("unknown_ca", "certificate_unknown", "access_denied", None) or (
        listed is not None and listed.result == FAIL
    ):
        if listed is not None and listed.result == FAIL:
            parts.append(listed.detail)
        elif issuer:
            parts.append(
                f"client chain issued by {issuer!r}"
                + (f", server asked for {asked}" if asked else "")
            )
        path = client.find("path") if client else None
        certs = f.client_certs or ()
        if path is not None and path.finding == "issuer_missing" and len(certs) == 1:
            leaf = cert_info(certs[0])
            if leaf.issuer_der and not leaf.self_signed:
                parts.append(
                    "the client sent its leaf alone, without its issuer "
                    f"{short_name(leaf.issuer_der)!r}"
                )
    for p in _named(client, f.client_certs):
        if p not in parts and not any(p in q for q in parts):
            parts.append(p)
    if len(parts) == 0:
        parts.append("the chain passes tlsinspect's checks: the server's own policy refused it")
    return "; ".join(parts[: MAX_PROBLEMS + 1])


def _server_cause(f: SessionFacts, server: ChainReport | None) -> str:
    parts = _named(server, f.server_certs)
    if not parts:
        issuer = _chain_issuer(f.server_certs)
        tail = f"; it is issued by {issuer!r}, which the client may not trust" if issuer else ""
        return "the chain passes tlsinspect's checks" + tail
    return "; ".join(parts)


def diagnose(
    f: SessionFacts,
    d: Decision,
    client: ChainReport | None = None,
    server: ChainReport | None = None,
) -> str | None:
    """One line saying why the session ended as it did, or None when there is nothing to say."""
    v = d.verdict
    if v in (Verdict.MUTUAL, Verdict.ONE_WAY):
        return _completed(f, client, server)
    if v == Verdict.RESUMED:
        return None
    if v == Verdict.ENCRYPTED:
        return (
            "TLS 1.3 without keys: the certificates and alerts are encrypted and the record "
            "sizes are ambiguous; a key log (--keylog) would show what happened"
        )
    if v == Verdict.INCOMPLETE:
        return f"the capture does not show how the handshake ended: {d.reason}"
    if v == Verdict.CERT_REQUESTED_NOT_SENT:
        return _not_sent(f, d)
    return _failed(f, d, client, server)


def _completed(
    f: SessionFacts, client: ChainReport | None, server: ChainReport | None
) -> str | None:
    parts = []
    cp = _named(client, f.client_certs)
    if cp:
        parts.append("the server accepted a client certificate that fails checks: " + "; ".join(cp))
    sp = _named(server, f.server_certs)
    if sp:
        parts.append("the client accepted a server certificate that fails checks: " + "; ".join(sp))
    if not parts:
        return None
    return "handshake completed, but " + " and ".join(parts)


def _not_sent(f: SessionFacts, d: Decision) -> str:
    asked = _asked(f)
    wanted = f"; CAs the server listed: {asked}" if asked else ""
    inferred = " (inferred from the encrypted record sizes)" if d.basis == Basis.INFERRED else ""
    alert = f.fatal_alert
    if alert is not None and alert.sender == SERVER:
        name = _alert_name(alert) or "an encrypted alert"
        return f"server required a client certificate, client sent none ({name}){wanted}{inferred}"
    if d.basis == Basis.INFERRED and d.sizes is not None and d.sizes.refused:
        return f"server required a client certificate, client sent none{wanted}{inferred}"
    if f.handshake_done:
        return (
            "server asked for a client certificate, client sent none; the server accepted the "
            f"connection without client authentication{wanted}{inferred}"
        )
    if alert is not None:
        name = _alert_name(alert) or "an encrypted alert"
        return f"client sent no certificate; then the {alert.sender} aborted with {name}{wanted}"
    return (
        "server asked for a client certificate, client sent none; the outcome is not in the "
        f"capture{wanted}"
    )


def _failed(
    f: SessionFacts, d: Decision, client: ChainReport | None, server: ChainReport | None
) -> str:
    alert = f.fatal_alert
    if d.basis == Basis.INFERRED:
        return (
            "server refused the client's certificate (inferred: it answered the client's "
            "Certificate and CertificateVerify with one alert-sized record and closed); the "
            "certificates and the alert are encrypted, a key log (--keylog) would show them"
        )
    if alert is None:
        return _no_alert(f, d, client)
    name = _alert_name(alert)
    if (
        f.closed_ts is not None
        and f.closed_ts < alert.ts
        and f.ended
        and alert.sender != f.closed_by
    ):
        # the peer closed first; the alert only answers the close (classify says the same)
        sent = name or "an encrypted alert"
        return f"{_no_alert(f, d, client)}; the {alert.sender} then sent {sent}"
    shown_name = name or "an encrypted alert"
    after = alert.after
    if alert.sender == SERVER and f.client_certs and (after in _CLIENT_FLIGHT or not after):
        if name == "decrypt_error":
            return (
                "server rejected the client's CertificateVerify: decrypt_error (the signature "
                "does not match the client certificate's key)"
            )
        if name is None or alert.description in reg.CERTIFICATE_ALERTS:
            return f"server rejected the client certificate: {shown_name}; " + _client_cause(
                f, name, client
            )
        hint = _ALERT_HINTS.get(name or "", "")
        return f"server aborted after the client's certificate: {shown_name}" + (
            f" ({hint})" if hint else ""
        )
    if (
        alert.sender == CLIENT
        and f.server_certs
        and (alert.description is None or alert.description in reg.CERTIFICATE_ALERTS)
    ):
        return f"client rejected the server certificate: {shown_name}; " + _server_cause(f, server)
    hint = _ALERT_HINTS.get(name or "", "")
    peer = CLIENT if alert.sender == SERVER else SERVER
    when = f" after the {peer}'s {shown(after)}" if after else ""
    return f"{alert.sender} aborted the handshake with {shown_name}{when}" + (
        f": {hint}" if hint else ""
    )


def _no_alert(f: SessionFacts, d: Decision, client: ChainReport | None) -> str:
    """A handshake cut by a reset or a close, without an alert."""
    how = f.ended or "the connection ended"
    stage = ""
    if f.closed_after:
        closer = SERVER if f.closed_by == SERVER else CLIENT
        peer = CLIENT if closer == SERVER else SERVER
        stage = f" after the {peer}'s {shown(f.closed_after)}"
    elif f.client_certs:
        stage = " after the client's certificate"
    line = f"{how}{stage}, without an alert"
    if f.client_certs and f.closed_by == SERVER:
        cp = _named(client, f.client_certs)
        if cp:
            return f"{line}; the client chain fails checks: " + "; ".join(cp)
        return f"{line}: the server gave no reason (the client chain passes tlsinspect's checks)"
    return line
