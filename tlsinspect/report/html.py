"""Sessions as HTML: one session as a fragment for notebooks, and the whole report as one page.

`session_html(row)` takes a session dict (JSON fields, optionally the flat extras and `file`) and
returns self-contained HTML with inline styles only (notebook front ends strip <style> and
scripts in untrusted output): verdict, reason, and both chains as trees.

`write_html(records, out, captures)` writes the report of `--format html`: one file that needs
nothing else (no fetch of a script, style, font or image: a Content-Security-Policy in the page
forbids them, and any script but its own), to open or attach to a ticket. It holds a header (the
captures, their time span, the sessions per verdict), a summary per server, and the sessions,
each a row (verdict, why) that opens on the `session_html` fragment with both chains. A small
inline script filters the rows by text and by verdict; the URL fragment sets the filters too
(`report.html#filter=payments&verdict=one-way,failed`). Without the script every row is shown.

Everything that comes from the capture (SNI, certificate names, reasons quoting them) is
attacker-controlled and escaped, in text and in attributes. Memory stays bounded however many
sessions there are: rows go to a temporary file as the sessions are logged, and the header and
the server summary, known only at the end, are written before them into `out`.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TextIO

from ..record import SessionRecord
from .flat import flat_row
from .table import VERDICT_ORDER

VERDICT_COLOURS = {
    "mutual": "#1a7f37",
    "one-way": "#b35900",
    "cert-requested-not-sent": "#d4a72c",
    "failed": "#c62828",
    "incomplete": "#6e7781",
    "encrypted": "#4a5f8a",
    "resumed": "#0969da",
}

#: The styles of the fragment: inline for notebooks, as classes (`_CLASS` + name) in the page,
#: whose style sheet defines them once instead of in every session.
_STYLES = {
    "box": "font-family:sans-serif;font-size:13px;line-height:1.45;border:1px solid #d0d7de;"
    "padding:8px 12px;border-radius:6px;max-width:70em",
    "muted": "color:#57606a",
    "ul": "list-style:none;margin:0 0 0 1.2em;padding:0",
    "top": "list-style:none;margin:0;padding:0",
    "badge": "color:white;border-radius:4px;padding:1px 7px;font-weight:bold",
    "reason": "margin:4px 0",
}
_CLASS = "f-"


def _at(name: str, inline: bool) -> str:
    """The attribute that gives an element the fragment's style `name`."""
    return f"style='{_STYLES[name]}'" if inline else f"class='{_CLASS}{name}'"


def _e(v: object) -> str:
    return escape("" if v is None else str(v))


