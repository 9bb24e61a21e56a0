"""The human report: sessions table, why each verdict (and the diagnosis of a failure), each
distinct chain once as a tree from leaf to root with its checks, totals."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

from tabulate import tabulate

VERDICT_ORDER = (
    "mutual",
    "one-way",
    "cert-requested-not-sent",
    "failed",
    "resumed",
    "encrypted",
    "incomplete",
)


def _cert_cell(chain: list[dict[str, object]]) -> str:
    if not chain:
        return "-"
    leaf = chain[0]
    if leaf.get("error") and not leaf.get("subject"):
        return "(unreadable)"
    subject = leaf.get("subject_cn") or leaf.get("subject") or "?"
    issuer = leaf.get("issuer_cn") or leaf.get("issuer") or "?"
    return f"{subject}\n  by {issuer}"


_MARK = {"pass": "ok", "fail": "FAIL", "warn": "warn", "info": "info"}


def _checks(item: dict[str, object]) -> list[dict[str, str]]:
    found = item.get("checks")
    return found if isinstance(found, list) else []


def _verdict_of(checks: list[dict[str, str]]) -> str:
    """A certificate's check results in a few words: "ok", "FAIL validity; warn lifetime"."""
    failed = [c["check"] for c in checks if c["result"] == "fail"]
    warned = [c["check"] for c in checks if c["result"] == "warn"]
    words = []
    if failed:
        words.append("FAIL " + ", ".join(dict.fromkeys(failed)))
    if warned:
        words.append("warn " + ", ".join(dict.fromkeys(warned)))
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


def _tree(ch: list[dict[str, object]], chain_checks: list[dict[str, str]]) -> list[str]:
    """A chain as an indented tree, leaf first, each certificate with its checks under it."""
    out = []
    for whole in chain_checks:
        mark = _MARK.get(whole["result"], whole["result"])
        out.append(f"    chain {whole['check']}: {mark}, {whole['detail']}")
    for depth, c in enumerate(ch):
        pad = "    " + "   " * depth
        branch = "`- " if depth else ""
        body = pad + ("   " if depth else "") + "    "
        checks = _checks(c)
        if c.get("error") and not c.get("subject"):
            out.append(f"{pad}{branch}[{depth}] unreadable certificate: {_verdict_of(checks)}")
            out.append(f"{body}{c['error']}")
            continue
        name = c.get("subject_cn") or c.get("subject")
        words = _key_words(c)
        out.append(
            f"{pad}{branch}[{depth}] {name}"
            + (f" ({words})" if words else "")
            + f"  -- {_verdict_of(checks)}"
        )
        out.append(f"{body}subject: {c['subject']}")
        out.append(f"{body}issuer:  {c['issuer']}")
        san = c.get("san")
        if isinstance(san, list) and san:
            out.append(f"{body}SAN: {', '.join(map(str, san))}")
        out.append(
            f"{body}valid {str(c['not_before'])[:10]} .. {str(c['not_after'])[:10]}, "
            f"serial {c['serial']}, sha256 {str(c['sha256'])[:16]}..."
        )
        if c.get("error"):
            out.append(f"{body}note: {c['error']}")
        for check in checks:
            out.append(
                f"{body}{_MARK.get(check['result'], check['result']):<4} "
                f"{check['check']}: {check['detail']}"
            )
    return out


def _ca_list(s: dict[str, object], most: int = 4) -> str:
    """The CertificateRequest's CA names by their CN, the first few of them."""
    names = [str(n) for n in s.get("requested_ca_names") or []]  # type: ignore[attr-defined]
    if not names:
        return "any (the CertificateRequest lists no CA names)"
    cns = [n.rsplit("CN=", 1)[-1] if "CN=" in n else n for n in names]
    shown = ", ".join(f"'{cn}'" for cn in cns[:most])
    return shown + (f" and {len(cns) - most} more" if len(cns) > most else "")


def _short_cipher(name: object) -> str:
    """TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 -> ECDHE_RSA_WITH_AES_256_GCM_SHA384."""
    if not name:
        return "-"
    return str(name).removeprefix("TLS_")


