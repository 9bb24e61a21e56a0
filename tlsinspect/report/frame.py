"""The notebook API: sessions and certificates as pandas DataFrames, sessions that render as HTML.

pandas and tqdm are imported when a function needs them (`pip install 'tlsinspect[frames]'`), so
the command line never loads them. `read_sessions()` needs neither.

- `read_capture(paths)`: one row per session, the columns of `report.flat` with the pandas dtypes
  of `flat.column_dtypes()`, and a `file` column. Times are datetime64[ns, UTC] from the packets'
  nanosecond timestamps; certificate validity dates are datetime64[us, UTC], because a
  certificate may be valid until 9999, past what nanoseconds can hold (2262).
- `read_certificates(paths or frame)`: one row per certificate of every chain, with the session
  it came from, the side that sent it and its position (0 = leaf).
- `read_sessions(paths)`: `Session` objects, which render in a notebook as verdict, reason and the
  two chains as trees.

Several captures are read at once from a list, a glob (`"captures/*.pcap*"`) or both. Rows come
in the order of the JSON output (start time, then index) capture by capture.

Progress: a tqdm bar on stderr (or a notebook widget when ipywidgets is there) over the bytes of
the capture files, shown when stderr is a terminal or the code runs in a notebook, and only for
captures bigger than `BIG_CAPTURE` bytes or reading that lasts longer than `PROGRESS_DELAY` s.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..model import Basis, Verdict
from ..pipeline import SessionRecord
from ..tls.registry import VERSIONS
from . import flat
from .html import session_html
from .schema import session_dict
from .table import VERDICT_ORDER

if TYPE_CHECKING:
    import pandas as pd

    from ..capture import CaptureSource

PathLike = str | os.PathLike[str]
Paths = PathLike | Iterable[PathLike]
KeyLogs = PathLike | Sequence[PathLike] | None  # one or several NSS key log files

BIG_CAPTURE = 50 * 1024 * 1024  # bytes: show progress at once
PROGRESS_DELAY = 1.0  # seconds: for smaller captures, show progress once reading takes this long

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
    ("serial", "string", "Serial number (hex)."),
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


# -- inputs ------------------------------------------------------------------------------------


def capture_paths(paths: Paths) -> list[str]:
    """Expand one path, a glob or a list of both into capture paths, in the order given.

    A glob is expanded in sorted order; one that matches nothing raises FileNotFoundError.
    """
    items: Iterable[PathLike] = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[str] = []
    for item in items:
        name = os.fspath(item)
        if isinstance(item, str) and glob.has_magic(name) and not os.path.exists(name):
            found = sorted(glob.glob(name, recursive=True))
            if not found:
                raise FileNotFoundError(f"no capture matches {name!r}")
            out += found
        else:
            out.append(name)
    if not out:
        raise ValueError("no capture given")
    return out


def _analyze(path: str, keylog: KeyLogs, on_open: Callable[[CaptureSource], object]):
    from .. import analyze

    kwargs: dict[str, Any] = {"on_open": on_open}
    if keylog is not None:
        kwargs["keylog"] = keylog
    return analyze(path, **kwargs)


def _order(r: SessionRecord) -> tuple[int, int]:
    return (r.facts.start_ts, r.index)


def iter_records(
    paths: Paths, keylog: KeyLogs = None, progress: bool | None = None
) -> Iterator[tuple[str, SessionRecord, list[str]]]:
    """(file, record, problems of that file) for every session, capture by capture, in order.

    `problems` is the list the capture reader fills: complete once the file's last record came.
    """
    files = capture_paths(paths)
    bar = Progress(files, progress)
    try:
        for path in files:
            sources: list[CaptureSource] = []
            records = []
            for r in _analyze(path, keylog, sources.append):
                records.append(r)
                bar.update(sources[0].bytes_read)
            bar.file_done()
            problems = list(sources[0].problems) if sources else []
            records.sort(key=_order)
            for r in records:
                yield path, r, problems
    finally:
        bar.close()


# -- progress --------------------------------------------------------------------------------


def in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class Progress:
    """A tqdm bar over the bytes of several files, or nothing (see the module docstring).

    `progress`: None decides as described there; True shows it at once (when tqdm is
    installed), False never.
    """

    def __init__(self, files: list[str], progress: bool | None) -> None:
        self.bar: Any = None
        self.current = 0  # bytes of the current file shown so far
        self.sizes: list[int] = []
        if progress is False:
            return
        for f in files:
            try:
                self.sizes.append(os.path.getsize(f))
            except OSError:
                self.sizes.append(0)
        total = sum(self.sizes)
        notebook = in_notebook()
        if progress is None and not (notebook or _stderr_is_terminal()):
            return
        delay = 0.0 if progress or total > BIG_CAPTURE else PROGRESS_DELAY
        try:
            if notebook:
                try:
                    import ipywidgets  # noqa: F401
                    from tqdm.notebook import tqdm
                except ImportError:
                    from tqdm.std import tqdm
            else:
                from tqdm.std import tqdm
        except ImportError:
            return
        self.bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            delay=delay,
            file=sys.stderr,
            desc=os.path.basename(files[0]) if len(files) == 1 else f"{len(files)} captures",
            leave=False,
        )

    def update(self, bytes_read: int) -> None:
        if self.bar is not None and bytes_read > self.current:
            self.bar.update(bytes_read - self.current)
            self.current = bytes_read

    def file_done(self) -> None:
        if self.sizes:
            self.update(self.sizes.pop(0))
        self.current = 0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# -- sessions ----------------------------------------------------------------------------------


class Session:
    """One TLS session: its JSON fields as attributes and items, rendered as HTML in notebooks.

    `record` is the pipeline's SessionRecord (facts and decision), `row` the flat row (JSON
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


