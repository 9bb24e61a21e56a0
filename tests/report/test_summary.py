"""The per-server summary (report/summary.py): on the recorded captures, its counts per verdict
per server are the ground truth's, its servers and names are tshark's, and every format and
the notebook API hold the same rows."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from helpers import OWN, ROOT, SHARED_ABSENT, run_cli, run_tshark, shared_captures
from truthcases import CASES, analysed, case_id, truth_sessions

import tlsinspect
from tlsinspect.report.flat import flat_row
from tlsinspect.report.select import selection
from tlsinspect.report.summary import (
    SUMMARY_FIELDS,
    markdown_table,
    render_summary,
    summarize,
)
from tlsinspect.report.table import VERDICT_ORDER


def _summary(case, **select) -> list[dict]:
    return summarize(flat_row(r) for r in selection(**select).filter(analysed(*case)))


def _by_server(truth) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for t in truth:
        out[(t["server_ip"], t["server_port"])].append(t)
    return out


def _visible(t: dict, keyed: bool, role: str) -> bool:
    """The certificates `role` sent are in the capture's plaintext, or decrypted: not in TLS
    1.3 without keys, nor a client's sent only in a TLS 1.2 renegotiation."""
    if t["verdict"] == "resumed":
        return False
    if keyed:
        return True
    return t["tls_version"] != "TLS 1.3" and (role == "server" or not t.get("later_auth"))


