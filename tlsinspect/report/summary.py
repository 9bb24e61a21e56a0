"""The per-server summary: one row per server with its sessions counted by verdict, the names it
answered for, the client identities and issuers seen, and the TLS versions.

The question an SRE asks first of a capture is "which of my servers require client
certificates, and who presents them": `summarize(rows)` folds the sessions' flat rows
(`report.flat.flat_row()`, or the records of a `read_capture()` DataFrame: the same columns)
into `SUMMARY_FIELDS` rows, one per server address and port, sorted by address (IPv4 before
IPv6, numerically) then port. It only counts what the rows hold: nothing is parsed or checked
again. `render_summary()` is the text for people; `write_summary()` writes the rows as JSON,
JSON Lines or CSV (lists and objects as JSON text in a cell, as the session CSV does);
`report.frame.summary_frame()` makes them a DataFrame.

Why one block per server rather than a grid: a row holds five lists (names, verdicts, client
identities, issuers, versions), and a grid of them does not fit 80 columns without cutting the
verdict names, which are meant to be pasted into `--verdict`. A block of labelled lines, each
wrapped under its label, fits any width and keeps every word whole.

A server is its address and port: the names it answered for (SNI, the CN of its certificate)
are listed in its row, not keys of their own, since one address often serves many names and
the verdict is the server's configuration. Client identities are each client leaf certificate's
CN and SANs (one identity per distinct pair), counted in sessions; issuers the issuer of that
leaf. A session whose client certificate may exist but cannot be read (TLS 1.3 without a key
log) is counted in `client_certs_hidden`, not as an identity.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from ..model import count
from ..tls.registry import VERSIONS
from .flat import csv_value
from .table import VERDICT_ORDER

Row = dict[str, object]

#: The formats a summary is written in.
SUMMARY_FORMATS = ("table", "json", "jsonl", "csv")

_TLS_ORDER = [VERSIONS[k] for k in sorted(VERSIONS)]

#: (field, type, meaning) of a summary row, in order; the verdict counts come after `sessions`.
SUMMARY_FIELDS: list[tuple[str, str, str]] = [
    ("server", "string", "Server address and port: `10.0.0.5:443`, `[2001:db8::1]:443`."),
    ("server_ip", "string", "Server address."),
    ("server_port", "integer", "Server port."),
    ("sni", "array", "Server names the clients asked for (SNI), distinct, sorted."),
    ("server_cn", "array", "CNs of the server's leaf certificates seen, distinct, sorted."),
    ("sessions", "integer", "TLS sessions with this server."),
    ("clients", "integer", "Distinct client addresses."),
    *[(v, "integer", f"Sessions whose verdict is `{v}`.") for v in VERDICT_ORDER],
    (
        "client_identities",
        "array",
        "Client leaf certificates seen: objects `cn`, `san` (as `URI:spiffe://...`), "
        "`sessions`; most sessions first.",
    ),
    (
        "client_certs_hidden",
        "integer",
        "Sessions whose client certificate was sent, or may have been, but is encrypted "
        "(TLS 1.3 without a key log).",
    ),
    (
        "client_issuers",
        "array",
        "Issuers of those certificates: objects `issuer` (distinguished name), `issuer_cn`, "
        "`sessions`; most sessions first.",
    ),
    ("tls_versions", "object", 'Negotiated versions and their sessions: `{"TLS 1.3": 4}`.'),
]


def _value(row: Mapping[str, object], key: str) -> object:
    """A value of a row; pandas' missing values (NA, NaT, NaN) read as None."""
    v = row.get(key)
    if v is None or type(v).__name__ in ("NAType", "NaTType") or (isinstance(v, float) and v != v):
        return None
    return v


def _text(row: Mapping[str, object], key: str) -> str | None:
    v = _value(row, key)
    return None if v is None or v == "" else str(v)


def _list(row: Mapping[str, object], key: str) -> list[str]:
    v = _value(row, key)
    return [str(x) for x in v] if isinstance(v, list | tuple) else []


