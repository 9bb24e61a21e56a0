"""The human report: sessions table, why each verdict, each distinct chain once, totals."""

from __future__ import annotations

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


def _short_cipher(name: object) -> str:
    """TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 -> ECDHE_RSA_WITH_AES_256_GCM_SHA384."""
    if not name:
        return "-"
    return str(name).removeprefix("TLS_")


def _endpoint(ip: object, port: object) -> str:
    ip = str(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def render(
    sessions: Iterable[dict[str, object]], header: str, problems: list[str] | None = None
) -> str:
    rows = []
    reasons = []
    chains: dict[tuple[str, ...], tuple[list[dict[str, object]], list[str]]] = {}
    totals: Counter[str] = Counter()
    sessions = list(sessions)
    days = {str(s["start_time"])[:10] for s in sessions}
    one_day = len(days) == 1
    for s in sessions:
        idx = s["index"]
        verdict = str(s["verdict"])
        if s.get("basis") not in (None, "observed"):
            verdict += f" ({s['basis']})"
        totals[str(s["verdict"])] += 1
        start = str(s["start_time"]).rstrip("Z")[:23]
        start = start[11:] if one_day else start.replace("T", " ")
        proto = f" ({s['starttls']})" if s.get("starttls") else ""
        rows.append(
            [
                idx,
                start,
                f"{_endpoint(s['client_ip'], s['client_port'])}\n-> {_endpoint(s['server_ip'], s['server_port'])}{proto}",
                s.get("sni") or "-",
                f"{s.get('tls_version') or '-'}\n{_short_cipher(s.get('cipher_suite'))}",
                verdict,
                _cert_cell(s["client_chain"]),  # type: ignore[arg-type]
                _cert_cell(s["server_chain"]),  # type: ignore[arg-type]
            ]
        )
        reasons.append(f"  #{idx} {s['verdict']}: {s['reason']}")
        for role in ("client", "server"):
            ch: list[dict[str, object]] = s[f"{role}_chain"]  # type: ignore[assignment]
            if ch:
                key = tuple(str(c["sha256"]) for c in ch)
                chains.setdefault(key, (ch, []))[1].append(f"{role} of #{idx}")
    out = [header, ""]
    if problems:
        out += ["Capture problems:"] + [f"  - {p}" for p in problems] + [""]
    if not sessions:
        out.append("No TLS sessions found.")
        return "\n".join(out) + "\n"
    out.append(
        tabulate(
            rows,
            headers=[
                "#",
                f"start (UTC, {days.pop()})" if one_day else "start (UTC)",
                "client -> server",
                "SNI",
                "version\ncipher",
                "verdict",
                "client certificate",
                "server certificate",
            ],
            tablefmt="simple_grid",
        )
    )
    out += ["", "Why:"] + reasons
    if chains:
        out += ["", "Certificate chains (leaf first):"]
        for n, (ch, users) in enumerate(chains.values(), 1):
            out.append(f"  chain {n}, sent as: {', '.join(users)}")
            for depth, c in enumerate(ch):
                pad = "    " + "  " * depth
                if c.get("error") and not c.get("subject"):
                    out.append(f"{pad}[{depth}] unreadable certificate: {c['error']}")
                    continue
                out.append(f"{pad}[{depth}] {c['subject']}")
                out.append(f"{pad}    issuer: {c['issuer']}")
                out.append(
                    f"{pad}    valid {str(c['not_before'])[:10]} .. {str(c['not_after'])[:10]}, sha256 {str(c['sha256'])[:16]}..."
                )
    out += ["", "Totals:"]
    width = max(len(v) for v in VERDICT_ORDER)
    for v in VERDICT_ORDER:
        if totals[v]:
            out.append(f"  {v:<{width}}  {totals[v]}")
    out.append(f"  {'all':<{width}}  {sum(totals.values())}")
    return "\n".join(out) + "\n"
