"""Sessions as flat rows: the JSON fields plus one column per fact of each leaf certificate.

One row per session for the CSV output, the pandas API (`report.frame`) and policy checks
(`tlsinspect.policy`). The row holds every field of `schema.session_dict()` (arrays and objects
stay lists and dicts) followed by the `EXTRA_COLUMNS`: the leaf certificate of each side taken
apart (subject, issuer, names, validity, fingerprint), the first fatal alert, and whether the
handshake was established. Nothing here needs pandas.

`COLUMN_DTYPES` says which pandas dtype each column gets, `ECS_NAMES` which Elastic Common Schema
field holds the same fact; `markdown_table()` renders the README's column table from them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping

from ..record import SessionRecord
from .schema import FIELDS, session_dict

Row = dict[str, object]

_LEAF = (
    ("subject", "string", "Subject distinguished name of the {role}'s leaf certificate."),
    ("subject_cn", "string", "Common name (CN) of that subject."),
    ("issuer", "string", "Issuer distinguished name of the {role}'s leaf certificate."),
    ("issuer_cn", "string", "Common name (CN) of that issuer."),
    (
        "serial",
        "string",
        "Serial number of the {role}'s leaf certificate (upper-case hex in whole bytes, as OpenSSL and Zeek print it).",
    ),
    ("not_before", "datetime", "Start of the {role}'s leaf certificate validity (UTC)."),
    ("not_after", "datetime", "End of the {role}'s leaf certificate validity (UTC)."),
    ("sha256", "string", "SHA-256 fingerprint of the {role}'s leaf certificate (hex)."),
    (
        "san",
        "list",
        "Subject alternative names of the {role}'s leaf certificate, as `DNS:name`, "
        "`IP:address`, `URI:spiffe://...`, `email:address`.",
    ),
    ("chain_length", "integer", "Number of certificates the {role} sent (0 for none)."),
    (
        "chain_result",
        "string",
        "Result of the checks on the {role}'s chain (`chain_checks`): `pass`, `warn` or "
        "`fail`; null when it sent none.",
    ),
    (
        "chain_failed",
        "list",
        "Names of the checks the {role}'s chain failed (e.g. `signature`, `validity`, "
        "`ca_bundle`).",
    ),
)

#: (column, kind, meaning) of the columns a flat row adds after the JSON fields.
#: kind: string, integer, boolean, datetime, list (a list of strings).
EXTRA_COLUMNS: list[tuple[str, str, str]] = [
    (f"{role}_{name}", kind, doc.format(role=role))
    for role in ("client", "server")
    for name, kind, doc in _LEAF
] + [
    (
        "fatal_alert",
        "string",
        "Description of the first fatal alert (e.g. `unknown_ca`), null when there was none.",
    ),
    ("fatal_alert_sender", "string", "Who sent that alert: `client` or `server`."),
    (
        "established",
        "boolean",
        "The handshake completed: true for `mutual`, `one-way` and `resumed`, and for "
        "`cert-requested-not-sent` when the server went on without a fatal alert or a close; "
        "null for `encrypted`.",
    ),
]

_CATEGORIES = ("verdict", "basis", "tls_version", "client_version")
_DATETIMES = ("start_time", "end_time")


def _dtype(name: str, kind: str) -> str:
    if name in _CATEGORIES:
        return "category"
    if name in _DATETIMES:
        return "datetime64[ns, UTC]"  # packet times: integer nanoseconds
    if kind == "datetime":
        return "datetime64[us, UTC]"  # certificate dates: may lie past 2262 (ns cannot hold it)
    base = kind.split("|")[0]
    return {
        "integer": "Int64",
        "string": "string",
        "boolean": "boolean",
    }.get(base, "object")


def columns() -> list[tuple[str, str, str]]:
    """(column, JSON type or kind, meaning) of every column of a flat row, in order."""
    return list(FIELDS) + EXTRA_COLUMNS


def column_dtypes() -> dict[str, str]:
    """The pandas dtype of each column of `read_capture()`."""
    return {name: _dtype(name, kind) for name, kind, _ in columns()}


#: Elastic Common Schema names, for `read_capture(..., ecs=True)`. Columns without an ECS field
#: are put under `tlsinspect.`; `tls_version` is split into `tls.version` and
#: `tls.version_protocol`, and `tls.resumed` is added.
ECS_NAMES: dict[str, str] = {
    "file": "file.path",
    "start_time": "@timestamp",
    "end_time": "event.end",
    "client_ip": "client.ip",
    "client_port": "client.port",
    "server_ip": "server.ip",
    "server_port": "server.port",
    "sni": "tls.client.server_name",
    "tls_version": "tls.version",
    "cipher_suite": "tls.cipher",
    "established": "tls.established",
    **{
        f"{role}_{name}": f"tls.{role}.{ecs}"
        for role in ("client", "server")
        for name, ecs in (
            ("subject", "subject"),
            ("issuer", "issuer"),
            ("subject_cn", "x509.subject.common_name"),
            ("issuer_cn", "x509.issuer.common_name"),
            ("serial", "x509.serial_number"),
            ("not_before", "not_before"),
            ("not_after", "not_after"),
            ("sha256", "hash.sha256"),
            ("san", "x509.alternative_names"),
        )
    },
}

#: Columns that only exist with `ecs=True`, derived from others.
ECS_ADDED: list[tuple[str, str, str]] = [
    ("tls.version_protocol", "string", "`tls` or `ssl`: the protocol part of `tls_version`."),
    ("tls.resumed", "boolean", "The verdict is `resumed`."),
]


def ecs_name(column: str) -> str:
    return ECS_NAMES.get(column, f"tlsinspect.{column}")


def markdown_table() -> str:
    """The README's table of DataFrame columns: name, dtype, ECS name, meaning."""
    dtypes = column_dtypes()
    lines = ["| column | dtype | `ecs=True` name | meaning |", "|---|---|---|---|"]
    for name, _kind, doc in columns():
        lines.append(f"| `{name}` | {dtypes[name]} | `{ecs_name(name)}` | {doc} |")
        if name == "tls_version":
            for added, kind, added_doc in ECS_ADDED:
                lines.append(f"| | {_dtype(added, kind)} | `{added}` | {added_doc} |")
    return "\n".join(lines)


