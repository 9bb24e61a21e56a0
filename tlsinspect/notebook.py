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
- `summary(paths or frame)`: one row per server (`report.summary`): sessions per verdict, the
  names it answered for, the client identities and issuers seen, the TLS versions.

Several captures are read at once from a list, a glob (`"captures/*.pcap*"`), a directory (its
capture files, recursively) or all of these. The files of a rotated series (tcpdump -C/-G,
dumpcap ring buffers) are read as one capture, so that a connection crossing a file boundary is
one row (`series=False` reads them apart; see `capture.inputs` for the rule). Rows come in the
order of the JSON output (start time, then index) capture by capture; `file` is the file where a
session started. `frame.attrs["notes"]` says what was skipped in a directory and which files
named like a series were read apart.

Progress: a tqdm bar on stderr (or a notebook widget when ipywidgets is there) over the bytes of
the capture files, shown when stderr is a terminal or the code runs in a notebook, and only for
captures bigger than `BIG_CAPTURE` bytes or reading that lasts longer than `PROGRESS_DELAY` s.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import tlsinspect

from .capture.inputs import capture_paths, open_input, plan
from .engines.builtin import Analyzer, CaptureKeys
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
    summary_frame,
    to_ecs,
)
from .report.select import Selection, Values, selection
from .report.summary import summarize

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | os.PathLike[str]
Paths = PathLike | Iterable[PathLike]
KeyLogs = PathLike | Sequence[PathLike] | None  # one or several NSS key log files

BIG_CAPTURE = 50 * 1024 * 1024  # bytes: show progress at once
PROGRESS_DELAY = 1.0  # seconds: for smaller captures, show progress once reading takes this long


# -- reading captures ------------------------------------------------------------------------------------


def _keylog_list(keylog: KeyLogs) -> list[PathLike] | None:
    if keylog is None:
        return None
    return [keylog] if isinstance(keylog, str | os.PathLike) else list(keylog)


def _order(r: SessionRecord) -> tuple[int, int]:
    return (r.facts.start_ts, r.index)


def iter_records(
    paths: Paths,
    keylog: KeyLogs = None,
    progress: bool | None = None,
    ca_bundle: PathLike | None = None,
    series: bool | None = None,
    notes: list[str] | None = None,
    select: Selection | None = None,
) -> Iterator[tuple[str, SessionRecord, list[str]]]:
    """(file, record, problems of its capture) for every session, capture by capture, in order.

    Paths are expanded by `capture.inputs.capture_paths` (files, directories, globs), and the
    files of a rotated series are read as one capture (`series`: None by their names, True all
    as one, False each apart; see `capture.inputs`). `notes` gets what the expansion skipped
    and the series not read as one. `problems` is complete once the capture's last record came.
    `select` keeps only the sessions it matches.
    """
    notes = notes if notes is not None else []
    files = capture_paths(paths, notes)
    anchors = tlsinspect.read_ca_bundle(ca_bundle)
    keylogs = tlsinspect.read_keylogs(_keylog_list(keylog))
    inputs = plan(files, series, notes)
    bar = Progress(files, progress)
    try:
        for inp in inputs:
            with open_input(inp) as source:
                analyzer = Analyzer(CaptureKeys(keylogs, source.secrets), anchors)
                records = []
                for r in analyzer.run(source):
                    if select is None or select.matches(r):
                        records.append(r)
                    bar.update(source.bytes_read)
                problems = list(source.problems)
            bar.file_done(len(inp.paths))
            records.sort(key=_order)
            for r in records:
                yield r.file or inp.paths[0], r, problems
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
            desc=os.path.basename(files[0]) if len(files) == 1 else f"{len(files)} capture files",
            leave=False,
        )

    def update(self, bytes_read: int) -> None:
        if self.bar is not None and bytes_read > self.current:
            self.bar.update(bytes_read - self.current)
            self.current = bytes_read

    def file_done(self, files: int = 1) -> None:
        """A capture read to its end: its `files` (a series has several) count whole."""
        done = self.sizes[:files]
        del self.sizes[:files]
        if done:
            self.update(sum(done))
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
    paths: Paths,
    keylog: KeyLogs = None,
    *,
    progress: bool | None = None,
    series: bool | None = None,
    verdict: Values = None,
    server: Values = None,
    port: Values = None,
    client_identity: Values = None,
) -> SessionList:
    """Every session of the captures as a `Session`, in the order of `read_capture()`; the
    series and selection arguments as `read_capture()`'s."""
    sel = selection(verdict, server, port, client_identity)
    records = iter_records(paths, keylog, progress, series=series, select=sel)
    return SessionList(Session(r, f) for f, r, _ in records)


def read_capture(
    paths: Paths,
    keylog: KeyLogs = None,
    *,
    ecs: bool = False,
    progress: bool | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    series: bool | None = None,
    verdict: Values = None,
    server: Values = None,
    port: Values = None,
    client_identity: Values = None,
) -> pd.DataFrame:
    """One row per TLS session of the captures; see the module docstring and the README.

    `ca_bundle`: a PEM file of trusted CAs, for the `ca_bundle` check of every chain (in
    `chain_checks`, `client_chain_failed`, `server_chain_failed`). `series`: None reads the
    files of a rotated series as one capture (by their names), True all files as one series,
    False each file apart. `verdict`, `server`, `port`
    and `client_identity` keep only the sessions the command line's options of those names
    keep (a value or a list each; `tlsinspect.report.select` says what they match).

    Raises:
        ValueError: a selection value that means nothing, before any capture is read.
    """
    require("pandas", "read_capture()")  # before the analysis, not after it
    sel = selection(verdict, server, port, client_identity)
    rows: list[flat.Row] = []
    problems: dict[str, list[str]] = {}
    notes: list[str] = []
    for path, r, found in iter_records(paths, keylog, progress, ca_bundle, series, notes, sel):
        rows.append(frame_row(r, path))
        problems[path] = found
    frame = sessions_frame(rows)
    frame.attrs["problems"] = {p: v for p, v in problems.items() if v}
    frame.attrs["notes"] = notes
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


def summary(
    source: Paths | pd.DataFrame,
    keylog: KeyLogs = None,
    *,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per server (address and port) of the captures, or of a `read_capture()` frame
    (for a selection, select when reading: `summary(read_capture(path, verdict="mutual"))`).
    The columns are `report.summary.SUMMARY_FIELDS`, as `tlsinspect --summary` writes them.

    Raises:
        ValueError: a frame that is not a `read_capture()` frame (`ecs=True` names its
            columns otherwise).
    """
    frame: Any = source if is_frame(source) else read_capture(source, keylog, progress=progress)
    missing = {"server_ip", "server_port", "verdict", "client_subject_cn"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"not a read_capture() frame (ecs=False): no column {', '.join(sorted(missing))}"
        )
    return summary_frame(summarize(frame.to_dict("records")))
