"""TLS 1.3 drafts, and session IDs echoed by TLS 1.3 servers, on real recorded handshakes.

No stack installed here still speaks a TLS 1.3 draft, so the recorded TLS 1.3 sessions of
captures/tls13.pcapng are rewritten the way a draft-23 client and server would have sent them:
the version 0x0304 in the supported_versions extensions becomes 0x7f17 (the same length, so
every TCP sequence number stays). Draft 23 kept the final message layout, so the rest of the
bytes are what such stacks sent. tshark is the oracle: it reads 0x7f17 as "TLS 1.3 (draft 23)".

A TLS 1.3 ServerHello echoes the client's legacy_session_id (RFC 8446 4.1.3, middlebox
compatibility): the echo of an ID a TLS 1.2 session of the capture created is not a resumption.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import OWN, connection_packets, read, run_cli, run_tshark
from pcaptools import write
from test_vs_tshark import ours, tshark_messages

import tlsinspect
from tlsinspect.net.link import locate_tcp

TLS13 = OWN / "tls13.pcapng"
TLS12 = OWN / "tls12.pcapng"
TRUTH = {
    s["server_port"]: s for s in json.loads((OWN / "tls13.truth.json").read_text())["sessions"]
}
DRAFT23 = b"\x7f\x17"
SUPPORTED_VERSIONS = 43


def _extensions(body: bytes, client: bool) -> int:
    """Offset in a ClientHello/ServerHello body (after the 4-byte handshake header) of its
    extension block's length."""
    pos = 2 + 32
    pos += 1 + body[pos]  # legacy_session_id
    if client:
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher_suites
        pos += 1 + body[pos]  # compression methods
    else:
        pos += 3  # cipher_suite, compression
    return pos


def rewrite_hello(
    payload: bytes, version: bytes = DRAFT23, session_id: bytes | None = None
) -> bytes:
    """A TCP payload holding a ClientHello or ServerHello record with 0x0304 in its
    supported_versions replaced by `version`, and its legacy session ID by `session_id` (same
    length); any other payload unchanged."""
    if len(payload) < 9 or payload[0] != 0x16 or payload[5] not in (1, 2):
        return payload
    client = payload[5] == 1
    out = bytearray(payload)
    body = 9  # record header 5, handshake header 4
    if session_id is not None:
        sid_len = out[body + 34]
        assert sid_len == len(session_id), (sid_len, len(session_id))
        out[body + 35 : body + 35 + sid_len] = session_id
    pos = body + _extensions(bytes(out[body:]), client)
    end = pos + 2 + int.from_bytes(out[pos : pos + 2], "big")
    pos += 2
    while pos + 4 <= end:
        typ = int.from_bytes(out[pos : pos + 2], "big")
        size = int.from_bytes(out[pos + 2 : pos + 4], "big")
        if typ == SUPPORTED_VERSIONS:
            data = range(pos + 5, pos + 4 + size, 2) if client else range(pos + 4, pos + 6, 2)
            for at in data:
                if out[at : at + 2] == b"\x03\x04":
                    out[at : at + 2] = version
        pos += 4 + size
    return bytes(out)


def rewrite(packets, fn):
    out = []
    for ts, lt, d, orig, i in packets:
        loc = locate_tcp(lt, d)
        if loc is not None:
            t, end = loc[2], loc[3]
            start = t + (d[t + 12] >> 4) * 4
            new = fn(d[start:end])
            assert len(new) == end - start
            d = d[:start] + new + d[end:]
        out.append((ts, lt, d, orig, i))
    return out


