"""Sessions and certificates as pandas DataFrames, and sessions that render as HTML: the
projections of session records the notebook API (`tlsinspect.notebook`) returns.

pandas is imported when a function needs it. Session times are datetime64[ns, UTC] from the
packets' nanosecond timestamps; certificate validity dates are datetime64[us, UTC], because a
certificate may be valid until 9999, past what nanoseconds can hold (2262).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..model import Basis, Verdict
from ..record import SessionRecord
from ..tls.registry import VERSIONS
from . import flat
from .html import session_html
from .schema import session_dict
from .summary import SUMMARY_FIELDS
from .table import VERDICT_ORDER

if TYPE_CHECKING:
    import pandas as pd

VERDICTS = list(VERDICT_ORDER) + [v.value for v in Verdict if v.value not in VERDICT_ORDER]
BASES = [b.value for b in Basis]
TLS_VERSIONS = [VERSIONS[k] for k in sorted(VERSIONS)]

#: (column, dtype, meaning) of `read_certificates()`; the keys a chain item adds later in the
#: JSON output come after `error`, as they are.
CERT_COLUMNS: list[tuple[str, str, str]] = [
    ("file", "string", "Path of the capture."),
    ("session", "Int64", "`index` of the session that carried the certificate."),
    ("role", "category", "`client` or `server`: who sent it."),
    ("position", "Int64", "Place in the chain as sent: 0 for the leaf."),
    ("subject", "string", "Subject distinguished name."),
    ("issuer", "string", "Issuer distinguished name."),
    ("subject_cn", "string", "Subject common name."),
    ("issuer_cn", "string", "Issuer common name."),
    (
        "serial",
        "string",
        "Serial number (upper-case hex in whole bytes, as OpenSSL and Zeek print it).",
    ),
    ("not_before", "datetime64[us, UTC]", "Start of validity."),
    ("not_after", "datetime64[us, UTC]", "End of validity."),
    ("sha256", "string", "SHA-256 fingerprint of the DER certificate (hex)."),
    ("error", "string", "Why the certificate could not be parsed, else null."),
    ("session_start", "datetime64[ns, UTC]", "`start_time` of the session: the capture time."),
    ("server_ip", "string", "Server address of the session."),
    ("server_port", "Int64", "Server port of the session."),
    ("sni", "string", "SNI of the session."),
    ("verdict", "category", "Verdict of the session."),
    (
        "days_left",
        "Float64",
        "Days from the session's start to `not_after` (negative: expired at capture time).",
    ),
    (
        "valid_at_capture",
        "boolean",
        "`not_before` <= session start <= `not_after`; null when the dates are unknown.",
    ),
]


def cert_markdown_table() -> str:
    """The README's table of `read_certificates()` columns."""
    lines = ["| column | dtype | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {t} | {doc} |" for n, t, doc in CERT_COLUMNS]
    return "\n".join(lines)


# -- sessions ----------------------------------------------------------------------------------


