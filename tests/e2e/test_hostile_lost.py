"""Hostile captures made by `captures/hostile_lost.py` from a recorded mutual TLS 1.2 session:
nothing is lost without a word, nothing ends in a traceback.

Each capture is run through the command line (a subprocess, as a user runs it) and the Python
API. What every test holds: no traceback, the exit code the README documents, and every
connection that showed TLS reported, marked with why it is not what its recording was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import OWN, ROOT, flowed, run_cli

import tlsinspect
from tlsinspect.net.link import MAX_NESTING

RECORDED = OWN / "tls12.pcapng"
RECORDED_PORT = 8401  # the connection the generator re-wraps


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile_lost")
    r = subprocess.run(
        [sys.executable, "-m", "captures.hostile_lost", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert {Path(line).name for line in r.stdout.split()} == {p.name for p in out.iterdir()}
    return out


@pytest.fixture(scope="module")
def original() -> dict[str, object]:
    """The recorded session every capture is made from (its report, to compare with)."""
    (s,) = [s for s in tlsinspect.sessions(RECORDED) if s["server_port"] == RECORDED_PORT]
    assert s["verdict"] == "mutual" and s["basis"] == "observed"
    return s


def cli_json(path: Path) -> tuple[list[dict[str, object]], str]:
    """The JSON report of a capture and the stderr, checked for the no-traceback promise."""
    r = run_cli("--format", "json", path)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def table(path: Path) -> str:
    """The text report, its lines joined: the phrases the tests look for, however wrapped."""
    r = run_cli(path)
    assert "Traceback" not in r.stderr and r.returncode == 0, r.stderr
    return flowed(r.stdout)


# -- a handshake message over the limit, and one over 64 KiB ------------------------------------


@pytest.mark.parametrize("flows", [1, 1000])
def test_a_hello_claiming_16_mib_is_a_session_left_incomplete(hostile, flows):
    path = hostile / f"hello_claims_16m_{flows}.pcap"
    sessions, _ = cli_json(path)
    assert sessions == tlsinspect.sessions(path)
    assert len(sessions) == flows  # every connection is reported
    for s in sessions:
        # the server's flight was read, the client's was not: never `mutual`
        assert s["verdict"] == "incomplete" and s["complete"] is False
        assert s["client_cert_sent"] is None and s["client_chain"] == []
        assert s["cert_requested"] is True  # what was seen is said
        (anomaly,) = s["anomalies"]
        assert anomaly.startswith("client client_hello: its header claims 16,777,215 bytes")
        assert "not read" in anomaly
        assert "16,777,215 bytes" in str(s["reason"])
        assert not any(str(h).startswith("client:") for h in s["handshake"])  # type: ignore[union-attr]


@pytest.mark.parametrize("flows", [1, 1000])
def test_a_70000_byte_hello_is_read_whole(hostile, original, flows):
    """Over 64 KiB and in five records, but under the limit: read like any other, and the
    session is the recorded one (the hello's padding aside)."""
    path = hostile / f"hello_70000_{flows}.pcap"
    sessions, stderr = cli_json(path)
    assert stderr == ""
    assert len(sessions) == flows
    for s in sessions:
        for field in ("verdict", "reason", "handshake", "sni", "client_chain", "anomalies"):
            assert s[field] == original[field], field
    if flows == 1:
        assert tlsinspect.sessions(path) == sessions


# -- tunnels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [8, 9, 10, 16])
def test_tunnels_up_to_the_nesting_limit_are_peeled(hostile, original, depth):
    assert depth <= MAX_NESTING
    sessions, stderr = cli_json(hostile / f"tunnel_{depth}.pcap")
    assert stderr == ""
    (s,) = sessions
    for field in ("verdict", "reason", "handshake", "sni", "client_chain", "server_chain"):
        assert s[field] == original[field], field


def test_tunnels_nested_deeper_than_the_limit_are_said_skipped(hostile):
    path = hostile / f"tunnel_{MAX_NESTING + 1}.pcap"
    sessions, stderr = cli_json(path)
    assert sessions == [] == tlsinspect.sessions(path)
    (line,) = stderr.splitlines()
    assert f"frames skipped because their tunnels nest more than {MAX_NESTING} deep: 16" in line
    assert "not read" in line
    out = table(path)
    assert "16 packets (0 TCP)" in out
    assert f"nest more than {MAX_NESTING} deep: 16" in out


def test_a_link_type_not_decoded_is_said(hostile):
    sessions, stderr = cli_json(hostile / "no_tcp_linktype.pcap")
    assert sessions == []
    assert "no TCP in any of the 16 packets read" in stderr


# -- captures with no packet that can be read ---------------------------------------------------


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_record_damaged.pcap", "no packet could be read: packet record at byte 24 claims"),
        ("no_record_cut.pcap", "no packet could be read: capture truncated"),
        ("no_record_no_interface.pcapng", "no packet could be read: 16 packets skipped"),
        ("no_record_header.pcap", "no packet in the capture"),
        ("no_record_other_blocks.pcapng", "no packet in the capture"),
    ],
)
def test_a_capture_with_no_readable_packet_is_unusable(hostile, name, message, tmp_path):
    """As an empty file: one line on stderr, exit code 2 (README), for the report and `check`."""
    path = hostile / name
    for args in ([path], ["--format", "jsonl", path]):
        r = run_cli(*args)
        assert r.returncode == 2 and r.stdout == ""
        (line,) = r.stderr.splitlines()
        assert line.startswith(f"tlsinspect: {path}: {message}")
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nname = "any"\n[rule.require]\nmin_tls_version = "1.2"\n')
    r = run_cli("check", path, "--policy", policy)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert tlsinspect.sessions(path) == []