def read_sessions(
    paths: Paths, keylog: KeyLogs = None, *, progress: bool | None = None
) -> SessionList:
    """Every session of the captures as a `Session`, in the order of `read_capture()`."""
    return SessionList(Session(r, f) for f, r, _ in iter_records(paths, keylog, progress))


# -- DataFrames --------------------------------------------------------------------------------


def read_capture(
    paths: Paths,
    keylog: KeyLogs = None,
    *,
    ecs: bool = False,
    progress: bool | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """One row per TLS session of the captures; see the module docstring and the README.

    `ca_bundle`: a PEM file of trusted CAs, for the `ca_bundle` check of every chain (in
    `chain_checks`, `client_chain_failed`, `server_chain_failed`).
    """
    from .. import read_ca_bundle

    anchors = read_ca_bundle(ca_bundle)
    rows: list[flat.Row] = []
    problems: dict[str, list[str]] = {}
    for path, r, found in iter_records(paths, keylog, progress):
        row: flat.Row = {"file": path, **flat.flat_row(r, anchors)}
        row["start_time"] = r.facts.start_ts
        row["end_time"] = r.facts.end_ts or r.facts.start_ts
        rows.append(row)
        problems[path] = found
    frame = sessions_frame(rows)
    frame.attrs["problems"] = {p: v for p, v in problems.items() if v}
    return to_ecs(frame) if ecs else frame


def _column_order(rows: list[flat.Row]) -> list[str]:
    names = [flat.FILE_COLUMN[0]] + [n for n, _, _ in flat.columns()]
    seen = set(names)
    for row in rows[:1]:
        names += [k for k in row if k not in seen]
    return names


def _utc(values: list[object], unit: str) -> Any:
    import pandas as pd

    dtype = pd.DatetimeTZDtype(unit=unit, tz="UTC")
    if unit == "ns":
        ints = pd.array([v if isinstance(v, int) else None for v in values], dtype="Int64")
        return pd.to_datetime(ints, unit="ns", utc=True).astype(dtype)
    stamps = [datetime.fromisoformat(str(v)) if v else None for v in values]
    return pd.array(stamps, dtype=dtype)


def _categorical(values: Sequence[object], known: Sequence[str], ordered: bool) -> Any:
    import pandas as pd

    cats = list(known) + sorted({str(v) for v in values if v is not None} - set(known))
    return pd.Categorical(values, categories=cats, ordered=ordered)


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
    for col in ("client_sha256", "server_sha256", "client_serial", "server_serial"):
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


def read_certificates(
    source: Paths | pd.DataFrame,
    keylog: KeyLogs = None,
    *,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per certificate of every chain: of the captures, or of a `read_capture()` frame."""
    import pandas as pd

    frame = (
        source
        if isinstance(source, pd.DataFrame)
        else read_capture(source, keylog, progress=progress)
    )
    missing = {"client_chain", "server_chain", "index", "start_time"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"not a read_capture() frame (ecs=False): no column {', '.join(sorted(missing))}"
        )
    rows: list[dict[str, object]] = []
    extra: list[str] = []
    base = {n for n, _, _ in CERT_COLUMNS}
    for s in frame.to_dict("records"):
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
    unknown = out["not_before"].isna() | out["not_after"].isna()
    out["valid_at_capture"] = valid.astype("boolean").mask(unknown, pd.NA)
    return out