class Session:
    """One TLS session: its JSON fields as attributes and items, rendered as HTML in notebooks.

    `record` is the session's SessionRecord, `row` the flat row (JSON
    fields and extra columns), `file` the capture it came from.
    """

    __slots__ = ("record", "row", "file")

    def __init__(self, record: SessionRecord, file: str | None = None) -> None:
        self.record = record
        self.row = flat.flat_row(record)
        self.file = file

    def __getattr__(self, name: str) -> object:
        try:
            return self.row[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> object:
        return self.row[name]

    def to_dict(self) -> dict[str, object]:
        """The session as in the JSON output."""
        return session_dict(self.record)

    def _repr_html_(self) -> str:
        return session_html({**self.row, "file": self.file})

    def __repr__(self) -> str:
        r = self.row
        sni = f" {r['sni']}" if r.get("sni") else ""
        return (
            f"<Session #{r['index']} {r['verdict']} {r['client_ip']}:{r['client_port']} -> "
            f"{r['server_ip']}:{r['server_port']}{sni}>"
        )


class SessionList(list[Session]):
    """A list of sessions that renders each of them in a notebook (the first `SHOWN`)."""

    SHOWN = 50

    def _repr_html_(self) -> str:
        parts = [s._repr_html_() for s in self[: self.SHOWN]]
        if len(self) > self.SHOWN:
            parts.append(f"<p>... and {len(self) - self.SHOWN} more sessions</p>")
        return "\n".join(parts) or "<p>no TLS session</p>"


# -- DataFrames --------------------------------------------------------------------------------


def _column_order(rows: list[flat.Row]) -> list[str]:
    names = [n for n, _, _ in flat.columns()]
    seen = set(names)
    for row in rows[:1]:
        names += [k for k in row if k not in seen]
    return names


_NS_MIN, _NS_MAX = -(2**63) + 1, 2**63 - 1  # int64, but its minimum (NaT)


def _utc(values: list[object], unit: str) -> Any:
    import pandas as pd

    dtype = pd.DatetimeTZDtype(unit=unit, tz="UTC")
    if unit == "ns":
        # a packet time outside what int64 nanoseconds hold (1677 to 2262) is NaT: such a time
        # is a damaged timestamp, which the session's anomalies name (time_not_a_date)
        ints = pd.array(
            [v if isinstance(v, int) and _NS_MIN <= v <= _NS_MAX else None for v in values],
            dtype="Int64",
        )
        return pd.to_datetime(ints, unit="ns", utc=True).astype(dtype)
    stamps = [datetime.fromisoformat(str(v)) if v else None for v in values]
    return pd.array(stamps, dtype=dtype)


def _categorical(values: Sequence[object], known: Sequence[str], ordered: bool) -> Any:
    import pandas as pd

    cats = list(known) + sorted({str(v) for v in values if v is not None} - set(known))
    return pd.Categorical(values, categories=cats, ordered=ordered)


def frame_row(record: SessionRecord, file: str | None) -> flat.Row:
    """One session as a row of `sessions_frame()`: the flat row, its capture's path in front,
    and the packet times as integer nanoseconds."""
    row: flat.Row = {"file": file, **flat.flat_row(record)}
    row["start_time"] = record.facts.start_ts
    row["end_time"] = record.facts.end_ts or record.facts.start_ts
    return row


def sessions_frame(rows: list[flat.Row]) -> pd.DataFrame:
    """Flat rows (with `start_time`/`end_time` as integer nanoseconds) to a typed DataFrame."""
    import pandas as pd

    dtypes = flat.column_dtypes()
    data: dict[str, Any] = {}
    for name in _column_order(rows):
        values = [row.get(name) for row in rows]
        dtype = dtypes.get(name, "object")
        if name in ("start_time", "end_time"):
            data[name] = _utc(values, "ns")
        elif dtype.startswith("datetime64"):
            data[name] = _utc(values, "us")
        elif name == "verdict":
            data[name] = _categorical(values, VERDICTS, ordered=False)
        elif name == "basis":
            data[name] = _categorical(values, BASES, ordered=False)
        elif dtype == "category":
            data[name] = _categorical(values, TLS_VERSIONS, ordered=True)
        elif dtype == "object":
            s = pd.Series(values, dtype=object)
            data[name] = s.array
        else:
            data[name] = pd.array(values, dtype=dtype)
    return pd.DataFrame(data, columns=list(data))


_VERSION_SPLIT = {v: tuple(v.lower().split(" ", 1)) for v in TLS_VERSIONS}


def to_ecs(frame: pd.DataFrame) -> pd.DataFrame:
    """The same sessions under Elastic Common Schema names (see `flat.ECS_NAMES`)."""
    import pandas as pd

    out = frame.copy()
    if "tls_version" in out:
        versions = out["tls_version"].astype(object)
        split = [
            _VERSION_SPLIT.get(v, (None, v)) if isinstance(v, str) else (None, None)
            for v in versions
        ]
        number = [s[1] for s in split]
        known = [v.split(" ", 1)[1] for v in TLS_VERSIONS]
        pos = list(out.columns).index("tls_version")
        out["tls_version"] = _categorical(number, known, ordered=True)
        out.insert(pos + 1, "tls.version_protocol", pd.array([s[0] for s in split], dtype="string"))
    if "verdict" in out:
        resumed = out["verdict"].astype(object) == "resumed"
        out.insert(list(out.columns).index("verdict") + 1, "tls.resumed", resumed.astype("boolean"))
    for col in ("client_sha256", "server_sha256"):  # serials are upper case already
        if col in out:
            out[col] = out[col].str.upper()
    for col in ("client_san", "server_san"):  # ECS lists the names without their type
        if col in out:
            out[col] = out[col].map(
                lambda names: [n.split(":", 1)[1] for n in names] if isinstance(names, list) else []
            )
    return out.rename(
        columns={c: flat.ecs_name(c) for c in out.columns if not c.startswith("tls.")}
    )


def is_frame(obj: object) -> bool:
    """`obj` is a pandas DataFrame."""
    import pandas as pd

    return isinstance(obj, pd.DataFrame)


#: The columns of a sessions frame that `certificates_frame()` reads.
_CERT_SOURCE = (
    "file",
    "index",
    "start_time",
    "server_ip",
    "server_port",
    "sni",
    "verdict",
    "client_chain",
    "server_chain",
)


def certificates_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per certificate of every chain of a `read_capture()` frame."""
    missing = {"client_chain", "server_chain", "index", "start_time"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"not a read_capture() frame (ecs=False): no column {', '.join(sorted(missing))}"
        )
    rows: list[dict[str, object]] = []
    extra: list[str] = []
    base = {n for n, _, _ in CERT_COLUMNS}
    used = [c for c in _CERT_SOURCE if c in frame.columns]  # not all 60: each row is copied
    for s in frame[used].to_dict("records"):
        for role in ("client", "server"):
            chain = s.get(f"{role}_chain")
            for pos, cert in enumerate(chain if isinstance(chain, list) else []):
                row: dict[str, object] = {
                    "file": s.get("file"),
                    "session": s["index"],
                    "role": role,
                    "position": pos,
                    "session_start": s["start_time"],
                    "server_ip": s.get("server_ip"),
                    "server_port": s.get("server_port"),
                    "sni": s.get("sni"),
                    "verdict": s.get("verdict"),
                }
                for k, v in cert.items() if isinstance(cert, Mapping) else ():
                    if k not in row:
                        row[k] = v
                        if k not in base and k not in extra:
                            extra.append(k)
                rows.append(row)
    return _certificates_frame(rows, extra, frame)


def _inferred(values: list[object]) -> Any:
    """A column of values whose type is not declared: nullable boolean, Int64 or string when
    every value that is not null is one, else objects."""
    import pandas as pd

    present = [v for v in values if v is not None]
    for kind, dtype in ((bool, "boolean"), (int, "Int64"), (str, "string")):
        if present and all(type(v) is kind for v in present):
            return pd.array(values, dtype=dtype)
    return pd.Series(values, dtype=object).array


def _certificates_frame(
    rows: list[dict[str, object]], extra: list[str], frame: pd.DataFrame
) -> pd.DataFrame:
    import pandas as pd

    data: dict[str, Any] = {}
    for name, dtype, _ in CERT_COLUMNS:
        values = [row.get(name) for row in rows]
        if name in ("days_left", "valid_at_capture"):
            continue
        if name == "session_start":
            data[name] = pd.array(values, dtype=frame["start_time"].dtype)
        elif dtype.startswith("datetime64"):
            data[name] = _utc(values, "us")
        elif name == "role":
            data[name] = pd.Categorical(values, categories=["client", "server"])
        elif name == "verdict":
            known = list(frame["verdict"].cat.categories) if len(frame) else VERDICTS
            data[name] = pd.Categorical(
                [None if v is None else str(v) for v in values], categories=known
            )
        else:
            data[name] = pd.array(
                [None if v is pd.NA or v is None else v for v in values], dtype=dtype
            )
        if name == "error":
            for e in extra:
                data[e] = _inferred([row.get(e) for row in rows])
    out = pd.DataFrame(data, columns=list(data))
    start = out["session_start"]
    left = (out["not_after"] - start) / pd.Timedelta(days=1)
    out["days_left"] = left.astype("Float64")
    valid = (out["not_before"] <= start) & (start <= out["not_after"])
    unknown = out["not_before"].isna() | out["not_after"].isna() | start.isna()
    out["valid_at_capture"] = valid.astype("boolean").mask(unknown, pd.NA)
    return out


# -- the per-server summary ---------------------------------------------------------------------


def summary_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """`report.summary` rows as a DataFrame: counts and the port Int64, addresses strings,
    lists and objects Python objects."""
    import pandas as pd

    data: dict[str, Any] = {}
    for name, kind, _ in SUMMARY_FIELDS:
        values = [r[name] for r in rows]
        if kind == "integer":
            data[name] = pd.array(values, dtype="Int64")
        elif kind == "string":
            data[name] = pd.array(values, dtype="string")
        else:
            data[name] = pd.Series(values, dtype=object).array
    return pd.DataFrame(data, columns=[n for n, _, _ in SUMMARY_FIELDS])
