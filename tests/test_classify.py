"""tlsinspect.classify: `classify(facts, origin) -> Decision`, table-tested.

Each row is a script of real handshake messages (tests/tls/fixtures, cut from the recorded
captures) fed to a SessionBuilder, and the verdict and basis the RFCs give that session:
RFC 5246 (TLS 1.2) 7.4.4 to 7.4.9 for the client's answer to a CertificateRequest, 7.2 for
alerts, 7.3 and RFC 5077 for abbreviated handshakes; RFC 8446 (TLS 1.3) 4.3.2, 4.4.2, 4.6.2 for
client authentication in and after the handshake, 5.2 for the sizes of protected records. Where
the recorded captures hold the same situation, the row names its ground truth
(captures/*.truth.json). Records sizes of TLS 1.3 without keys are computed from the fixtures
the way RFC 8446 5.2 builds a record: the message bytes, one byte of content type, the AEAD tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from helpers import Closed, Lost, build_session, client, fixture_bytes, fixture_message, server

from tlsinspect.classify import Origin, classify
from tlsinspect.tls import messages as m

M = fixture_message

# -- TLS 1.2 (tls12.pcapng, Python ssl on both ends) ----------------------------------------------
CH12, SH12 = M("client_hello_tls12"), M("server_hello_tls12")
CH12_TICKET, SH12_RESUMED = M("client_hello_tls12_ticket"), M("server_hello_tls12_resumed")
CERT_S12, SKE, CR12, SHD = (
    M("certificate_tls12_server"),
    M("server_key_exchange_tls12"),
    M("certificate_request_tls12"),
    M("server_hello_done_tls12"),
)
CERT_C12, CKE, CV12 = (
    M("certificate_tls12_client"),
    M("client_key_exchange_tls12"),
    M("certificate_verify_tls12"),
)
EMPTY_C12, NST12 = M("certificate_tls12_client_empty"), M("new_session_ticket_tls12")
CCS = m.ChangeCipherSpec()
# An AES-GCM record after ChangeCipherSpec (RFC 5288 3: 8-byte explicit nonce, 16-byte tag):
# Finished (RFC 5246 7.4.9: 4-byte header, 12 bytes of verify_data) is 40 bytes, an alert 26.
FIN12 = m.EncryptedRecord(22, 8 + 16 + 16)
ALERT12 = m.EncryptedRecord(21, 8 + 2 + 16)
DATA12 = m.EncryptedRecord(23, 8 + 5 + 16)
HELLO_REQUEST = m.OtherHandshake(0, 0)  # RFC 5246 7.4.1.1: an empty body


def alert(description: int, level: int = 2) -> m.Alert:
    return m.Alert(level, description)


BAD_CERTIFICATE, UNKNOWN_CA, HANDSHAKE_FAILURE, NO_CERTIFICATE = 42, 48, 40, 41
PROTOCOL_VERSION, ILLEGAL_PARAMETER, CLOSE_NOTIFY = 70, 47, 0

FLIGHT12 = server(SH12, CERT_S12, SKE, SHD)  # RFC 5246 7.3: no CertificateRequest
FLIGHT12_CR = server(SH12, CERT_S12, SKE, CR12, SHD)
CLIENT12_AUTH = client(CERT_C12, CKE, CV12, CCS, FIN12)
CLIENT12_EMPTY = client(EMPTY_C12, CKE, CCS, FIN12)
CLIENT12_NONE = client(CKE, CCS, FIN12)
SERVER12_FIN = server(CCS, FIN12)
DATA = [*client(DATA12), *server(DATA12)]

# -- TLS 1.3 (tls13.pcapng and later_tls13.pcapng; TLS_AES_256_GCM_SHA384) ------------------------
CH13, SH13 = M("client_hello_tls13"), M("server_hello_tls13")
CH13_PHA = M("client_hello_tls13_post_handshake_auth")
CH13_PSK, SH13_PSK = M("client_hello_tls13_psk"), M("server_hello_tls13_psk")
HRR = M("hello_retry_request")
EE, CR13, CERT_S13, CV_S13, FIN13 = (
    M("encrypted_extensions_tls13"),
    M("certificate_request_tls13"),
    M("certificate_tls13_server"),
    M("certificate_verify_tls13_server"),
    M("finished_tls13"),
)
CERT_C13, CV_C13, EMPTY_C13 = (
    M("certificate_tls13_client"),
    M("certificate_verify_tls13_client"),
    M("certificate_tls13_client_empty"),
)
NST13 = M("new_session_ticket_tls13")
CR13_LATER = M("certificate_request_tls13_post_handshake")
TAG = 16  # AES-256-GCM (RFC 5116)


def sealed(*sizes_or_names: int | str) -> m.EncryptedRecord:
    """A TLS 1.3 protected record holding these messages (fixture names, or byte counts):
    TLSInnerPlaintext is the content, one byte of content type, no padding; then the tag."""
    content = sum(n if isinstance(n, int) else len(fixture_bytes(n)) for n in sizes_or_names)
    return m.EncryptedRecord(23, content + 1 + TAG)


# the server's first flight one message per record, as OpenSSL sends it (tls13.pcapng 8431)
S13_FLIGHT = server(
    sealed("encrypted_extensions_tls13"),
    sealed("certificate_tls13_server"),
    sealed("certificate_verify_tls13_server"),
    sealed("finished_tls13"),
)
S13_FLIGHT_CR = server(
    sealed("encrypted_extensions_tls13"),
    sealed("certificate_request_tls13"),
    sealed("certificate_tls13_server"),
    sealed("certificate_verify_tls13_server"),
    sealed("finished_tls13"),
)
C13_AUTH = client(
    sealed("certificate_tls13_client"),
    sealed("certificate_verify_tls13_client"),
    sealed("finished_tls13"),
)
C13_EMPTY = client(sealed("certificate_tls13_client_empty"), sealed("finished_tls13"))
C13_NONE = client(sealed("finished_tls13"))
# the client's Certificate, CertificateVerify and Finished in one record (as NSS sends them)
C13_ONE_RECORD = client(
    sealed("certificate_tls13_client", "certificate_verify_tls13_client", "finished_tls13")
)
S13_TICKETS = server(sealed("new_session_ticket_tls13"), sealed("new_session_ticket_tls13"))
ALERT13 = sealed(2)  # RFC 8446 6: an alert is 2 bytes
CONTEXT = len(CR13_LATER.context)  # a post-handshake Certificate echoes the request's context
# the first handshake decrypted with the key log
S13_DEC = server(EE, CERT_S13, CV_S13, FIN13, decrypted=True)
S13_DEC_CR = server(EE, CR13, CERT_S13, CV_S13, FIN13, decrypted=True)
TICKETS_DEC = server(NST13, NST13, decrypted=True)
# a one-way handshake whose client offered post-handshake authentication (RFC 8446 4.2.6)
PHA13_DEC = [client(CH13_PHA), server(SH13), S13_DEC, client(FIN13, decrypted=True), TICKETS_DEC]
PHA13_BLIND = [client(CH13_PHA), server(SH13), S13_FLIGHT, C13_NONE, S13_TICKETS]
# renegotiation after a one-way TLS 1.2 handshake, read with the key log (RFC 5246 7.4.1.1)
RENEGOTIATION_DEC = [
    client(CH12),
    FLIGHT12,
    CLIENT12_NONE,
    SERVER12_FIN,
    server(HELLO_REQUEST, decrypted=True),
    client(CH12, decrypted=True),
]

ORIGIN_MUTUAL = Origin("mutual", "192.0.2.7:50123", "2026-01-01T00:00:00.000000Z", "CN=alice")  # type: ignore[arg-type]


@dataclass(frozen=True)
class Row:
    name: str
    steps: list = field(repr=False)
    verdict: str
    basis: str
    why: str  # the RFC (or ground truth) the verdict follows from
    origin: Origin | None = None
    mentions: tuple[str, ...] = ()  # inputs of the row the reason must name


ROWS = [
    # ---- TLS 1.2, plaintext handshake -------------------------------------------------------
    Row(
        "tls12-mutual",
        [client(CH12), FLIGHT12_CR, CLIENT12_AUTH, SERVER12_FIN, DATA],
        "mutual",
        "observed",
        "5246 7.4.4, 7.4.6, 7.4.8: asked, a chain and a CertificateVerify; both Finished "
        "(truth tls12 8401 tls12-mutual-intermediate)",
    ),
    Row(
        "tls12-one-way",
        [client(CH12), FLIGHT12, CLIENT12_NONE, SERVER12_FIN, DATA],
        "one-way",
        "observed",
        "5246 7.3: no CertificateRequest, only the server authenticated (truth 8402)",
    ),
    Row(
        "tls12-empty-certificate-accepted",
        [client(CH12), FLIGHT12_CR, CLIENT12_EMPTY, SERVER12_FIN, DATA],
        "cert-requested-not-sent",
        "observed",
        "5246 7.4.6: a client without a suitable certificate sends an empty list (truth 8403)",
    ),
    Row(
        "tls12-empty-certificate-refused",
        [client(CH12), FLIGHT12_CR, CLIENT12_EMPTY, server(alert(HANDSHAKE_FAILURE))],
        "cert-requested-not-sent",
        "observed",
        "5246 7.4.6: the server may then abort with a fatal handshake_failure; what the client "
        "did is still no certificate (truth 8404 tls12-cert-required-not-sent)",
    ),
    Row(
        "tls12-no-certificate-alert",
        [client(CH12), FLIGHT12_CR, client(alert(NO_CERTIFICATE, 1), CKE, CCS, FIN12)],
        "cert-requested-not-sent",
        "observed",
        "RFC 6101 5.4.6: an SSL 3.0 client without a certificate answers with no_certificate",
    ),
    Row(
        "tls12-chain-refused-unknown-ca",
        [client(CH12), FLIGHT12_CR, CLIENT12_AUTH, server(alert(UNKNOWN_CA))],
        "failed",
        "observed",
        "5246 7.2.2: unknown_ca, fatal: the handshake did not complete (truth 8405)",
    ),
    Row(
        "tls12-chain-then-client-alert",
        [client(CH12), FLIGHT12_CR, client(CERT_C12, CKE, CV12), client(alert(HANDSHAKE_FAILURE))],
        "failed",
        "observed",
        "5246 7.2.2: a fatal alert ends the handshake before both Finished",
    ),
    Row(
        "tls12-late-refusal-encrypted",
        [
            client(CH12),
            FLIGHT12_CR,
            CLIENT12_AUTH,
            SERVER12_FIN,
            server(ALERT12),
            Closed("fin", "server"),
        ],
        "failed",
        "observed",
        "the server's first record after its Finished is alert-sized and it closes: a refusal "
        "of the chain (truth compress 9610 tls12-late-refusal-checker: failed)",
    ),
    Row(
        "tls12-fixed-key-exchange",
        [client(CH12), FLIGHT12_CR, client(CERT_C12, CKE, CCS, FIN12), SERVER12_FIN, DATA],
        "mutual",
        "observed",
        "5246 7.4.8: no CertificateVerify follows a certificate with fixed DH parameters; the "
        "client authenticated by its key exchange",
    ),
    Row(
        "tls12-chain-capture-ends",
        [client(CH12), FLIGHT12_CR, client(CERT_C12, CKE, CV12), Closed("eof")],
        "incomplete",
        "observed",
        "no Finished seen and no end: the handshake may still complete",
    ),
    Row(
        "tls12-chain-then-reset",
        [
            client(CH12),
            FLIGHT12_CR,
            client(CERT_C12, CKE, CV12, CCS, FIN12),
            Closed("rst", "server"),
        ],
        "failed",
        "observed",
        "the server reset the connection before its Finished (truth tcp_edge 8494 "
        "tls12-reset-after-client-cert: failed)",
    ),
    Row(
        "tls12-request-unanswered-capture-ends",
        [client(CH12), FLIGHT12_CR, Closed("eof")],
        "incomplete",
        "observed",
        "the client's answer (7.4.6) is not in the capture",
    ),
    Row(
        "tls12-request-unanswered-closed",
        [client(CH12), FLIGHT12_CR, Closed("fin", "client")],
        "failed",
        "observed",
        "the client closed instead of answering: no handshake",
    ),
    Row(
        "tls12-request-then-stream-lost",
        [client(CH12), FLIGHT12_CR, Lost("client"), Closed("fin", "client")],
        "incomplete",
        "observed",
        "bytes of the client's answer are missing: what they held is unknown, not a refusal",
    ),
    Row(
        "tls12-server-certificate-refused",
        [client(CH12), FLIGHT12, client(alert(BAD_CERTIFICATE))],
        "failed",
        "observed",
        "5246 7.2.2: the client refused the server's certificate, fatal",
    ),
    Row(
        "tls12-unfinished-capture-ends",
        [client(CH12), FLIGHT12, client(CKE), Closed("eof")],
        "incomplete",
        "observed",
        "no CertificateRequest so far and no Finished: may go either way",
    ),
    Row(
        "tls12-unfinished-closed",
        [client(CH12), FLIGHT12, Closed("fin", "server")],
        "failed",
        "observed",
        "closed before the handshake finished",
    ),
    Row(
        "tls12-server-flight-only",
        [FLIGHT12_CR, Closed("eof")],
        "incomplete",
        "observed",
        "only the server's direction is in the capture: the client's answer is unknown",
    ),
    Row(
        "tls12-renegotiation-encrypted",
        [client(CH12), FLIGHT12, CLIENT12_NONE, SERVER12_FIN, server(m.EncryptedRecord(22, 40))],
        "one-way",
        "observed",
        "5246 7.4.1.1: an encrypted handshake record after both Finished is a renegotiation; "
        "without keys only the one-way first handshake shows (blind_verdict of later_tls12 "
        "8561)",
    ),
    # ---- TLS 1.2 abbreviated handshakes (RFC 5246 7.3, RFC 5077 3.1) -------------------------
    Row(
        "tls12-resumed-ticket",
        [client(CH12_TICKET), server(SH12_RESUMED, CCS, FIN12), client(CCS, FIN12), DATA],
        "resumed",
        "observed",
        "5077 3.1: the server accepts the ticket, ChangeCipherSpec right after its ServerHello, "
        "no certificates (truth 8407 tls12-resumed-ticket)",
    ),
    Row(
        "tls12-resumed-session-id-of-a-mutual-session",
        [client(CH12), server(SH12_RESUMED, CCS, FIN12), client(CCS, FIN12)],
        "resumed",
        "observed",
        "5246 7.3: an abbreviated handshake resumes the session the origin is (truth 8406 "
        "tls12-resumed-session-id)",
        ORIGIN_MUTUAL,
        ("192.0.2.7:50123", "CN=alice"),
    ),
    Row(
        "tls12-resumption-aborted",
        [client(CH12_TICKET), server(SH12_RESUMED, CCS, FIN12), client(alert(ILLEGAL_PARAMETER))],
        "failed",
        "observed",
        "5246 7.2.2: a fatal alert ends the abbreviated handshake",
    ),
    # ---- TLS 1.2 with the key log ------------------------------------------------------------
    Row(
        "tls12-renegotiation-mutual-decrypted",
        [
            *RENEGOTIATION_DEC,
            server(SH12, CERT_S12, SKE, CR12, SHD, decrypted=True),
            client(CERT_C12, CKE, CV12, decrypted=True),
        ],
        "mutual",
        "decrypted",
        "5246 7.4.1.1: the renegotiation asked for and got a chain and CertificateVerify "
        "(truth later_tls12 8561 tls12-renegotiation-mutual)",
    ),
    Row(
        "tls12-renegotiation-empty-decrypted",
        [
            *RENEGOTIATION_DEC,
            server(SH12, CERT_S12, SKE, CR12, SHD, decrypted=True),
            client(EMPTY_C12, CKE, decrypted=True),
        ],
        "cert-requested-not-sent",
        "decrypted",
        "7.4.6 in the renegotiation: an empty Certificate (truth later_tls12 8562)",
    ),
    Row(
        "tls12-renegotiation-without-request-decrypted",
        [
            *RENEGOTIATION_DEC,
            server(SH12, CERT_S12, SKE, SHD, decrypted=True),
            client(CKE, m.Finished(12), decrypted=True),
        ],
        "one-way",
        "decrypted",
        "a renegotiation without CertificateRequest (truth later_tls12 8564)",
    ),
    Row(
        "tls12-late-refusal-decrypted",
        [
            client(CH12),
            FLIGHT12_CR,
            client(CERT_C12, CKE, CV12, CCS),
            client(m.Finished(12), decrypted=True),
            server(CCS),
            server(m.Finished(12), decrypted=True),
            server(alert(BAD_CERTIFICATE), decrypted=True),
        ],
        "failed",
        "decrypted",
        "a bad_certificate alert after both Finished, read with the key log (truth compress "
        "9611 tls12-late-refusal-bad-certificate)",
    ),
    # ---- before or without a ServerHello -----------------------------------------------------
    Row(
        "client-hello-only",
        [client(CH12), Closed("eof")],
        "incomplete",
        "observed",
        "no ServerHello: nothing negotiated yet",
    ),
    Row(
        "client-hello-then-reset",
        [client(CH12), Closed("rst", "server")],
        "failed",
        "observed",
        "the server reset the connection instead of answering",
    ),
    Row(
        "client-hello-refused",
        [client(CH12), server(alert(PROTOCOL_VERSION))],
        "failed",
        "observed",
        "5246 E.1 / 8446 6.2: protocol_version, fatal, instead of a ServerHello",
    ),
    Row(
        "silent-server-closes-then-client-alert",
        [client(CH12), Closed("fin", "server"), client(alert(HANDSHAKE_FAILURE))],
        "failed",
        "observed",
        "the server closed without a ServerHello (truth tcp_edge 8495 "
        "tls12-silent-server-closes: failed)",
    ),
    Row(
        "hello-retry-then-nothing",
        [client(CH13), server(HRR), Closed("eof")],
        "incomplete",
        "observed",
        "8446 4.1.4: a HelloRetryRequest is not a ServerHello; the second ClientHello's answer "
        "is not in the capture",
    ),
    Row(
        "joined-after-the-handshake",
        [client(DATA12), server(DATA12), Closed("eof")],
        "incomplete",
        "observed",
        "only application data: the handshake is not in the capture",
    ),
    Row(
        "nothing-readable",
        [Closed("eof")],
        "incomplete",
        "observed",
        "no handshake message at all",
    ),
    Row(
        "nothing-readable-stream-lost",
        [Lost("client"), Closed("eof")],
        "incomplete",
        "observed",
        "the client's bytes are missing from the start",
    ),
    # ---- TLS 1.3 with the key log (RFC 8446 4.3.2, 4.4.2) -------------------------------------
    Row(
        "tls13-mutual-decrypted",
        [
            client(CH13),
            server(SH13),
            S13_DEC_CR,
            client(CERT_C13, CV_C13, FIN13, decrypted=True),
            TICKETS_DEC,
        ],
        "mutual",
        "decrypted",
        "4.3.2, 4.4.2, 4.4.3: asked, a chain and a CertificateVerify (truth tls13 8431)",
    ),
    Row(
        "tls13-one-way-decrypted",
        [client(CH13), server(SH13), S13_DEC, client(FIN13, decrypted=True), TICKETS_DEC],
        "one-way",
        "decrypted",
        "4.4.2: no CertificateRequest, the client sends no Certificate (truth tls13 8432)",
    ),
    Row(
        "tls13-empty-certificate-decrypted",
        [
            client(CH13),
            server(SH13),
            S13_DEC_CR,
            client(EMPTY_C13, FIN13, decrypted=True),
            TICKETS_DEC,
        ],
        "cert-requested-not-sent",
        "decrypted",
        "4.4.2: asked, the client answers with an empty certificate_list (truth tls13 8433)",
    ),
    Row(
        "tls13-chain-refused-decrypted",
        [
            client(CH13),
            server(SH13),
            S13_DEC_CR,
            client(CERT_C13, CV_C13, FIN13, decrypted=True),
            server(alert(UNKNOWN_CA), decrypted=True),
        ],
        "failed",
        "decrypted",
        "6.2: unknown_ca, fatal, after the client's flight (truth tls13 8435)",
    ),
    Row(
        "tls13-post-handshake-mutual-decrypted",
        [
            *PHA13_DEC,
            server(CR13_LATER, decrypted=True),
            client(CERT_C13, CV_C13, FIN13, decrypted=True),
        ],
        "mutual",
        "decrypted",
        "4.6.2: a post-handshake CertificateRequest answered with a chain and CertificateVerify "
        "(truth later_tls13 8571)",
    ),
    # ---- TLS 1.3 resumption and plaintext alerts ---------------------------------------------
    Row(
        "tls13-resumed-psk",
        [client(CH13_PSK), server(SH13_PSK), server(sealed(6), sealed(52)), client(sealed(52))],
        "resumed",
        "observed",
        "4.2.11: the ServerHello's pre_shared_key accepts the ticket; no certificates (truth "
        "tls13 8438 tls13-resumed-psk)",
    ),
    Row(
        "tls13-resumed-psk-of-a-mutual-session",
        [client(CH13_PSK), server(SH13_PSK), server(sealed(6), sealed(52)), client(sealed(52))],
        "resumed",
        "observed",
        "4.2.11, with the session that issued the ticket known",
        ORIGIN_MUTUAL,
        ("192.0.2.7:50123",),
    ),
    Row(
        "tls13-plaintext-alert-after-server-hello",
        [client(CH13), server(SH13), client(alert(ILLEGAL_PARAMETER))],
        "failed",
        "observed",
        "6: an alert the client sends in plaintext after the ServerHello aborts the handshake",
    ),
    Row(
        "tls13-client-flight-missing",
        [client(CH13), server(SH13), S13_FLIGHT_CR, Closed("eof")],
        "incomplete",
        "observed",
        "the client's second flight (4.4) is not in the capture",
    ),
    Row(
        "tls13-client-flight-missing-reset",
        [client(CH13), server(SH13), S13_FLIGHT_CR, Closed("rst", "client")],
        "failed",
        "observed",
        "the client reset the connection instead of its second flight",
    ),
    Row(
        "tls13-server-stream-lost",
        [client(CH13), server(SH13), Lost("server"), Closed("fin", "client")],
        "incomplete",
        "observed",
        "bytes of the server's flight are missing: the close may answer what was lost",
    ),
    # ---- TLS 1.3 without keys: record sizes (RFC 8446 5.2) -----------------------------------
    Row(
        "tls13-mutual-by-sizes",
        [client(CH13), server(SH13), S13_FLIGHT_CR, C13_AUTH, S13_TICKETS],
        "mutual",
        "inferred",
        "records of the size of a Certificate and a CertificateVerify before the client's "
        "Finished: only a client asked (4.4.2) sends them (truth tls13 8431)",
    ),
    Row(
        "tls13-one-way-by-sizes",
        [client(CH13), server(SH13), S13_FLIGHT, C13_NONE, S13_TICKETS],
        "one-way",
        "inferred",
        "the client's flight is a Finished alone: no Certificate, so none was asked for "
        "(4.4.2 obliges an answer; truth tls13 8432)",
    ),
    Row(
        "tls13-empty-certificate-by-sizes",
        [client(CH13), server(SH13), S13_FLIGHT_CR, C13_EMPTY, S13_TICKETS],
        "cert-requested-not-sent",
        "inferred",
        "an 8-byte Certificate (empty context and list, 4.4.2) before Finished (truth 8433)",
    ),
    Row(
        "tls13-refused-by-sizes",
        [
            client(CH13),
            server(SH13),
            S13_FLIGHT_CR,
            C13_AUTH,
            server(ALERT13),
            Closed("fin", "server"),
        ],
        "failed",
        "inferred",
        "a chain sent, then a record of an alert's size and the close (truth tls13 8435)",
    ),
    Row(
        "tls13-one-record-flights-undecided",
        [
            client(CH13),
            server(SH13),
            server(
                sealed(
                    "encrypted_extensions_tls13",
                    "certificate_tls13_server",
                    "certificate_verify_tls13_server",
                    "finished_tls13",
                )
            ),
            C13_ONE_RECORD,
        ],
        "encrypted",
        "observed",
        "5.4: one client record may be Finished plus padding or plus a chain; nothing bounds "
        "the padding and the server's answer is not seen",
    ),
    Row(
        "tls13-post-handshake-mutual-by-sizes",
        [
            *PHA13_BLIND,
            server(sealed("certificate_request_tls13_post_handshake")),
            client(
                sealed(len(fixture_bytes("certificate_tls13_client")) + CONTEXT),
                sealed("certificate_verify_tls13_client"),
                sealed("finished_tls13"),
            ),
        ],
        "mutual",
        "inferred",
        "4.6.2: after a server record, a Certificate, CertificateVerify and Finished from the "
        "client: its answer to a post-handshake request (truth later_tls13 8571)",
    ),
    Row(
        "tls13-post-handshake-empty-by-sizes",
        [
            *PHA13_BLIND,
            server(sealed("certificate_request_tls13_post_handshake")),
            client(sealed(len(fixture_bytes("certificate_tls13_client_empty")) + CONTEXT)),
            client(sealed("finished_tls13")),
        ],
        "cert-requested-not-sent",
        "inferred",
        "4.6.2: an empty Certificate carrying the request's context, then Finished (truth "
        "later_tls13 8574)",
    ),
    Row(
        "tls13-post-handshake-one-record-undecided",
        [
            *PHA13_BLIND,
            server(sealed("certificate_request_tls13_post_handshake")),
            C13_ONE_RECORD,
        ],
        "encrypted",
        "observed",
        "one client record after the server's: application data or a whole answer in one "
        "record (NSS does so); sizes cannot tell",
    ),
    Row(
        "tls13-post-handshake-offered-not-used",
        [*PHA13_BLIND, Closed("fin", "client")],
        "one-way",
        "inferred",
        "post_handshake_auth offered (4.2.6) but no request and answer followed",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_classify(row: Row) -> None:
    facts = build_session(*row.steps).facts
    decision = classify(facts, row.origin)
    assert (str(decision.verdict), str(decision.basis)) == (row.verdict, row.basis), (
        row.why,
        decision.reason,
    )
    for text in row.mentions:
        assert text in decision.reason, (text, decision.reason)


def test_the_table_covers_every_verdict_and_basis() -> None:
    seen = {(r.verdict, r.basis) for r in ROWS}
    verdicts = {"mutual", "one-way", "cert-requested-not-sent", "failed", "incomplete"}
    verdicts |= {"encrypted", "resumed"}
    assert {v for v, _ in seen} == verdicts
    assert {b for _, b in seen} == {"observed", "decrypted", "inferred"}
    assert len(ROWS) >= 30 and len({r.name for r in ROWS}) == len(ROWS)


def test_the_inference_of_sizes_rides_along_only_without_keys() -> None:
    """A decision inferred from sizes carries what the sizes showed; a decrypted one does not."""
    blind = {r.name: r for r in ROWS}["tls13-mutual-by-sizes"]
    keyed = {r.name: r for r in ROWS}["tls13-mutual-decrypted"]
    sizes = classify(build_session(*blind.steps).facts).sizes
    assert sizes is not None and sizes.client_certificate and sizes.cert_requested
    assert classify(build_session(*keyed.steps).facts).sizes is None
