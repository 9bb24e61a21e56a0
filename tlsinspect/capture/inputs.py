"""Which capture files a command reads, and how: paths, directories and globs expanded into files
(`capture_paths`), the files of a rotated series grouped to be read as one capture (`plan`), and
the source that reads a series file after file (`SeriesSource`, from `open_input`).

What the command line (`tlsinspect PATH...`, `tlsinspect check`) and the notebook API
(`read_capture`) take is expanded here once:

- a file is read as given (one that is not a capture is an error when it is opened);
- a directory stands for its capture files, found recursively and sorted by path; files in it that
  are not captures (by their first bytes: pcap, pcapng or gzip magic) are skipped, and said;
- a glob (`"captures/*.pcap*"`, `**` allowed) stands for the paths it matches, sorted.

A rotated series is what `tcpdump -C` (size), `tcpdump -G` (time) and dumpcap's ring buffers or
`-b` options write: one capture cut into files. Read as one capture, a connection that crosses a
file boundary is one session, as if the files were merged (`mergecap`). The rule (`series_key`):
files given together belong to one series when they lie in the same directory and their names
are the same once

1. the number tcpdump -C appends after the extension is dropped: `rot.pcap`, `rot.pcap1`,
   `rot.pcap2`, or zero-padded with -W: `rot.pcap00`, `rot.pcap01`;
2. when the name holds a run of four or more digits (a date or a time: tcpdump -G's strftime
   names such as `dump-20261207-2030.pcap`, dumpcap's `PREFIX_NNNNN_YYYYmmddHHMMSS.EXT`), every
   digit is taken as any digit (the names must have the same length).

So `tls12.pcapng` and `tls13.pcapng` are two captures, and `ring_00001_20261207203000.pcapng`,
`ring_00002_20261207203105.pcapng` one. A series is read in the order of the files' first packet
times (then of their names, numbers compared as numbers), and only when consecutive files do not
overlap in time (the last packet of one is not later than the first of the next): files that do
are not one series, are read apart, and a note says so. `--series` reads all the files given as
one series (in time order, with a note if they overlap), `--no-series` each apart.
"""

from __future__ import annotations

import bisect
import glob
import gzip
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass

from tlsinspect.capture import CaptureSource, Follow, Record, open_capture, pcap, pcapng
from tlsinspect.capture.skip import SkipFilter
from tlsinspect.errors import CaptureError

PathLike = str | os.PathLike[str]
Paths = PathLike | Iterable[PathLike]

_MAGICS = (*pcap.MAGICS, pcapng.SHB_MAGIC)
_GZIP_MAGIC = b"\x1f\x8b"

#: tcpdump -C's file number, after the extension: rot.pcap1, rot.pcap02 (and rot.pcap1.gz).
_COUNTED = re.compile(r"(.*\.[A-Za-z]+)\d+(\.gz)?")
#: A run of digits long enough to be a date or a time (a year, HHMM, a Unix time).
_TIME_DIGITS = re.compile(r"\d{4,}")


# -- expanding paths ---------------------------------------------------------------------------


def looks_like_capture(path: str) -> bool:
    """The file starts like a pcap or pcapng file (also inside gzip); False when unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head[:2] == _GZIP_MAGIC:
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as gz:
                    head = gz.read(4)
    except (OSError, EOFError):
        return False
    return head in _MAGICS


def capture_paths(paths: Paths, skipped: list[str] | None = None) -> list[str]:
    """Expand one path, a glob, a directory or a list of them into capture paths, in the order
    given (see the module docstring).

    `skipped` gets one sentence per directory that holds files that are not captures.

    Raises:
        FileNotFoundError: a glob matches nothing, or a directory holds no capture file.
        ValueError: no path at all.
    """
    items: list[PathLike] = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[str] = []
    for item in items:
        name = os.fspath(item)
        if isinstance(item, str) and glob.has_magic(name) and not os.path.exists(name):
            found = sorted(glob.glob(name, recursive=True))
            if not found:
                raise FileNotFoundError(f"no capture matches {name!r}")
            for match in found:
                out += _directory(match, skipped) if os.path.isdir(match) else [match]
        elif os.path.isdir(name):
            out += _directory(name, skipped)
        else:
            out.append(name)
    if not out:
        raise ValueError("no capture given")
    return list(dict.fromkeys(out))  # a file named twice is read once


def _directory(top: str, skipped: list[str] | None) -> list[str]:
    """The capture files under a directory, recursively, sorted by path."""
    files: list[str] = []
    for root, dirs, names in os.walk(top):
        dirs.sort()
        files += [os.path.join(root, n) for n in names]
    files.sort()
    captures = [f for f in files if looks_like_capture(f)]
    others = [f for f in files if f not in set(captures)]
    if not captures:
        raise FileNotFoundError(f"{top}: no capture file in this directory")
    if others and skipped is not None:
        shown = ", ".join(os.path.relpath(f, top) for f in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        what = (
            "1 file that is not a capture"
            if len(others) == 1
            else (f"{len(others):,} files that are not captures")
        )
        skipped.append(f"{top}: {what} skipped ({shown}{more})")
    return captures


# -- rotated series ----------------------------------------------------------------------------


def series_key(path: str) -> tuple[str, str]:
    """What the names of one series have in common (the rule of the module docstring): the
    directory, and the name without tcpdump -C's number, its digits as `#` when it holds a
    date or a time."""
    directory, name = os.path.split(os.path.normpath(path))
    counted = _COUNTED.fullmatch(name)
    if counted is not None:
        name = counted.group(1) + (counted.group(2) or "")
    if _TIME_DIGITS.search(name):
        name = re.sub(r"\d", "#", name)
    return directory, name


def _natural(path: str) -> list[object]:
    """A sort key comparing the numbers in a name as numbers (rot.pcap2 before rot.pcap10)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


