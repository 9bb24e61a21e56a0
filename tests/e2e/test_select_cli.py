"""Selecting sessions on the command line (`--verdict`, `--server`, `--port`,
`--client-identity`): every format shows the sessions the ground truth says, and says how many
of how many it shows."""

from __future__ import annotations

import csv
import io
import json

import pytest
from helpers import OWN, blind_verdict, run_cli

TLS12 = OWN / "tls12.pcapng"
TRUTH = json.loads((OWN / "tls12.truth.json").read_text())["sessions"]
FAILED_OR_REFUSED = ("failed", "cert-requested-not-sent")


def _expected(verdicts: tuple[str, ...], ports: range) -> list[dict]:
    return [t for t in TRUTH if blind_verdict(t) in verdicts and t["server_port"] in ports]


def test_the_table_says_how_many_of_how_many_it_shows():
    r = run_cli(TLS12, "--verdict", "mutual", "--width", "1000")
    assert r.returncode == 0, r.stderr
    mutual = _expected(("mutual",), range(65536))
    assert f"{len(mutual)} of {len(TRUTH)} TLS sessions shown" in r.stdout
    totals = r.stdout.split("Totals:")[1].split("\n\n")[0].split()
    assert totals == ["mutual", str(len(mutual)), "all", str(len(mutual))]
    assert r.stderr == ""
    assert f"{len(TRUTH)} TLS sessions" in run_cli(TLS12, "--width", "1000").stdout.splitlines()[0]


def _shown(fmt: str, stdout: str, out_dir) -> list[tuple[int, str]]:
    """(server port, verdict) of each session a format wrote."""
    if fmt == "json":
        return [(s["server_port"], s["verdict"]) for s in json.loads(stdout)]
    if fmt == "jsonl":
        return [(s["server_port"], s["verdict"]) for s in map(json.loads, stdout.splitlines())]
    if fmt == "csv":
        return [(int(s["server_port"]), s["verdict"]) for s in csv.DictReader(io.StringIO(stdout))]
    if fmt == "ecs":
        rows = [json.loads(line) for line in stdout.splitlines()]
        return [(s["server"]["port"], s["tlsinspect"]["verdict"]) for s in rows]
    rows = [json.loads(line) for line in (out_dir / "ssl.log").read_text().splitlines()]
    return [(s["id.resp_p"], s["mtls_verdict"]) for s in rows]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "ecs", "zeek-json"])
def test_every_format_shows_the_selected_sessions(fmt, tmp_path):
    args = ["--format", fmt, "--verdict", ",".join(FAILED_OR_REFUSED), "--port", "8401-8405"]
    if fmt == "zeek-json":
        args += ["-o", tmp_path]
    r = run_cli(TLS12, *args)
    assert r.returncode == 0, r.stderr
    expected = _expected(FAILED_OR_REFUSED, range(8401, 8406))
    assert expected
    shown = _shown(fmt, r.stdout, tmp_path)
    assert sorted(shown) == sorted((t["server_port"], blind_verdict(t)) for t in expected)
    assert r.stderr == f"tlsinspect: {TLS12}: {len(expected)} of {len(TRUTH)} TLS sessions shown\n"


def test_server_and_client_identity_on_the_command_line():
    r = run_cli(TLS12, "--format", "json", "--server", "[::1]:*", "--client-identity", "client-*")
    assert r.returncode == 0, r.stderr
    expected = [t for t in TRUTH if t["server_ip"] == "::1" and t["client_chain"]]
    assert [s["server_port"] for s in json.loads(r.stdout)] == [t["server_port"] for t in expected]


def test_a_selection_that_keeps_nothing():
    r = run_cli(TLS12, "--client-identity", "nobody")
    assert r.returncode == 0, r.stderr
    assert f"0 of {len(TRUTH)} TLS sessions shown" in r.stdout
    assert "No TLS sessions found." in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--verdict", "two-way"],
            "'two-way' is not a verdict (did you mean one-way? one of mutual, ",
        ),
        (["--port", "70000"], "'70000' is not a port"),
        (["--server", ""], "an empty server pattern keeps nothing"),
        (["--verdict", ""], "an empty verdict keeps nothing"),
    ],
)
def test_a_wrong_selection_is_one_line_and_exit_2(args, message):
    r = run_cli(TLS12, *args)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_help_says_how_options_combine():
    text = " ".join(run_cli("--help").stdout.split())
    assert "alternatives (ORed), different options must all hold (ANDed)" in text
    for option in ("--verdict V", "--server GLOB", "--port N", "--client-identity GLOB"):
        assert option in text


def test_the_tshark_engine_selects_alike(tshark):
    args = ["--format", "json", "--verdict", "mutual", "--port", "8401-8409"]
    mine = json.loads(run_cli(TLS12, *args).stdout)
    theirs = json.loads(run_cli(TLS12, "--engine", "tshark", *args).stdout)
    assert [s["server_port"] for s in mine] == [s["server_port"] for s in theirs]
    assert len(mine) == len(_expected(("mutual",), range(8401, 8410)))
