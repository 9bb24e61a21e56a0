"""`--format html`: one self-contained page (header, summary per server, sessions that open on
their chains, filters), its escaping of what the capture says, its memory, and the page as a
headless Chromium renders it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import OWN, ROOT, run_cli

import tlsinspect
from tlsinspect.report.flat import extend
from tlsinspect.report.html import CSP, MAX_NAMES, search_text, server_summary, write_html

CERTS = OWN / "certs.pcapng"


class Page(HTMLParser):
    """What the tests read of a page: its elements with their attributes, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        self.text.append(data)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == name]

    def sessions(self) -> list[dict[str, str | None]]:
        return [a for a in self.tags("details") if a.get("class") == "s"]

    def by_id(self, name: str) -> int:
        return [a.get("id") for _, a in self.elements].index(name)


def report(tmp_path: Path, capture: Path, *args: str) -> tuple[str, list[dict]]:
    out = tmp_path / "report.html"
    r = run_cli("-o", out, *args, capture)  # the suffix picks the format
    assert r.returncode == 0 and r.stdout == "", r.stderr
    sessions = json.loads(run_cli("--format", "json", *args, capture).stdout)
    return out.read_text(encoding="utf-8"), sessions


def test_the_page_holds_every_session_with_its_verdict_and_chains(tmp_path):
    text, sessions = report(tmp_path, CERTS)
    page = Page(text)
    rows = page.sessions()
    assert len(rows) == len(sessions) > 0
    assert {a["id"]: a["data-v"] for a in rows} == {
        f"s{s['index']}": s["verdict"] for s in sessions
    }
    counts = Counter(s["verdict"] for s in sessions)
    words = "".join(page.text)
    for verdict, n in counts.items():  # the header and the verdict boxes count them
        assert f"{verdict} ({n})" in words
    assert f"{len(sessions)} TLS sessions" in words
    for s in sessions:  # each row says why, and opens on both chains
        assert s["reason"] in words
        for cert in s["client_chain"] + s["server_chain"]:
            assert cert["subject_cn"] in words
    assert page.by_id("servers") < page.by_id("sessions")  # the summary comes first


def test_a_verdict_not_seen_in_the_clear_says_how_it_was_reached(tmp_path):
    text, sessions = report(tmp_path, OWN / "tls13.pcapng")
    rows = dict(
        re.findall(r"<details class='s' id='s(\d+)'.*?<summary class='row'>(.*?)</summary>", text)
    )
    assert len(rows) == len(sessions)
    assert "inferred" in {s["basis"] for s in sessions}
    for s in sessions:
        summary = rows[str(s["index"])]
        verdict_cell = re.findall(r"<span>(<span class='v'.*?)</span>(?=<span>)", summary)[0]
        assert (f"({s['basis']})" in verdict_cell) == (s["basis"] != "observed"), verdict_cell


def test_the_summary_has_one_line_per_server(tmp_path):
    text, sessions = report(tmp_path, OWN / "tls12.pcapng")
    want: dict[str, Counter[str]] = {}
    for s in sessions:
        ip = s["server_ip"] if ":" not in s["server_ip"] else f"[{s['server_ip']}]"
        want.setdefault(f"{ip}:{s['server_port']}", Counter())[s["verdict"]] += 1
    lines = server_summary(extend(s) for s in sessions)
    assert {line.server: dict(line.verdicts) for line in lines} == want
    assert [line.sessions for line in lines] == sorted(
        (line.sessions for line in lines), reverse=True
    )
    section = text[text.index("id='servers'") : text.index("id='sessions'")]
    for server in want:
        assert f"<td>{server}</td>" in section
    names = {s["sni"] for s in sessions if s["sni"]}
    assert names and all(name in section for name in names)


def test_the_summary_shows_a_few_names_and_counts_the_others():
    rows = [
        {"server_ip": "::1", "server_port": 443, "verdict": "mutual", "sni": f"n{i % 20}.test"}
        for i in range(100)
    ]
    [line] = server_summary(rows)
    assert line.server == "[::1]:443" and line.sessions == 100
    assert list(line.names) == [f"n{i}.test" for i in range(MAX_NAMES)]
    assert line.more == str(20 - MAX_NAMES)  # each name past them counted once