# -- building rows ---------------------------------------------------------------------------


def _leaf(role: str, chain: object, checks: object) -> Row:
    items = chain if isinstance(chain, list) else []
    leaf: Mapping[str, object] = items[0] if items else {}
    row: Row = {f"{role}_{name}": leaf.get(name) for name, _, _ in _LEAF[:8]}
    san = leaf.get("san")  # every chain item has them (x509.CertInfo.san)
    row[f"{role}_san"] = list(san) if isinstance(san, list) else []
    row[f"{role}_chain_length"] = len(items)
    report = checks.get(role) if isinstance(checks, Mapping) else None
    if isinstance(report, Mapping):
        failed = report.get("failed")
        row[f"{role}_chain_result"] = report.get("result")
        row[f"{role}_chain_failed"] = list(failed) if isinstance(failed, list) else []
    else:
        row[f"{role}_chain_result"], row[f"{role}_chain_failed"] = None, []
    return row


def established(d: Mapping[str, object]) -> bool | None:
    """Whether the handshake of a session dict completed (see EXTRA_COLUMNS)."""
    verdict = d.get("verdict")
    if verdict in ("mutual", "one-way", "resumed"):
        return True
    if verdict == "encrypted":
        return None
    if verdict == "cert-requested-not-sent":
        return _fatal(d) is None and not d.get("ended")
    return False


def _fatal(d: Mapping[str, object]) -> Mapping[str, object] | None:
    alerts = d.get("alerts")
    for a in alerts if isinstance(alerts, list) else ():
        if isinstance(a, Mapping) and a.get("level") == "fatal":
            return a
    return None


def extend(d: Mapping[str, object]) -> Row:
    """A session dict with the extra columns added: a projection of what it holds."""
    row: Row = dict(d)
    checks = d.get("chain_checks")
    for role in ("client", "server"):
        row.update(_leaf(role, d.get(f"{role}_chain"), checks))
    fatal = _fatal(d)
    row["fatal_alert"] = fatal.get("description") if fatal else None
    row["fatal_alert_sender"] = fatal.get("sender") if fatal else None
    row["established"] = established(d)
    return row


def flat_row(record: SessionRecord) -> Row:
    """One session as a flat row: `session_dict()` then the EXTRA_COLUMNS."""
    return extend(session_dict(record))


# -- CSV -------------------------------------------------------------------------------------


def csv_value(v: object) -> str:
    """A cell: empty for null, `true`/`false`, JSON text for arrays and objects."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | dict):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def csv_header() -> str:
    return _csv_line([name for name, _, _ in columns()])


def csv_line(row: Mapping[str, object]) -> str:
    return _csv_line([csv_value(row.get(name)) for name, _, _ in columns()])


def _csv_line(cells: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(cells))
    return buf.getvalue()


if __name__ == "__main__":  # python -m tlsinspect.report.flat: the README's column table
    print(markdown_table())
