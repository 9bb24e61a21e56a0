"""The human report, sized to the terminal: the sessions table, why each verdict (for the sessions
that need it), each distinct certificate chain once as a tree from leaf to root with its checks,
totals.

Every line fits the width it is given (`output_width`: the terminal's, else 100 or $COLUMNS):
the table keeps the columns that fit, most needed first (#, client -> server, SNI, version,
verdict, certificate chains, why; then client identity, cipher, start time as the width allows),
and wraps long cells rather than cutting them; the free text below it is wrapped with hanging
indents. A chain is known by the SHA-256 of its certificates and shown once, under a label the
rows refer to (`C1` for a chain clients sent, `S1` for servers): what differs between the
sessions that sent it (the name check against each SNI, the CA list of each request) is shown
under the check, with the sessions it holds for.

Why lines are printed for the sessions that need them (`needs_why`): failed, a certificate
requested and not sent, incomplete or undecided, a diagnosis or an anomaly, a verdict a key log
could change. `--why all` prints them for every session, `--why none` for none; the footer says
how many were left out.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from ..model import count

VERDICT_ORDER = (
    "mutual",
    "one-way",
    "cert-requested-not-sent",
    "failed",
    "resumed",
    "encrypted",
    "incomplete",
)

DEFAULT_WIDTH = 100  # when stdout is no terminal and $COLUMNS is unset
MIN_WIDTH = 40  # narrower, the chain trees' indents leave no room for their text
WHY_CHOICES = ("needed", "all", "none")

Session = dict[str, object]

# -- width and wrapping ------------------------------------------------------------------------


def output_width(stream: TextIO, given: int | None = None) -> int:
    """The width to fit: `given` (--width), else the terminal's when `stream` is one, else
    $COLUMNS, else DEFAULT_WIDTH; never below MIN_WIDTH."""
    if given is None:
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):  # a closed or unusual stream
            tty = False
        if tty:
            given = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
        else:
            env = os.environ.get("COLUMNS", "")
            given = int(env) if env.isdigit() else DEFAULT_WIDTH
    return max(MIN_WIDTH, given)


_SOFT_BREAKS = "_/:.,=-"  # a word too long for a line is broken after one of these
NBSP = "\u00a0"  # joins words that must stay together; printed as a space
_TOKENS = re.compile("( +)")


def _cut(word: str, room: int) -> int:
    """Where to break a word too long for the `room` left: after the last soft break in it,
    if that leaves more than a third of the room filled, else at the room's end."""
    cut = max((i + 1 for i, ch in enumerate(word[:room]) if ch in _SOFT_BREAKS), default=0)
    return cut if cut > room // 3 else room


def wrap(text: str, width: int, indent: str = "", hang: str | None = None) -> list[str]:
    """`text` in lines of at most `width` characters: the first starts with `indent`, the
    others with `hang` (default: `indent`). Each line of `text` is wrapped on its own, at
    spaces (runs of spaces between words are kept); a word is broken only when it does not fit
    a line of its own. Nothing but the spaces at the breaks is lost."""
    hang = indent if hang is None else hang
    out: list[str] = []
    for para in text.split("\n"):
        line, words, space = (indent if not out else hang), False, ""
        for token in _TOKENS.split(para):
            if token.startswith(" ") or not token:
                space = token if words else ""
                continue
            while token:
                if len(line) + len(space) + len(token) <= width:
                    line, words, space, token = line + space + token, True, "", ""
                elif words:  # the word goes to the next line
                    out.append(line)
                    line, words, space = hang, False, ""
                else:  # a word longer than a whole line: break it
                    cut = _cut(token, max(1, width - len(line)))
                    out.append(line + token[:cut])
                    line, token = hang, token[cut:]
        out.append(line)
    return [line.replace(NBSP, " ").rstrip() for line in out]


# -- cells ---------------------------------------------------------------------------------------


