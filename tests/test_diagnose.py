"""tlsinspect.diagnose: the one-line diagnosis, on recorded sessions and on rows of facts."""

from __future__ import annotations

import pytest
from helpers import OWN

import tlsinspect
from tlsinspect.classify import Decision, classify
from tlsinspect.diagnose import capture_time, chain_reports, diagnose
from tlsinspect.model import Basis, Verdict, iso_time
from tlsinspect.session import AlertSeen, SessionFacts
from tlsinspect.tls import messages as m

T = 1_795_000_000 * 10**9  # a packet time, ns


@pytest.mark.parametrize(
    ("capture", "port", "words"),
    [
        ("tls12.pcapng", 8401, None),
        ("tls12.pcapng", 8403, "server asked for a client certificate, client sent none; the "
         "server accepted the connection without client authentication"),
        ("tls12.pcapng", 8404, "server required a client certificate, client sent none "
         "(handshake_failure)"),
        ("tls12.pcapng", 8405, "server rejected the client certificate: unknown_ca; client "
         "chain issued by 'Rogue CA'"),
        ("stacks.pcap", 8465, "server asked for 'Test Root CA'"),
        ("stacks.pcap", 8464, "(handshake_failure); CAs the server listed: 'Test Root CA'"),
        ("tcp_edge.pcapng", 8494, "connection reset by the server after the client's "
         "certificate, without an alert"),
        ("tcp_edge.pcapng", 8495, "connection closed by the server after the client's "
         "ClientHello, without an alert; the client then sent decode_error"),
        ("tls13.pcapng", 8434, "server required a client certificate, client sent none "
         "(inferred from the encrypted record sizes)"),
        ("tls13.pcapng", 8435, "server refused the client's certificate (inferred"),
    ],
)  # fmt: skip
def test_diagnosis_of_recorded_sessions(capture, port, words):
    found = [s for s in tlsinspect.sessions(OWN / capture) if s["server_port"] == port]
    assert found, f"no session on port {port}"
    diagnosis = found[0]["diagnosis"]
    if words is None:
        assert diagnosis is None
    else:
        assert diagnosis is not None and words in diagnosis, diagnosis


def _facts(**kw: object) -> SessionFacts:
    f = SessionFacts(start_ts=T, addrs=(b"\x7f\x00\x00\x01", b"\x7f\x00\x00\x01"), ports=(1, 2))
    f.client_side = 0
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def _hello(version: int = 0x0303) -> tuple[m.ClientHello, m.ServerHello]:
    ch = m.ClientHello(0x0303, b"\x00" * 32, b"", (0x1301,), b"\x00", (), "a.example")
    sh = m.ServerHello(0x0303, b"\x00" * 32, b"", 0xC02F, 0, (), version)
    return ch, sh


@pytest.mark.parametrize(
    ("verdict", "basis", "expected"),
    [
        (Verdict.RESUMED, Basis.OBSERVED, None),
        (Verdict.ENCRYPTED, Basis.OBSERVED, "TLS 1.3 without keys"),
        (Verdict.INCOMPLETE, Basis.OBSERVED, "the capture does not show how the handshake ended"),
    ],
)
def test_verdicts_without_alerts(verdict, basis, expected):
    d = Decision(verdict, basis, "because")
    got = diagnose(_facts(), d)
    assert got is None if expected is None else expected in (got or "")


@pytest.mark.parametrize(
    ("sender", "description", "after", "expected"),
    [
        ("server", 70, "client_hello", "server aborted the handshake with protocol_version "
         "after the client's ClientHello: no TLS version both sides accept"),
        ("server", 40, "client_hello", "server aborted the handshake with handshake_failure "
         "after the client's ClientHello: no acceptable set of security parameters"),
        ("client", 112, "server_hello", "client aborted the handshake with unrecognized_name"),
        ("client", 48, "server_hello_done", "client rejected the server certificate: unknown_ca; "
         "the chain passes tlsinspect's checks"),
    ],
)  # fmt: skip
def test_alerts_without_client_certificates(sender, description, after, expected):
    ch, sh = _hello()
    server_certs = (b"not a certificate",) if sender == "client" and description == 48 else None
    f = _facts(
        client_hello=ch,
        server_hello=sh,
        server_certs=server_certs,
        alerts=[AlertSeen(sender, T + 1, 2, description, after)],
    )
    d = classify(f)
    assert d.verdict == Verdict.FAILED
    client, server = chain_reports(f, "127.0.0.1")
    got = diagnose(f, d, client, server) or ""
    if server_certs:  # an unreadable server certificate is named as such
        assert "client rejected the server certificate: unknown_ca" in got
        assert "not a readable certificate" in got
    else:
        assert expected in got, got


def test_decrypt_error_after_the_client_certificate():
    ch, sh = _hello()
    f = _facts(
        client_hello=ch,
        server_hello=sh,
        cert_request=m.CertificateRequest((64,), (0x0403,), ()),
        client_certs=(b"junk",),
        alerts=[AlertSeen("server", T + 1, 2, 51, "certificate_verify")],
    )
    got = diagnose(f, classify(f), *chain_reports(f, "127.0.0.1"))
    assert got is not None and got.startswith("server rejected the client's CertificateVerify")


def test_capture_time_keeps_microseconds():
    t = capture_time(1_700_000_000 * 10**9 + 123_456_789)
    assert t.isoformat() == "2023-11-14T22:13:20.123456+00:00"


@pytest.mark.parametrize(
    "ts_ns",
    [
        1_764_000_000 * 10**18,  # nanoseconds read as microseconds: year 57,868
        (0xFFFFFFFF << 32) * 1000,  # a damaged high word
        -(1 << 62) * 10**9,  # an if_tsoffset far before year 1
    ],
)
def test_a_packet_time_that_is_no_date_is_shown_raw(ts_ns):
    assert capture_time(ts_ns) is None
    assert iso_time(ts_ns) == f"@{ts_ns}"


def test_times_near_the_ends_of_the_calendar_are_dates():
    assert iso_time(-62_135_596_800 * 10**9) == "0001-01-01T00:00:00.000000Z"
    assert iso_time(253_402_300_799 * 10**9 + 999_999_000) == "9999-12-31T23:59:59.999999Z"
    assert iso_time(-1) == "1969-12-31T23:59:59.999999Z"


def test_decrypted_tls13_sessions_get_the_same_diagnosis():
    found = {
        s["server_port"]: s
        for s in tlsinspect.sessions(OWN / "tls13.pcapng", keylog=OWN / "tls13.keylog")
    }
    refused = found[8435]
    assert refused["basis"] == "decrypted"
    assert refused["diagnosis"] == (
        "server rejected the client certificate: unknown_ca; client chain issued by 'Rogue CA'"
    )
    assert found[8434]["diagnosis"] == (
        "server required a client certificate, client sent none (certificate_required)"
    )