def _endpoint(ip: object, port: object) -> str:
    ip = str(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _cert(c: Mapping[str, object], inline: bool = True) -> str:
    muted = _at("muted", inline)
    if c.get("error") and not c.get("subject"):
        return f"<i>unreadable certificate</i> <span {muted}>{_e(c.get('error'))}</span>"
    name = c.get("subject_cn") or c.get("subject") or "?"
    parts = [f"<b>{_e(name)}</b>"]
    if c.get("subject") and c.get("subject") != name:
        parts.append(f"<span {muted}>{_e(c.get('subject'))}</span>")
    details = []
    if c.get("not_before") or c.get("not_after"):
        details.append(f"valid {_e(c.get('not_before'))} to {_e(c.get('not_after'))}")
    if c.get("sha256"):
        details.append(f"SHA-256 {_e(str(c['sha256'])[:16])}...")
    if c.get("error"):
        details.append(f"partly unreadable: {_e(c.get('error'))}")
    if details:
        parts.append(f"<br><span {muted}>{'; '.join(details)}</span>")
    return " ".join(parts)


def chain_tree(chain: Sequence[Mapping[str, object]], inline: bool = True) -> str:
    """A chain as nested lists, leaf first, each certificate under the one it signed."""
    muted, ul = _at("muted", inline), _at("ul", inline)
    if not chain:
        return f"<span {muted}>none</span>"
    html = ""
    last = chain[-1]
    if last.get("issuer") and last.get("issuer") != last.get("subject"):
        issuer = last.get("issuer_cn") or last.get("issuer")
        html = f"<ul {ul}><li>&#x2514; issued by <b>{_e(issuer)}</b> <span {muted}>(not sent)</span></li></ul>"
    for i, c in enumerate(reversed(chain)):
        mark = "" if i == len(chain) - 1 else "&#x2514; issued by "
        html = f"<li>{mark}{_cert(c, inline)}{html}</li>"
        html = f"<ul {ul if i != len(chain) - 1 else _at('top', inline)}>{html}</ul>"
    return html


def session_html(row: Mapping[str, object], inline: bool = True) -> str:
    """One session as a box: verdict, endpoints, reason, both chains as trees, the CAs the
    server asked for, the alerts and the handshake. `inline`: styles in the elements (for
    notebooks), else classes the report page defines."""
    verdict = str(row.get("verdict"))
    colour = VERDICT_COLOURS.get(verdict, "#6e7781")
    muted = _at("muted", inline)
    if inline:
        badge = f"<span style='background:{colour};{_STYLES['badge']}'>{_e(verdict)}</span>"
    else:
        badge = f"<span class='{_CLASS}badge' style='background:{colour}'>{_e(verdict)}</span>"
    head = (
        f"<b>#{_e(row.get('index'))}</b> {_e(_endpoint(row.get('client_ip'), row.get('client_port')))}"
        f" &#x2192; {_e(_endpoint(row.get('server_ip'), row.get('server_port')))}"
    )
    facts = [
        f"SNI <b>{_e(row.get('sni'))}</b>" if row.get("sni") else "no SNI",
        _e(row.get("tls_version") or "version unknown"),
        _e(row.get("cipher_suite") or ""),
        _e(row.get("start_time")),
    ]
    if row.get("file"):
        facts.append(_e(row.get("file")))
    out = [
        f"<div {_at('box', inline)}>",
        f"<div>{badge} {head} <span {muted}>({_e(row.get('basis'))})</span></div>",
        f"<div {muted}>{' &middot; '.join(f for f in facts if f)}</div>",
        f"<div {_at('reason', inline)}>{_e(row.get('reason'))}</div>",
    ]
    hidden = row.get("tls_version") == "TLS 1.3" and row.get("basis") != "decrypted"
    for role in ("client", "server"):
        chain = row.get(f"{role}_chain")
        items = chain if isinstance(chain, list) else []
        if not items and hidden:
            tree = f"<span {muted}>encrypted (TLS 1.3 without keys)</span>"
        else:
            tree = chain_tree(items, inline)
        out.append(f"<div><b>{role.capitalize()} chain</b> {tree}</div>")
    cas = row.get("requested_ca_names")
    if isinstance(cas, list) and cas:
        listed = "".join(f"<li>{_e(n)}</li>" for n in cas)
        out.append(
            f"<div><b>CAs the server asked for</b><ul {_at('ul', inline)}>{listed}</ul></div>"
        )
    alerts = row.get("alerts")
    if isinstance(alerts, list) and alerts:
        text = ", ".join(
            f"{_e(a.get('level') or 'encrypted')} {_e(a.get('description') or '')} from the {_e(a.get('sender'))}"
            for a in alerts
            if isinstance(a, Mapping)
        )
        out.append(f"<div><b>Alerts</b> {text}</div>")
    hs = row.get("handshake")
    if isinstance(hs, list) and hs:
        out.append(f"<div {muted}>Handshake: {_e(' '.join(map(str, hs)))}</div>")
    if row.get("ended"):
        out.append(f"<div {muted}>Ended: {_e(row.get('ended'))}</div>")
    out.append("</div>")
    return "\n".join(out)


# -- the report page ---------------------------------------------------------------------------

MAX_NAMES = 8  # names shown per server in the summary; the others are counted
MAX_COUNTED = 10_000  # distinct names counted past those, per server (memory stays bounded)


@dataclass
class ServerLine:
    """What the summary says of one server (address and port): the names clients asked for or
    its certificate gave, and its sessions per verdict."""

    server: str
    names: dict[str, None] = field(default_factory=dict)  # in order of first sight
    others: set[str] = field(default_factory=set)  # distinct names past MAX_NAMES
    verdicts: Counter[str] = field(default_factory=Counter)

    def add(self, row: Mapping[str, object]) -> None:
        self.verdicts[str(row.get("verdict"))] += 1
        for value in (row.get("sni"), row.get("server_subject_cn")):
            name = str(value or "")
            if not name or name in self.names:
                continue
            if len(self.names) < MAX_NAMES:
                self.names[name] = None
            elif len(self.others) < MAX_COUNTED:
                self.others.add(name)

    @property
    def sessions(self) -> int:
        return sum(self.verdicts.values())

    @property
    def more(self) -> str:
        """How many names are not shown: "" for none, "12", "over 10,000"."""
        if not self.others:
            return ""
        n = len(self.others)
        return f"over {n:,}" if n >= MAX_COUNTED else f"{n:,}"


class ServerTally:
    """The summary per server, kept as sessions come: `add()` each flat row, then `lines()`."""

    def __init__(self) -> None:
        self._lines: dict[str, ServerLine] = {}

    def add(self, row: Mapping[str, object]) -> None:
        key = _endpoint(row.get("server_ip"), row.get("server_port"))
        self._lines.setdefault(key, ServerLine(key)).add(row)

    def lines(self) -> list[ServerLine]:
        """One line per server, busiest first."""
        return sorted(self._lines.values(), key=lambda s: (-s.sessions, s.server))


def server_summary(rows: Iterable[Mapping[str, object]]) -> list[ServerLine]:
    """One line per server of the sessions' flat rows, busiest first."""
    tally = ServerTally()
    for row in rows:
        tally.add(row)
    return tally.lines()


_CSS = """
body{font-family:sans-serif;font-size:14px;margin:1.5em;color:#1f2328}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.2em 0 .4em}
.muted{color:#57606a}.v{border-radius:4px;padding:0 6px;color:#fff;font-weight:bold;white-space:nowrap}
table{border-collapse:collapse}td,th{border-bottom:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right}
#controls{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #d0d7de}
#filter{width:28em;font-size:1em;padding:3px}#controls label{margin-left:1em;white-space:nowrap}
.row{display:grid;grid-template-columns:1em 2.5em 13.5em 10.5em 10.5em 9em 4em 12.5em minmax(18em,1fr);column-gap:.6em}
.row>span{overflow-wrap:anywhere}.row>.t{white-space:nowrap}.row>.i{text-align:right}#head{font-weight:bold;background:#f6f8fa;padding:3px 0}
details.s{border-bottom:1px solid #d0d7de}details.s>summary{cursor:pointer;padding:3px 0;list-style:none}
details.s>summary::-webkit-details-marker{display:none}
details.s>summary::before{content:"\\25B8";color:#57606a}details.s[open]>summary::before{content:"\\25BE"}
details.s>div{margin:4px 0 10px 4.8em}
[hidden]{display:none!important}
""" + "".join(f".{_CLASS}{name}{{{css}}}" for name, css in _STYLES.items())

# The one script of the page (its hash is in the Content-Security-Policy, so no other runs).
# It reads the filters from the box, the verdict boxes and the URL fragment, hides the rows that
# do not match, and says how many are shown.
_SCRIPT = """
(function () {
  var rows = document.querySelectorAll("details.s");
  var box = document.getElementById("filter");
  var verdicts = document.querySelectorAll("input.verdict");
  var shown = document.getElementById("shown");
  function apply() {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var on = {};
    verdicts.forEach(function (b) { on[b.value] = b.checked; });
    var n = 0;
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i], text = row.getAttribute("data-q"), ok = on[row.getAttribute("data-v")] !== false;
      for (var w = 0; ok && w < words.length; w++) ok = text.indexOf(words[w]) >= 0;
      row.hidden = !ok;
      if (ok) n++;
    }
    shown.textContent = n + " of " + rows.length + " sessions shown";
  }
  function fromFragment() {
    var h = new URLSearchParams(location.hash.slice(1));
    if (h.has("filter")) box.value = h.get("filter");
    if (h.has("verdict")) {
      var want = h.get("verdict").split(",");
      verdicts.forEach(function (b) { b.checked = want.indexOf(b.value) >= 0; });
    }
    apply();
  }
  var timer = null;
  box.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 150); });
  verdicts.forEach(function (b) { b.addEventListener("change", apply); });
  window.addEventListener("hashchange", fromFragment);
  fromFragment();
})();
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)

#: What the filter box searches in each session (lower case), in this order.
SEARCHED = (
    "index",
    "client",
    "server",
    "sni",
    "tls_version",
    "verdict",
    "basis",
    "reason",
    "diagnosis",
    "client_subject",
    "client_issuer",
    "server_subject",
    "server_issuer",
)


def search_text(row: Mapping[str, object]) -> str:
    """The text the filter box matches for one session: the `SEARCHED` facts, lower case."""
    facts = {
        **row,
        "client": _endpoint(row.get("client_ip"), row.get("client_port")),
        "server": _endpoint(row.get("server_ip"), row.get("server_port")),
        "index": f"#{row.get('index')}",
    }
    return " ".join(str(facts[k]) for k in SEARCHED if facts.get(k) is not None).lower()


def _badge(verdict: str) -> str:
    colour = VERDICT_COLOURS.get(verdict, "#6e7781")
    return f"<span class='v' style='background:{colour}'>{_e(verdict)}</span>"


def _basis(row: Mapping[str, object]) -> str:
    """How the verdict was reached, when it was not seen in the clear (as the table says it)."""
    basis = row.get("basis")
    return f" <span class='muted'>({_e(basis)})</span>" if basis and basis != "observed" else ""


def _session_row(row: Mapping[str, object]) -> str:
    verdict = str(row.get("verdict"))
    why = _e(row.get("reason"))
    if row.get("diagnosis"):
        why += f"<br><span class='muted'>{_e(row.get('diagnosis'))}</span>"
    cells = [
        ("i", _e(row.get("index"))),
        ("t muted", _e(row.get("start_time"))),
        ("", _e(_endpoint(row.get("client_ip"), row.get("client_port")))),
        ("", _e(_endpoint(row.get("server_ip"), row.get("server_port")))),
        ("", _e(row.get("sni") or "")),
        ("", _e(row.get("tls_version") or "")),
        ("", _badge(verdict) + _basis(row)),
        ("", why),
    ]
    summary = "".join(
        f"<span class='{c}'>{v}</span>" if c else f"<span>{v}</span>" for c, v in cells
    )
    return (
        f"<details class='s' id='s{_e(row.get('index'))}' data-v='{_e(verdict)}' "
        f"data-q='{_e(search_text(row))}'>"
        f"<summary class='row'>{summary}</summary><div>{session_html(row, inline=False)}</div>"
        "</details>\n"
    )


_HEAD = ("#", "start", "client", "server", "SNI", "version", "verdict", "why")


class HtmlReport:
    """The page, built session by session: `add()` each record, then `finish()`."""

    def __init__(self, out: TextIO, captures: Sequence[str]) -> None:
        self.out = out
        self.captures = list(captures)
        self.rows = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.verdicts: Counter[str] = Counter()
        self.servers = ServerTally()
        self.first: str | None = None
        self.last: str | None = None

    def add(self, record: SessionRecord) -> None:
        row = flat_row(record)
        self.verdicts[str(row["verdict"])] += 1
        self.servers.add(row)
        start = str(row.get("start_time"))
        if not start.startswith("@"):  # a time that is no date orders nothing
            self.first = min(self.first or start, start)
            self.last = max(self.last or start, start)
        self.rows.write(_session_row(row))

    def finish(self, notes: Sequence[str] = ()) -> None:
        """Write the page to `out`: the header, the summary, then the rows kept so far."""
        w = self.out.write
        title = "tlsinspect: " + ", ".join(self.captures)
        w("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>\n")
        w(f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">\n")
        w(f"<title>{_e(title)}</title>\n<style>{_CSS}</style></head><body>\n")
        w(self._header(notes))
        w(self._summary())
        w(self._controls())
        head = "".join(f"<span{' class=i' if h == '#' else ''}>{h}</span>" for h in _HEAD)
        w(f"<div id='sessions'>\n<div id='head' class='row'><span></span>{head}</div>\n")
        self.rows.seek(0)
        shutil.copyfileobj(self.rows, self.out)
        self.rows.close()
        w("</div>\n")
        w(f"<script>{_SCRIPT}</script>\n</body></html>\n")

    def close(self) -> None:
        self.rows.close()

    def _header(self, notes: Sequence[str]) -> str:
        total = sum(self.verdicts.values())
        counts = " ".join(
            f"{_badge(v)} {self.verdicts[v]:,}" for v in _verdicts() if self.verdicts[v]
        )
        span = f" from {_e(self.first)} to {_e(self.last)}" if self.first else ""
        out = [
            "<header>",
            f"<h1>TLS sessions of {_e(', '.join(self.captures))}</h1>",
            f"<div><b id='total'>{total:,}</b> TLS session{'s' if total != 1 else ''}{span}</div>",
            f"<div id='counts'>{counts}</div>",
        ]
        if notes:
            listed = "".join(f"<li>{_e(n)}</li>" for n in notes)
            out.append(f"<div class='muted'>Not read:<ul>{listed}</ul></div>")
        out.append("</header>\n")
        return "\n".join(out)

    def _summary(self) -> str:
        lines = self.servers.lines()
        verdicts = [v for v in _verdicts() if self.verdicts[v]]
        head = "".join(f"<th>{_badge(v)}</th>" for v in verdicts)
        out = [
            "<section id='servers'><h2>Servers</h2><table>",
            f"<tr><th>server</th><th>names</th><th>sessions</th>{head}</tr>",
        ]
        for s in lines:
            names = ", ".join(_e(n) for n in s.names) or "<span class='muted'>none</span>"
            if s.more:
                names += f" <span class='muted'>and {s.more} more</span>"
            counts = "".join(f"<td class='n'>{s.verdicts[v] or ''}</td>" for v in verdicts)
            out.append(
                f"<tr><td>{_e(s.server)}</td><td>{names}</td>"
                f"<td class='n'>{s.sessions:,}</td>{counts}</tr>"
            )
        out.append("</table></section>\n")
        return "\n".join(out)

    def _controls(self) -> str:
        boxes = "".join(
            f"<label><input type='checkbox' class='verdict' value='{_e(v)}' checked> "
            f"{_e(v)} ({self.verdicts[v]:,})</label>"
            for v in _verdicts()
            if self.verdicts[v]
        )
        return (
            "<h2>Sessions</h2>\n<div id='controls'><input id='filter' type='search' "
            "placeholder='filter: address, name, verdict, reason...' aria-label='filter'>"
            f"{boxes} <span id='shown' class='muted'></span></div>\n"
        )


def _verdicts() -> list[str]:
    return list(VERDICT_ORDER) + [v for v in VERDICT_COLOURS if v not in VERDICT_ORDER]


def write_html(
    records: Iterable[SessionRecord],
    out: TextIO,
    captures: Sequence[str],
    notes: Callable[[], Sequence[str]] = tuple,
) -> int:
    """Write the report page of `records` to `out`; `notes()`, called once the records ran out,
    says what could not be read. Return the number of sessions.

    Raises:
        OSError: the temporary file or `out` cannot be written.
    """
    report = HtmlReport(out, captures)
    n = 0
    try:
        for record in records:
            report.add(record)
            n += 1
        report.finish(notes())
    finally:
        report.close()
    return n
