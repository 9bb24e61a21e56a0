"""The TLS 1.3 inference from record sizes, on the shapes real stacks give.

Each case is a sequence of (sender, record length) after the ServerHello, as a capture without
keys shows it. The OpenSSL ones are copied from captures/tls13.pcapng; the others have the shape
the stacks are known to send (padding, coalesced flights, client EncryptedExtensions, records of
the other side in between), built from the same message sizes. End-to-end checks on recordings of
those stacks are in tests/e2e/test_stacks.py.
"""

from __future__ import annotations

import pytest

from tlsinspect.infer import (
    MIN_AUTHENTICATION,
    VERIFY_SIZES,
    View,
    infer_handshake,
    server_asked,
    server_padding,
)

OVER = 17  # content type + AES-GCM tag
FIN = 52 + OVER  # Finished of TLS_AES_256_GCM_SHA384 (OpenSSL's first choice), unpadded record
ALERT = 2 + OVER

# OpenSSL's server flight, one message per record: EE, [CR,] Certificate, CertificateVerify, Fin
ASKING = [23, 62, 1894, 281, 69]
NOT_ASKING = [23, 1894, 281, 69]


def view(
    seq: str, *, early: bool = False, closed: bool = False, hash_len: int = 48, alps: bool = True
) -> View:
    """'S23 S62 C1294' -> records."""
    recs = [("server" if w[0] == "S" else "client", int(w[1:])) for w in seq.split()]
    return View(recs, hash_len, 16, early, closed, alps)


def flight(sizes: list[int], pad: int = 0) -> str:
    return " ".join(f"S{n + pad}" for n in sizes)


def verdict(seq: str, **kw: bool) -> str | None:
    return infer_handshake(view(seq, **kw)).verdict


# -- OpenSSL, unpadded, one message per record (captures/tls13.pcapng) -----------------------


@pytest.mark.parametrize(
    "seq, expected",
    [
        (f"{flight(ASKING)} C1294 C97 C69 S810", "mutual"),
        (f"{flight(NOT_ASKING)} C69 S250", "one-way"),
        (f"{flight(ASKING)} C25 C69 S250", "cert-requested-not-sent"),
        (f"{flight(ASKING)} C1086 C94 C69 S19 C22", None),  # refused, but not closed yet
    ],
)
def test_openssl_shapes(seq: str, expected: str | None):
    assert verdict(seq) == expected


def test_refusal_after_a_certificate_is_failed_once_closed():
    inf = infer_handshake(view(f"{flight(ASKING)} C1086 C94 C69 S19 C22", closed=True))
    assert inf.verdict == "failed" and inf.client_certificate is True
    assert "the size of an alert" in inf.evidence


def test_facts_follow_the_verdict():
    mutual = infer_handshake(view(f"{flight(ASKING)} C1294 C97 C69 S810"))
    assert (mutual.cert_requested, mutual.client_certificate, mutual.client_verify) == (
        True,
        True,
        True,
    )
    one_way = infer_handshake(view(f"{flight(NOT_ASKING)} C69 S250"))
    assert (one_way.cert_requested, one_way.client_certificate) == (False, False)
    empty = infer_handshake(view(f"{flight(ASKING)} C25 C69 S250"))
    assert (empty.cert_requested, empty.client_certificate, empty.client_verify) == (
        True,
        False,
        False,
    )


def test_server_flight_shows_the_request():
    assert server_asked(view(flight(ASKING) + " C69")) is True
    assert server_asked(view(flight(NOT_ASKING) + " C69")) is False
    assert server_asked(view("S2300 C69")) is None  # one record: not shown
    assert server_padding(view(flight(ASKING) + " C69")) == 0


def test_a_certificate_the_server_never_asked_for_is_not_mutual():
    # the client's sizes read as a certificate, the server's flight has no CertificateRequest
    inf = infer_handshake(view(f"{flight(NOT_ASKING)} C1294 C97 C69 S810"))
    assert inf.verdict is None and "no CertificateRequest" in inf.evidence


# -- records padded by 16 bytes (RFC 8446 5.4), as JSSE sends them ---------------------------

P = 16


def test_padded_one_way_is_not_mutual():
    # Finished + 16, then application data, then a close_notify of 35 bytes
    seq = f"{flight(NOT_ASKING, P)} C{FIN + P} S{250 + P} C{22 + P} C{ALERT + P}"
    inf = infer_handshake(view(seq, closed=True))
    assert inf.verdict == "one-way", inf.evidence
    assert inf.client_padding == P


def test_padded_one_way_without_a_client_alert_is_learned_from_the_server():
    seq = f"{flight(NOT_ASKING, P)} C{FIN + P} S{250 + P} C{22 + P}"
    assert server_padding(view(seq)) == P
    assert verdict(seq) == "one-way"


def test_padded_one_way_against_an_unpadded_server_is_never_mutual():
    # nothing confirms the client's padding: undecided or one-way, never mutual
    seq = f"{flight(NOT_ASKING)} C{FIN + P} S250 C{22 + P}"
    assert verdict(seq) in (None, "one-way")
    # without ALPS the 16 bytes are no message: the server did not ask, so they are padding
    inf = infer_handshake(view(seq, alps=False))
    assert inf.verdict == "one-way" and "no CertificateRequest, so padding" in inf.evidence
    # the same bytes to a server that asked: an empty Certificate and padding
    seq = f"{flight(ASKING)} C{FIN + P} S250 C{22 + P}"
    assert verdict(seq, alps=False) == "cert-requested-not-sent"


