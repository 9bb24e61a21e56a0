"""The tshark engine (`--engine tshark`) and `tlsinspect compare`, on every capture we have.

tshark (through pyshark) and tlsinspect's own dissector read the same bytes, and feed the same
session logic: on every capture in captures/ and ../shared/captures/ (with its key log) they must
agree on the client, version, verdict, SNI, CertificateRequest and both chains' fingerprints.
The only differences allowed are the notes compare explains: connections the capture joined after
their handshake, seen as TLS by one engine only (listed here, so none goes unnoticed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import OWN, SHARED, own_captures, report_header, shared_captures, shared_view

from tlsinspect.cli import compare

# Sessions reported by one engine only, with no handshake seen by either: (capture, only, client)
EXPECTED_NOTES = {
    ("ja4__tls3.pcapng", "tshark", "192.168.1.169:57748"),
    ("ja4__tls3.pcapng", "tshark", "192.168.1.169:57868"),
    ("ja4__tls3.pcapng", "tshark", "192.168.1.169:58682"),
    ("ndpi__anyconnect-vpn.pcap", "builtin", "10.0.0.227:56320"),
    ("ndpi__anyconnect-vpn.pcap", "tshark", "10.0.0.227:56910"),
}


def keylogs(capture: Path) -> list[Path]:
    """The key logs beside a capture: X.keylog for ours, tshark-view.json's for shared ones."""
    if capture.parent == SHARED:
        names = {s["keylog"] for s in shared_view() if s["file"] == capture.name and s["keylog"]}
        return sorted(SHARED / n for n in names)
    own = capture.with_suffix(".keylog")
    return [own] if own.exists() else []


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlsinspect", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


CAPTURES = own_captures() + shared_captures()


