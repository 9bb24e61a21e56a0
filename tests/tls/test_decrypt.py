"""TLS record decryption against real traffic.

- The captures that come with key logs (OpenSSL, GnuTLS and other stacks; TLS 1.3 with
  AES-128-GCM and AES-256-GCM, TLS 1.2 with AES-256-GCM): every protected record decrypts, and
  the handshake messages found per TCP stream and direction are the ones tshark finds with the
  same key log.
- The suites no capture uses: sessions between `openssl s_server` and `openssl s_client`
  recorded in the test through a loopback relay that keeps the bytes of each direction (TLS 1.3
  ChaCha20 and CCM with KeyUpdates both ways; TLS 1.2 GCM, CCM, ChaCha20, CBC with and without
  encrypt_then_mac; TLS 1.0 and 1.1 CBC). The plaintexts are known: the handshake flights, the
  lines typed into each tool, close_notify.
- RFC 8448 section 3: traffic keys of the published secrets and its protected records.
"""

from __future__ import annotations

import datetime
import functools
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from certs import make, name
from cryptography.hazmat.primitives import hashes
from helpers import OWN, SHARED, read, run_tshark, tcp_connections
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsinspect.errors import DecodeError, UnsupportedCipher
from tlsinspect.tls import registry as reg
from tlsinspect.tls.decrypt import WRONG_KEY, RecordDecryptor
from tlsinspect.tls.handshake import HandshakeAssembler
from tlsinspect.tls.keylog import KeyLog, parse_keylog
from tlsinspect.tls.keyschedule import (
    AES_CBC,
    AES_CCM,
    AES_GCM,
    CHACHA20_POLY1305,
    SUITES,
    hkdf_expand_label,
    next_traffic_secret,
    suite_for,
    traffic_keys,
)
from tlsinspect.tls.messages import ClientHello, ServerHello, parse_handshake
from tlsinspect.tls.records import RecordLayer

Record = tuple[int, int, bytes]

ETM = 22  # encrypt_then_mac extension (RFC 7366)


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# -- decrypting a session the way a passive reader must -----------------------------------------


@dataclass
class Direction:
    """What one direction of a session held, once decrypted."""

    handshake: list[int] = field(default_factory=list)  # every handshake message type, in order
    decrypted: list[int] = field(default_factory=list)  # those read from protected records
    records: list[tuple[int, bytes]] = field(default_factory=list)  # other (type, plaintext)
    protected: list[Record] = field(default_factory=list)  # the protected records, as on the wire
    unprotected: list[Record] = field(default_factory=list)  # the others

    def data(self) -> bytes:
        return b"".join(p for t, p in self.records if t == reg.APPLICATION_DATA)

    def alerts(self) -> list[bytes]:
        return [p for t, p in self.records if t == reg.ALERT]


@dataclass
class Session:
    client_hello: ClientHello
    server_hello: ServerHello
    client: Direction
    server: Direction
    client_port: int = 0

    @property
    def tls13(self) -> bool:
        return self.server_hello.selected_version == 0x0304

    @property
    def etm(self) -> bool:
        return any(t == ETM for t, _ in self.server_hello.extensions)


def cut_records(stream: bytes) -> list[Record]:
    layer = RecordLayer()
    records = layer.feed(stream)
    assert layer.error is None
    return records


def hello(records: list[Record]) -> ClientHello | ServerHello:
    assembler = HandshakeAssembler()
    for ct, _version, payload in records:
        if ct == reg.HANDSHAKE:
            msg_type, body = assembler.feed(payload)[0]
            msg = parse_handshake(msg_type, body, 0)
            assert isinstance(msg, (ClientHello, ServerHello))
            return msg
    raise AssertionError("no hello")


def decryptor_for(
    session: Session, keylog: KeyLog, is_client: bool, stage: str = "HANDSHAKE_"
) -> RecordDecryptor:
    """The decryptor of a direction at the start of its protected records."""
    ch, sh = session.client_hello, session.server_hello
    if session.tls13:
        label = f"{'CLIENT' if is_client else 'SERVER'}_{stage}TRAFFIC_SECRET"
        secret = keylog.get(ch.random, label if stage else label + "_0")
        assert secret is not None, label
        return RecordDecryptor.for_tls13(sh.cipher_suite, secret)
    master = keylog.get(ch.random, "CLIENT_RANDOM")
    assert master is not None
    return RecordDecryptor.for_tls12(
        sh.cipher_suite,
        sh.selected_version,
        master,
        ch.random,
        sh.random,
        is_client,
        encrypt_then_mac=session.etm,
    )