def endpoint(ip: str, port: object) -> str:
    """'10.0.0.5:443', '[::1]:443'."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _server_key(ip: str, port: int) -> tuple[int, int, str, int]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0, ip, port)
    return (addr.version, int(addr), ip, port)


def _hidden(row: Mapping[str, object]) -> bool:
    """The client's certificate was sent, or may have been, but is encrypted (TLS 1.3 without
    keys): the sizes show it (`client_cert_sent`), or the verdict is undecided."""
    if _list(row, "client_chain") or _value(row, "client_chain_length"):
        return False
    verdict = _text(row, "verdict")
    return verdict == "encrypted" or (
        _text(row, "basis") == "inferred" and _value(row, "client_cert_sent") is True
    )


class _Server:
    """The counts of one server while the rows go by."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port
        self.sessions = 0
        self.verdicts: Counter[str] = Counter()
        self.sni: set[str] = set()
        self.cn: set[str] = set()
        self.clients: set[str] = set()
        self.identities: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self.issuers: Counter[tuple[str, str]] = Counter()
        self.hidden = 0
        self.versions: Counter[str] = Counter()

    def add(self, row: Mapping[str, object]) -> None:
        self.sessions += 1
        self.verdicts[str(_value(row, "verdict"))] += 1
        for key, into in (("sni", self.sni), ("server_subject_cn", self.cn)):
            name = _text(row, key)
            if name is not None:
                into.add(name)
        client = _text(row, "client_ip")
        if client is not None:
            self.clients.add(client)
        version = _text(row, "tls_version")
        if version is not None:
            self.versions[version] += 1
        cn, san = _text(row, "client_subject_cn"), tuple(_list(row, "client_san"))
        if cn is not None or san or _text(row, "client_sha256"):
            self.identities[(cn or "", san)] += 1
            issuer = _text(row, "client_issuer") or ""
            self.issuers[(issuer, _text(row, "client_issuer_cn") or "")] += 1
        elif _hidden(row):
            self.hidden += 1

    def row(self) -> Row:
        out: Row = {
            "server": endpoint(self.ip, self.port),
            "server_ip": self.ip,
            "server_port": self.port,
            "sni": sorted(self.sni),
            "server_cn": sorted(self.cn),
            "sessions": self.sessions,
            "clients": len(self.clients),
        }
        for v in VERDICT_ORDER:
            out[v] = self.verdicts[v]
        out["client_identities"] = [
            {"cn": cn or None, "san": list(san), "sessions": n}
            for (cn, san), n in sorted(self.identities.items(), key=_most_first)
        ]
        out["client_certs_hidden"] = self.hidden
        out["client_issuers"] = [
            {"issuer": dn or None, "issuer_cn": cn or None, "sessions": n}
            for (dn, cn), n in sorted(self.issuers.items(), key=_most_first)
        ]
        out["tls_versions"] = {
            v: self.versions[v] for v in sorted(self.versions, key=lambda v: (_rank(v), v))
        }
        return out


def _most_first(item: tuple[Any, int]) -> tuple[int, Any]:
    return (-item[1], item[0])


def _rank(version: str) -> int:
    """Newest first: TLS 1.3 before TLS 1.2; names the registry lacks last."""
    return -_TLS_ORDER.index(version) if version in _TLS_ORDER else 1


def summarize(rows: Iterable[Mapping[str, object]]) -> list[Row]:
    """One summary row per server of the sessions' flat rows, sorted by address then port."""
    servers: dict[tuple[str, int], _Server] = {}
    for row in rows:
        ip = str(_value(row, "server_ip"))
        port = int(_value(row, "server_port") or 0)  # type: ignore[call-overload]
        server = servers.get((ip, port))
        if server is None:
            server = servers[(ip, port)] = _Server(ip, port)
        server.add(row)
    return [servers[k].row() for k in sorted(servers, key=lambda k: _server_key(*k))]


# -- for people --------------------------------------------------------------------------------

_LABEL = 15  # width of the labels column: two spaces, "certificate" and two spaces


_NAMES = ("URI", "DNS", "email", "IP")  # the SAN kinds that name a client (not othername...)


def _identity(item: Mapping[str, object]) -> str:
    """'client-alice spiffe://example.test/alice (3)': the CN, then the SAN names that differ."""
    cn = item.get("cn")
    names = [str(cn)] if cn else []
    for san in item.get("san") or []:  # type: ignore[attr-defined]
        kind, _, text = str(san).partition(":")
        if kind in _NAMES and text not in names:
            names.append(text)
    return f"{' '.join(names) or '(no name)'} ({item['sessions']})"