def _endpoint(ip: object, port: object) -> str:
    ip = str(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


_HEADERS = (
    "#",
    "start (UTC)",
    "client -> server",
    "SNI",
    "version\ncipher",
    "verdict",
    "client certificate",
    "server certificate",
)

# each distinct chain once, with its checks, and who sent it: the same certificates checked
# against another SNI, CA list or time may fare differently, and are then shown apart
Chains = dict[str, tuple[list[dict[str, object]], list[dict[str, str]], list[str]]]


def _dated(s: dict[str, object]) -> bool:
    """The session's start time is a date (not `@<ns>`: see model.iso_time)."""
    return not str(s["start_time"]).startswith("@")


def _row(s: dict[str, object], one_day: bool) -> list[object]:
    """A session's row of the table."""
    verdict = str(s["verdict"])
    if s.get("basis") not in (None, "observed"):
        verdict += f" ({s['basis']})"
    start = str(s["start_time"]).rstrip("Z")[:23]
    if _dated(s):
        start = start[11:] if one_day else start.replace("T", " ")
    else:
        start = str(s["start_time"])  # no date: @ and the nanoseconds, whole
    proto = f" ({s['starttls']})" if s.get("starttls") else ""
    return [
        s["index"],
        start,
        f"{_endpoint(s['client_ip'], s['client_port'])}\n-> {_endpoint(s['server_ip'], s['server_port'])}{proto}",
        s.get("sni") or "-",
        f"{s.get('tls_version') or '-'}\n{_short_cipher(s.get('cipher_suite'))}",
        verdict,
        _cert_cell(s["client_chain"]),  # type: ignore[arg-type]
        _cert_cell(s["server_chain"]),  # type: ignore[arg-type]
    ]


def _why(s: dict[str, object]) -> list[str]:
    """A session's lines under "Why:": the reason, the CAs asked for, the diagnosis."""
    lines = [f"  #{s['index']} {s['verdict']}: {s['reason']}"]
    if s.get("cert_requested"):
        cas = (
            "in the encrypted CertificateRequest (a key log shows them)"
            if s.get("basis") == "inferred"
            else _ca_list(s)
        )
        lines.append(f"      client CAs the server accepts: {cas}")
    if s.get("diagnosis"):
        lines.append(f"      diagnosis: {s['diagnosis']}")
    return lines


def _add_chains(chains: Chains, s: dict[str, object]) -> None:
    summaries = s.get("chain_checks")
    for role in ("client", "server"):
        ch: list[dict[str, object]] = s[f"{role}_chain"]  # type: ignore[assignment]
        if ch:
            summary = summaries.get(role) if isinstance(summaries, dict) else None
            whole: list[dict[str, str]] = summary.get("checks", []) if summary else []
            key = json.dumps([ch, whole], sort_keys=True, default=str)
            chains.setdefault(key, (ch, whole, []))[2].append(f"{role} of #{s['index']}")


def render(
    sessions: Iterable[dict[str, object]], header: str, problems: list[str] | None = None
) -> str:
    sessions = list(sessions)
    many = len({s.get("file") for s in sessions}) > 1
    if many:
        # sessions of several captures: numbered through the report (each capture numbers its
        # own from 1), and the file shown in a column of its own
        sessions = [{**s, "index": n} for n, s in enumerate(sessions, 1)]
    days = {str(s["start_time"])[:10] for s in sessions if _dated(s)}
    one_day = len(days) == 1
    rows = [_row(s, one_day) for s in sessions]
    if many:
        rows = [[r[0], s.get("file") or "-", *r[1:]] for r, s in zip(rows, sessions, strict=True)]
    reasons = [line for s in sessions for line in _why(s)]
    chains: Chains = {}
    for s in sessions:
        _add_chains(chains, s)
    totals = Counter(str(s["verdict"]) for s in sessions)
    out = [header, ""]
    if problems:
        out += ["Capture problems:"] + [f"  - {p}" for p in problems] + [""]
    if not sessions:
        out.append("No TLS sessions found.")
        return "\n".join(out) + "\n"
    headers = list(_HEADERS)
    if one_day:
        headers[1] = f"start (UTC, {days.pop()})"
    if many:
        headers.insert(1, "file")
    out.append(tabulate(rows, headers=headers, tablefmt="simple_grid"))
    out += ["", "Why:"] + reasons
    if chains:
        out += ["", "Certificate chains (leaf first):"]
        for n, (ch, whole, users) in enumerate(chains.values(), 1):
            out.append(f"  chain {n}, sent as: {', '.join(users)}")
            out += _tree(ch, whole)
    out += ["", "Totals:"]
    width = max(len(v) for v in VERDICT_ORDER)
    for v in VERDICT_ORDER:
        if totals[v]:
            out.append(f"  {v:<{width}}  {totals[v]}")
    out.append(f"  {'all':<{width}}  {sum(totals.values())}")
    return "\n".join(out) + "\n"