@pytest.fixture(scope="module")
def draft23(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("draft") / "tls13-draft23.pcap"
    return write(path, rewrite(read(TLS13), rewrite_hello))


def test_draft_23_is_tls13_with_its_name(draft23, tshark):
    original = {(s["server_port"], s["client_port"]): s for s in tlsinspect.sessions(TLS13)}
    rows = run_tshark(
        tshark,
        draft23,
        ["tcp.srcport", "tls.handshake.extensions.supported_version"],
        "tls.handshake.type == 2",
    )
    assert rows and all(r[1] == "0x7f17" for r in rows if int(r[0]) in TRUTH)
    sessions = tlsinspect.sessions(draft23)
    assert len(sessions) == len(original)
    for s in sessions:
        was = original[s["server_port"], s["client_port"]]
        assert s["tls_version"] == "TLS 1.3 (draft 23)"  # Wireshark's name of 0x7f17
        assert s["client_version"] == "TLS 1.3 (draft 23)"
        # encrypted after the ServerHello, the same inference from record sizes
        assert (s["verdict"], s["basis"], s["reason"]) == (
            was["verdict"],
            was["basis"],
            was["reason"],
        )
        assert s["handshake"] == was["handshake"]
    assert ours(draft23) == tshark_messages(tshark, draft23)


def test_draft_23_with_the_tshark_engine(draft23):
    mine = json.loads(run_cli("--format", "json", draft23).stdout)
    r = run_cli("--engine", "tshark", "--format", "json", draft23, timeout=300)
    assert r.returncode == 0, r.stderr
    theirs = json.loads(r.stdout)
    key = lambda s: (s["server_port"], s["start_time"])  # noqa: E731
    assert [(s["tls_version"], s["verdict"]) for s in sorted(theirs, key=key)] == [
        (s["tls_version"], s["verdict"]) for s in sorted(mine, key=key)
    ]
    compared = run_cli("compare", draft23, timeout=300)
    assert compared.returncode == 0, compared.stdout + compared.stderr


# -- a session ID echoed by a TLS 1.3 server ---------------------------------------------------


def _server_session_id(packets, port: int) -> bytes:
    for _ts, lt, d, _o, _i in packets:
        loc = locate_tcp(lt, d)
        t = loc[2]
        if int.from_bytes(d[t : t + 2], "big") != port:
            continue
        p = d[t + (d[t + 12] >> 4) * 4 : loc[3]]
        if len(p) > 44 and p[0] == 0x16 and p[5] == 2:
            return p[44 : 44 + p[43]]
    raise AssertionError(f"no ServerHello from port {port}")


@pytest.mark.parametrize("version", [b"\x03\x04", DRAFT23], ids=["tls13", "draft23"])
def test_echoed_session_id_is_not_a_resumption(tmp_path, tshark, version):
    """A TLS 1.3 one-way session whose client offered (and server echoed) the session ID of an
    earlier TLS 1.2 mutual session: a full handshake of its own, neither `resumed` nor linked to
    that session. Only a pre_shared_key in the ServerHello is a TLS 1.3 resumption."""
    tls12 = read(TLS12)
    # the full handshake, then its resumption
    full = [tls12[i] for i in connection_packets(tls12, 8406)]
    sid = _server_session_id(full, 8406)
    assert len(sid) == 32
    one_way = 8432
    tls13 = read(TLS13)
    mine = [tls13[i] for i in connection_packets(tls13, one_way)]
    mine = rewrite(mine, lambda p: rewrite_hello(p, version, session_id=sid))
    last = full[-1][0]
    mine = [(last + 10**9 + k, lt, d, o, i) for k, (_ts, lt, d, o, i) in enumerate(mine)]
    path = write(tmp_path / "echo.pcap", full + mine)
    sessions = {(s["server_port"], s["index"]): s for s in tlsinspect.sessions(path)}
    by_port = {}
    for (port, _), s in sorted(sessions.items()):
        by_port.setdefault(port, []).append(s)
    first, resumed = by_port[8406]
    assert (first["verdict"], resumed["verdict"]) == ("mutual", "resumed")
    assert resumed["resumed_from"] is not None  # the TLS 1.2 resumption stays linked
    (echo,) = by_port[one_way]
    assert echo["verdict"] == TRUTH[one_way]["verdict"] == "one-way", echo["reason"]
    assert echo["resumed_from"] is None
    # tshark: that ServerHello echoes the ID and has no pre_shared_key extension
    rows = run_tshark(
        tshark,
        path,
        ["tls.handshake.session_id", "tls.handshake.extension.type"],
        f"tls.handshake.type == 2 && tcp.srcport == {one_way}",
    )
    assert rows[0][0].replace(":", "") == sid.hex() and "41" not in rows[0][1].split(",")
