"""Every handshake message tlsinspect reports matches what tshark dissects in the same file."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from helpers import (
    SHARED,
    own_captures,
    report_header,
    run_cli,
    run_tshark,
    shared_captures,
    shared_view,
)

import tlsinspect
from tlsinspect.tls import registry as reg

NAME_TO_TYPE = {v: k for k, v in reg.HANDSHAKE_TYPES.items()}
NAME_TO_TYPE["hello_retry_request"] = reg.SERVER_HELLO  # tshark 4.0 types an HRR as Server Hello


def _endpoint(ip: str, port: str | int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _decode_as(capture: Path) -> list[int]:
    ports: set[int] = set()
    for s in shared_view():
        if s["file"] == capture.name and s.get("decode_as_tls_ports"):
            ports.update(s["decode_as_tls_ports"])
    truth = capture.with_suffix(".truth.json")
    if truth.exists():  # a recorded capture: its truth names the server ports
        # not for STARTTLS: tshark knows those protocols, and forcing TLS on PostgreSQL's port
        # glues the server's one-byte "S" answer to its ServerHello
        ports.update(
            x["server_port"]
            for x in json.loads(truth.read_text())["sessions"]
            if not x.get("starttls")
        )
    return sorted(ports)


ENDPOINT_FIELDS = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport"]


def endpoints(row: list[str]) -> tuple[str, str, list[str]]:
    """Source and destination of a tshark row that starts with ENDPOINT_FIELDS, and the rest.
    Tunnels give several addresses: the innermost (last) one carries the TCP segment."""
    ip4s, ip6s, sport, ip4d, ip6d, dport, *rest = row
    src = _endpoint((ip6s or ip4s).split(",")[-1], sport.split(",")[-1])
    dst = _endpoint((ip6d or ip4d).split(",")[-1], dport.split(",")[-1])
    return src, dst, rest


def tshark_messages(
    tshark: str, capture: Path, keylog: Path | None = None
) -> dict[frozenset, list[tuple[str, int]]]:
    """Handshake messages per TCP connection, as (sender endpoint, type) in order: the plaintext
    ones, and the encrypted ones tshark decrypts with `keylog`."""
    rows = run_tshark(
        tshark,
        capture,
        [*ENDPOINT_FIELDS, "tls.handshake.type"],
        "tcp and tls.handshake.type",  # not QUIC's CRYPTO frames
        decode_as=_decode_as(capture),
        keylog=keylog,
    )
    out: dict[frozenset, list[tuple[str, int]]] = defaultdict(list)
    for row in rows:
        src, dst, (types,) = endpoints(row)
        for t in types.split(","):
            out[frozenset((src, dst))].append((src, int(t)))
    return out


def ours(capture: Path) -> dict[frozenset, list[tuple[str, int]]]:
    out: dict[frozenset, list[tuple[str, int]]] = defaultdict(list)
    for s in sorted(tlsinspect.sessions(capture), key=lambda s: s["start_time"]):
        c = _endpoint(s["client_ip"], s["client_port"])
        sv = _endpoint(s["server_ip"], s["server_port"])
        for item in s["handshake"]:
            role, name = item.split(":", 1)
            if name in NAME_TO_TYPE:
                out[frozenset((c, sv))].append((c if role == "client" else sv, NAME_TO_TYPE[name]))
    return out


CAPTURES = shared_captures() + own_captures()


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_handshake_messages_match_tshark(tshark, capture):
    theirs = tshark_messages(tshark, capture)
    mine = ours(capture)
    assert theirs, f"tshark sees no TLS handshake in {capture.name}"
    assert mine == theirs


def tshark_facts(tshark: str, capture: Path) -> dict[frozenset, dict[str, object]]:
    """Per TCP connection, from tshark: SNI, chosen cipher and version, both certificate chains
    (SHA-256 of each certificate, leaf first) and the plaintext alerts with their sender."""
    rows = run_tshark(
        tshark,
        capture,
        [
            *ENDPOINT_FIELDS,
            "tls.handshake.type",
            "tls.handshake.extensions_server_name",
            "tls.handshake.ciphersuite",
            "tls.handshake.extensions.supported_version",
            "tls.handshake.version",
            "tls.handshake.certificate",
            "tls.alert_message.desc",
        ],
        "tcp and (tls.handshake.type or tls.alert_message.desc)",
        decode_as=_decode_as(capture),
    )
    out: dict[frozenset, dict[str, object]] = {}
    for row in rows:
        src, dst, (types, sni, suites, sv, ver, certs, alerts) = endpoints(row)
        facts = out.setdefault(
            frozenset((src, dst)),
            {"sni": None, "cipher": None, "version": None, "chains": {}, "alerts": []},
        )
        kinds = [int(t) for t in types.split(",") if t]
        if 1 in kinds and sni:
            facts["sni"] = sni
        if 2 in kinds and suites:  # a ServerHello names one suite (the last one wins after HRR)
            facts["cipher"] = int(suites.split(",")[-1], 16)
            facts["version"] = int((sv or ver).split(",")[-1], 16)
        if certs:
            facts["chains"][src] = [
                hashlib.sha256(bytes.fromhex(c)).hexdigest() for c in certs.split(",")
            ]
        for a in alerts.split(",") if alerts else ():
            facts["alerts"].append((src, int(a)))
    return out


def our_facts(capture: Path) -> dict[frozenset, dict[str, object]]:
    out = {}
    for s in tlsinspect.sessions(capture):
        c = _endpoint(s["client_ip"], s["client_port"])
        sv = _endpoint(s["server_ip"], s["server_port"])
        if not s["handshake"] or not any(
            h.split(":", 1)[1] in NAME_TO_TYPE or h.split(":", 1)[1].startswith("alert:")
            for h in s["handshake"]
        ):
            continue  # joined after the handshake: tshark's filter has nothing for it
        chains = {}
        if s["client_chain"]:
            chains[c] = [x["sha256"] for x in s["client_chain"]]
        if s["server_chain"]:
            chains[sv] = [x["sha256"] for x in s["server_chain"]]
        alerts = [
            (c if a["sender"] == "client" else sv, ALERTS[a["description"]])
            for a in s["alerts"]
            if not a["encrypted"]
        ]
        out[frozenset((c, sv))] = {
            "sni": s["sni"],
            "cipher": CIPHERS.get(s["cipher_suite"]),
            "version": VERSIONS.get(s["tls_version"]),
            "chains": chains,
            "alerts": alerts,
        }
    return out


ALERTS = {v: k for k, v in reg.ALERT_DESCRIPTIONS.items()}
CIPHERS = {v: k for k, v in reg.CIPHER_SUITES.items()}
VERSIONS = {v: k for k, v in reg.VERSIONS.items()}


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_names_chains_and_alerts_match_tshark(tshark, capture):
    assert our_facts(capture) == tshark_facts(tshark, capture)


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_tcp_packet_count_matches_tshark(tshark, capture):
    # the table header counts every TCP packet, those of flows already decided included
    r = run_cli(capture)
    assert r.returncode == 0, r.stderr
    header = report_header(r.stdout)
    found = re.search(r"\(([\d,]+) TCP\)", header)
    assert found, header
    theirs = len(run_tshark(tshark, capture, ["frame.number"], "tcp"))
    assert int(found.group(1).replace(",", "")) == theirs


def tshark_serials(tshark: str, capture: Path) -> dict[str, tuple[bytes, str]]:
    """SHA-256 -> (DER, the serial number's DER content octets in upper-case hex), for every
    certificate tshark dissects in the capture's handshakes."""
    rows = run_tshark(
        tshark,
        capture,
        ["tls.handshake.certificate", "x509af.serialNumber"],
        "tcp and tls.handshake.certificate",
        decode_as=_decode_as(capture),
    )
    out = {}
    for certs, serials in rows:
        ders, octets = certs.split(","), serials.split(",")
        assert len(ders) == len(octets), (capture.name, certs, serials)
        for der, serial in zip(ders, octets, strict=True):
            raw = bytes.fromhex(der)
            out[hashlib.sha256(raw).hexdigest()] = (raw, serial.replace(":", "").upper())
    return out


def openssl_serial(der: bytes) -> str:
    r = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-serial", "-noout"],
        input=der,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return r.stdout.decode().strip().removeprefix("serial=")


def _serials(capture: Path) -> dict[str, str]:
    return {
        c["sha256"]: c["serial"]
        for s in tlsinspect.sessions(capture)
        for c in s["client_chain"] + s["server_chain"]
    }


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_serials_are_openssl_s_and_tshark_s_octets(tshark, capture):
    """Every certificate's serial is what `openssl x509 -serial` prints, and tshark's DER
    content octets without the sign byte (a 00 before a first byte of 0x80 or more)."""
    ours = _serials(capture)
    theirs = tshark_serials(tshark, capture)
    assert set(theirs) <= set(ours)
    for digest, (der, octets) in theirs.items():
        signed = len(octets) > 2 and octets.startswith("00") and int(octets[2], 16) >= 8
        assert ours[digest] == (octets[2:] if signed else octets), (capture.name, digest)
        assert ours[digest] == openssl_serial(der), (capture.name, digest)


@pytest.mark.shared
def test_serials_keep_their_leading_zero_and_drop_the_sign_byte(tshark):
    """The two cases a number in hex gets wrong: a first byte below 0x10 (OpenSSL and Zeek
    print "075DA2...", `format(n, "x")` gave "75da2...") and one of 0x80 or more (its DER has a
    00 sign byte before it, which OpenSSL and Zeek leave out)."""
    low = SHARED / "zeek__client-certificate.pcap"
    high = SHARED / "zeek__tls1.2.pcap"
    assert "075DA21171A41241766CC01CA59852B1" in _serials(low).values()
    octets = {o for _der, o in tshark_serials(tshark, high).values()}
    assert "0099FAA8037A4EB2FAEF84EB5E55D5B8C8" in octets
    assert "99FAA8037A4EB2FAEF84EB5E55D5B8C8" in _serials(high).values()
