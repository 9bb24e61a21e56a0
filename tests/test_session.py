"""tlsinspect.session: how SessionBuilder folds a connection's events into SessionFacts.

The events are made from the real messages of tests/tls/fixtures (see test_classify.py for the
scripts). What is checked: which side is the client (from the SYN, the ClientHello, the
ServerHello, or at the end from the ports), events that come before the roles are known, the
bounded history, alerts and their `late` flag, and when the handshake is done and the session
decided, for TLS 1.2 and TLS 1.3, with and without keys.
"""

from __future__ import annotations

import pytest
from helpers import (
    MAX_ENCRYPTED,
    MAX_HISTORY,
    PHA_WATCH,
    Closed,
    build_session,
    client,
    server,
)
from test_classify import (
    ALERT12,
    C13_AUTH,
    C13_NONE,
    CCS,
    CERT_C13,
    CERT_S12,
    CH12,
    CH13,
    CH13_PHA,
    CH13_PSK,
    CLIENT12_AUTH,
    CLIENT12_NONE,
    CR12,
    CR13_LATER,
    CV_C13,
    DATA12,
    FIN13,
    FLIGHT12,
    FLIGHT12_CR,
    HANDSHAKE_FAILURE,
    HRR,
    NST13,
    PHA13_BLIND,
    PHA13_DEC,
    RENEGOTIATION_DEC,
    S13_DEC,
    S13_DEC_CR,
    S13_FLIGHT,
    S13_FLIGHT_CR,
    S13_TICKETS,
    SERVER12_FIN,
    SH12,
    SH13,
    SH13_PSK,
    SKE,
    TICKETS_DEC,
    alert,
    sealed,
)

from tlsinspect.session import MAX_ALERTS, MAX_MALFORMED, SessionBuilder, SessionFacts
from tlsinspect.tls import messages as m
from tlsinspect.tls.connection import (
    KeysMissing,
    MessageMalformed,
    MessageSeen,
    StreamLost,
    TlsStarted,
)


def fresh() -> SessionBuilder:
    return SessionBuilder(
        SessionFacts(start_ts=0, addrs=(b"\x01" * 4, b"\x02" * 4), ports=(443, 50000))
    )


# -- roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("client_side", [0, 1])
def test_roles_from_the_syn(client_side: int) -> None:
    f = build_session(client(CH12), FLIGHT12, client_side=client_side).facts
    assert (f.client_side, f.roles_from) == (client_side, "syn")
    assert f.client_hello == CH12 and f.server_hello == SH12
    assert f.role(client_side) == "client" and f.role(1 - client_side) == "server"


def test_the_syn_decides_once() -> None:
    """Roles are set once: a later hint (a ClientHello, another set_client) changes nothing."""
    b = fresh()
    b.set_client(1, "syn")
    b.apply(MessageSeen(0, 1, CH12))
    b.set_client(0, "port")
    assert (b.facts.client_side, b.facts.roles_from) == (1, "syn")
    assert b.facts.history == [("server", "client_hello")]


@pytest.mark.parametrize("side", [0, 1])
def test_roles_from_the_client_hello(side: int) -> None:
    """No SYN in the capture: the side that sent the ClientHello is the client (RFC 5246
    7.4.1.2: the client speaks first)."""
    b = fresh()
    b.apply(MessageSeen(side, 1, CH13))
    b.apply(MessageSeen(1 - side, 2, SH13))
    assert (b.facts.client_side, b.facts.roles_from) == (side, "client_hello")
    assert b.facts.history == [("client", "client_hello"), ("server", "server_hello")]


def test_roles_from_the_server_hello() -> None:
    """The client's direction is missing: the side that sent the ServerHello is the server."""
    b = fresh()
    b.apply(MessageSeen(0, 1, SH12))
    assert (b.facts.client_side, b.facts.roles_from) == (1, "server_hello")
    assert b.facts.client_hello is None and b.facts.server_hello == SH12


def test_roles_from_the_port_apply_the_pending_events() -> None:
    """Joined after the handshake (no SYN, no hello): events wait until the roles are known,
    which the pipeline decides at the end from the ports, then count for the right role."""
    b = fresh()
    b.apply(TlsStarted(0, 1, b"", 0, True))
    for n in range(3):
        b.apply(MessageSeen(0, 2 + n, DATA12))
    b.apply(MessageSeen(1, 9, DATA12))
    assert b.facts.client_side is None and b.facts.app_data == {} and not b.facts.tls_seen
    b.set_client(1, "port")  # side 1 has the higher (ephemeral) port 50000
    f = b.facts
    assert (f.client_side, f.roles_from) == (1, "port")
    assert f.app_data == {"server": 3, "client": 1} and f.tls_seen and f.end_ts == 9