def _endpoint(ip: object, port: object) -> str:
    ip = str(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _short_cipher(name: object) -> str:
    """TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 -> ECDHE_RSA_WITH_AES_256_GCM_SHA384."""
    if not name:
        return "-"
    return str(name).removeprefix("TLS_")


def _index(s: Session) -> int:
    return int(str(s["index"]))


def _dated(s: Session) -> bool:
    """The session's start time is a date (not `@<ns>`: see model.iso_time)."""
    return not str(s["start_time"]).startswith("@")


def _chain(s: Session, role: str) -> list[dict[str, object]]:
    found = s.get(f"{role}_chain")
    return found if isinstance(found, list) else []


def _leaf_name(chain: list[dict[str, object]]) -> str:
    if not chain:
        return "-"
    leaf = chain[0]
    if leaf.get("error") and not leaf.get("subject"):
        return "(unreadable)"
    san = leaf.get("san")
    first_san = str(san[0]).split(":", 1)[-1] if isinstance(san, list) and san else None
    return str(leaf.get("subject_cn") or first_san or leaf.get("subject") or "?")


def _headline(s: Session) -> str:
    """The reason in a few words, for the table: the diagnosis' first clause when there is one
    (the why lines below give the rest), else what the verdict rests on."""
    diagnosis = str(s.get("diagnosis") or "")
    if diagnosis:
        head = diagnosis.split("; ", 1)[0]
        cuts = [head.find(sep) for sep in (": ", " (") if sep in head]
        return head[: min(cuts)] if len(head) > 70 and cuts else head
    verdict = s["verdict"]
    if verdict == "mutual":
        return "client certificate, CertificateVerify"
    if verdict == "one-way":
        return "no CertificateRequest"
    if verdict == "resumed":
        origin = s.get("resumed_from")
        if isinstance(origin, dict):
            return f"resumes a {origin['verdict']} session; no certificates"
        return "no certificates exchanged"
    return str(s["reason"]).split("; ", 1)[0]


_UNSETTLED = ("failed", "cert-requested-not-sent", "incomplete", "encrypted")


def needs_why(s: Session) -> bool:
    """Whether a session's why lines are printed by default: a failure, a request not answered,
    a verdict the capture cannot settle (or a key log could change), a diagnosis, anomalies."""
    return bool(
        s["verdict"] in _UNSETTLED
        or s.get("diagnosis")
        or s.get("anomalies")
        or "key log" in str(s["reason"])
    )


@dataclass(frozen=True)
class _Column:
    """One column of the sessions table."""

    key: str
    header: str
    cell: Callable[[Session, dict[str, str]], str]  # (session, its chain labels) -> text
    rank: int  # the larger, the sooner it is left out as the width shrinks (0: never)
    least: int  # narrowest useful width
    most: int  # widest it is worth when the table must share the width
    optional: bool = False  # shown only when the others keep their comfortable widths
    right: bool = False  # right-aligned (numbers)


def _labels(labels: dict[str, str]) -> str:
    return " ".join(labels[r] for r in ("client", "server") if r in labels) or "-"


def _columns(start_header: str, one_day: bool, many: bool = False) -> list[_Column]:
    def start(s: Session, _l: dict[str, str]) -> str:
        text = str(s["start_time"])
        if not _dated(s):
            return text  # no date: @ and the nanoseconds, whole
        text = text.rstrip("Z")[:23]
        return text[11:] if one_day else text.replace("T", " ")

    def peers(s: Session, _l: dict[str, str]) -> str:
        proto = f" ({s['starttls']})" if s.get("starttls") else ""
        client = _endpoint(s["client_ip"], s["client_port"])
        return f"{client} ->{NBSP}{_endpoint(s['server_ip'], s['server_port'])}{proto}"

    def verdict(s: Session, _l: dict[str, str]) -> str:
        basis = s.get("basis")
        return f"{s['verdict']} ({basis})" if basis not in (None, "observed") else str(s["verdict"])

    def sni(s: Session, _l: dict[str, str]) -> str:
        return str(s.get("sni") or "-")

    def version(s: Session, _l: dict[str, str]) -> str:
        return str(s.get("tls_version") or "-").removeprefix("TLS ")  # under the header TLS

    def cipher(s: Session, _l: dict[str, str]) -> str:
        return _short_cipher(s.get("cipher_suite"))

    def identity(s: Session, _l: dict[str, str]) -> str:
        return _leaf_name(_chain(s, "client"))

    # rank: the order in which columns are left out as the width shrinks; `chains` goes early
    # because the verdict cell then carries the labels
    files = (
        [_Column("file", "file", lambda s, _l: str(s.get("file") or "-"), 4, 8, 32)] if many else []
    )
    return [
        _Column("index", "#", lambda s, _l: str(s["index"]), 0, 9, 9, right=True),  # unwrapped
        *files,
        _Column("start", start_header, start, 8, 12, 23, optional=True),
        _Column("peers", "client -> server", peers, 1, 17, 21),
        _Column("sni", "SNI", sni, 2, 12, 24),
        _Column("version", "TLS", version, 3, 3, 7),
        _Column("cipher", "cipher", cipher, 9, 16, 33, optional=True),
        _Column("verdict", "verdict", verdict, 0, 10, 17),
        _Column("chains", "chains", lambda _s, labels: _labels(labels), 5, 6, 6),
        _Column("identity", "client identity", identity, 7, 12, 24, optional=True),
        _Column("why", "why", lambda s, _l: _headline(s), 0, 14, 40),
    ]


GAP = "  "
FAIR_WHY = 20  # the why column is not squeezed below this to keep a column of less use


def _natural(texts: Iterable[str]) -> int:
    return max((len(line) for t in texts for line in t.replace(NBSP, " ").split("\n")), default=1)


def _share(widths: list[int], want: list[int], room: int) -> None:
    """Share `room` max-min fairly: a column that lacks less than an equal share gets all it
    lacks, the others split what is left (the last of them, why, takes the odd characters)."""
    lacking = [i for i, w in enumerate(want) if w > 0]
    while lacking and room > 0:
        share = room // len(lacking)
        small = [i for i in lacking if want[i] <= share]
        if not small:
            for i in lacking:
                widths[i] += share
            widths[lacking[-1]] += room - share * len(lacking)
            return
        for i in small:
            widths[i] += want[i]
            room -= want[i]
            lacking.remove(i)


def _layout(columns: list[_Column], cells: list[list[str]], width: int) -> list[int]:
    """Which columns to show (those not shown get width 0) and how wide each is."""
    word = [max(len(w) for w in c.header.split()) for c in columns]  # headers wrap at spaces
    natural = [max(_natural(col), w) for col, w in zip(zip(*cells, strict=True), word, strict=True)]
    least = [max(w, min(c.least, n)) for c, n, w in zip(columns, natural, word, strict=True)]
    comfort = [min(c.most, n) for c, n in zip(columns, natural, strict=True)]
    shown = [not c.optional for c in columns]

    def total(widths: Sequence[int]) -> int:
        on = [w for w, s in zip(widths, shown, strict=True) if s]
        return sum(on) + len(GAP) * (len(on) - 1)

    why = len(columns) - 1
    fair = [*least[:why], max(least[why], min(natural[why], FAIR_WHY))]
    while total(fair) > width:  # leave out the columns that matter least
        candidates = [i for i, c in enumerate(columns) if shown[i] and c.rank]
        if not candidates:
            break
        shown[max(candidates, key=lambda i: columns[i].rank)] = False
    for i in sorted(
        (i for i, c in enumerate(columns) if c.optional), key=lambda i: columns[i].rank
    ):
        shown[i] = True  # an optional column, if the others keep their comfort (why its fair)
        if total([*comfort[:why], fair[why]]) > width:
            shown[i] = False
            break  # none of less use in its place
    widths = [w if s else 0 for w, s in zip(fair, shown, strict=True)]
    if total(widths) > width:
        widths[why] = least[why]
    for target in (comfort, natural):  # first up to comfortable widths, then to whole cells
        _share(
            widths,
            [max(0, t - w) if w else 0 for t, w in zip(target, widths, strict=True)],
            width - total(widths),
        )
    while total(widths) > width:  # narrower than the least of what is left: shrink the widest
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= 1:
            break
        widths[widest] -= 1
    return widths


def _table(
    sessions: list[Session],
    labels: list[dict[str, str]],
    width: int,
    start_header: str,
    one_day: bool,
    many: bool = False,
) -> list[str]:
    columns = _columns(start_header, one_day, many)
    cells = [[c.cell(s, lab) for c in columns] for s, lab in zip(sessions, labels, strict=True)]
    widths = _layout(columns, cells, width)
    on = [i for i, w in enumerate(widths) if w]
    keys = [c.key for c in columns]
    if not widths[keys.index("chains")]:  # the verdict cell names the chains, on a line of its own
        v = keys.index("verdict")
        for row, lab in zip(cells, labels, strict=True):
            if lab:
                row[v] += "\n" + _labels(lab)

    def line(parts: list[list[str]], row: int) -> str:
        out = []
        for i, lines in zip(on, parts, strict=True):
            text = lines[row] if row < len(lines) else ""
            out.append(text.rjust(widths[i]) if columns[i].right else text.ljust(widths[i]))
        return GAP.join(out).rstrip()

    def block(texts: list[str]) -> list[str]:
        parts = [wrap(texts[i], widths[i]) for i in on]
        return [line(parts, r) for r in range(max(len(p) for p in parts))]

    out = block([c.header for c in columns])
    out.append(GAP.join("-" * widths[i] for i in on))
    for row in cells:
        out += block(row)
    return out


# -- why lines -----------------------------------------------------------------------------------


def _ca_list(s: Session, most: int = 4) -> str:
    """The CertificateRequest's CA names by their CN, the first few of them."""
    found = s.get("requested_ca_names")
    names = [str(n) for n in found] if isinstance(found, list) else []
    if not names:
        return "any (the CertificateRequest lists no CA names)"
    cns = [n.rsplit("CN=", 1)[-1] if "CN=" in n else n for n in names]
    shown = ", ".join(f"'{cn}'" for cn in cns[:most])
    return shown + (f" and {len(cns) - most} more" if len(cns) > most else "")


def _why_key(s: Session) -> tuple[object, ...]:
    """What the why lines of a session say: sessions that say the same are printed together."""
    anomalies, cas = s.get("anomalies"), s.get("requested_ca_names")
    return (
        s["verdict"],
        s["reason"],
        bool(s.get("cert_requested")),
        s.get("basis") == "inferred",
        tuple(map(str, cas)) if isinstance(cas, list) else (),
        s.get("diagnosis"),
        tuple(anomalies) if isinstance(anomalies, list) else (),
    )


def _why(group: list[Session], width: int) -> list[str]:
    """The lines under "Why:" of sessions that say the same: which sessions, the verdict and
    its reason, the CAs asked for, the diagnosis, the anomalies."""
    s = group[0]
    # every index, so that a row's # finds its why lines
    who = ", ".join(f"#{i}" for i in sorted(map(_index, group)))
    if len(group) > 1:
        who += f" ({count(len(group), 'session')})"
    lines = wrap(f"{who} {s['verdict']}: {s['reason']}", width, "  ", " " * 6)
    if s.get("cert_requested"):
        cas = (
            "in the encrypted CertificateRequest (a key log shows them)"
            if s.get("basis") == "inferred"
            else _ca_list(s)
        )
        lines += wrap(f"client CAs the server accepts: {cas}", width, " " * 6, " " * 8)
    if s.get("diagnosis"):
        lines += wrap(f"diagnosis: {s['diagnosis']}", width, " " * 6, " " * 8)
    anomalies = s.get("anomalies")
    if isinstance(anomalies, list) and anomalies:
        lines += wrap(f"anomalies: {'; '.join(map(str, anomalies))}", width, " " * 6, " " * 8)
    return lines


# -- chains --------------------------------------------------------------------------------------

_MARK = {"pass": "ok", "fail": "FAIL", "warn": "warn", "info": "info"}

# one check's outcomes over the sessions that sent a chain: (result, detail) -> session indexes
Outcomes = dict[tuple[str, str], list[int]]


@dataclass
class _SeenChain:
    """A distinct chain (by the SHA-256 of its certificates) and what each session found."""

    label: str
    role: str
    certs: list[dict[str, object]]
    sessions: list[int]
    whole: dict[str, Outcomes]  # check on the whole chain -> outcomes
    each: list[dict[str, Outcomes]]  # per certificate: check -> outcomes


def _checks(item: object) -> list[dict[str, str]]:
    found = item.get("checks") if isinstance(item, dict) else None
    return found if isinstance(found, list) else []


def _note(into: dict[str, Outcomes], checks: list[dict[str, str]], index: int) -> None:
    for c in checks:
        into.setdefault(c["check"], {}).setdefault((c["result"], c["detail"]), []).append(index)


def _collect(sessions: list[Session]) -> tuple[list[_SeenChain], list[dict[str, str]]]:
    """The distinct chains in order of first use, and each session's labels (role -> label)."""
    chains: dict[tuple[str, tuple[str, ...]], _SeenChain] = {}
    numbers = Counter[str]()
    labels = []
    for s in sessions:
        mine: dict[str, str] = {}
        summaries = s.get("chain_checks")
        for role in ("client", "server"):
            certs = _chain(s, role)
            if not certs:
                continue
            key = (role, tuple(str(c.get("sha256")) for c in certs))
            seen = chains.get(key)
            if seen is None:
                numbers[role] += 1
                label = f"{role[0].upper()}{numbers[role]}"
                seen = chains[key] = _SeenChain(label, role, certs, [], {}, [{} for _ in certs])
            index = _index(s)
            seen.sessions.append(index)
            summary = summaries.get(role) if isinstance(summaries, dict) else None
            _note(seen.whole, _checks(summary), index)
            for into, cert in zip(seen.each, certs, strict=True):
                _note(into, _checks(cert), index)
            mine[role] = seen.label
        labels.append(mine)
    return list(chains.values()), labels


def _indexes(found: list[int], most: int = 6) -> str:
    shown = ", ".join(f"#{i}" for i in found[:most])
    return shown + (f" and {len(found) - most} more" if len(found) > most else "")


MOST_OUTCOMES = 4  # outcomes of one check shown, when they differ between sessions


def _outcome_lines(
    checks: dict[str, Outcomes], sessions: int, width: int, pad: str, whole: bool
) -> list[str]:
    """One line per check (`whole`: a check of the whole chain); a check whose outcome
    differs between the chain's `sessions`, or that only some of them made, gets one line per
    outcome (the first few), each saying for which sessions it holds."""
    out = []
    for name, outcomes in checks.items():
        ordered = list(outcomes.items())
        split = len(ordered) > 1 or sum(len(f) for f in outcomes.values()) < sessions
        for (result, detail), found in ordered[:MOST_OUTCOMES]:
            where = f" ({_indexes(found)})" if split else ""
            mark = _MARK.get(result, result)
            text = f"chain {name}: {mark}, " if whole else f"{mark:<4} {name}: "
            out += wrap(text + detail + where, width, pad, pad + "     ")
        if len(ordered) > MOST_OUTCOMES:
            rest = Counter(_MARK.get(r, r) for (r, _d), _f in ordered[MOST_OUTCOMES:])
            tally = ", ".join(f"{n} {mark}" for mark, n in rest.items())
            more = len(ordered) - MOST_OUTCOMES
            out += wrap(f"... {name}: {more} more outcomes ({tally})", width, pad, pad + "    ")
    return out


def _verdict_of(checks: dict[str, Outcomes]) -> str:
    """A certificate's check results in a few words, over every session: "ok", "FAIL validity;
    warn lifetime"."""
    results = {(name, r) for name, outcomes in checks.items() for r, _d in outcomes}
    failed = [n for n in checks if (n, "fail") in results]
    warned = [n for n in checks if (n, "warn") in results]
    words = []
    if failed:
        words.append("FAIL " + ", ".join(failed))
    if warned:
        words.append("warn " + ", ".join(warned))
    return "; ".join(words) or "ok"


def _key_words(c: dict[str, object]) -> str:
    """ "EC secp256r1, ecdsa-with-SHA256, CA" / "RSA 2048, sha256WithRSAEncryption, clientAuth"."""
    words = []
    if c.get("key_type"):
        size = c.get("key_curve") or c.get("key_bits")
        words.append(f"{c['key_type']} {size}" if size else str(c["key_type"]))
    if c.get("signature_algorithm"):
        words.append(str(c["signature_algorithm"]))
    if c.get("is_ca"):
        words.append("CA")
    eku = c.get("extended_key_usage")
    if isinstance(eku, list) and eku:
        words.append("/".join(map(str, eku)))
    return ", ".join(words)


def _tree(chain: _SeenChain, width: int) -> list[str]:
    """A chain as an indented tree, leaf first, each certificate with its checks under it."""
    out = [
        *wrap(
            f"[{chain.label}] {chain.role} chain, sent in "
            f"{count(len(chain.sessions), 'session')}: {_indexes(chain.sessions)}",
            width,
            "  ",
            "       ",
        ),
        *_outcome_lines(chain.whole, len(chain.sessions), width, "    ", whole=True),
    ]
    for depth, (c, checks) in enumerate(zip(chain.certs, chain.each, strict=True)):
        pad = "    " + "   " * depth
        branch = "`- " if depth else ""
        body = pad + ("   " if depth else "") + "    "
        if c.get("error") and not c.get("subject"):
            out += wrap(
                f"{pad}{branch}[{depth}] unreadable certificate: {_verdict_of(checks)}", width
            )
            out += wrap(str(c["error"]), width, body)
            continue
        name = c.get("subject_cn") or c.get("subject")
        words = _key_words(c)
        head = f"[{depth}] {name}" + (f" ({words})" if words else "")
        out += wrap(f"{head}  -- {_verdict_of(checks)}", width, pad + branch, body)
        out += wrap(f"subject: {c['subject']}", width, body, body + "         ")
        out += wrap(f"issuer:  {c['issuer']}", width, body, body + "         ")
        san = c.get("san")
        if isinstance(san, list) and san:
            out += wrap(f"SAN: {', '.join(map(str, san))}", width, body, body + "     ")
        out += wrap(
            f"valid {str(c['not_before'])[:10]} .. {str(c['not_after'])[:10]}, "
            f"serial {c['serial']}, sha256 {str(c['sha256'])[:16]}...",
            width,
            body,
            body + "  ",
        )
        if c.get("error"):
            out += wrap(f"note: {c['error']}", width, body, body + "      ")
        out += _outcome_lines(checks, len(chain.sessions), width, body, whole=False)
    return out


# -- the report ----------------------------------------------------------------------------------


def render(
    sessions: Iterable[Session],
    header: str,
    problems: list[str] | None = None,
    *,
    width: int = DEFAULT_WIDTH,
    why: str = "needed",
) -> str:
    """The whole report, every line at most `width` characters (at least MIN_WIDTH).
    `why`: "needed" prints the why lines of the sessions that need them (`needs_why`), "all"
    of every session, "none" of none."""
    width = max(MIN_WIDTH, width)
    sessions = list(sessions)
    many = len({s.get("file") for s in sessions}) > 1
    if many:
        # sessions of several captures: numbered through the report (each capture numbers its
        # own from 1), and the file shown in a column of its own
        sessions = [{**s, "index": n} for n, s in enumerate(sessions, 1)]
    out = [part for line in header.split("\n") for part in wrap(line, width, "", "  ")]
    out.append("")
    if problems:
        out.append("Capture problems:")
        for p in problems:
            out += wrap(f"- {p}", width, "  ", "    ")
        out.append("")
    if not sessions:
        out.append("No TLS sessions found.")
        return "\n".join(out) + "\n"
    days = {str(s["start_time"])[:10] for s in sessions if _dated(s)}
    one_day = len(days) == 1
    start_header = f"start (UTC, {days.pop()})" if one_day else "start (UTC)"
    chains, labels = _collect(sessions)
    out += _table(sessions, labels, width, start_header, one_day, many)
    explained = [s for s in sessions if why == "all" or (why == "needed" and needs_why(s))]
    if explained:
        out += ["", "Why:"]
        groups: dict[tuple[object, ...], list[Session]] = {}
        for s in explained:
            groups.setdefault(_why_key(s), []).append(s)
        for group in groups.values():
            out += _why(group, width)
    if chains:
        out += ["", "Certificate chains (leaf first):"]
        for chain in chains:
            out += _tree(chain, width)
    totals = Counter(str(s["verdict"]) for s in sessions)
    out += ["", "Totals:"]
    pad = max(len(v) for v in VERDICT_ORDER)
    for v in VERDICT_ORDER:
        if totals[v]:
            out.append(f"  {v:<{pad}}  {totals[v]:,}")
    out.append(f"  {'all':<{pad}}  {sum(totals.values()):,}")
    hidden = len(sessions) - len(explained)
    if hidden:
        what = " with nothing to explain" if why == "needed" else ""
        footer = f"Why lines omitted for {count(hidden, 'session')}{what}: --why all shows them."
        out += ["", *wrap(footer, width)]
    return "\n".join(out) + "\n"
