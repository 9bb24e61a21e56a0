"""The notebook API: sessions and certificates of captures as pandas DataFrames, and sessions
that render as HTML (the projections themselves are `report.frame`'s).

pandas and tqdm (installed with tlsinspect) are imported when a function needs them, so the
command line never loads them. `read_sessions()` needs neither.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import tlsinspect

from .errors import require
from .record import SessionRecord
from .report import flat
from .report.frame import (
    Session,
    SessionList,
    certificates_frame,
    frame_row,
    is_frame,
    sessions_frame,
    to_ecs,
)

if TYPE_CHECKING:
    import pandas as pd

    from .capture import CaptureSource

PathLike = str | os.PathLike[str]
Paths = PathLike | Iterable[PathLike]
KeyLogs = PathLike | Sequence[PathLike] | None  # one or several NSS key log files

BIG_CAPTURE = 50 * 1024 * 1024  # bytes: show progress at once
PROGRESS_DELAY = 1.0  # seconds: for smaller captures, show progress once reading takes this long


# -- reading captures ------------------------------------------------------------------------------------


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


def _analyze(
    path: str,
    keylog: KeyLogs,
    on_open: Callable[[CaptureSource], object],
    ca_bundle: PathLike | None,
) -> Iterator[SessionRecord]:
    """`tlsinspect.analyze` on one capture, given only the options the caller gave."""
    kwargs: dict[str, Any] = {"on_open": on_open}
    if keylog is not None:
        kwargs["keylog"] = keylog
    if ca_bundle is not None:
        kwargs["ca_bundle"] = ca_bundle
    return tlsinspect.analyze(path, **kwargs)


def _order(r: SessionRecord) -> tuple[int, int]:
    return (r.facts.start_ts, r.index)


def iter_records(
    paths: Paths,
    keylog: KeyLogs = None,
    progress: bool | None = None,
    ca_bundle: PathLike | None = None,
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
            for r in _analyze(path, keylog, sources.append, ca_bundle):
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


def read_sessions(
    paths: Paths, keylog: KeyLogs = None, *, progress: bool | None = None
) -> SessionList:
    """Every session of the captures as a `Session`, in the order of `read_capture()`."""
    return SessionList(Session(r, f) for f, r, _ in iter_records(paths, keylog, progress))


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
    require("pandas", "read_capture()")  # before the analysis, not after it
    rows: list[flat.Row] = []
    problems: dict[str, list[str]] = {}
    for path, r, found in iter_records(paths, keylog, progress, ca_bundle):
        rows.append(frame_row(r, path))
        problems[path] = found
    frame = sessions_frame(rows)
    frame.attrs["problems"] = {p: v for p, v in problems.items() if v}
    return to_ecs(frame) if ecs else frame


def read_certificates(
    source: Paths | pd.DataFrame,
    keylog: KeyLogs = None,
    *,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per certificate of every chain: of the captures, or of a `read_capture()` frame."""
    if is_frame(source):
        return certificates_frame(source)
    return certificates_frame(read_capture(source, keylog, progress=progress))