def test_events_before_the_client_hello_are_applied_to_the_right_roles() -> None:
    """A lost stream seen before the ClientHello of the other side names the server."""
    b = fresh()
    b.apply(StreamLost(1, 1, "bytes missing"))
    b.apply(MessageSeen(0, 2, CH12))
    assert b.facts.roles_from == "client_hello" and b.facts.lost == {"server": "bytes missing"}


def test_pending_events_are_bounded() -> None:
    b = fresh()
    for n in range(MAX_HISTORY * 2):
        b.apply(MessageSeen(0, n, DATA12))
    b.set_client(0, "port")
    assert b.facts.app_data == {"client": MAX_HISTORY}


# -- what is recorded --------------------------------------------------------------------------


def test_history_is_capped_and_tickets_are_bounded() -> None:
    tickets = server(*[NST13] * (MAX_HISTORY * 2), decrypted=True)
    f = build_session(
        client(CH13), server(SH13), S13_DEC, client(FIN13, decrypted=True), tickets
    ).facts
    assert len(f.history) == MAX_HISTORY
    assert f.history[:3] == [
        ("client", "client_hello"),
        ("server", "server_hello"),
        ("server", "encrypted_extensions"),
    ]
    assert f.last_message["server"] == "new_session_ticket"  # still follows past the cap
    assert f.session_tickets == [NST13.ticket] * 4


def test_a_hello_retry_request_keeps_the_second_client_hello() -> None:
    """RFC 8446 4.1.4: after a HelloRetryRequest the client sends a second ClientHello, and the
    ServerHello answers that one."""
    f = build_session(client(CH13), server(HRR), client(CH13_PHA), server(SH13)).facts
    assert f.retry_request and f.client_hellos == 2
    assert f.client_hello == CH13_PHA and f.server_hello == SH13
    assert ("server", "hello_retry_request") in f.history


def test_a_later_request_is_named_by_what_came_before() -> None:
    """A CertificateRequest after both Finished: TLS 1.3 post-handshake (RFC 8446 4.6.2), or a
    TLS 1.2 renegotiation (a second ClientHello, RFC 5246 7.4.1.1)."""
    pha = build_session(*PHA13_DEC, server(CR13_LATER, decrypted=True)).facts
    assert pha.later_request == "post-handshake" and pha.cert_request == CR13_LATER
    again = build_session(*RENEGOTIATION_DEC, server(SH12, CERT_S12, SKE, CR12, decrypted=True))
    assert again.facts.later_request == "renegotiation" and again.facts.cert_request == CR12
    in_handshake = build_session(client(CH13), server(SH13), S13_DEC_CR).facts
    assert in_handshake.later_request is None and in_handshake.cert_request is not None


def test_problems_are_recorded_and_bounded() -> None:
    events = [KeysMissing(0, n, f"no secret {n}") for n in range(6)]
    events.append(MessageMalformed(1, 7, 11, "certificate_list: 3 bytes short"))
    events.append(MessageMalformed(1, 8, -1, "alert record of 3 bytes"))
    f = build_session(*events).facts
    keys = [str(a) for a in f.anomalies if a.name == "keys_missing"]
    malformed = [str(a) for a in f.anomalies if a.name == "malformed_message"]
    assert f.key_problems == 4 and keys == [f"client: no secret {n}" for n in range(4)]
    assert malformed == [
        "server certificate: certificate_list: 3 bytes short",
        "server alert: alert record of 3 bytes",
    ]


def test_early_data_before_the_server_hello() -> None:
    """RFC 8446 2.3: 0-RTT records the client sends right after its ClientHello."""
    f = build_session(client(CH13_PSK, CCS, sealed(6)), server(SH13_PSK)).facts
    assert f.early_data_sent and ("client", "early_data") in f.history
    assert f.after_hello == []  # the sizes kept are those after the ServerHello


# -- alerts ------------------------------------------------------------------------------------


def test_a_plaintext_alert_ends_the_handshake() -> None:
    f = build_session(client(CH12), FLIGHT12_CR, CLIENT12_AUTH, server(alert(48))).facts
    (a,) = f.alerts
    assert (a.sender, a.level, a.description, a.fatal, a.late) == ("server", 2, 48, True, False)
    assert a.after == "encrypted_handshake"  # the client's Finished came last
    assert f.fatal_alert is a
    assert a.to_dict() == {
        "sender": "server",
        "level": "fatal",
        "description": "unknown_ca",
        "encrypted": False,
    }