@dataclass(frozen=True)
class Input:
    """What one report reads as one capture: a file, or the files of a series in their order."""

    paths: tuple[str, ...]

    @property
    def name(self) -> str:
        """How reports name it: the file, or the first and last files of the series."""
        if len(self.paths) == 1:
            return self.paths[0]
        last = os.path.basename(self.paths[-1])
        return f"{self.paths[0]} .. {last} (series of {len(self.paths)} files)"


def time_span(path: str) -> tuple[int, int] | None:
    """The times of the first and last packet records of a capture file, None when it holds
    none or cannot be read. The last is found from the end of the file (pcapng: its blocks'
    trailing lengths; pcap: the record that ends exactly at the end), and the file is read
    through only when that fails (a compressed file, a damaged or cut end)."""
    try:
        with open_capture(path) as src:
            first = next(iter(src), None)
            fmt = src.format
        if first is None:
            return None
        with open(path, "rb") as f:
            head = f.read(2)
            size = os.fstat(f.fileno()).st_size
            last = None
            if head != _GZIP_MAGIC:
                if fmt == "pcap":
                    last = _pcap_last(f, size, first[0])
                else:
                    last = _pcapng_last(f, size)
        if last is None:
            with open_capture(path) as src:
                for rec in src:
                    last = rec[0]
    except (OSError, CaptureError):
        return None
    return first[0], last if last is not None else first[0]


def _pcap_last(f, size: int, first_ts: int) -> int | None:
    """The time of a pcap file's last record, found in its tail: the record header whose
    captured length ends it exactly at the end of the file, and whose fields are sane."""
    f.seek(0)
    header = pcap.parse_header(f.read(pcap.HEADER_SIZE))
    hsize = header.record_header_size
    tail_len = min(size - pcap.HEADER_SIZE, pcap.MAX_CAPLEN + hsize)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    unpack = struct.Struct(header.byteorder + "IIII").unpack_from
    unit = header.ts_unit_ns
    fractions = 1_000_000_000 // unit
    first_sec = first_ts // 1_000_000_000
    n = len(tail)
    for p in range(n - hsize, -1, -1):
        sec, frac, caplen, orig_len = unpack(tail, p)
        if p + hsize + caplen == n and orig_len >= caplen and frac < fractions:
            if first_sec <= sec <= first_sec + 10 * 366 * 86400:
                return sec * 1_000_000_000 + frac * unit
    return None