def read_direction(
    session: Session, records: list[Record], keylog: KeyLog, is_client: bool
) -> Direction:
    """Plaintext records until the keys change, then decryption: TLS 1.3 from the first
    application_data record on, with the handshake secret, then the application secret after
    the direction's Finished (RFC 8446 section 7.1) and the next one after each KeyUpdate
    (section 4.6.3); TLS 1.2 and older after the direction's ChangeCipherSpec."""
    out = Direction()
    assembler = HandshakeAssembler()
    decryptor: RecordDecryptor | None = None
    for ct, version, payload in records:
        if session.tls13 and ct == reg.APPLICATION_DATA and decryptor is None:
            decryptor = decryptor_for(session, keylog, is_client)
        elif not session.tls13 and ct == reg.CHANGE_CIPHER_SPEC:
            decryptor = decryptor_for(session, keylog, is_client)
            continue
        if decryptor is None or (session.tls13 and ct != reg.APPLICATION_DATA):
            out.unprotected.append((ct, version, payload))
            if ct == reg.HANDSHAKE:
                out.handshake += [t for t, _ in assembler.feed(payload)]
            continue
        out.protected.append((ct, version, payload))
        inner, plain = decryptor.decrypt(ct, version, payload)
        if inner != reg.HANDSHAKE:
            out.records.append((inner, plain))
            continue
        for msg_type, _body in assembler.feed(plain):
            out.handshake.append(msg_type)
            out.decrypted.append(msg_type)
            if session.tls13 and msg_type == reg.FINISHED:
                role = "CLIENT" if is_client else "SERVER"
                secret = keylog.get(session.client_hello.random, f"{role}_TRAFFIC_SECRET_0")
                assert secret is not None
                decryptor.rekey(secret)
            elif session.tls13 and msg_type == reg.KEY_UPDATE:
                decryptor.key_update()
    assert assembler.pending == 0
    return out


def decrypt_session(client: list[Record], server: list[Record], keylog: KeyLog) -> Session:
    ch, sh = hello(client), hello(server)
    assert isinstance(ch, ClientHello) and isinstance(sh, ServerHello)
    session = Session(ch, sh, Direction(), Direction())
    session.client = read_direction(session, client, keylog, True)
    session.server = read_direction(session, server, keylog, False)
    return session


# -- the captures with key logs, against tshark ------------------------------------------------


KEYED = [
    (OWN / "tls13.pcapng", OWN / "tls13.keylog"),
    (OWN / "demo.pcapng", OWN / "demo.keylog"),
    (
        SHARED / "hotplace__tls13_TLS_AES_128_GCM_SHA256.pcapng",
        SHARED / "hotplace__tls13__sslkeylog",
    ),
    (SHARED / "scapy__tls_nss_example.pcap", SHARED / "scapy__tls_nss_example.keys.txt"),
]


@functools.cache
def capture_sessions(capture: Path, keylog_path: Path) -> dict[tuple[int, int], Session]:
    """Sessions by (tcp.stream, server port), with the client's port."""
    keylog = parse_keylog(keylog_path.read_bytes())
    out = {}
    packets = read(capture)
    for conn in tcp_connections(packets):
        (port_a, port_b), a, b = conn.ports, conn.stream(0, packets), conn.stream(1, packets)
        if a[:1] != b"\x16" or a[5:6] != b"\x01":  # the client sends the ClientHello
            (port_a, a), (port_b, b) = (port_b, b), (port_a, a)
        session = decrypt_session(cut_records(bytes(a)), cut_records(bytes(b)), keylog)
        session.client_port = port_a
        out[(conn.index, port_b)] = session
    return out


@pytest.fixture(scope="module", params=KEYED, ids=[c.name for c, _ in KEYED])
def keyed(request: pytest.FixtureRequest) -> tuple[Path, Path, dict[tuple[int, int], Session]]:
    capture, keylog = request.param
    return capture, keylog, capture_sessions(capture, keylog)