@functools.cache
def _issuers(folder: Path) -> dict[str, str]:
    """Subject CN -> issuer CN of every certificate of a PKI folder of captures/."""
    out = {}
    for pem in folder.glob("*.pem"):
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        out[str(cn)] = str(cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    return out


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_counts_per_verdict_per_server_are_the_ground_truth(case):
    truth = truth_sessions(*case)
    rows = _summary(case)
    servers = _by_server(truth)
    assert [(r["server_ip"], r["server_port"]) for r in rows] == sorted(
        servers,
        key=lambda k: (
            ":" in k[0],
            tuple(int(x) for x in k[0].split(".")) if ":" not in k[0] else (),
            k[1],
        ),
    )
    for row in rows:
        sessions = servers[(row["server_ip"], row["server_port"])]
        assert row["sessions"] == len(sessions)
        expected = Counter(t["expected"] for t in sessions)
        assert {v: row[v] for v in VERDICT_ORDER} == {v: expected[v] for v in VERDICT_ORDER}
        assert row["sni"] == sorted({t["sni"] for t in sessions if t["sni"]})
        servers_shown = [t for t in sessions if _visible(t, case[1], "server")]
        assert row["server_cn"] == sorted(
            {t["server_chain"][0] for t in servers_shown if t["server_chain"]}
        )
        shown = [t for t in sessions if _visible(t, case[1], "client")]
        ids = Counter()
        for t in shown:
            if t["client_chain"]:
                ids[t["client_chain"][0]] += 1
        assert Counter({i["cn"]: i["sessions"] for i in row["client_identities"]}) == ids
        # the issuer of each client leaf, as the recording's PKI folder holds it
        pki = _issuers(OWN / ("certs-pki" if case[0].name == "certs.truth.json" else "pki"))
        named = [t["client_chain"][0] for t in shown if t["client_chain"]]
        if all(cn in pki for cn in named):
            issuers = Counter(pki[cn] for cn in named)
            assert (
                Counter({i["issuer_cn"]: i["sessions"] for i in row["client_issuers"]}) == issuers
            )
        # negotiated versions; the truth names the one offered when none was
        assert set(row["tls_versions"]) <= {t["tls_version"] for t in sessions}
        assert sum(row["tls_versions"].values()) <= row["sessions"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_summary_of_a_selection_counts_only_what_it_keeps(case):
    truth = truth_sessions(*case)
    rows = _summary(case, verdict="mutual")
    mutual = _by_server(t for t in truth if t["expected"] == "mutual")
    assert {(r["server_ip"], r["server_port"]): r["mutual"] for r in rows} == {
        k: len(v) for k, v in mutual.items()
    }
    assert all(r["sessions"] == r["mutual"] for r in rows)


# -- tshark's servers ---------------------------------------------------------------------------


def _tshark_servers(tshark: str, capture: Path, ports: list[int]) -> dict[tuple[str, int], set]:
    """(server address, port) -> SNIs, of every ClientHello tshark dissects."""
    rows = run_tshark(
        tshark,
        capture,
        ["ip.dst", "ipv6.dst", "tcp.dstport", "tls.handshake.extensions_server_name"],
        "tcp and tls.handshake.type == 1",
        decode_as=[p for p in ports if p > 1024],  # the STARTTLS ports are tshark's own
    )
    out: dict[tuple[str, int], set] = defaultdict(set)
    for ip4, ip6, port, sni in rows:
        # in a tunnel (VXLAN, GRE) the last address is the innermost: the TCP connection's
        names = out[((ip6 or ip4).split(",")[-1], int(port.split(",")[-1]))]
        if sni:
            names.add(sni)
    return out


@pytest.mark.parametrize("case", [c for c in CASES if not c[1]], ids=case_id)
def test_servers_and_their_names_are_tsharks(tshark, case):
    doc = json.loads(case[0].read_text())
    ports = sorted({t["server_port"] for t in doc["sessions"]})
    theirs = _tshark_servers(tshark, OWN / doc["capture"], ports)
    rows = _summary(case)
    assert {(r["server_ip"], r["server_port"]): set(r["sni"]) for r in rows} == theirs


@pytest.mark.skipif(SHARED_ABSENT is not None, reason=str(SHARED_ABSENT))
@pytest.mark.parametrize("capture", shared_captures(), ids=lambda p: p.name)
def test_shared_captures_servers_are_tsharks_and_late_joins(tshark, capture):
    """A connection the capture joined after its ClientHello is a server of the summary too,
    with only incomplete sessions."""
    rows = summarize(flat_row(r) for r in tlsinspect.analyze(capture))
    ports = sorted({r["server_port"] for r in rows})
    theirs = _tshark_servers(tshark, capture, ports)
    mine = {(r["server_ip"], r["server_port"]): r for r in rows}
    assert set(theirs) <= set(mine)
    for key, row in mine.items():
        if key not in theirs:
            assert row["incomplete"] == row["sessions"], row
        else:
            assert set(row["sni"]) == theirs[key], key


# -- rendering and formats ----------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 60])
def test_the_text_fits_the_width_and_keeps_verdicts_whole(width):
    for case in CASES:
        rows = _summary(case)
        text = render_summary(rows, "header", width=width)
        for line in text.splitlines():
            words = line.split()
            # only a single word longer than the line may pass it (a name is never cut)
            assert len(line) <= width or len(max(words, key=len)) > width - 15, line
        for row in rows:
            assert str(row["server"]) in text
            for v in VERDICT_ORDER:
                if row[v]:
                    assert f"{v} {row[v]}" in text


def test_the_command_line_writes_the_same_rows_in_every_format():
    capture = OWN / "demo.pcapng"
    as_json = json.loads(run_cli(capture, "--summary", "--format", "json").stdout)
    assert as_json == summarize(flat_row(r) for r in tlsinspect.analyze(capture))
    lines = run_cli(capture, "--summary", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == as_json
    table = list(
        csv.DictReader(io.StringIO(run_cli(capture, "--summary", "--format", "csv").stdout))
    )
    assert list(table[0]) == [n for n, _, _ in SUMMARY_FIELDS]
    for row, cells in zip(as_json, table, strict=True):
        assert cells["server"] == row["server"]
        assert int(cells["mutual"]) == row["mutual"]
        assert json.loads(cells["client_identities"]) == row["client_identities"]
    text = run_cli(capture, "--summary").stdout
    assert text.startswith(f"{capture}: ") and "Totals: " in text


def test_the_summary_follows_the_selection_on_the_command_line():
    capture = OWN / "tls12.pcapng"
    r = run_cli(capture, "--summary", "--verdict", "mutual", "--format", "json")
    assert r.returncode == 0, r.stderr
    truth = truth_sessions(OWN / "tls12.truth.json", False)
    mutual = Counter((t["server_ip"], t["server_port"]) for t in truth if t["expected"] == "mutual")
    assert {(s["server_ip"], s["server_port"]): s["mutual"] for s in json.loads(r.stdout)} == mutual
    assert f"{sum(mutual.values())} of {len(truth)} TLS sessions shown" in r.stderr
    text = run_cli(capture, "--summary", "--verdict", "mutual").stdout
    assert f"{sum(mutual.values())} of {len(truth)} TLS sessions shown" in text.splitlines()[0]


def test_summary_in_a_format_it_has_not_is_exit_2():
    r = run_cli(OWN / "tls12.pcapng", "--summary", "--format", "ecs")
    assert r.returncode == 2 and r.stdout == ""
    assert "--summary is written as table, json, jsonl, csv, not ecs" in r.stderr


def test_the_notebook_summary_is_the_command_lines():
    capture = OWN / "demo.pcapng"
    as_json = json.loads(run_cli(capture, "--summary", "--format", "json").stdout)
    frame = tlsinspect.summary(capture, progress=False)
    assert list(frame.columns) == [n for n, _, _ in SUMMARY_FIELDS]
    assert str(frame["mutual"].dtype) == "Int64" and str(frame["server"].dtype) == "string"
    assert [
        {k: (v if not hasattr(v, "item") else v.item()) for k, v in row.items()}
        for row in frame.to_dict("records")
    ] == as_json
    selected = tlsinspect.read_capture(capture, verdict="mutual", progress=False)
    assert tlsinspect.summary(selected)["sessions"].sum() == len(selected)
    with pytest.raises(ValueError, match="not a read_capture"):
        tlsinspect.summary(tlsinspect.read_capture(capture, ecs=True, progress=False))


def test_readme_holds_the_summary_field_table():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- summary:start -->\n", 1)[1].split("\n<!-- summary:end -->", 1)[0]
    assert block == markdown_table()