def _pcapng_last(f, size: int) -> int | None:
    """The time of a one-section pcapng file's last packet block, walking back over the blocks
    after it (statistics, names) by their trailing lengths; None when that does not hold."""
    f.seek(0)
    shb = f.read(12)
    order = "<" if shb[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    hdr = struct.Struct(order + "II")
    ifaces: list[tuple[int, int, int]] = []
    pos = 0
    while pos + 12 <= size:  # the interfaces, declared before the first packet
        f.seek(pos)
        btype, blen = hdr.unpack(f.read(8))
        if blen < 12 or blen & 3 or pos + blen > size:
            return None
        if btype in (pcapng.EPB_TYPE, pcapng.OPB_TYPE, pcapng.SPB_TYPE):
            break
        if btype == pcapng.SHB_TYPE and pos:
            return None
        if btype == pcapng.IDB_TYPE:
            f.seek(pos)
            _lt, mul, div, off, _snap, _problem = pcapng._interface(f.read(blen), 0, blen, order)
            ifaces.append((mul, div, off))
        pos += blen
    end = size
    for _ in range(10_000):
        if end - 12 < pos:
            return None
        f.seek(end - 4)
        blen = struct.unpack(order + "I", f.read(4))[0]
        start = end - blen
        if blen < 12 or blen & 3 or start < pos:
            return None
        f.seek(start)
        block = f.read(min(blen, 28))
        btype, lead = hdr.unpack_from(block)
        if lead != blen or btype in (pcapng.SHB_TYPE, pcapng.SPB_TYPE):
            return None
        if btype in (pcapng.EPB_TYPE, pcapng.OPB_TYPE) and len(block) >= 20:
            ifid, hi, lo = struct.unpack_from(order + "III", block, 8)
            if btype == pcapng.OPB_TYPE:  # a 16-bit interface id, then a 16-bit drop count
                ifid = ifid & 0xFFFF if order == "<" else ifid >> 16
            if ifid >= len(ifaces):
                return None
            mul, div, off = ifaces[ifid]
            return (hi << 32 | lo) * mul // div + off
        end = start
    return None


def _opens(path: str) -> bool:
    """The file opens as a capture (it may hold no packet)."""
    try:
        open_capture(path).close()
    except (OSError, CaptureError):
        return False
    return True


def plan(paths: Sequence[str], series: bool | None = None, notes: list[str] | None = None):
    """The inputs to read, in the order of the paths: series grouped by `series_key` (None),
    all the files as one series (True), or each file apart (False).

    `notes` gets a sentence for each group named like a series but not read as one, and for a
    forced series whose files overlap in time.
    """
    notes = notes if notes is not None else []
    if series is False or len(paths) < 2:
        return [Input((p,)) for p in paths]
    groups: dict[object, list[str]] = {}
    for p in paths:
        groups.setdefault(True if series else series_key(p), []).append(p)
    inputs: list[Input] = []
    for group in groups.values():
        inputs += _series(group, forced=bool(series), notes=notes)
    position = {p: i for i, p in enumerate(paths)}
    inputs.sort(key=lambda inp: min(position[p] for p in inp.paths))
    return inputs


def _series(group: list[str], forced: bool, notes: list[str]) -> list[Input]:
    """One group of files: one series when their times allow it, else each file apart."""
    apart = [Input((p,)) for p in group]
    if len(group) < 2:
        return apart
    spans = {p: time_span(p) for p in group}
    empty = [p for p, span in spans.items() if span is None]
    if not all(_opens(p) for p in empty):
        return apart  # a file that cannot be read is said when it is read apart
    # a file with no packet (a writer's file header only) adds nothing: it goes first
    ordered = sorted(empty, key=_natural)
    timed = sorted((p for p in group if p not in empty), key=lambda p: (spans[p], _natural(p)))
    ordered += timed
    for a, b in zip(timed, timed[1:], strict=False):
        if spans[a][1] > spans[b][0]:  # type: ignore[index]
            names = ", ".join(os.path.basename(p) for p in ordered)
            overlap = (
                f"{os.path.basename(b)} starts before the last packet of {os.path.basename(a)}"
            )
            if forced:
                notes.append(f"--series: the files overlap in time ({overlap}): read in time order")
                break
            notes.append(
                f"{names}: named like one rotated series, but {overlap}: read apart "
                "(--series reads them as one)"
            )
            return apart
    return [Input(tuple(ordered))]


# -- reading a series --------------------------------------------------------------------------


def _file_at(starts: list[tuple[int, str]], ts_ns: int, first: str) -> str:
    """The file of a series, given as (first packet time, file) in order, that holds time
    `ts_ns`: the last one that began by then."""
    i = bisect.bisect_right(starts, (ts_ns, "\U0010ffff")) - 1
    return starts[i][1] if i >= 0 else first


def merge_series(inp: Input, directory: str) -> tuple[str, Callable[[int], str]] | None:
    """For a reader that takes one file (tshark): the files of a series concatenated in their
    order into one file in `directory` (`mergecap -a`), and the function telling which file of
    the series a packet time falls in. None when mergecap is not installed or fails.
    """
    mergecap = shutil.which("mergecap")
    if mergecap is None:
        return None
    out = os.path.join(directory, "series.pcapng")
    try:
        subprocess.run(
            [mergecap, "-a", "-F", "pcapng", "-w", out, *inp.paths],
            check=True,
            capture_output=True,
            timeout=3600,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    starts: list[tuple[int, str]] = []
    for p in inp.paths:
        span = time_span(p)
        if span is not None:
            starts.append((span[0], p))
    return out, lambda ts: _file_at(starts, ts, inp.paths[0])


def open_input(inp: Input, follow: Follow | None = None) -> CaptureSource:
    """A source over an input: its one file as `open_capture` reads it, or a `SeriesSource`
    (for a series, and for any file followed as it grows: its writer may go on in a next file).

    Raises what `open_capture` raises for the first file.
    """
    if len(inp.paths) == 1 and follow is None:
        return open_capture(inp.paths[0])
    return SeriesSource(inp.paths, follow)


class SeriesSource(CaptureSource):
    """The packet records of the files of a series, one file after another, as one capture.

    Each file is opened when the one before it ends, and its records follow the records before
    it: the consumer (the analyzer, its flow table) sees one stream. The Decryption Secrets
    Blocks of every file go into one list; the skip filter pushed down is pushed into every
    file's reader. `problems` name the file they come from.

    With `follow`, the newest file is read as it grows; when a next file of the series appears
    (a name with the same `series_key`, not read yet: the writer rotated), the current file is
    read to its end and the next one followed.
    """

    def __init__(self, paths: Sequence[str], follow: Follow | None = None) -> None:
        self.files = list(paths)
        self.path = self.files[0]
        self._follow = follow
        self._secrets_list: list[tuple[int, bytes]] = []
        self._skip: SkipFilter | None = None
        self._opened: list[CaptureSource] = []
        self._starts: list[tuple[int, str]] = []  # (first packet time, file)
        self._failed: list[str] = []
        self._closed = False
        first = self._open(0)  # raises as open_capture does
        self.format = first.format
        self.size = 0
        for p in self.files:
            try:
                self.size += os.path.getsize(p)
            except OSError:
                pass
        self._reader: Generator[Record, None, None] = self._read()
        self._records = self._reader

    def _open(self, i: int) -> CaptureSource:
        path = self.files[i]
        follow = self._follow if i == len(self.files) - 1 else None
        done: Callable[[], bool] | None = None
        if follow is not None:
            done = self._rotated
        src = open_capture(path, follow=follow, done=done, secrets=self._secrets_list)
        if self._skip is not None:
            src.push_skip(self._skip)
        self._opened.append(src)
        return src

    def _rotated(self) -> bool:
        """A next file of the series is there: the writer has left the current one."""
        nxt = self._next_file()
        return nxt is not None

    def _next_file(self) -> str | None:
        """The file the writer went on to: of the series' key, not read yet, named after the
        current one (numbers compared as numbers) and modified no earlier than it (a file left
        by an earlier run of the writer is not its next one)."""
        last = self.files[-1]
        key = series_key(last)
        directory = os.path.dirname(last)
        try:
            names = os.listdir(directory or ".")
            since = os.path.getmtime(last)
        except OSError:
            return None
        known = {os.path.normpath(p) for p in self.files}
        after = _natural(os.path.basename(last))
        new = []
        for n in names:
            path = os.path.join(directory, n)
            if series_key(path) != key or os.path.normpath(path) in known:
                continue
            try:
                if _natural(n) > after and os.path.getmtime(path) >= since:
                    new.append(path)
            except (OSError, TypeError):
                continue
        return min(new, key=_natural) if new else None

    def _read(self) -> Generator[Record, None, None]:
        i = 0
        src: CaptureSource | None = self._opened[0]
        while src is not None and not self._closed:
            records = iter(src)
            first = next(records, None)
            if first is not None:
                self._starts.append((first[0], os.fspath(src.path)))
                yield first
                yield from records
            src.close()
            src = None
            i += 1
            if i == len(self.files) and self._follow is not None:
                if self._follow.stop.is_set():
                    break
                nxt = self._next_file()
                if nxt is not None:
                    self.files.append(nxt)
            while i < len(self.files) and src is None:
                try:
                    src = self._open(i)
                except (OSError, CaptureError) as exc:
                    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    self._failed.append(f"{self.files[i]}: not read: {why}")
                    i += 1

    def file_of(self, ts_ns: int) -> str:
        """The file whose packets began by `ts_ns`: where a session starting then started."""
        return _file_at(self._starts, ts_ns, self.files[0])

    @property
    def paths(self) -> list[str]:
        return list(self.files)

    @property
    def problems(self) -> list[str]:
        many = len(self.files) > 1
        out = [
            f"{os.path.basename(os.fspath(s.path))}: {p}" if many else p
            for s in self._opened
            for p in s.problems
        ]
        return out + self._failed

    @property
    def secrets(self) -> list[tuple[int, bytes]]:
        return self._secrets_list

    @property
    def packets(self) -> int:
        return sum(s.packets for s in self._opened)

    @property
    def bytes_read(self) -> int:
        return sum(s.bytes_read for s in self._opened)

    def push_skip(self, skip: SkipFilter) -> None:
        self._skip = skip
        for s in self._opened:
            s.push_skip(skip)

    def close(self) -> None:
        self._closed = True
        self._reader.close()
        for s in self._opened:
            s.close()

    def __repr__(self) -> str:
        return f"<SeriesSource {len(self.files)} files {self.path!r} packets={self.packets}>"