def test_handshake_messages_match_tshark(
    tshark: str, keyed: tuple[Path, Path, dict[tuple[int, int], Session]]
) -> None:
    capture, keylog, sessions = keyed
    ours: dict[tuple[int, int], list[int]] = {}
    for (stream, server_port), s in sessions.items():
        ours[(stream, s.client_port)] = s.client.handshake
        ours[(stream, server_port)] = s.server.handshake
    rows = run_tshark(
        tshark,
        capture,
        ["tcp.stream", "tcp.srcport", "tls.handshake.type"],
        "tls.handshake",
        decode_as=sorted({port for _, port in sessions}),
        keylog=keylog,
    )
    theirs: dict[tuple[int, int], list[int]] = {}
    for stream, port, types in rows:
        theirs.setdefault((int(stream), int(port)), []).extend(int(t) for t in types.split(","))
    assert ours == theirs
    assert any(s.client.decrypted and s.server.decrypted for s in sessions.values())


def test_both_directions_decrypted(
    keyed: tuple[Path, Path, dict[tuple[int, int], Session]],
) -> None:
    """Every session's secrets are in its key log and every protected record decrypted
    (capture_sessions raises otherwise); the alerts read are well formed."""
    _capture, _keylog, sessions = keyed
    for s in sessions.values():
        assert s.client.protected and s.client.decrypted
        # a TLS 1.2 server that refuses the client's flight never changes its keys
        assert s.server.decrypted or (not s.server.protected and not s.tls13)
        for alert in s.client.alerts() + s.server.alerts():
            assert len(alert) == 2 and alert[0] in (1, 2)
        if s.tls13:
            assert reg.FINISHED in s.client.decrypted


def demo_session(port: int) -> Session:
    sessions = capture_sessions(OWN / "demo.pcapng", OWN / "demo.keylog")
    return next(s for (_, p), s in sessions.items() if p == port)


def test_tls13_mutual_flights() -> None:
    s = demo_session(8446)  # demo-tls13-mutual, TLS_AES_256_GCM_SHA384
    assert s.server_hello.cipher_suite == 0x1302
    ee, cr, cert, cv, fin = (8, 13, 11, 15, 20)
    assert s.server.decrypted[:5] == [ee, cr, cert, cv, fin]
    assert s.client.decrypted == [cert, cv, fin]
    assert s.client.data() == b"ping\n"
    assert s.server.data() == b"pong\n"
    assert s.client.alerts() == s.server.alerts() == [b"\x01\x00"]


def test_tls13_one_way_and_refused_flights() -> None:
    sessions = capture_sessions(OWN / "tls13.pcapng", OWN / "tls13.keylog")
    by_port = {port: s for (_, port), s in sessions.items()}
    assert by_port[8432].server.decrypted[:4] == [8, 11, 15, 20]  # tls13-one-way
    assert by_port[8432].client.decrypted == [20]
    refused = by_port[8435]  # tls13-refused-unknown-ca: the alert is protected
    assert refused.client.decrypted == [11, 15, 20]
    assert refused.server.alerts() == [bytes([2, 48])]  # fatal unknown_ca


def test_tls12_gcm_flights() -> None:
    s = demo_session(443)  # demo-tls12-mutual-intermediate, 0xc030
    assert (s.server_hello.cipher_suite, s.server_hello.selected_version) == (0xC030, 0x0303)
    assert s.client.decrypted == [reg.FINISHED] == s.server.decrypted
    assert [t for t, _ in s.client.records] == [reg.APPLICATION_DATA, reg.ALERT]
    assert s.client.data() == b"ping\n"


# -- wrong keys, damaged records ----------------------------------------------------------------


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("port", [8446, 443], ids=["tls13", "tls12-gcm"])
def test_wrong_secret(port: int) -> None:
    s = demo_session(port)
    keylog = parse_keylog((OWN / "demo.keylog").read_bytes())
    for by_label in keylog.secrets.values():
        for label, secret in by_label.items():
            by_label[label] = flip(secret, 0)
    record = s.client.protected[0]
    with pytest.raises(DecodeError, match="^decryption failed: wrong key or corrupted record$"):
        decryptor_for(s, keylog, True).decrypt(*record)