def test_what_the_reader_skipped_is_in_the_header(tmp_path):
    truncated = tmp_path / "cut.pcapng"
    truncated.write_bytes(CERTS.read_bytes()[:20_000])  # the capture ends inside a packet
    r = run_cli("-o", tmp_path / "cut.html", truncated)
    assert r.returncode == 0, r.stderr
    [problem] = r.stderr.strip().splitlines()
    said = problem.split(f"{truncated}: ", 1)[1]
    page = Page((tmp_path / "cut.html").read_text(encoding="utf-8"))
    header = "".join(page.text)
    assert "Not read:" in header and said in header


def test_nothing_is_fetched_and_only_its_own_script_runs(tmp_path):
    text, _ = report(tmp_path, CERTS)
    page = Page(text)
    assert not page.tags("link") and not page.tags("img") and not page.tags("iframe")
    for _tag, attrs in page.elements:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), (name, value)
    assert "@import" not in text and "url(" not in text
    [script] = page.scripts
    assert all("src" not in a for a in page.tags("script"))
    [csp] = [a for a in page.tags("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert csp["content"] == CSP and f"'sha256-{digest}'" in CSP
    assert "default-src 'none'" in CSP


def test_an_empty_capture_is_a_page_too(tmp_path):
    out = tmp_path / "none.html"
    with open(out, "w", encoding="utf-8") as f:
        assert write_html(iter(()), f, ["nothing.pcap"], lambda: ["a packet that was cut"]) == 0
    page = Page(out.read_text(encoding="utf-8"))
    assert not page.sessions()
    words = "".join(page.text)
    assert "0 TLS sessions" in words and "a packet that was cut" in words


# -- what the capture says is text, never markup ----------------------------------------------

HOSTILE_SERVER_CN = '<script>alert("server")</script>'
HOSTILE_SERVER_O = 'x"><img src=x onerror=alert(1)>'
HOSTILE_CLIENT_CN = "<img src=x onerror=alert('client')>"
HOSTILE_SNI = "<script>alert('sni')</script>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """A mutual TLS 1.2 session recorded on loopback between `openssl s_server` and `s_client`,
    both certificates and the SNI made of markup."""
    if os.geteuid() != 0:
        pytest.fail("recording on loopback needs root (CI runs as root)")
    for tool in ("tcpdump", "openssl"):
        assert shutil.which(tool), f"{tool} missing: scripts/test installs it"
    sys.path.insert(0, str(ROOT / "captures"))
    from recording.capture import TCPDUMP_LO, capture, wait_listening

    work = tmp_path_factory.mktemp("hostile")
    for name, subject in (
        ("server", f"/CN={HOSTILE_SERVER_CN.replace('/', chr(92) + '/')}/O={HOSTILE_SERVER_O}"),
        ("client", f"/CN={HOSTILE_CLIENT_CN}"),
    ):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
            + ["-nodes", "-days", "30", "-subj", subject]
            + ["-keyout", str(work / f"{name}.key"), "-out", str(work / f"{name}.pem")],
            check=True,
            capture_output=True,
            timeout=30,
        )
    port = _free_port()
    path = work / "hostile.pcap"
    with capture(TCPDUMP_LO, path, [port]):
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-naccept", "1"]
            + ["-tls1_2", "-Verify", "1", "-CAfile", str(work / "client.pem")]
            + ["-cert", str(work / "server.pem"), "-key", str(work / "server.key")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, server)
            client = subprocess.run(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-quiet"]
                + ["-servername", HOSTILE_SNI, "-CAfile", str(work / "server.pem")]
                + ["-cert", str(work / "client.pem"), "-key", str(work / "client.key")],
                input=b"GET / HTTP/1.0\r\n\r\n",
                capture_output=True,
                timeout=30,
            )
            assert b"HTTP/1.0 200" in client.stdout, client.stderr
            server.wait(10)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    return path


def test_names_from_the_capture_are_escaped(tmp_path, hostile):
    text, [session] = report(tmp_path, hostile)
    assert session["verdict"] == "mutual" and session["sni"] == HOSTILE_SNI
    assert HOSTILE_CLIENT_CN in session["client_chain"][0]["subject"]
    page = Page(text)
    assert len(page.tags("script")) == 1 and not page.tags("img")  # no markup got in
    words = "".join(page.text)
    for hostile_text in (HOSTILE_SNI, HOSTILE_SERVER_CN, HOSTILE_CLIENT_CN, HOSTILE_SERVER_O):
        assert hostile_text in words  # shown as text
        assert hostile_text not in text  # never as markup
    [row] = page.sessions()
    assert HOSTILE_SNI.lower() in (row["data-q"] or "")  # an attribute value, quotes and all
    rendered = Page(chromium_dom(tmp_path, tmp_path / "report.html"))
    assert len(rendered.tags("script")) == 1 and not rendered.tags("img")
    assert HOSTILE_SNI in "".join(rendered.text)


# -- in a browser -----------------------------------------------------------------------------


def chromium_dom(tmp_path: Path, page: Path, fragment: str = "") -> str:
    """The DOM of the page once its script ran, as headless Chromium dumps it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip(
            "chromium is not installed (scripts/test installs it: apt-get install chromium)"
        )
    r = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=5000"]
        + [f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri() + fragment],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "</html>" in r.stdout, r.stderr[-2000:]
    return r.stdout


def shown(dom: str) -> tuple[set[str], str]:
    """The ids of the sessions the page shows, and what its count says."""
    page = Page(dom)
    ids = {str(a["id"]) for a in page.sessions() if "hidden" not in a}
    count = re.search(r"<span id=\"shown\"[^>]*>([^<]*)</span>", dom)
    assert count, "no count element"
    return ids, count.group(1)


@pytest.fixture(scope="module")
def certs_page(tmp_path_factory) -> tuple[Path, list[dict]]:
    tmp = tmp_path_factory.mktemp("page")
    report(tmp, CERTS)
    return tmp / "report.html", json.loads(run_cli("--format", "json", CERTS).stdout)


def test_the_script_runs_and_counts(tmp_path, certs_page):
    page, sessions = certs_page
    ids, count = shown(chromium_dom(tmp_path, page))
    assert ids == {f"s{s['index']}" for s in sessions}
    assert count == f"{len(sessions)} of {len(sessions)} sessions shown"  # the script wrote it


def test_the_verdict_boxes_filter(tmp_path, certs_page):
    page, sessions = certs_page
    ids, count = shown(chromium_dom(tmp_path, page, "#verdict=mutual,one-way"))
    want = {f"s{s['index']}" for s in sessions if s["verdict"] in ("mutual", "one-way")}
    assert ids == want and 0 < len(want) < len(sessions)
    assert count == f"{len(want)} of {len(sessions)} sessions shown"


def test_the_filter_box_filters(tmp_path, certs_page):
    page, sessions = certs_page
    words = ("expired", "client")  # every word must be in the session's text
    ids, count = shown(chromium_dom(tmp_path, page, "#filter=" + "%20".join(words)))
    want = {f"s{s['index']}" for s in sessions if all(w in search_text(extend(s)) for w in words)}
    assert ids == want and 0 < len(want) < len(sessions)
    assert count == f"{len(want)} of {len(sessions)} sessions shown"
    both, _ = shown(chromium_dom(tmp_path, page, "#filter=expired&verdict=failed"))
    assert both == {
        f"s{s['index']}"
        for s in sessions
        if s["verdict"] == "failed" and "expired" in search_text(extend(s))
    }


# -- memory ------------------------------------------------------------------------------------


def test_memory_does_not_grow_with_the_sessions(tmp_path):
    """The rows go to a file as they come: 5,000 sessions take no more memory than 500."""
    recorded = list(tlsinspect.analyze(CERTS))

    def peak(n: int) -> int:
        records = (
            dataclasses.replace(r, index=i + 1) for i, r in zip(range(n), itertools.cycle(recorded))
        )
        tracemalloc.start()
        try:
            with open(tmp_path / f"{n}.html", "w", encoding="utf-8") as out:
                assert write_html(records, out, ["many"]) == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    started = time.monotonic()
    small, large = peak(500), peak(5_000)
    assert large < small * 1.5 + 256 * 1024, (small, large)
    assert (tmp_path / "5000.html").stat().st_size > 9 * (tmp_path / "500.html").stat().st_size
    assert time.monotonic() - started < 120
