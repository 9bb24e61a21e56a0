"""One session as an HTML fragment, for notebooks: verdict, reason, and both chains as trees.

`session_html(row)` takes a session dict (JSON fields, optionally the flat extras and `file`) and
returns self-contained HTML with inline styles only (notebook front ends strip <style> and
scripts in untrusted output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

VERDICT_COLOURS = {
    "mutual": "#1a7f37",
    "one-way": "#b35900",
    "cert-requested-not-sent": "#d4a72c",
    "failed": "#c62828",
    "incomplete": "#6e7781",
    "encrypted": "#4a5f8a",
    "resumed": "#0969da",
}

_BOX = "font-family:sans-serif;font-size:13px;line-height:1.45;border:1px solid #d0d7de;padding:8px 12px;border-radius:6px;max-width:70em"
_MUTED = "color:#57606a"
_UL = "list-style:none;margin:0 0 0 1.2em;padding:0"


def _e(v: object) -> str:
    return escape("" if v is None else str(v))


def _endpoint(ip: object, port: object) -> str:
    ip = str(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _cert(c: Mapping[str, object]) -> str:
    if c.get("error") and not c.get("subject"):
        return f"<i>unreadable certificate</i> <span style='{_MUTED}'>{_e(c.get('error'))}</span>"
    name = c.get("subject_cn") or c.get("subject") or "?"
    parts = [f"<b>{_e(name)}</b>"]
    if c.get("subject") and c.get("subject") != name:
        parts.append(f"<span style='{_MUTED}'>{_e(c.get('subject'))}</span>")
    details = []
    if c.get("not_before") or c.get("not_after"):
        details.append(f"valid {_e(c.get('not_before'))} to {_e(c.get('not_after'))}")
    if c.get("sha256"):
        details.append(f"SHA-256 {_e(str(c['sha256'])[:16])}...")
    if c.get("error"):
        details.append(f"partly unreadable: {_e(c.get('error'))}")
    if details:
        parts.append(f"<br><span style='{_MUTED}'>{'; '.join(details)}</span>")
    return " ".join(parts)


def chain_tree(chain: Sequence[Mapping[str, object]]) -> str:
    """A chain as nested lists, leaf first, each certificate under the one it signed."""
    if not chain:
        return f"<span style='{_MUTED}'>none</span>"
    html = ""
    last = chain[-1]
    if last.get("issuer") and last.get("issuer") != last.get("subject"):
        issuer = last.get("issuer_cn") or last.get("issuer")
        html = f"<ul style='{_UL}'><li>&#x2514; issued by <b>{_e(issuer)}</b> <span style='{_MUTED}'>(not sent)</span></li></ul>"
    for i, c in enumerate(reversed(chain)):
        mark = "" if i == len(chain) - 1 else "&#x2514; issued by "
        html = f"<li>{mark}{_cert(c)}{html}</li>"
        html = f"<ul style='{_UL if i != len(chain) - 1 else 'list-style:none;margin:0;padding:0'}'>{html}</ul>"
    return html


def session_html(row: Mapping[str, object]) -> str:
    verdict = str(row.get("verdict"))
    colour = VERDICT_COLOURS.get(verdict, "#6e7781")
    badge = (
        f"<span style='background:{colour};color:white;border-radius:4px;padding:1px 7px;"
        f"font-weight:bold'>{_e(verdict)}</span>"
    )
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
        f"<div style='{_BOX}'>",
        f"<div>{badge} {head} <span style='{_MUTED}'>({_e(row.get('basis'))})</span></div>",
        f"<div style='{_MUTED}'>{' &middot; '.join(f for f in facts if f)}</div>",
        f"<div style='margin:4px 0'>{_e(row.get('reason'))}</div>",
    ]
    hidden = row.get("tls_version") == "TLS 1.3" and row.get("basis") != "decrypted"
    for role in ("client", "server"):
        chain = row.get(f"{role}_chain")
        items = chain if isinstance(chain, list) else []
        if not items and hidden:
            tree = f"<span style='{_MUTED}'>encrypted (TLS 1.3 without keys)</span>"
        else:
            tree = chain_tree(items)
        out.append(f"<div><b>{role.capitalize()} chain</b> {tree}</div>")
    cas = row.get("requested_ca_names")
    if isinstance(cas, list) and cas:
        listed = "".join(f"<li>{_e(n)}</li>" for n in cas)
        out.append(f"<div><b>CAs the server asked for</b><ul style='{_UL}'>{listed}</ul></div>")
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
        out.append(f"<div style='{_MUTED}'>Handshake: {_e(' '.join(map(str, hs)))}</div>")
    if row.get("ended"):
        out.append(f"<div style='{_MUTED}'>Ended: {_e(row.get('ended'))}</div>")
    out.append("</div>")
    return "\n".join(out)
