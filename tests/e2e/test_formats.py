"""Every output format of the command line, parsed back; --output; CSV and JSONL streamed."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import OWN, run_cli

from tlsinspect import cli
from tlsinspect.report.flat import columns
from tlsinspect.report.schema import FIELDS

DEMO = OWN / "demo.pcapng"
TLS12 = OWN / "tls12.pcapng"


run = run_cli


def json_sessions(capture: Path) -> list[dict]:
    r = run("--format", "json", capture)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("capture", [TLS12, DEMO, OWN / "stacks.pcap"], ids=lambda p: p.name)
def test_csv_parses_back_to_the_json_output(capture):
    r = run("--format", "csv", capture)
    assert r.returncode == 0, r.stderr
    reader = csv.DictReader(io.StringIO(r.stdout, newline=""))
    assert reader.fieldnames == [n for n, _, _ in columns()]
    rows = sorted(reader, key=lambda row: (row["start_time"], int(row["index"])))
    sessions = json_sessions(capture)
    assert len(rows) == len(sessions)
    kinds = {n: t for n, t, _ in FIELDS}
    for row, s in zip(rows, sessions, strict=True):
        for name, kind in kinds.items():
            cell, value = row[name], s[name]
            if value is None:
                assert cell == "", name
            elif kind.startswith(("array", "object")):
                assert json.loads(cell) == value, name
            elif kind.startswith("boolean"):
                assert cell == ("true" if value else "false"), name
            elif kind.startswith("integer"):
                assert int(cell) == value, name
            else:
                assert cell == value, name
        chain = s["client_chain"]
        assert int(row["client_chain_length"]) == len(chain)
        assert row["client_subject_cn"] == (chain[0]["subject_cn"] if chain else "")
        assert row["server_sha256"] == (s["server_chain"][0]["sha256"] if s["server_chain"] else "")
        assert row["established"] in ("true", "false", "")
        for uri in json.loads(row["client_san"]):
            assert uri.startswith("URI:spiffe://example.test/")


def test_csv_quotes_commas_and_newlines():
    r = run("--format", "csv", TLS12)
    rows = list(csv.reader(io.StringIO(r.stdout, newline="")))
    widths = {len(row) for row in rows}
    assert widths == {len(columns())}  # subjects like "C=US, O=..." stay in one cell


def test_jsonl_and_json_hold_the_same_sessions():
    lines = run("--format", "jsonl", DEMO).stdout.splitlines()
    streamed = [json.loads(line) for line in lines]
    assert sorted(streamed, key=lambda s: (s["start_time"], s["index"])) == json_sessions(DEMO)
    assert all(list(s) == [n for n, _, _ in FIELDS] for s in streamed)


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_output_file_holds_what_stdout_would(tmp_path, fmt):
    out = tmp_path / f"report.{fmt}"
    r = run("--format", fmt, "--output", out, TLS12)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert out.read_text() == run("--format", fmt, TLS12).stdout
    if fmt == "json":
        assert len(json.loads(out.read_text())) == 13


def test_output_that_cannot_be_written_exits_2(tmp_path):
    r = run("--format", "csv", "--output", tmp_path / "no" / "such" / "dir.csv", TLS12)
    assert r.returncode == 2
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1 and "dir.csv" in r.stderr


class _Out(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@pytest.mark.parametrize("fmt, header", [("csv", 1), ("jsonl", 0)])
def test_csv_and_jsonl_are_written_session_by_session(monkeypatch, fmt, header):
    """Each session is written and flushed before the analyzer reads on to the next one."""
    out = _Out()
    written_before: list[int] = []  # lines on the output when each record is handed over
    flushes_before: list[int] = []

    from tlsinspect.cli import analyze as analyze_command

    class Watched(analyze_command.Analyzer):  # type: ignore[misc, valid-type]
        def run(self, packets):
            for record in super().run(packets):
                written_before.append(out.getvalue().count("\n"))
                flushes_before.append(out.flushes)
                yield record

    monkeypatch.setattr(analyze_command, "Analyzer", Watched)
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main(["--format", fmt, str(TLS12)]) == 0
    n = len(written_before)
    assert n == 13
    # when record k is handed over, the k records before it are already out, and flushed
    assert written_before == [header + k for k in range(n)]
    assert flushes_before == sorted(flushes_before) and flushes_before[-1] >= n - 1 + header
    assert out.getvalue().count("\n") == header + n


def test_the_command_line_never_imports_pandas(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nname = "r"\n[rule.require]\nmin_tls_version = "1.2"\n')
    code = (
        "import sys, io, contextlib\n"
        "from tlsinspect import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert cli.main(['--format', 'csv', {str(TLS12)!r}]) == 0\n"
        f"    assert cli.main(['check', {str(TLS12)!r}, '--policy', {str(policy)!r}]) == 0\n"
        "assert not {'pandas', 'tqdm', 'numpy'} & set(sys.modules), sorted(sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_csv_flattens_the_chain_checks_as_the_ground_truth_has_them():
    truth = json.loads((OWN / "certs.truth.json").read_text())["sessions"]
    bundle = OWN / "certs-pki" / "certs-test-root-ca.pem"
    r = run("--format", "csv", "--ca-bundle", bundle, OWN / "certs.pcapng")
    assert r.returncode == 0, r.stderr
    rows = sorted(
        csv.DictReader(io.StringIO(r.stdout, newline="")),
        key=lambda row: (row["start_time"], int(row["index"])),
    )
    assert len(rows) == len(truth)
    for row, t in zip(rows, truth, strict=True):
        for role in ("client", "server"):
            checks = t["checks"].get(role)
            if checks is None:
                assert (row[f"{role}_chain_result"], row[f"{role}_chain_failed"]) == ("", "[]")
                continue
            failed = checks["fail"] + ([] if t["ca_bundle"][role] else ["ca_bundle"])
            result = "fail" if failed else "warn" if checks["warn"] else "pass"
            assert row[f"{role}_chain_result"] == result, (t["scenario"], role)
            assert sorted(json.loads(row[f"{role}_chain_failed"])) == sorted(failed), (
                t["scenario"],
                role,
            )