def test_an_encrypted_alert_is_not_read_as_fatal() -> None:
    """RFC 5246 6.2.3: after ChangeCipherSpec an alert is protected: its level is not seen."""
    f = build_session(client(CH12), FLIGHT12, CLIENT12_NONE, SERVER12_FIN, server(ALERT12)).facts
    (a,) = f.alerts
    assert (a.level, a.description, a.fatal) == (None, None, False) and f.fatal_alert is None
    assert a.to_dict()["encrypted"] is True


def test_an_alert_after_the_sender_sent_data_is_late() -> None:
    """A fatal alert from a side that already sent application data (read with the keys)
    comes after a completed exchange: it does not undo the handshake."""
    handshake = [
        client(CH13),
        server(SH13),
        S13_DEC_CR,
        client(CERT_C13, CV_C13, FIN13, decrypted=True),
        TICKETS_DEC,
    ]
    data = server(m.EncryptedRecord(23, 40), decrypted=True)
    late = build_session(*handshake, data, server(alert(80), decrypted=True)).facts
    assert [a.late for a in late.alerts] == [True] and late.fatal_alert is None
    early = build_session(*handshake, server(alert(80), decrypted=True)).facts
    assert [a.late for a in early.alerts] == [False] and early.fatal_alert is early.alerts[0]


def test_a_warning_alert_is_not_fatal() -> None:
    f = build_session(client(CH12), FLIGHT12_CR, client(alert(41, 1))).facts
    assert not f.alerts[0].fatal and f.fatal_alert is None


# -- TLS 1.2: done and decided -----------------------------------------------------------------


def test_tls12_done_when_both_finished() -> None:
    """RFC 5246 7.4.9: the handshake is over once each side sent its Finished."""
    b = build_session(client(CH12), FLIGHT12_CR, CLIENT12_AUTH)
    assert "client" in b.facts.finished and not b.facts.handshake_done and not b.decided
    b = build_session(client(CH12), FLIGHT12_CR, CLIENT12_AUTH, SERVER12_FIN)
    assert b.facts.handshake_done


def test_tls12_decided_on_the_servers_first_record_after() -> None:
    """The verdict waits for the server's first record after its Finished: a HelloRequest
    there starts a renegotiation (which may ask for the client certificate), an alert there
    refuses the client."""
    done = [client(CH12), FLIGHT12_CR, CLIENT12_AUTH, SERVER12_FIN]
    assert not build_session(*done).decided
    assert not build_session(*done, client(DATA12)).decided  # the client's records do not tell
    assert build_session(*done, server(DATA12)).decided


def test_tls12_an_alert_first_waits_for_more() -> None:
    done = [client(CH12), FLIGHT12_CR, CLIENT12_AUTH, SERVER12_FIN]
    b = build_session(*done, server(ALERT12))
    assert b.facts.server_first_after == "alert" and not b.decided
    assert build_session(*done, server(ALERT12), server(DATA12)).decided


def test_tls12_a_renegotiation_decides_at_once() -> None:
    b = build_session(
        client(CH12), FLIGHT12, CLIENT12_NONE, SERVER12_FIN, server(m.EncryptedRecord(22, 40))
    )
    assert b.facts.renegotiation_seen and b.decided


def test_tls12_a_decrypted_renegotiation_is_followed() -> None:
    """RFC 5246 7.4.1.1: a HelloRequest, then a second ClientHello, in encrypted records; the
    first ClientHello stays the session's, and the renegotiation's messages are read on."""
    f = build_session(*RENEGOTIATION_DEC, server(SH12, decrypted=True)).facts
    assert f.client_hellos == 2 and f.client_hello == CH12 and f.decrypted
    assert f.history[-3:] == [
        ("server", "hello_request"),
        ("client", "client_hello"),
        ("server", "server_hello"),
    ]


def test_tls12_not_done_without_the_servers_finished() -> None:
    b = build_session(client(CH12), FLIGHT12, CLIENT12_NONE, server(CCS), Closed("eof"))
    assert set(b.facts.finished) == {"client"} and not b.facts.handshake_done and not b.decided


# -- TLS 1.3: done and decided -----------------------------------------------------------------


