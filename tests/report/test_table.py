"""tlsinspect.report.table: the text report fits its width, wraps rather than cuts, prints each
distinct chain once and the why lines of the sessions that need them; on every capture, and on
all their sessions together (a report of 500 and more sessions)."""

from __future__ import annotations

import functools
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from fcntl import ioctl
from pathlib import Path

import pytest
from helpers import OWN, ROOT, own_captures, run_cli, shared_captures
from hypothesis import given
from hypothesis import strategies as st

import tlsinspect
from tlsinspect.report.table import MIN_WIDTH, needs_why, render, wrap

CAPTURES = own_captures() + shared_captures()
WIDTHS = (60, 80, 120, 200)
DEMO = OWN / "demo.pcapng"


@functools.cache
def sessions_of(capture: Path) -> list[dict]:
    return tlsinspect.sessions(capture)


@functools.cache
def every_session() -> list[dict]:
    """The sessions of every capture as one report's, numbered again."""
    out = [dict(s) for c in CAPTURES for s in sessions_of(c)]
    for i, s in enumerate(out, 1):
        s["index"] = i
    return out


def header(capture: Path) -> str:
    return f"{capture}: pcapng, 1,234 packets (1,234 TCP), 99 TCP connections, 99 TLS sessions"


def lines_of(text: str) -> list[str]:
    assert text.endswith("\n")
    return text[:-1].split("\n")


# -- wrapping ------------------------------------------------------------------------------------


@given(
    st.text(st.sampled_from("ab_-/: \n"), max_size=200),
    st.integers(1, 50),
    st.sampled_from(("", "  ", "    ")),
)
def test_wrap_fits_and_loses_nothing_but_spaces(text, room, indent):
    width = room + len(indent) + 2
    lines = wrap(text, width, indent, indent + "  ")
    assert all(len(line) <= width for line in lines)
    assert "".join(text.split()) == "".join("".join(lines).split())


def test_wrap_breaks_a_long_word_after_a_separator():
    assert wrap("ECDHE_RSA_WITH_AES_256_GCM_SHA384", 20) == [
        "ECDHE_RSA_WITH_AES_",
        "256_GCM_SHA384",
    ]
    assert wrap("cert-requested-not-sent", 10) == ["cert-", "requested-", "not-sent"]
    assert wrap("ok   name: x", 40) == ["ok   name: x"]  # runs of spaces are kept


# -- width -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_every_line_fits_the_width(capture, width):
    for why in ("needed", "all"):
        text = render(
            sessions_of(capture), header(capture), ["a problem " * 20], width=width, why=why
        )
        long = [line for line in lines_of(text) if len(line) > width]
        assert not long, (width, why, long[:3])


@pytest.mark.parametrize("width", (MIN_WIDTH, *WIDTHS))
def test_every_line_of_a_report_of_every_session_fits(width):
    sessions = every_session()
    assert len(sessions) > 500
    text = render(sessions, header(Path("all")), width=width, why="all")
    assert max(map(len, lines_of(text))) <= width
    assert f"  all                      {len(sessions):,}" in text


def _table(text: str) -> list[list[str]]:
    """The table's headers and rows: each the text of every column (its lines joined), read
    back by the column spans of the rule under the headers."""
    lines = lines_of(text)
    rule = next(i for i, line in enumerate(lines) if re.fullmatch(r"-+(  -+)*", line))
    top = max(i for i in range(rule) if not lines[i]) + 1
    spans = [m.span() for m in re.finditer("-+", lines[rule])]

    def cut(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in spans[:-1]] + [line[spans[-1][0] :].strip()]

    rows: list[list[list[str]]] = [[[] for _ in spans]]
    for line in lines[top:rule]:
        for cell, part in zip(rows[0], cut(line), strict=True):
            cell.append(part)
    for line in lines[rule + 1 :]:
        if not line:
            break
        parts = cut(line)
        if parts[0]:  # the # column starts a row
            rows.append([[] for _ in spans])
        for cell, part in zip(rows[-1], parts, strict=True):
            cell.append(part)
    return [[" ".join(p for p in cell if p) for cell in row] for row in rows]


