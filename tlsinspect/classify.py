"""The verdict of a session, decided from its facts alone: `classify(facts, origin) -> Decision`.

Pure (no I/O, no clock): the engine logging a session calls it once per session, when the session is logged.
`origin` is what the capture showed of the session a resumed handshake resumes, if it holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .infer import (
    EMPTY_CERTIFICATE,
    MIN_AUTHENTICATION,
    MIN_CERTIFICATE,
    VERIFY_SIZES,
    Inference,
    View,
)
from .model import CLIENT, SERVER, Basis, EndKind, Verdict
from .session import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    ENCRYPTED_DATA,
    ENCRYPTED_HANDSHAKE,
    HELLO_RETRY_REQUEST,
    AlertSeen,
    SessionFacts,
)
from .tls import registry as reg


@dataclass(frozen=True, slots=True)
class Origin:
    """The full handshake that created a session later resumed."""

    verdict: Verdict
    client: str  # "192.0.2.1:50000"
    start: str  # ISO time
    client_subject: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    basis: Basis
    reason: str
    # TLS 1.3 without keys: what the record sizes showed of the client authentication
    sizes: Inference | None = None


def _alert_text(a: AlertSeen) -> str:
    if a.description is None:
        return f"an encrypted alert from the {a.sender}"
    level = reg.name_of("alert_level", a.level or 0)
    return (
        f"{level} alert {reg.name_of('alert', a.description)} ({a.description}) from the {a.sender}"
    )


_SHOWN = {
    ENCRYPTED_HANDSHAKE: "Finished",  # the first encrypted handshake message after CCS
    ENCRYPTED_DATA: "encrypted records",
    APPLICATION_DATA: "application data",
    CHANGE_CIPHER_SPEC: "ChangeCipherSpec",
    HELLO_RETRY_REQUEST: "HelloRetryRequest",
}


def shown(name: str) -> str:
    """A history name as people write it: client_hello -> ClientHello."""
    if name in _SHOWN:
        return _SHOWN[name]
    if name.startswith(ALERT):
        return f"{name[6:]} alert"
    return "".join(w.capitalize() for w in name.split("_"))


def _after(a: AlertSeen) -> str:
    peer = CLIENT if a.sender == SERVER else SERVER
    return f" after the {peer}'s {shown(a.after)}" if a.after else ""


def _after_handshake(f: SessionFacts, a: AlertSeen) -> bool:
    """A TLS <= 1.2 alert sent once both sides' Finished were: a server that checks the client's
    chain only after its own Finished refuses it there (read with the key log)."""
    return not f.tls13 and len(f.finished) == 2 and max(f.finished.values()) <= a.ts


def _alert_reason(f: SessionFacts, a: AlertSeen) -> str:
    """The alert that ended a handshake, and the close that came before it if one did."""
    after = " after the handshake" if _after_handshake(f, a) else _after(a)
    text = f"{_alert_text(a)}{after}"
    if f.closed_ts is not None and f.closed_ts < a.ts and f.ended and a.sender != f.closed_by:
        last = f.closed_after
        after = f" after the {a.sender}'s {shown(last)}" if last else ""
        return f"{f.ended}{after}; then {text}"
    return text


def _end_text(f: SessionFacts) -> str:
    return f.ended or "the capture ends"  # a decided session has no end yet


def _lost(f: SessionFacts) -> str | None:
    if not f.lost:
        return None
    role, why = next(iter(f.lost.items()))
    return f"the {role}'s stream could not be followed ({why})"


def _abort(f: SessionFacts, stage: str) -> Decision | None:
    """A handshake cut short at `stage`: by an alert, a reset or a close; None if it just stops."""
    alert = f.fatal_alert
    if alert is not None:
        return Decision(Verdict.FAILED, Basis.OBSERVED, _alert_reason(f, alert))
    if f.lost:
        return None  # what happened in the missing bytes is unknown: incomplete, not failed
    if f.end_kind is not None and f.end_kind.closed:
        return Decision(Verdict.FAILED, Basis.OBSERVED, f"{f.ended} {stage}")
    return None


def _incomplete(f: SessionFacts, what: str) -> Decision:
    lost = _lost(f)
    why = lost if lost else _end_text(f)
    silent = [r for r in (CLIENT, SERVER) if r not in f.last_message and r not in f.lost]
    if len(silent) == 1 and f.last_message:
        why += f"; the capture holds nothing the {silent[0]} sent (one direction only)"
    return Decision(Verdict.INCOMPLETE, Basis.OBSERVED, f"{what}: {why}")


def classify(f: SessionFacts, origin: Origin | None = None) -> Decision:
    ch, sh = f.client_hello, f.server_hello
    if ch is None and sh is None:
        if f.lost or f.end_kind == EndKind.EVICTED:  # say why: the bytes missing, the limit
            return _incomplete(f, "no handshake message could be read")
        return Decision(
            Verdict.INCOMPLETE,
            Basis.OBSERVED,
            "no ClientHello or ServerHello in the capture: it starts after the handshake"
            if f.app_data
            else "no handshake message could be read",
        )
    if sh is None:
        stage = "after the ClientHello, before any ServerHello"
        if ch is None:
            stage = "the capture holds no ClientHello"
        return _abort(f, stage) or _incomplete(
            f,
            f"no ServerHello {('(after a HelloRetryRequest) ' if f.retry_request else '')}in the capture",
        )
    if f.tls13:
        return _classify_tls13(f, origin)
    return _classify_tls12(f, origin)


def _classify_tls13(f: SessionFacts, origin: Origin | None) -> Decision:
    sh = f.server_hello
    assert sh is not None
    if f.decrypted and not sh.psk_accepted:
        return _by_messages(f, Basis.DECRYPTED)
    plain = f.fatal_alert
    if plain is not None and plain.level is not None:  # a plaintext alert: before the keys
        return Decision(Verdict.FAILED, Basis.OBSERVED, _alert_reason(f, plain))
    if sh.psk_accepted:
        return Decision(
            Verdict.RESUMED,
            Basis.OBSERVED,
            "TLS 1.3 resumption with a pre-shared key: no certificates are exchanged"
            + _origin_text(origin, "the ticket's session is not in the capture or not decrypted"),
        )
    if CLIENT not in f.finished:
        return _abort(f, "before the client's second flight") or _incomplete(
            f, "TLS 1.3 handshake not finished: the client's second flight is not in the capture"
        )
    return infer_tls13(f)


_VERDICTS = {
    "mutual": Verdict.MUTUAL,
    "one-way": Verdict.ONE_WAY,
    "cert-requested-not-sent": Verdict.CERT_REQUESTED_NOT_SENT,
    "failed": Verdict.FAILED,
}


def infer_tls13(f: SessionFacts) -> Decision:
    """What a TLS 1.3 handshake was, from the sizes of its encrypted records alone (see
    `tlsinspect.infer`); undecided sessions stay `encrypted`, with what was seen."""
    view = f.size_view()
    inf = f.sized()
    if inf.verdict is None:
        return Decision(
            Verdict.ENCRYPTED,
            Basis.OBSERVED,
            f"TLS 1.3 without a key log, and the record sizes do not decide ({inf.evidence}); "
            "a key log would decide",
            inf,
        )
    verdict = _VERDICTS[inf.verdict]
    if verdict == Verdict.ONE_WAY and f.client_hello is not None:
        if f.client_hello.post_handshake_auth:
            later = _post_handshake_answer(view, inf)
            first = inf.seen
            if later is not None and later[0] == Verdict.ENCRYPTED:
                unknown = replace(
                    inf,
                    verdict=None,
                    cert_requested=None,
                    client_certificate=None,
                    client_verify=None,
                    client_padding=None,
                    settled=False,
                )
                return Decision(
                    Verdict.ENCRYPTED,
                    Basis.OBSERVED,
                    f"TLS 1.3 without a key log: {first}: no client Certificate in the handshake; "
                    f"{later[1]}; a key log would decide",
                    unknown,
                )
            if later is not None:
                sent = later[0] == Verdict.MUTUAL
                asked = replace(
                    inf,
                    verdict=later[0].value,
                    cert_requested=True,
                    client_certificate=sent,
                    client_verify=sent,
                    settled=True,
                )
                return Decision(
                    later[0], Basis.INFERRED, f"{first}: no client Certificate; {later[1]}", asked
                )
            return Decision(
                verdict,
                Basis.INFERRED,
                inf.evidence + "; the client offered post-handshake authentication, and no "
                "answer to a later CertificateRequest shows in the records followed",
                inf,
            )
    return Decision(verdict, Basis.INFERRED, inf.evidence, inf)


def _post_handshake_answer(v: View, inf: Inference) -> tuple[Verdict, str] | None:
    """A client's answer to a post-handshake CertificateRequest (RFC 8446 4.6.2), from sizes.

    After the handshake and after a server record (the request), client records that end with
    one the size of Finished: [Certificate, CertificateVerify,] Finished, the server's records
    possibly in between. An empty Certificate carries the request's context (1 to 255 bytes)
    and no CertificateVerify. A Certificate and CertificateVerify are read only from separate
    records, the CertificateVerify one of the sizes a signature gives: application data must not
    pass for them.
    """
    overhead = 1 + v.tag + (inf.client_padding or 0)
    finished = 4 + v.hash_len
    after = list(v.records[inf.flight_end + 1 :])
    coalesced: int | None = None  # a record that may hold a whole answer
    for start, (role, length) in enumerate(after):
        if role != CLIENT or start == 0 or after[start - 1][0] != SERVER:
            continue
        answer = [n for r, n in after[start:] if r == CLIENT][:4]
        end = next((j for j, n in enumerate(answer) if j and n - overhead == finished), None)
        if end is None:
            if coalesced is None and length - overhead >= MIN_AUTHENTICATION + finished + 1:
                coalesced = length
            continue
        sizes = answer[: end + 1]
        plain = [n - overhead for n in sizes[:-1]]
        shown = " + ".join(f"{n:,}" for n in sizes)
        if len(plain) == 1 and EMPTY_CERTIFICATE < plain[0] <= EMPTY_CERTIFICATE + 255:
            return (
                Verdict.CERT_REQUESTED_NOT_SENT,
                f"after the handshake the client answered a post-handshake CertificateRequest "
                f"with {shown} bytes: an empty Certificate and Finished",
            )
        if len(plain) >= 2 and plain[-1] in VERIFY_SIZES and sum(plain[:-1]) >= MIN_CERTIFICATE:
            return (
                Verdict.MUTUAL,
                f"after the handshake the client answered a post-handshake CertificateRequest "
                f"with {shown} bytes: a Certificate, CertificateVerify and Finished "
                "(post-handshake client authentication)",
            )
    if coalesced is not None:
        # NSS sends Certificate, CertificateVerify and Finished in one record: one record after
        # the server's is such an answer, or application data; the sizes do not tell
        return (
            Verdict.ENCRYPTED,
            f"after the handshake the client sent a {coalesced:,}-byte record after the "
            "server's: application data, or its answer to a post-handshake CertificateRequest "
            "in one record (a Certificate, CertificateVerify and Finished)",
        )
    return None


def _origin_text(origin: Origin | None, unknown: str) -> str:
    if origin is None:
        return f"; {unknown}"
    if origin.verdict == Verdict.MUTUAL:
        who = f" ({origin.client_subject})" if origin.client_subject else ""
        return f"; resumes a mutual session of {origin.client}{who} at {origin.start}"
    return f"; resumes a {origin.verdict.value} session of {origin.client} at {origin.start}"


def _classify_tls12(f: SessionFacts, origin: Origin | None) -> Decision:
    ch, sh = f.client_hello, f.server_hello
    assert sh is not None
    abbreviated = (
        SERVER in f.ccs
        and f.server_certs is None
        and not f.server_hello_done
        and not f.server_key_exchange
    )
    if abbreviated:
        # RFC 5077 3.4: a client resuming with a ticket may also send a session ID, which the
        # server echoes; the ticket is what resumes.
        how = "session ticket" if ch is not None and ch.session_ticket else "session ID"
        alert = f.fatal_alert
        if alert is not None:
            return Decision(
                Verdict.FAILED, Basis.OBSERVED, f"resumption ({how}) aborted: {_alert_text(alert)}"
            )
        return Decision(
            Verdict.RESUMED,
            Basis.OBSERVED,
            f"abbreviated handshake resuming by {how}: no certificates exchanged"
            + _origin_text(origin, "the handshake that created the session is not in the capture"),
        )

    # a decrypted renegotiation, or a decrypted alert after the handshake, decides what the
    # plaintext first handshake could not
    late = f.fatal_alert is not None and _after_handshake(f, f.fatal_alert)
    return _by_messages(
        f,
        Basis.DECRYPTED if f.decrypted and (f.client_hellos > 1 or late) else Basis.OBSERVED,
    )


def _by_messages(f: SessionFacts, basis: Basis) -> Decision:
    """The verdict from the handshake messages themselves (plaintext or decrypted)."""
    if f.cert_request is not None:
        return _requested(f, basis)
    if f.client_certs is not None:
        # A client sends a Certificate only when asked (RFC 8446 4.4.2, RFC 5246 7.4.6): the
        # server's CertificateRequest is in bytes the capture lost or the key log did not open.
        d = _requested(f, basis)
        return replace(
            d,
            reason=f"{d.reason} (the server's CertificateRequest was not read: "
            f"{_unread(f, SERVER)}; the client's Certificate answers one)",
        )
    alert = f.fatal_alert
    if alert is not None:
        return Decision(Verdict.FAILED, basis, _alert_reason(f, alert))
    unshown = _request_unshown(f)
    if unshown is not None and f.handshake_done:
        return _incomplete(
            f,
            "handshake completed, but whether the server asked for a client certificate is "
            f"not known: {unshown}",
        )
    if f.handshake_done:
        later = (
            "; a renegotiation followed, encrypted: with the key log tlsinspect can tell whether "
            "it asked for a client certificate"
            if f.renegotiation_seen and not f.decrypted
            else ""
        )
        return Decision(
            Verdict.ONE_WAY,
            basis,
            "handshake completed without a CertificateRequest: only the server authenticated"
            + later,
        )
    return _abort(f, "before the handshake finished") or _incomplete(
        f, "handshake not finished, no CertificateRequest so far"
    )


def _unread(f: SessionFacts, role: str) -> str:
    """Why what `role` sent could not be read: its stream lost, or its records not decrypted."""
    if role in f.lost:
        return f"the {role}'s stream could not be followed ({f.lost[role]})"
    problem = next(
        (a.detail for a in f.anomalies if a.name == "keys_missing" and a.role == role), None
    )
    if problem is not None:
        return f"the {role}'s records could not be decrypted ({problem})"
    return f"the {role}'s message is not in the capture"


def _request_unshown(f: SessionFacts) -> str | None:
    """Why the absence of a CertificateRequest is not shown by what was read, or None when it is.

    A server asks in its first flight: the flight read to its end (ServerHelloDone; TLS 1.3's
    decrypted Finished) without one shows it did not. So does the client's answer read without
    a Certificate: a client asked must send one, empty if it has none.
    """
    if f.tls13:
        if SERVER in f.finished_read or (CLIENT in f.finished_read and f.client_certs is None):
            return None
    elif f.server_hello_done or f.client_key_exchange:
        return None
    return _unread(f, SERVER) + ("" if CLIENT not in f.lost else f", and {_unread(f, CLIENT)}")


def _requested(f: SessionFacts, basis: Basis) -> Decision:
    """The server sent a CertificateRequest: what the client answered, and how it ended."""
    cc = f.client_certs
    no_cert_alert = next((a for a in f.alerts if a.sender == CLIENT and a.description == 41), None)
    if (cc is not None and len(cc) == 0) or no_cert_alert is not None:
        return _not_sent(f, basis, "an empty Certificate" if cc is not None else None)
    if cc:
        return _sent(f, basis, len(cc))
    return _abort(f, "after the server's CertificateRequest") or _incomplete(
        f, "server requested a client certificate; the client's answer is not in the capture"
    )


def _not_sent(f: SessionFacts, basis: Basis, how: str | None) -> Decision:
    """Asked for a certificate, the client answered with none (an empty Certificate, or SSL
    3.0's no_certificate alert when `how` is None)."""
    how = how or "a no_certificate alert (SSL 3.0)"
    if f.later_request:
        how += f" ({f.later_request} client authentication, after the first handshake)"
    alert = f.fatal_alert
    if alert is not None:
        tail = f"; the handshake then failed: {_alert_text(alert)}"
    elif f.handshake_done:
        tail = "; the server accepted it and the handshake completed"
    else:
        tail = f"; handshake not finished: {_lost(f) or _end_text(f)}"
    return Decision(
        Verdict.CERT_REQUESTED_NOT_SENT,
        basis,
        f"server requested a client certificate, client answered with {how}{tail}",
    )


def _sent(f: SessionFacts, basis: Basis, n: int) -> Decision:
    """Asked for a certificate, the client sent a chain of `n`: accepted, refused or unknown."""
    done = f.handshake_done
    alert = f.fatal_alert
    if alert is not None:
        refused = (
            "the server refused the client certificate: "
            if alert.sender == SERVER and alert.description in reg.CERTIFICATE_ALERTS
            else ""
        )
        return Decision(
            Verdict.FAILED,
            basis,
            f"{refused}client sent a {n}-certificate chain; " + _alert_reason(f, alert),
        )
    if done and f.server_first_after == "alert" and f.end_kind is not None and f.end_kind.closed:
        return Decision(
            Verdict.FAILED,
            basis,
            f"server requested a client certificate; client sent a {n}-certificate "
            "chain and CertificateVerify and the handshake completed, but the server's "
            "first record after it was an encrypted alert, then the connection ended: "
            "the server refused the client after the handshake (a key log names the "
            "alert)",
        )
    if not done:
        return _abort(f, "after the client's certificate") or _incomplete(
            f, "client sent its certificate but the handshake is not finished"
        )
    if f.client_cert_verify is None:
        return Decision(
            Verdict.MUTUAL,
            basis,
            f"client sent a {n}-certificate chain without CertificateVerify "
            "(fixed key exchange); handshake completed",
        )
    when = (
        f" ({f.later_request} client authentication, after the first handshake)"
        if f.later_request
        else "; handshake completed"
    )
    return Decision(
        Verdict.MUTUAL,
        basis,
        f"server requested a client certificate; client sent a {n}-certificate "
        f"chain and CertificateVerify{when}",
    )