@pytest.mark.shared
def test_every_capture_is_checked():
    assert len(own_captures()) >= 8 and len(shared_captures()) >= 14


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_compare_finds_no_disagreement(capture: Path, tshark: str):
    args: list[str | Path] = ["compare", "--format", "json", capture]
    for k in keylogs(capture):
        args += ["--keylog", k]
    r = run(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["disagreements"] == 0
    (c,) = report["captures"]
    assert c["sessions"]["both"] >= 1
    for engine in ("builtin", "tshark"):  # every other session was paired and compared
        alone = sum(n["only"] == engine for n in c["notes"])
        assert c["sessions"]["both"] == c["sessions"][engine] - alone
    # RFC 8879 chains (tlslite-ng sends them): the tshark engine reads none from
    # CompressedCertificate
    compressed = [n for n in c["notes"] if "CompressedCertificate" in n["why"][-1]]
    expected = {"compress.pcapng": 5, "stack_tlslite.pcapng": 4}.get(capture.name, 0)
    assert len(compressed) == expected
    c["notes"] = [n for n in c["notes"] if n not in compressed]
    notes = {(capture.name, n["only"], n["client"]) for n in c["notes"]}
    assert notes == {n for n in EXPECTED_NOTES if n[0] == capture.name}
    for n in c["notes"]:
        assert n["fields"]["tls_version"] == {"builtin": None, "tshark": None}
        assert "joined the connection after its handshake" in n["why"][0]


@pytest.mark.parametrize("capture", own_captures(), ids=lambda p: p.name)
def test_engine_tshark_gives_the_same_json_as_the_builtin_engine(capture: Path, tshark: str):
    """Without a key log the two engines' JSON objects are equal field for field (the order in
    which sessions were logged, `index`, aside)."""
    ours = json.loads(run("--format", "json", capture).stdout)
    r = run("--engine", "tshark", "--format", "json", capture)
    assert r.returncode == 0, r.stderr
    theirs = json.loads(r.stdout)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        a.pop("index"), b.pop("index")
        assert a == b


def test_engine_tshark_decrypts_with_the_key_log(tshark: str):
    capture = OWN / "tls13.pcapng"
    r = run("--engine", "tshark", "--format", "jsonl", "--keylog", OWN / "tls13.keylog", capture)
    assert r.returncode == 0, r.stderr
    sessions = [json.loads(line) for line in r.stdout.splitlines()]
    truth = json.loads(capture.with_suffix(".truth.json").read_text())["sessions"]
    assert len(sessions) == len(truth)
    assert all(s["basis"] == "decrypted" for s in sessions if s["verdict"] != "resumed")
    by_port = {s["server_port"]: s["verdict"] for s in sessions}
    assert by_port == {t["server_port"]: t["verdict"] for t in truth}


def test_engine_tshark_table_and_csv(tshark: str):
    capture = OWN / "demo.pcapng"
    table = run("--engine", "tshark", capture)
    assert table.returncode == 0, table.stderr
    assert "tshark engine" in report_header(table.stdout) and "Totals:" in table.stdout
    csv = run("--engine", "tshark", "--format", "csv", capture)
    assert (
        csv.returncode == 0
        and csv.stdout.splitlines()[0] == run("--format", "csv", capture).stdout.splitlines()[0]
    )


@pytest.mark.shared
def test_starttls_protocol_is_named_by_tshark(tshark: str):
    r = run("--engine", "tshark", "--format", "json", SHARED / "zeek__pop3-starttls.pcap")
    (s,) = json.loads(r.stdout)
    assert s["starttls"] == "pop3"


def test_compare_reports_a_disagreement_with_what_differs(tshark: str):
    """The comparison itself: one verdict and one fingerprint changed on tshark's side."""
    capture = OWN / "tls12.pcapng"
    ours = json.loads(run("--format", "json", capture).stdout)
    theirs = json.loads(run("--engine", "tshark", "--format", "json", capture).stdout)
    changed = next(s for s in theirs if s["verdict"] == "mutual")
    changed["verdict"] = "one-way"
    changed["server_chain"][0]["sha256"] = "00" * 32
    (d,) = compare.compare_sessions(ours, theirs)
    assert not d.note and d.only is None
    assert set(d.fields) == {"verdict", "server_chain"}
    assert d.fields["verdict"] == ("mutual", "one-way")
    assert d.client == f"{changed['client_ip']}:{changed['client_port']}"
    missing = [s for s in theirs if s is not changed]
    diffs = compare.compare_sessions(ours, missing)
    only = [x for x in diffs if x.only == "builtin"]
    assert len(only) == 1 and not only[0].note  # a whole session missing is a disagreement
    assert only[0].why[0] == "only tlsinspect reports this session"


def test_compare_exit_1_on_disagreement(tshark: str, monkeypatch, capsys):
    real = compare.builtin_sessions

    def shifted(path, keylog=None):
        out = real(path, keylog=keylog)
        out[0]["tls_version"] = "TLS 1.0"
        return out

    monkeypatch.setattr(compare, "builtin_sessions", shifted)
    assert compare.main([str(OWN / "tls12.pcapng")]) == 1
    text = capsys.readouterr().out
    assert "1 disagreement" in text and "tls_version  tlsinspect TLS 1.0  |  tshark TLS 1.2" in text


def test_missing_tshark_says_how_to_install_it(tmp_path: Path):
    env = {**os.environ, "PATH": str(tmp_path)}  # a PATH without tshark
    for args in (
        ["compare", OWN / "demo.pcapng"],
        ["--engine", "tshark", OWN / "demo.pcapng"],
        ["live", "-i", "lo", "--engine", "tshark", "--duration", "1"],
    ):
        r = run(*args, env=env)
        assert r.returncode == 2
        (line,) = r.stderr.strip().splitlines()
        assert "tshark is not installed" in line and "apt-get install tshark" in line


def test_unusable_capture_exit_2(tmp_path: Path, tshark: str):
    bad = tmp_path / "not.pcap"
    bad.write_text("hello")
    for args in (["compare", bad], ["--engine", "tshark", bad]):
        r = run(*args)
        assert r.returncode == 2, r.stdout
        assert len(r.stderr.strip().splitlines()) == 1