@pytest.mark.parametrize("port", [8446, 443], ids=["tls13", "tls12-gcm"])
def test_damaged_records_and_the_sequence_goes_on(port: int) -> None:
    s = demo_session(port)
    keylog = parse_keylog((OWN / "demo.keylog").read_bytes())
    (ct, version, first), second = s.server.protected[0], s.server.protected[1]
    cases = {
        "bit flipped": flip(first, len(first) // 2),
        "tag flipped": flip(first, len(first) - 1),
        "one byte short": first[:-1],
        "one byte more": first + b"\x00",
    }
    for damaged in cases.values():
        dec = decryptor_for(s, keylog, False)
        with pytest.raises(DecodeError, match="^" + WRONG_KEY + "$"):
            dec.decrypt(ct, version, damaged)
        assert dec.seq == 1
        dec.decrypt(*second)  # numbered after the damaged one: still readable
    if not s.tls13:  # the content type is in the additional data
        with pytest.raises(DecodeError, match="^" + WRONG_KEY + "$"):
            decryptor_for(s, keylog, False).decrypt(reg.APPLICATION_DATA, version, first)
    for cut in (0, 1, 8, 16):
        with pytest.raises(DecodeError, match="decryption failed: record of .* too short"):
            decryptor_for(s, keylog, False).decrypt(ct, version, first[:cut])
    if s.tls13:  # RFC 8446 section 5.2: at most 2^14 + 256 bytes
        with pytest.raises(DecodeError, match="exceeds 2"):
            decryptor_for(s, keylog, False).decrypt(ct, version, first + bytes(2**14 + 257))


def test_tls13_record_header_is_authenticated() -> None:
    s = demo_session(8446)
    keylog = parse_keylog((OWN / "demo.keylog").read_bytes())
    ct, version, payload = s.client.protected[0]
    with pytest.raises(DecodeError, match="wrong key"):
        decryptor_for(s, keylog, True).decrypt(ct, 0x0301, payload)


def test_tls13_unprotected_records_pass_through() -> None:
    """RFC 8446 section 5: a ChangeCipherSpec is never protected and takes no sequence number."""
    s = demo_session(8446)
    keylog = parse_keylog((OWN / "demo.keylog").read_bytes())
    ccs = next(r for r in s.client.unprotected if r[0] == reg.CHANGE_CIPHER_SPEC)
    dec = decryptor_for(s, keylog, True)
    assert dec.decrypt(*ccs) == (reg.CHANGE_CIPHER_SPEC, b"\x01")
    assert dec.seq == 0
    assert dec.decrypt(*s.client.protected[0])[0] == reg.HANDSHAKE


def test_tls13_rekey_and_key_update() -> None:
    s = demo_session(8446)
    keylog = parse_keylog((OWN / "demo.keylog").read_bytes())
    dec = decryptor_for(s, keylog, True)
    hs_secret = dec.traffic_secret
    assert hs_secret is not None
    dec.decrypt(*s.client.protected[0])
    assert dec.seq == 1
    dec.key_update()
    nxt = next_traffic_secret(0x1302, hs_secret)
    assert dec.traffic_secret == nxt and dec.seq == 0
    assert nxt == hkdf_expand_label(hs_secret, "traffic upd", b"", 48, hashes.SHA384())
    with pytest.raises(DecodeError, match="does not fit"):
        dec.rekey(hs_secret[:32])
    tls12 = decryptor_for(demo_session(443), keylog, True)
    assert tls12.traffic_secret is None
    with pytest.raises(DecodeError, match="only a TLS 1.3 direction"):
        tls12.rekey(hs_secret)
    with pytest.raises(DecodeError, match="only a TLS 1.3 direction"):
        tls12.key_update()


@pytest.mark.parametrize("port", [8446, 443], ids=["tls13", "tls12-gcm"])
@settings(max_examples=300, deadline=None)
@given(ct=st.integers(20, 24), data=st.binary(max_size=120))
def test_fuzzed_records_raise_decode_error_only(port: int, ct: int, data: bytes) -> None:
    s = demo_session(port)
    keylog = parse_keylog((OWN / "demo.keylog").read_bytes())
    dec = decryptor_for(s, keylog, False)
    try:
        dec.decrypt(ct, 0x0303, data)
    except DecodeError as exc:
        assert str(exc).startswith("decryption failed")


# -- cipher suites and their parameters ---------------------------------------------------------


def test_the_suites_asked_for_are_supported() -> None:
    wanted = [0x1301, 0x1302, 0x1303, 0x1304, 0x1305]
    wanted += [0x002F, 0x0035, 0x003C, 0x003D, 0xC009, 0xC00A, 0xC013, 0xC014]
    wanted += [0xC023, 0xC024, 0xC027, 0xC028, 0xCCA8, 0xCCA9, 0xCCAA]
    wanted += list(range(0x009C, 0x00A0)) + list(range(0xC02B, 0xC031))
    wanted += list(range(0xC0AC, 0xC0B0)) + list(range(0xC09C, 0xC0A4))
    assert not [hex(c) for c in wanted if c not in SUITES]


@pytest.mark.parametrize(
    "code, cipher, key_len, prf, mac, tag_len",
    [
        (0x1301, AES_GCM, 16, "sha256", None, 16),
        (0x1302, AES_GCM, 32, "sha384", None, 16),
        (0x1303, CHACHA20_POLY1305, 32, "sha256", None, 16),
        (0x1305, AES_CCM, 16, "sha256", None, 8),
        (0x002F, AES_CBC, 16, "sha256", "sha1", 0),
        (0xC024, AES_CBC, 32, "sha384", "sha384", 0),
        (0xC027, AES_CBC, 16, "sha256", "sha256", 0),
        (0xC030, AES_GCM, 32, "sha384", None, 16),
        (0xCCA8, CHACHA20_POLY1305, 32, "sha256", None, 16),
        (0xC09D, AES_CCM, 32, "sha256", None, 16),
        (0xC0A0, AES_CCM, 16, "sha256", None, 8),
    ],
)
def test_suite_parameters(
    code: int, cipher: str, key_len: int, prf: str, mac: str | None, tag_len: int
) -> None:
    suite = suite_for(code)
    assert suite.name == reg.name_of("cipher", code)
    assert (suite.cipher, suite.key_len, suite.hash.name, suite.tag_len) == (
        cipher,
        key_len,
        prf,
        tag_len,
    )
    assert (suite.mac_hash.name if suite.mac_hash else None) == mac


def test_suites_not_claimed() -> None:
    for code in SUITES:
        name = reg.name_of("cipher", code)
        assert ("AES" in name or "CHACHA20" in name) and "_NULL_" not in name, name
    # RC4, 3DES, Camellia, ARIA, NULL, and the pre-standard ChaCha20 suites (same names)
    for code in (0x0005, 0x000A, 0x0041, 0xC03C, 0x003B, 0xCC13, 0xCC14, 0xCC15, 0x1306):
        assert code not in SUITES
        with pytest.raises(UnsupportedCipher, match="not supported for decryption"):
            RecordDecryptor.for_tls12(code, 0x0303, bytes(48), bytes(32), bytes(32), True)
    with pytest.raises(
        UnsupportedCipher,
        match=r"^cipher suite TLS_RSA_WITH_RC4_128_SHA \(0x0005\) not supported for decryption$",
    ):
        suite_for(0x0005)


def test_constructor_refusals() -> None:
    ms, rnd = bytes(48), bytes(32)
    with pytest.raises(UnsupportedCipher, match="not a TLS 1.3 cipher suite"):
        RecordDecryptor.for_tls13(0xC030, bytes(48))
    with pytest.raises(UnsupportedCipher, match="not a TLS 1.3 cipher suite"):
        next_traffic_secret(0xC030, bytes(48))
    with pytest.raises(UnsupportedCipher, match="is a TLS 1.3 cipher suite"):
        RecordDecryptor.for_tls12(0x1301, 0x0303, ms, rnd, rnd, True)
    with pytest.raises(UnsupportedCipher, match="SSL 3.0"):
        RecordDecryptor.for_tls12(0x002F, 0x0300, ms, rnd, rnd, True)
    with pytest.raises(UnsupportedCipher, match="does not exist in TLS 1.1"):
        RecordDecryptor.for_tls12(0xC02F, 0x0302, ms, rnd, rnd, True)
    with pytest.raises(UnsupportedCipher, match="does not exist in TLS 1.0"):
        RecordDecryptor.for_tls12(0x003C, 0x0301, ms, rnd, rnd, True)
    with pytest.raises(DecodeError, match="master secret of 32 bytes"):
        RecordDecryptor.for_tls12(0xC02F, 0x0303, bytes(32), rnd, rnd, True)
    with pytest.raises(DecodeError, match="randoms"):
        RecordDecryptor.for_tls12(0xC02F, 0x0303, ms, rnd, bytes(31), True)
    with pytest.raises(DecodeError, match="traffic secret of 32 bytes does not fit"):
        RecordDecryptor.for_tls13(0x1302, bytes(32))
    assert issubclass(UnsupportedCipher, DecodeError)
    assert [suite_for(c).min_version for c in (0x1301, 0xC02F, 0x003C, 0x002F, 0xC00A)] == [
        0x0304,
        0x0303,
        0x0303,
        0x0301,
        0x0301,
    ]


# -- RFC 8448 section 3, the simple 1-RTT handshake ---------------------------------------------

RFC8448_SERVER_HS = h("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
RFC8448_CLIENT_HS = h("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
RFC8448_SERVER_AP = h("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
RFC8448_CLIENT_AP = h("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")


@pytest.mark.parametrize(
    "secret, key, iv",
    [
        (
            RFC8448_SERVER_HS,
            "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc",
            "5d 31 3e b2 67 12 76 ee 13 00 0b 30",
        ),
        (
            RFC8448_CLIENT_HS,
            "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01",
            "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f",
        ),
        (
            RFC8448_SERVER_AP,
            "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56",
            "cf 78 2b 88 dd 83 54 9a ad f1 e9 84",
        ),
        (
            RFC8448_CLIENT_AP,
            "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51",
            "5b 78 92 3d ee 08 57 90 33 e5 23 d9",
        ),
    ],
    ids=["server-handshake", "client-handshake", "server-application", "client-application"],
)
def test_rfc8448_traffic_keys(secret: bytes, key: str, iv: str) -> None:
    assert traffic_keys(suite_for(0x1301), secret) == (h(key), h(iv))


def test_rfc8448_records() -> None:
    client_finished = h(
        """17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9
        b9 3c 7a 4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26
        c4 05 46"""
    )
    client_data = h(
        """17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14
        aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92
        a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4"""
    )
    server_data = h(
        """17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0
        5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0
        a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d"""
    )
    fifty = bytes(range(50))  # the RFC's application data: 00 01 ... 31

    client = RecordDecryptor.for_tls13(0x1301, RFC8448_CLIENT_HS)
    ct, plain = client.decrypt(client_finished[0], 0x0303, client_finished[5:])
    assert (ct, plain[:4]) == (reg.HANDSHAKE, h("14 00 00 20"))
    assert plain[4:] == h(
        "a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03 9e c1 76 94 fa c6 e9 85 27 b6 42 f2"
        "ed d5 ce 61"
    )
    client.rekey(RFC8448_CLIENT_AP)
    assert client.decrypt(client_data[0], 0x0303, client_data[5:]) == (23, fifty)

    server = RecordDecryptor.for_tls13(0x1301, RFC8448_SERVER_AP)
    server.seq = 1  # its NewSessionTicket went first, under sequence number 0
    assert server.decrypt(server_data[0], 0x0303, server_data[5:]) == (23, fifty)


# -- sessions recorded in the test with openssl s_server and s_client ---------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    cipher_suite: int
    version: int
    server_args: tuple[str, ...]
    client_args: tuple[str, ...]
    etm: bool = False


def _tls13(name: str, code: int) -> Scenario:
    suite = reg.name_of("cipher", code)
    return Scenario(name, code, 0x0304, ("-ciphersuites", suite), ("-ciphersuites", suite))


def _tls12(
    name: str, code: int, cipher: str, etm: bool = False, version: str = "-tls1_2"
) -> Scenario:
    level = ":@SECLEVEL=0" if version != "-tls1_2" else ""
    proto = {"-tls1_2": 0x0303, "-tls1_1": 0x0302, "-tls1": 0x0301}[version]
    server = (version, "-cipher", cipher + level) + (() if etm else ("-no_etm",))
    return Scenario(name, code, proto, server, ("-cipher", cipher + level, version), etm)


SCENARIOS = [
    _tls13("tls13-chacha20", 0x1303),
    _tls13("tls13-aes128-ccm", 0x1304),
    _tls13("tls13-aes128-ccm8", 0x1305),
    _tls12("tls12-aes128-gcm", 0xC02B, "ECDHE-ECDSA-AES128-GCM-SHA256"),
    _tls12("tls12-chacha20", 0xCCA9, "ECDHE-ECDSA-CHACHA20-POLY1305"),
    _tls12("tls12-aes128-ccm", 0xC0AC, "ECDHE-ECDSA-AES128-CCM"),
    _tls12("tls12-aes256-ccm8", 0xC0AF, "ECDHE-ECDSA-AES256-CCM8"),
    _tls12("tls12-aes128-cbc-sha", 0xC009, "ECDHE-ECDSA-AES128-SHA"),
    _tls12("tls12-aes128-cbc-sha-etm", 0xC009, "ECDHE-ECDSA-AES128-SHA", etm=True),
    _tls12("tls12-aes128-cbc-sha256-etm", 0xC023, "ECDHE-ECDSA-AES128-SHA256", etm=True),
    _tls12("tls12-aes256-cbc-sha384", 0xC024, "ECDHE-ECDSA-AES256-SHA384"),
    _tls12("tls12-aes256-cbc-sha384-etm", 0xC024, "ECDHE-ECDSA-AES256-SHA384", etm=True),
    _tls12("tls11-aes256-cbc-sha", 0xC00A, "ECDHE-ECDSA-AES256-SHA", version="-tls1_1"),
    _tls12("tls11-aes256-cbc-sha-etm", 0xC00A, "ECDHE-ECDSA-AES256-SHA", True, "-tls1_1"),
    _tls12("tls10-aes128-cbc-sha", 0xC009, "ECDHE-ECDSA-AES128-SHA", version="-tls1"),
    _tls12("tls10-aes128-cbc-sha-etm", 0xC009, "ECDHE-ECDSA-AES128-SHA", True, "-tls1"),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed P-256 certificate for s_server (fixed validity: no clock involved)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is not installed (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("pki")
    cn = "decrypt.example.test"
    made = make(
        cn,
        subject=name(cn, None),
        ca=None,
        key_ids=False,
        serial=1,
        start=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        not_after=datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc),
    )
    made.save(folder / "cert.pem", folder / "key.pem")
    return folder


class _Tool:
    """An openssl s_server or s_client with its stdin and (merged) output."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.out = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            self.out += chunk

    def type(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def finish(self) -> None:
        try:
            self.proc.wait(10)
        finally:
            self.proc.kill()
            self.reader.join(10)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def _relay(listener: socket.socket, port: int, streams: tuple[bytearray, bytearray]) -> None:
    """Pass the bytes of one connection both ways, keeping what each side sent."""
    client, _ = listener.accept()
    server = socket.create_connection(("127.0.0.1", port))
    peer = {client: (server, streams[0]), server: (client, streams[1])}
    open_ = {client, server}
    while open_:
        ready, _, _ = select.select(list(open_), [], [], 10)
        if not ready:
            break
        for sock in ready:
            other, kept = peer[sock]
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                open_.discard(sock)
                try:
                    other.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            kept += data
            try:
                other.sendall(data)
            except OSError:
                open_.discard(other)
    client.close()
    server.close()


def record(pki: Path, scenario: Scenario) -> tuple[bytes, bytes, bytes]:
    """Run one session through the relay: (client bytes, server bytes, client's key log).

    The lines are typed one at a time, each once the previous one has crossed, so that each
    tool reads a command letter (k/K: KeyUpdate) as a line of its own."""
    keylog = pki / f"{scenario.name}.keylog"
    server = _Tool(
        ["openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1"]
        + ["-cert", str(pki / "cert.pem"), "-key", str(pki / "key.pem"), *scenario.server_args]
    )
    _until(lambda: b"ACCEPT" in server.out and server.out.endswith(b"\n"), "s_server")
    port = int(server.out.split(b"ACCEPT 127.0.0.1:")[1].split(b"\n")[0])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    streams = (bytearray(), bytearray())
    relay = threading.Thread(target=_relay, args=(listener, port, streams), daemon=True)
    relay.start()
    client = _Tool(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{listener.getsockname()[1]}"]
        + ["-keylogfile", str(keylog), *scenario.client_args]
    )
    try:

        def say(tool: _Tool, line: bytes, seen_by: _Tool) -> None:
            mark = len(seen_by.out)
            tool.type(line)
            _until(lambda: line.strip() in seen_by.out[mark:], repr(line))

        def command(tool: _Tool, letter: bytes, stream: bytearray) -> None:
            mark = len(stream)
            tool.type(letter + b"\n")
            _until(lambda: len(stream) > mark, f"the KeyUpdate of {letter!r}")

        say(client, b"ping\n", server)
        say(server, b"pong\n", client)
        if scenario.version == 0x0304:
            command(client, b"k", streams[0])  # KeyUpdate, update_not_requested
            command(server, b"K", streams[1])  # KeyUpdate, update_requested: the client answers
            say(client, b"after\n", server)
            say(server, b"later\n", client)
        assert client.proc.stdin is not None
        client.proc.stdin.close()  # s_client sends close_notify and leaves
        client.finish()
        server.finish()
        relay.join(10)
    finally:
        client.proc.kill()
        server.proc.kill()
        listener.close()
    return bytes(streams[0]), bytes(streams[1]), keylog.read_bytes()


@pytest.fixture(scope="module", params=SCENARIOS, ids=[s.name for s in SCENARIOS])
def recorded(request: pytest.FixtureRequest, pki: Path) -> tuple[Scenario, Session, KeyLog]:
    scenario: Scenario = request.param
    client, server, text = record(pki, scenario)
    keylog = parse_keylog(text)
    assert keylog.bad_lines == 0 and len(keylog) == 1
    session = decrypt_session(cut_records(client), cut_records(server), keylog)
    return scenario, session, keylog


def test_recorded_session_decrypts(recorded: tuple[Scenario, Session, KeyLog]) -> None:
    scenario, s, _keylog = recorded
    sh = s.server_hello
    assert (sh.cipher_suite, sh.selected_version, s.etm) == (
        scenario.cipher_suite,
        scenario.version,
        scenario.etm,
    )
    fin, ticket, key_update = reg.FINISHED, reg.NEW_SESSION_TICKET, reg.KEY_UPDATE
    if s.tls13:
        # the client's second KeyUpdate answers the server's update_requested
        assert s.client.decrypted == [fin, key_update, key_update]
        assert s.server.decrypted == [8, 11, 15, fin, ticket, ticket, key_update]
        assert s.client.data() == b"ping\nafter\n"
        assert s.server.data() == b"pong\nlater\n"
    else:
        assert s.client.handshake == [1, 16, fin] and s.client.decrypted == [fin]
        assert s.server.handshake == [2, 11, 12, 14, ticket, fin] and s.server.decrypted == [fin]
        assert s.client.data() == b"ping\n"
        assert s.server.data() == b"pong\n"
    assert s.client.alerts() == [b"\x01\x00"]  # close_notify
    assert set(s.server.alerts()) <= {b"\x01\x00"}


def test_recorded_session_damaged(recorded: tuple[Scenario, Session, KeyLog]) -> None:
    """A wrong secret, a flipped bit and a cut record are refused with DecodeError, whatever
    the protection: AEAD tag, CBC padding, or HMAC before or after the encryption."""
    scenario, s, keylog = recorded
    ct, version, payload = s.client.protected[0]

    def fresh() -> RecordDecryptor:
        return decryptor_for(s, keylog, True)

    assert fresh().decrypt(ct, version, payload)[0] == reg.HANDSHAKE
    wrong = KeyLog()
    for label, secret in next(iter(keylog.secrets.values())).items():
        wrong.add(s.client_hello.random, label, flip(secret, 5))
    with pytest.raises(DecodeError, match="^" + WRONG_KEY + "$"):
        decryptor_for(s, wrong, True).decrypt(ct, version, payload)
    for at in (0, len(payload) // 2, len(payload) - 1):
        with pytest.raises(DecodeError, match="^" + WRONG_KEY + "$"):
            fresh().decrypt(ct, version, flip(payload, at))
    for cut in (1, 16):
        with pytest.raises(DecodeError, match="^decryption failed: "):
            fresh().decrypt(ct, version, payload[:-cut])
    with pytest.raises(DecodeError, match="too short"):
        fresh().decrypt(ct, version, payload[:4])
    if not s.tls13:  # the version is in the MAC input or additional data
        with pytest.raises(DecodeError, match="^" + WRONG_KEY + "$"):
            fresh().decrypt(ct, version ^ 0x0001, payload)
    if not s.tls13:
        # The record after a damaged one is numbered after it and, in TLS 1.0 CBC, chained
        # from its last block (RFC 2246 section 6.2.3.2), which the damage left alone.
        dec = fresh()
        with pytest.raises(DecodeError, match="^" + WRONG_KEY + "$"):
            dec.decrypt(ct, version, flip(payload, 0))
        assert dec.seq == 1
        dec.decrypt(*s.client.protected[1])
        dec = fresh()
        with pytest.raises(DecodeError, match="whole number of .*blocks|too short|wrong key"):
            dec.decrypt(ct, version, payload[:-1])
        assert dec.seq == 1


@settings(max_examples=60, deadline=None)
@given(ct=st.integers(20, 24), data=st.binary(max_size=100))
def test_recorded_fuzzed_records_raise_decode_error_only(
    recorded: tuple[Scenario, Session, KeyLog], ct: int, data: bytes
) -> None:
    _scenario, s, keylog = recorded
    dec = decryptor_for(s, keylog, False)
    for version in (0x0303, s.server_hello.selected_version):
        try:
            dec.decrypt(ct, version, data)
        except DecodeError as exc:
            assert str(exc).startswith("decryption failed")