# -- packet times that are no dates --------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded_start() -> int:
    """The recorded connection's first packet time (ns): the generated connections start then."""
    (r,) = [r for r in tlsinspect.analyze(RECORDED) if r.server[1] == RECORDED_PORT]
    return r.facts.start_ts


# the raw first packet time of each capture, from the recorded one (t0, integer nanoseconds)
_WHERE = {
    "time_tsresol.pcapng": lambda t0: t0 * 1000,  # nanoseconds read as microseconds
    "time_damaged.pcapng": lambda t0: (t0 // 1000 | 0xFFFFFFFF << 32) * 1000,  # high word
    "time_offset.pcapng": lambda t0: t0 // 1000 * 1000 - (1 << 62) * 10**9,  # if_tsoffset
}


@pytest.mark.parametrize("name", sorted(_WHERE))
def test_a_time_that_is_no_date_is_shown_raw_in_every_output(
    hostile, original, recorded_start, name
):
    path = hostile / name
    first = _WHERE[name](recorded_start)
    sessions, _ = cli_json(path)
    (s,) = sessions
    assert s["verdict"] == original["verdict"] and s["handshake"] == original["handshake"]
    start = str(s["start_time"])
    assert start == f"@{first}"
    (anomaly,) = s["anomalies"]
    assert anomaly.startswith(f"packet time not a date: first packet {first:,} ns since 1970")
    for chain in (s["client_chain"], s["server_chain"]):
        for cert in chain:  # type: ignore[union-attr]
            (validity,) = [c for c in cert["checks"] if c["check"] == "validity"]
            assert validity["result"] == "info" and validity["detail"].startswith("not checked")
    r = run_cli("--format", "json", "--ca-bundle", OWN / "pki" / "test-root-ca.pem", path)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    (bundle,) = [
        c
        for c in json.loads(r.stdout)[0]["chain_checks"]["server"]["checks"]
        if c["check"] == "ca_bundle"
    ]
    assert bundle["result"] == "info" and bundle["detail"].startswith("not checked")
    for fmt in ("table", "jsonl", "csv"):
        wide = ("--width", "200") if fmt == "table" else ()  # wide enough for the start column
        r = run_cli("--format", fmt, *wide, path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (fmt, r.stderr)
        assert start in r.stdout, fmt
    assert tlsinspect.sessions(path) == sessions


def test_a_time_that_is_no_date_is_nat_in_the_dataframe(hostile):
    pytest.importorskip("pandas")
    frame = tlsinspect.read_capture(hostile / "time_tsresol.pcapng")
    assert len(frame) == 1 and frame["start_time"].isna().all()
    assert frame["verdict"][0] == "mutual"
    certs = tlsinspect.read_certificates(frame)
    assert len(certs) and certs["valid_at_capture"].isna().all()


def test_a_damaged_pcap_time_is_read_as_it_is(hostile, original):
    """A pcap's seconds are 32 bits: a damaged time (all ones) is a date, in 2106."""
    (s,) = cli_json(hostile / "time_damaged.pcap")[0]
    assert str(s["start_time"]).startswith("2106-02-07T")
    assert s["verdict"] == original["verdict"] and s["anomalies"] == []


# -- frames shorter than the headers they start -------------------------------------------------


def test_frames_cut_inside_their_headers_are_counted_and_the_session_kept(hostile, original):
    path = hostile / "short_frames.pcap"
    sessions, stderr = cli_json(path)
    (s,) = sessions
    assert s["verdict"] == original["verdict"] and s["handshake"] == original["handshake"]
    (line,) = stderr.splitlines()
    assert "end inside their headers (a snaplen shorter than the headers, or damage): 8" in line
    for header in ("Ethernet header", "802.1Q tag", "IPv4 header", "TCP header"):
        assert f"2 in the {header}" in line
