"""Sessions and their certificates as Parquet files, for notebooks and data pipelines (pandas,
pyarrow, DuckDB, Spark, Polars read them).

The sessions file has the columns of `read_capture()` (`report.frame.sessions_frame`) with its
dtypes, which pandas gets back from the pandas metadata pyarrow writes: `string`, `Int64`,
`boolean`, `category` (ordered for the versions), `datetime64[ns, UTC]` for packet times and
`datetime64[us, UTC]` for certificate dates. The JSON arrays and objects are Parquet lists and
structs (`client_chain` a list of certificate structs, `chain_checks` a struct of two chain
reports), so that SQL engines can reach into them (`client_chain[1].subject` in DuckDB); pandas
gives them back as numpy arrays of Python values, as it does for any Parquet list. The
certificates file has the columns of `read_certificates()` (`report.frame.certificates_frame`).

Rows are written as sessions are logged, in row groups of `ROW_GROUP` sessions: a capture of any
size holds at most one row group of sessions in memory. Rows are in logging order (the `index`
column), as in JSON Lines; `read_capture()` orders them by start time.

pyarrow (a dependency of tlsinspect) is imported when a file is written, and only here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ..errors import require
from ..record import SessionRecord
from . import flat
from .frame import certificates_frame, frame_row, sessions_frame

# Sessions per row group: what is held in memory at once, as flat rows, a DataFrame and an Arrow
# table. Measured on 100,000 sessions: peak RSS 100 MB above the interpreter with pandas and
# pyarrow loaded (250 MB with 10,000 a group), and no slower.
ROW_GROUP = 2_000
CERTS_SUFFIX = ".certs.parquet"  # the certificates file beside `X.parquet`


def certificates_path(path: str) -> str:
    """Where the certificates of the sessions file `path` go: `X.parquet` -> `X.certs.parquet`."""
    stem = path[: -len(".parquet")] if path.endswith(".parquet") else path
    return stem + CERTS_SUFFIX


def _nested_types() -> dict[str, Any]:
    """The Parquet type of every column the DataFrame holds as Python objects (the JSON arrays
    and objects); their keys and value types are those of `schema.session_dict()`."""
    import pyarrow as pa

    strings = pa.list_(pa.string())
    check = pa.struct([("check", pa.string()), ("result", pa.string()), ("detail", pa.string())])
    cert = pa.struct(
        [
            ("subject", pa.string()),
            ("issuer", pa.string()),
            ("subject_cn", pa.string()),
            ("issuer_cn", pa.string()),
            ("serial", pa.string()),
            ("not_before", pa.string()),
            ("not_after", pa.string()),
            ("sha256", pa.string()),
            ("error", pa.string()),
            ("san", strings),
            ("key_type", pa.string()),
            ("key_bits", pa.int64()),
            ("key_curve", pa.string()),
            ("signature_algorithm", pa.string()),
            ("is_ca", pa.bool_()),
            ("key_usage", strings),
            ("extended_key_usage", strings),
            ("checks", pa.list_(check)),
        ]
    )
    report = pa.struct(
        [
            ("result", pa.string()),
            ("failed", strings),
            ("warnings", strings),
            ("checks", pa.list_(check)),
        ]
    )
    alert = pa.struct(
        [
            ("sender", pa.string()),
            ("level", pa.string()),
            ("description", pa.string()),
            ("encrypted", pa.bool_()),
        ]
    )
    origin = pa.struct(
        [
            ("verdict", pa.string()),
            ("client", pa.string()),
            ("start_time", pa.string()),
            ("client_subject", pa.string()),
        ]
    )
    types = {
        "client_chain": pa.list_(cert),
        "server_chain": pa.list_(cert),
        "chain_checks": pa.struct([("client", report), ("server", report)]),
        "alerts": pa.list_(alert),
        "resumed_from": origin,
    }
    for name in ("alpn", "requested_ca_names", "handshake", "anomalies"):
        types[name] = strings
    for role in ("client", "server"):
        types[f"{role}_san"] = types[f"{role}_chain_failed"] = strings
    # read_certificates() spreads a chain item's keys after `error` into columns of their own
    for field in cert:
        types.setdefault(field.name, field.type)
    return types


def _schema(empty: Any, nested: dict[str, Any]) -> Any:
    """The Arrow schema of a frame: what pyarrow makes of its typed columns, and `nested` for
    the columns of Python objects (which an empty frame does not tell)."""
    import pyarrow as pa

    inferred = pa.Schema.from_pandas(empty, preserve_index=False)
    fields = []
    for field in inferred:
        if str(empty[field.name].dtype) == "object":
            if field.name not in nested:
                raise ValueError(f"column {field.name!r} has no Parquet type")
            field = pa.field(field.name, nested[field.name])
        elif pa.types.is_dictionary(field.type):  # room for any number of categories
            kind = field.type
            field = pa.field(field.name, pa.dictionary(pa.int32(), kind.value_type, kind.ordered))
        fields.append(field)
    return pa.schema(fields)


def sessions_schema() -> Any:
    """The Arrow schema of the sessions file."""
    return _schema(sessions_frame([]), _nested_types())


def certificates_schema() -> tuple[Any, dict[str, str]]:
    """The Arrow schema of the certificates file: `read_certificates()`'s declared columns with
    the chain item's own keys after `error`, as they come in the JSON output; and the pandas
    dtype those keys are given in every batch (`read_certificates()` infers them from the values,
    so a batch with no EC key would otherwise make `key_curve` a column of objects)."""
    import pyarrow as pa

    nested = _nested_types()
    base = certificates_frame(sessions_frame([]))
    names = list(base.columns)
    at = names.index("error") + 1
    item = list(nested["client_chain"].value_type)
    extra = item[[f.name for f in item].index("error") + 1 :]
    scalar = {pa.string(): "string", pa.int64(): "Int64", pa.bool_(): "boolean"}
    dtypes = {f.name: scalar.get(f.type, "object") for f in extra}
    empty = base.reindex(columns=names[:at] + list(dtypes) + names[at:])
    for name, dtype in dtypes.items():
        empty[name] = empty[name].astype(dtype)
    return _schema(empty, nested), dtypes


class _Table:
    """One Parquet file written a row group at a time, with the pandas metadata of its first
    batch (every batch has the same declared dtypes)."""

    def __init__(self, path: str | Any, schema: Any, dtypes: dict[str, str] | None = None) -> None:
        self.path = path
        self.schema = schema
        self.dtypes = dtypes or {}  # columns given these pandas dtypes in every batch
        self.writer: Any = None

    def write(self, frame: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        missing = [n for n in self.schema.names if n not in frame.columns]
        if missing:  # a batch without certificates lacks the columns of their keys
            frame = frame.assign(**dict.fromkeys(missing))
            frame[missing] = frame[missing].astype(object)
        frame = frame[self.schema.names]
        if self.dtypes:
            frame = frame.astype(self.dtypes)
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self.writer.write_table(table, row_group_size=max(len(frame), 1))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_parquet(
    records: Iterable[SessionRecord],
    path: str | os.PathLike[str] | Any,
    file: str | None = None,
    certificates: str | os.PathLike[str] | None = None,
) -> int:
    """Write every session to the Parquet file `path` (a path or a binary file object) as it is
    logged, `file` in the `file` column; with `certificates`, one row per certificate of every
    chain to that second file. Return the number of sessions.

    Raises:
        MissingPackage: pyarrow cannot be imported.
        OSError: a file cannot be written.
    """
    require("pyarrow.parquet", "Parquet output")
    require("pandas", "Parquet output")
    sessions = _Table(os.fspath(path) if isinstance(path, os.PathLike) else path, sessions_schema())
    certs = _Table(os.fspath(certificates), *certificates_schema()) if certificates else None
    rows: list[flat.Row] = []
    n = 0

    def flush() -> None:
        frame = sessions_frame(rows)
        sessions.write(frame)
        if certs is not None:
            certs.write(certificates_frame(frame))
        rows.clear()

    try:
        for record in records:
            rows.append(frame_row(record, record.file or file))
            n += 1
            if len(rows) >= ROW_GROUP:
                flush()
        if rows or sessions.writer is None:  # an empty capture still gets its columns
            flush()
    finally:
        sessions.close()
        if certs is not None:
            certs.close()
    return n
