"""The command line as a user runs it: formats, exit codes, bad input without tracebacks."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from helpers import OWN, SHARED, flowed, run_cli

DEMO = OWN / "demo.pcapng"


run = run_cli


def test_table_report_on_the_demo_capture():
    r = run(DEMO)
    assert r.returncode == 0, r.stderr
    out = flowed(r.stdout)  # the phrases below, however the width wrapped them
    truth = json.loads((OWN / "demo.truth.json").read_text())
    assert f"{len(truth['sessions'])} TLS sessions" in out
    assert "Certificate chains (leaf first):" in r.stdout
    assert "Totals:" in r.stdout
    from tlsinspect.report.table import needs_why

    sessions = json.loads(run("--format", "json", DEMO).stdout)
    asked = {s["index"] for s in sessions if s["cert_requested"]}
    shown = {s["index"] for s in sessions if needs_why(s)}  # by default, those that need them
    assert _ca_lines(r.stdout) == asked & shown and shown < asked
    assert _ca_lines(run("--why", "all", DEMO).stdout) == asked
    for s in truth["sessions"]:
        for cn in s["client_chain"] or []:
            if s["tls_version"] == "TLS 1.2":
                assert cn in r.stdout


def why_entries(stdout: str) -> dict[int, str]:
    """Each session's entry under "Why:" (sessions that say the same share one), flowed."""
    part = stdout.split("\nWhy:\n", 1)[1].split("\n\n", 1)[0]
    out = {}
    for entry in re.split(r"\n(?=  #)", part):
        for n in re.findall(r"#(\d+)", entry.split(": ", 1)[0]):
            out[int(n)] = flowed(entry)
    return out


def _ca_lines(stdout: str) -> set[int]:
    """The sessions whose why lines name the CAs the server accepts."""
    return {i for i, e in why_entries(stdout).items() if "client CAs the server accepts: " in e}


def test_json_has_the_documented_fields():
    from tlsinspect.report.schema import FIELDS

    r = run("--format", "json", DEMO)
    assert r.returncode == 0, r.stderr
    sessions = json.loads(r.stdout)
    assert sessions and all(list(s) == [n for n, _, _ in FIELDS] for s in sessions)
    for s in sessions:
        for c in s["client_chain"] + s["server_chain"]:
            assert len(c["sha256"]) == 64 and c["subject"] and c["issuer"]


def test_jsonl_is_one_object_per_line():
    lines = run("--format", "jsonl", DEMO).stdout.splitlines()
    assert len(lines) == len(json.loads((OWN / "demo.truth.json").read_text())["sessions"])
    assert all(json.loads(line)["verdict"] for line in lines)


def test_gzip_capture_reads_like_the_plain_one(tmp_path):
    gz = tmp_path / "demo.pcapng.gz"
    gz.write_bytes(gzip.compress(DEMO.read_bytes()))
    from_gz = json.loads(run("--format", "json", gz).stdout)
    plain = json.loads(run("--format", "json", DEMO).stdout)
    assert {s.pop("file") for s in from_gz} == {str(gz)}
    assert {s.pop("file") for s in plain} == {str(DEMO)}
    assert from_gz == plain


@pytest.mark.parametrize(
    "content, message",
    [
        (b"hello, this is a text file\n", "not a pcap or pcapng capture"),
        (b"", "empty file"),
        (b"\xd4\xc3", "capture"),
    ],
    ids=["text", "empty", "short"],
)
def test_unusable_input_is_one_line_and_exit_2(tmp_path, content, message):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    r = run(bad)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "nope.pcap", tmp_path):
        r = run(path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
        assert "Traceback" not in r.stderr


@pytest.mark.shared
def test_truncated_capture_is_analysed_as_far_as_it_goes(tmp_path):
    data = (SHARED / "zeek__client-certificate.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2 + 7])
    r = run(cut)
    assert r.returncode == 0, r.stderr
    assert "Capture problems:" in r.stdout and "truncated" in r.stdout
    s = json.loads(run("--format", "json", cut).stdout)
    assert len(s) == 1 and s[0]["verdict"] == "incomplete"
    assert "Traceback" not in r.stderr


def test_garbage_tls_record_marks_the_session(tmp_path):
    """A record header overwritten in the server's flight: the session says so, no traceback."""
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from helpers import connection_packets, read
    from pcaptools import data_packets, write

    packets = read(OWN / "tls12.pcapng")
    truth = json.loads((OWN / "tls12.truth.json").read_text())["sessions"][0]
    idx = connection_packets(packets, truth["server_port"])
    pkts = [packets[i] for i in idx]
    first = data_packets(pkts, list(range(len(pkts))), from_port=truth["server_port"])[0]
    ts, lt, frame, orig, iface = pkts[first]
    from tlsinspect.net.link import locate_tcp

    _, _, t, end = locate_tcp(lt, frame)
    pos = t + (frame[t + 12] >> 4) * 4
    headers = []
    while pos + 5 <= end:  # walk the flight's records to the last record header
        headers.append(pos)
        pos += 5 + int.from_bytes(frame[pos + 3 : pos + 5], "big")
    assert len(headers) >= 3
    last = headers[-1]
    broken = frame[:last] + b"\xee" * 5 + frame[last + 5 :]
    pkts[first] = (ts, lt, broken, orig, iface)
    path = write(tmp_path / "garbage.pcap", pkts)
    r = run("--format", "json", path)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    (s,) = json.loads(r.stdout)
    assert s["verdict"] in ("incomplete", "failed")
    assert s["anomalies"], s


def test_an_inferred_request_shows_no_ca_names_it_cannot_see():
    r = run("--why", "all", OWN / "tls13.pcapng")
    assert r.returncode == 0, r.stderr
    sessions = json.loads(run("--format", "json", OWN / "tls13.pcapng").stdout)
    inferred = [s for s in sessions if s["cert_requested"] and s["basis"] == "inferred"]
    assert inferred and all(s["requested_ca_names"] == [] for s in inferred)
    hidden = "client CAs the server accepts: in the encrypted CertificateRequest (a key log shows"
    entries = why_entries(r.stdout)
    assert {s["index"] for s in inferred} == {i for i, e in entries.items() if hidden in e}