def _bare(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("width", WIDTHS)
def test_cells_are_wrapped_not_cut(width):
    """Every row's cells, read back column by column, hold the whole of what they show."""
    sessions = every_session()
    text = render(sessions, "", width=width)
    headers, *rows = _table(text)
    assert len(rows) == len(sessions)
    by_index = {s["index"]: s for s in sessions}
    for row in rows:
        cells = dict(zip([_bare(h) for h in headers], row, strict=True))
        s = by_index[int(cells["#"])]
        peers = f"{s['client_ip']}:{s['client_port']} -> {s['server_ip']}:{s['server_port']}"
        if ":" not in s["client_ip"]:  # IPv6 addresses are in brackets
            assert _bare(cells["client->server"]).startswith(_bare(peers))
        assert cells["verdict"].startswith(s["verdict"]) or _bare(cells["verdict"]).startswith(
            s["verdict"]
        )
        if "SNI" in cells:
            assert _bare(cells["SNI"]) == _bare(s["sni"] or "-")


def _headers(text: str) -> set[str]:
    return {_bare(h) for h in _table(text)[0]}


def test_columns_come_and_go_with_the_width():
    sessions = sessions_of(DEMO)
    essential = {"#", "client->server", "SNI", "TLS", "verdict", "why"}
    at = {w: _headers(render(sessions, "", width=w)) for w in (60, 80, 100, 120, 200)}
    assert at[80] >= essential and not at[80] & {"cipher", "clientidentity", "chains"}
    assert at[100] >= essential | {"chains"}
    assert at[120] >= essential | {"chains", "clientidentity"}
    assert at[200] >= essential | {"chains", "clientidentity", "cipher"}
    assert {"#", "verdict", "why"} <= at[60] < at[80]
    # without a chains column, the verdict cell names the chains
    demo80 = render(sessions, "", width=80)
    assert re.search(r"^\s+-> 127\.0\.0\.1:443 .*C1 S1", demo80, re.M), demo80


# -- chains ----------------------------------------------------------------------------------------


def _chain_sections(text: str) -> dict[str, list[str]]:
    """Label -> the sha256 prefixes of its certificates, leaf first, from the chains part."""
    part = text.split("\nCertificate chains (leaf first):\n", 1)[1].split("\nTotals:\n", 1)[0]
    out: dict[str, list[str]] = {}
    label = None
    for line in part.splitlines():
        m = re.match(r"  \[([CS]\d+)\] (client|server) chain", line)
        if m:
            assert m.group(1) not in out, f"{m.group(1)} printed twice"
            label = m.group(1)
            out[label] = []
        for digest in re.findall(r"sha256 ([0-9a-f]{16})\.\.\.", line):
            out[label].append(digest)
    return out


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_each_distinct_chain_is_printed_once_and_rows_name_it(capture):
    sessions = sessions_of(capture)
    text = render(sessions, header(capture), width=200)  # wide: one line per digest
    sections = _chain_sections(text) if "\nCertificate chains" in text else {}
    distinct = {
        (role, tuple(c["sha256"] for c in s[f"{role}_chain"]))
        for s in sessions
        for role in ("client", "server")
        if s[f"{role}_chain"]
    }
    assert len(sections) == len(distinct)
    headers, *rows = _table(text)
    col = [_bare(h) for h in headers].index("chains")
    by_index = {s["index"]: s for s in sessions}
    for row in rows:
        s = by_index[int(row[0])]
        labels = row[col].split() if row[col] != "-" else []
        want = [r for r in ("client", "server") if s[f"{r}_chain"]]
        assert [lab[0] for lab in labels] == [r[0].upper() for r in want]
        for lab, role in zip(labels, want, strict=True):
            assert sections[lab] == [c["sha256"][:16] for c in s[f"{role}_chain"]]


def test_a_name_check_that_differs_is_shown_per_session_under_one_chain():
    text = render(sessions_of(DEMO), "", width=120)
    assert list(_chain_sections(text)) == ["C1", "S1", "C2"]
    assert "[S1] server chain, sent in 5 sessions: #1, #2, #3, #4, #7" in text
    assert (
        "ok   name: SNI 'server.example.test' matches DNS:server.example.test (#1, #2, #3, #4)"
        in text
    )
    assert "ok   name: no SNI; the server address ::1 matches IP:::1 (#7)" in text


# -- why lines ---------------------------------------------------------------------------------


def _explained(text: str) -> set[int]:
    if "\nWhy:\n" not in text:
        return set()
    part = text.split("\nWhy:\n", 1)[1].split("\n\n", 1)[0]
    heads = [line for line in part.splitlines() if line.startswith("  #")]
    # a group's indexes may wrap: read every "#N" up to the verdict of each entry
    found: set[int] = set()
    for entry in re.split(r"\n(?=  #)", part):
        lead = entry.split(": ", 1)[0]
        found.update(int(n) for n in re.findall(r"#(\d+)", lead))
    assert heads
    return found


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_why_lines_for_the_sessions_that_need_them(capture):
    sessions = sessions_of(capture)
    needed = {s["index"] for s in sessions if needs_why(s)}
    text = render(sessions, "", width=100)
    assert _explained(text) == needed
    hidden = len(sessions) - len(needed)
    if hidden:
        assert re.search(rf"Why lines omitted for {hidden:,} sessions?[^:]*: --why all", text)
    else:
        assert "omitted" not in text
    assert _explained(render(sessions, "", width=100, why="all")) == {s["index"] for s in sessions}
    none = render(sessions, "", width=100, why="none")
    assert _explained(none) == set() and f"omitted for {len(sessions):,} session" in none


def test_what_needs_why_lines():
    base = {"verdict": "mutual", "reason": "r", "diagnosis": None, "anomalies": []}
    assert not needs_why(base) and not needs_why({**base, "verdict": "one-way"})
    for verdict in ("failed", "cert-requested-not-sent", "incomplete", "encrypted"):
        assert needs_why({**base, "verdict": verdict})
    assert needs_why({**base, "diagnosis": "client chain fails checks"})
    assert needs_why({**base, "anomalies": ["tcp_content_gap"]})
    assert needs_why({**base, "verdict": "one-way", "reason": "x; with the key log tlsinspect"})


def test_sessions_whose_why_lines_say_the_same_are_printed_together():
    sessions = every_session()
    text = render(sessions, "", width=100, why="all")
    assert re.search(r"^  #\d+, #\d+.* \(\d+ sessions\) [a-z-]+: ", text, re.M)
    assert _explained(text) == {s["index"] for s in sessions}


# -- the command line ------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def test_the_command_fits_its_width_option_and_columns():
    r = run_cli("--width", "64", DEMO)
    assert r.returncode == 0 and max(map(len, lines_of(r.stdout))) <= 64
    default = subprocess.run(
        [sys.executable, "-m", "tlsinspect", str(DEMO)], capture_output=True, text=True, env=_env()
    )
    assert max(map(len, lines_of(default.stdout))) == 100  # no terminal: 100
    columns = subprocess.run(
        [sys.executable, "-m", "tlsinspect", str(DEMO)],
        capture_output=True,
        text=True,
        env=_env(COLUMNS="72"),
    )
    assert max(map(len, lines_of(columns.stdout))) <= 72
    for bad in ("10", "wide"):
        r = run_cli("--width", bad, DEMO)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--width" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_command_fits_the_terminal():
    """Run on a pseudo-terminal of 70 columns: the table fits it."""
    leader, follower = pty.openpty()
    ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 70, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlsinspect", str(DEMO)],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the other end closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    out = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "Totals:" in out and max(map(len, out.splitlines())) <= 70


def test_why_all_and_none_on_the_command_line():
    truth = json.loads((OWN / "demo.truth.json").read_text())["sessions"]
    every = run_cli("--why", "all", DEMO)
    assert every.returncode == 0 and "omitted" not in every.stdout
    assert _explained(every.stdout) == set(range(1, len(truth) + 1))
    none = run_cli("--why", "none", DEMO)
    assert "\nWhy:\n" not in none.stdout
    assert f"Why lines omitted for {len(truth)} sessions: --why all shows them." in none.stdout