def _issuer(item: Mapping[str, object]) -> str:
    return f"{item.get('issuer_cn') or item.get('issuer') or '(no name)'} ({item['sessions']})"


def _verdicts(row: Mapping[str, object]) -> str:
    """'4 from 2 clients: mutual 3, failed 1'."""
    counts = ", ".join(f"{v} {row[v]}" for v in VERDICT_ORDER if row[v])
    clients = int(row["clients"])  # type: ignore[call-overload]
    return f"{row['sessions']} from {count(clients, 'client')}: {counts}"


def _lines(label: str, text: str, width: int) -> list[str]:
    """`label` and `text` wrapped under it, words whole (a name longer than a line stays one)."""
    return textwrap.wrap(
        text,
        width=max(width, _LABEL + 20),
        initial_indent=f"  {label:<{_LABEL - 2}}",
        subsequent_indent=" " * _LABEL,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _block(row: Mapping[str, object], width: int) -> list[str]:
    out = [str(row["server"])]
    sni, cn = row["sni"], row["server_cn"]
    out += _lines("SNI", ", ".join(sni) if sni else "(none)", width)  # type: ignore[arg-type]
    out += _lines("certificate", ", ".join(cn) if cn else "(none seen)", width)  # type: ignore[arg-type]
    out += _lines("sessions", _verdicts(row), width)
    versions: dict[str, int] = row["tls_versions"]  # type: ignore[assignment]
    if versions:
        words = ", ".join(f"{v.removeprefix('TLS ')} ({n})" for v, n in versions.items())
        out += _lines("TLS", words, width)
    ids = [_identity(i) for i in row["client_identities"]]  # type: ignore[attr-defined]
    hidden = int(row["client_certs_hidden"])  # type: ignore[call-overload]
    if hidden:
        ids.append(f"encrypted in {count(hidden, 'session')} (TLS 1.3: a key log shows them)")
    out += _lines("identities", "; ".join(ids) if ids else "(no client certificate)", width)
    issuers = [_issuer(i) for i in row["client_issuers"]]  # type: ignore[attr-defined]
    if issuers:
        out += _lines("issuers", "; ".join(issuers), width)
    return out


def render_summary(
    rows: list[Row], header: str, problems: list[str] | None = None, width: int = 80
) -> str:
    """The summary as text for people: the header, one block per server, totals."""
    out = [header, ""]
    if problems:
        out += ["Capture problems:"] + [f"  - {p}" for p in problems] + [""]
    if not rows:
        out.append("No TLS sessions found.")
        return "\n".join(out) + "\n"
    out += [f"{count(len(rows), 'server')} (after a name: its sessions):", ""]
    for row in rows:
        out += _block(row, width) + [""]
    totals = {v: sum(int(r[v]) for r in rows) for v in VERDICT_ORDER}  # type: ignore[call-overload]
    sessions = sum(int(r["sessions"]) for r in rows)  # type: ignore[call-overload]
    words = ", ".join(f"{v} {n}" for v, n in totals.items() if n)
    out += textwrap.wrap(
        f"Totals: {count(len(rows), 'server')}, {count(sessions, 'session')}: {words}",
        width=max(width, 40),
        subsequent_indent="  ",
        break_on_hyphens=False,
    )
    return "\n".join(out) + "\n"


# -- for programs ------------------------------------------------------------------------------


def write_summary(
    fmt: str,
    rows: list[Row],
    out: TextIO,
    header: str = "",
    problems: list[str] | None = None,
) -> None:
    """Write the rows in `fmt` (one of SUMMARY_FORMATS); `header` and `problems` go into the
    table only (the other formats hold the rows alone)."""
    if fmt == "table":
        out.write(render_summary(rows, header, problems))
    elif fmt == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row) + "\n")
    elif fmt == "csv":
        names = [name for name, _, _ in SUMMARY_FIELDS]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([csv_value(row[n]) for n in names] for row in rows)
    else:
        raise ValueError(f"a summary is written as {', '.join(SUMMARY_FORMATS)}, not {fmt!r}")


def markdown_table() -> str:
    """The README's table of summary fields."""
    lines = ["| field | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {t} | {doc} |" for n, t, doc in SUMMARY_FIELDS]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tlsinspect.report.summary: the README's field table
    print(markdown_table())