def test_tls13_decrypted_done_after_two_server_messages() -> None:
    """With keys the verdict waits for the server's messages after the client's Finished (a
    second NewSessionTicket: a later resumption may name either, RFC 8446 4.6.1)."""
    steps = [
        client(CH13),
        server(SH13),
        S13_DEC_CR,
        client(CERT_C13, CV_C13, FIN13, decrypted=True),
    ]
    assert not build_session(*steps).facts.handshake_done
    assert not build_session(*steps, server(NST13, decrypted=True)).facts.handshake_done
    b = build_session(*steps, TICKETS_DEC)
    assert b.facts.handshake_done and b.decided


def test_tls13_decrypted_with_post_handshake_auth_is_decided_when_done() -> None:
    """Decryption goes on in the TLS layer (it watches for a later request): the facts are
    decided as soon as the handshake is done."""
    b = build_session(*PHA13_DEC)
    assert b.facts.handshake_done and b.decided


def test_tls13_blind_done_when_the_sizes_settle_and_the_server_answered() -> None:
    steps = [client(CH13), server(SH13), S13_FLIGHT_CR, C13_AUTH]
    b = build_session(*steps)
    assert "client" in b.facts.finished and not b.facts.handshake_done and not b.decided
    b = build_session(*steps, S13_TICKETS)
    assert b.facts.server_reply == [sealed("new_session_ticket_tls13").length] * 2
    assert b.facts.handshake_done and b.decided


def test_tls13_blind_with_post_handshake_auth_watches_more_records() -> None:
    """A client that offered post_handshake_auth (RFC 8446 4.2.6) may be asked later: its
    answer shows only in record sizes, so PHA_WATCH more records are followed."""
    steps = PHA13_BLIND
    b = build_session(*steps)
    assert b.facts.handshake_done and not b.decided
    decided_at = None
    for n in range(1, PHA_WATCH + 3):
        b = build_session(*steps, [x for _ in range(n) for x in client(DATA12)])
        assert b.decided == (b.facts.post_records >= PHA_WATCH), n
        if b.decided and decided_at is None:
            decided_at = n
    assert decided_at is not None and decided_at > PHA_WATCH // 2


def test_tls13_blind_sizes_kept_are_bounded() -> None:
    steps = [client(CH13_PHA), server(SH13), S13_FLIGHT, C13_NONE]
    f = build_session(*steps, server(*[sealed(40)] * (MAX_ENCRYPTED * 2))).facts
    assert len(f.after_hello) == MAX_ENCRYPTED and f.handshake_done


def test_tls13_psk_resumption_done_on_the_servers_answer() -> None:
    steps = [client(CH13_PSK), server(SH13_PSK), server(sealed(6), sealed(52)), client(sealed(52))]
    assert not build_session(*steps).facts.handshake_done
    b = build_session(*steps, server(sealed("new_session_ticket_tls13")))
    assert b.facts.handshake_done and b.decided


def test_tls13_after_hello_holds_the_records_in_order() -> None:
    f = build_session(
        client(CH13), server(SH13), S13_FLIGHT, C13_NONE, Closed("fin", "client")
    ).facts
    assert [r for r, _ in f.after_hello] == ["server"] * 4 + ["client"]
    assert f.size_view().closed and f.size_view().hash_len == 48  # TLS_AES_256_GCM_SHA384
    assert f.version == 0x0304 and f.tls13 and f.aead_tag == 16 and f.alert_size == 19


# -- what a session keeps is bounded -------------------------------------------------------------


def test_alerts_kept_are_bounded_and_the_first_fatal_one_is_among_them():
    """A peer sending warning alerts without end: the first MAX_ALERTS are kept, and the fatal
    alert after them still is (it decides the verdict)."""
    warnings = [alert(0, level=1)] * (3 * MAX_ALERTS)  # close_notify as a warning, over and over
    f = build_session(client(CH12), server(*warnings, alert(HANDSHAKE_FAILURE))).facts
    assert len(f.alerts) == MAX_ALERTS + 1
    assert f.fatal_alert is not None and f.fatal_alert.description == HANDSHAKE_FAILURE


def test_malformed_messages_noted_are_bounded():
    b = fresh()
    b.set_client(1, "syn")
    for n in range(3 * MAX_MALFORMED):
        b.apply(MessageMalformed(1, n, 1, f"bad {n}"))
    noted = [a for a in b.facts.anomalies if a.name == "malformed_message"]
    assert [a.detail for a in noted] == [f"bad {n}" for n in range(MAX_MALFORMED)]