def test_a_clear_client_answer_is_not_overruled_by_the_server_flight():
    # an empty Certificate in a record of its own, yet the server's flight shows no request: the
    # two disagree (a server may put its request and certificate in one record): undecided
    assert verdict(f"{flight(NOT_ASKING)} C25 C69 S250", alps=False) is None


def test_padded_mutual_and_not_sent():
    mutual = f"{flight(ASKING, P)} C{1277 + OVER + P} C{80 + OVER + P} C{FIN + P} S{810 + P}"
    assert server_padding(view(mutual)) == P
    assert verdict(mutual) == "mutual"
    empty = f"{flight(ASKING, P)} C{8 + OVER + P} C{FIN + P} S{250 + P}"
    assert verdict(empty) == "cert-requested-not-sent"


def test_padded_alert_refusal_is_failed_not_mutual():
    seq = f"{flight(ASKING, P)} C{1277 + OVER + P} C{80 + OVER + P} C{FIN + P} S{ALERT + P}"
    assert verdict(seq, closed=True) == "failed"
    assert verdict(seq, closed=False) is None  # an alert-sized answer: wait for the close


def test_padded_refusal_of_an_empty_certificate():
    seq = f"{flight(ASKING, P)} C{8 + OVER + P} C{FIN + P} S{ALERT + P}"
    assert verdict(seq, closed=True) == "cert-requested-not-sent"


# -- client EncryptedExtensions (ALPS), EndOfEarlyData, coalesced flights --------------------


def test_client_encrypted_extensions_are_not_a_certificate():
    # Finished + 10 bytes in one record, as a BoringSSL client with ALPS sends it
    seq = f"S3000 C{FIN + 10} C{22} S250 C{ALERT}"
    inf = infer_handshake(view(seq))
    assert inf.verdict == "one-way", inf.evidence
    assert "EncryptedExtensions" in inf.evidence


def test_without_alps_offered_no_client_encrypted_extensions():
    # the same 10 bytes from a client that did not offer ALPS: no reading fits
    assert verdict(f"S3000 C{FIN + 10} C{22} S250 C{ALERT}", alps=False) is None
    # 24 bytes before Finished: an empty Certificate, compressed (RFC 8879)
    inf = infer_handshake(view(f"S3000 C{24 + OVER} C{FIN} S250 C22", alps=False))
    assert inf.verdict == "cert-requested-not-sent" and "compressed" in inf.evidence


def test_extensions_with_an_empty_certificate_in_one_record_are_undecided():
    # 18 = EncryptedExtensions of 10 and an empty Certificate, or EncryptedExtensions of 18
    assert verdict(f"S3000 C{FIN + 18} C22 S250") is None


def test_end_of_early_data():
    assert verdict(f"{flight(NOT_ASKING)} C21 C69 S250", early=True) == "one-way"
    assert verdict(f"{flight(ASKING)} C21 C25 C69 S250", early=True) == "cert-requested-not-sent"


def test_coalesced_mutual_flight_with_later_data():
    # NSS sends a flight in one record: Certificate + CertificateVerify + Finished
    seq = f"S3100 C{1290 + 80 + 52 + OVER} S250 C22 S22"
    inf = infer_handshake(view(seq))
    assert inf.verdict == "mutual", inf.evidence


def test_coalesced_flight_without_later_client_records_is_undecided():
    seq = f"S3100 C{1290 + 80 + 52 + OVER} S250"
    assert verdict(seq) is None


def test_compressed_empty_certificate_is_not_read_as_empty_or_mutual():
    # a CompressedCertificate of an empty list: about 24 bytes, not 8
    assert verdict(f"{flight(ASKING)} C{24 + OVER} C{FIN} S250") in (
        None,
        "cert-requested-not-sent",
    )
    assert verdict(f"{flight(ASKING)} C{24 + OVER} C{FIN} S250") != "mutual"


def test_compressed_certificate_with_its_verify_is_mutual():
    assert verdict(f"{flight(ASKING)} C{700 + OVER} C{80 + OVER} C{FIN} S250") == "mutual"


# -- the other side's records in between, several alerts -------------------------------------


def test_server_records_between_the_client_records():
    # an empty Certificate, the server's alert, then the client's Finished
    seq = f"{flight(ASKING)} C25 S19 C69"
    assert verdict(seq, closed=True) == "cert-requested-not-sent"
    # a NewSessionTicket between the client's Certificate and the rest of its flight
    assert verdict(f"{flight(ASKING)} C1294 S250 C97 C69 S810") == "mutual"


def test_two_alerts_before_the_close_are_a_refusal():
    seq = f"{flight(ASKING)} C1294 C97 C69 S19 S19"
    assert verdict(seq, closed=True) == "failed"


def test_later_data_of_finished_size_does_not_make_a_padded_flight_mutual():
    # padded Finished first, then 500 bytes of data, then data the size of an unpadded Finished
    seq = f"S3000 C{FIN + P} C{500 + OVER} C{FIN} S250"
    assert verdict(seq) != "mutual"


def test_sha256_suites():
    fin = 36 + OVER
    seq = f"S23 S62 S1894 S281 S{fin} C1294 C97 C{fin} S810"
    assert infer_handshake(view(seq, hash_len=32)).verdict == "mutual"


def test_no_flight_is_undecided():
    assert verdict(flight(ASKING)) is None


def test_size_tables():
    assert min(VERIFY_SIZES) == 8 + 64  # Ed25519
    assert 8 + 256 in VERIFY_SIZES and 8 + 71 in VERIFY_SIZES
    assert MIN_AUTHENTICATION > 10 + 8  # never "Finished plus a few bytes"
