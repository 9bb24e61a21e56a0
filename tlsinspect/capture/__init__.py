"""Capture file sources: open a pcap or pcapng file and iterate its packet records.

    with open_capture("trace.pcapng") as src:
        for ts_ns, linktype, data, orig_len, iface in src:
            ...

A source only reads bytes and undoes the capture-file framing; it never looks inside a packet.
The file is streamed in large chunks (never read whole, never mapped), and each record is a plain
tuple ``(ts_ns, linktype, data, orig_len, iface)``:

ts_ns      timestamp, integer nanoseconds since the epoch (UTC)
linktype   LINKTYPE_* of the packet's interface (pcap: the file's; pcapng: its IDB's)
data       the captured bytes
orig_len   the length of the packet on the wire
iface      interface index: 0 for pcap; for pcapng the interface's position among all interface
           description blocks of the file (the block's own interface id in a one-section file)

What the reader had to skip, and why, is collected in ``problems`` as sentences; only a capture
that cannot be read at all raises (NotACapture, UnsupportedCapture) from ``open_capture``.
gzip-compressed captures are read transparently.

`follow` (a `Follow`): the file is still being written (tcpdump -U -w): at its end the reader
waits for more bytes, as `tail -f` does, a record cut by the end included, until the follow is
stopped. Without it, a capture whose last record is cut short and whose file was modified less
than `RECENT_WRITE_S` seconds ago is said to be maybe still being written, not truncated.

Which files a command reads (directories, globs, rotated series read as one capture) is
`capture.inputs`'s.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator

from tlsinspect.capture import pcap, pcapng
from tlsinspect.capture.skip import SkipFilter
from tlsinspect.errors import CaptureError, NotACapture, UnsupportedCapture

__all__ = ["CaptureSource", "Follow", "SkipFilter", "open_capture"]

Record = tuple[int, int, bytes, int, int]

#: How many bytes each read asks for.
CHUNK_SIZE = 1 << 20

#: Enough leading bytes to check any supported file header (pcap: 24, pcapng SHB: 28).
_HEAD_SIZE = 28

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)

#: A capture cut short at its end and modified less than this many seconds ago is taken as one
#: still being written (tcpdump, dumpcap), not as a truncated file.
RECENT_WRITE_S = 5

#: Seconds between two looks at the end of a followed capture.
FOLLOW_POLL = 0.2

_TRUNCATED = "capture truncated: "


class Follow:
    """Read captures that are still being written, as `tail -f` reads a log.

    A read at the end of the file waits (`poll` seconds at a time) for the writer's next bytes
    instead of ending the stream, until `stop` is set (a signal handler sets it); the bytes
    written by then are still read. The parsers never know: they see a read that is slow.
    """

    def __init__(self, stop: threading.Event | None = None, poll: float = FOLLOW_POLL) -> None:
        self.stop = stop if stop is not None else threading.Event()
        self.poll = poll

    def reader(
        self, read: Callable[[int], bytes], done: Callable[[], bool] | None = None
    ) -> Callable[[int], bytes]:
        """`read` that waits at the end of the file; `done()` true says the writer has moved on
        to another file (this one then ends once what is left of it is read)."""
        stop = self.stop

        def tail_read(n: int) -> bytes:
            data = read(n)
            while not data:
                if stop.is_set() or (done is not None and done()):
                    return read(n)  # what was written before the end
                stop.wait(self.poll)
                data = read(n)
            return data

        return tail_read


class ReadState:
    """Counters and findings a record reader updates while it runs, and the filter the consumer
    pushed down to it."""

    __slots__ = ("packets", "bytes_read", "problems", "secrets", "tell", "skip")

    def __init__(self, tell: Callable[[], int]) -> None:
        self.skip: SkipFilter | None = None
        self.packets = 0
        self.bytes_read = 0
        self.problems: list[str] = []
        self.secrets: list[tuple[int, bytes]] = []
        self.tell = tell


class CaptureSource:
    """An open capture file; iterate it (once) for its packet records.

    Attributes:
        format: "pcap" or "pcapng".
        path: the path the source was opened with.
        size: the size of the file in bytes (compressed size for a gzip file).
        problems: sentences telling what was skipped and why (truncation, damaged blocks...).
        packets: how many records were read so far (yielded, or dropped by a `SkipFilter`).
        bytes_read: how many bytes of the file were read so far (compressed bytes for a gzip
            file), so that ``bytes_read / size`` tells the progress.
        secrets: pcapng Decryption Secrets Blocks met so far, as (secrets_type, data); the TLS
            key log type is 0x544C534B.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fmt: str,
        size: int,
        state: ReadState,
        records: Iterator[Record],
        files: tuple,
    ) -> None:
        self.path = path
        self.format = fmt
        self.size = size
        self._state = state
        self._records = records
        self._files = files
        self._recent_checked = False

    @property
    def problems(self) -> list[str]:
        problems = self._state.problems
        if problems and not self._recent_checked and problems[-1].startswith(_TRUNCATED):
            self._recent_checked = True
            still = still_written(self.path)
            if still is not None:
                problems[-1] = f"{still}; {problems[-1].removeprefix(_TRUNCATED)}"
        return problems

    @property
    def paths(self) -> list[str]:
        """The files read (one here; a series has several)."""
        return [os.fspath(self.path)]

    def file_of(self, ts_ns: int) -> str:
        """The file holding the packet of time `ts_ns` (a series has several files)."""
        return os.fspath(self.path)

    @property
    def secrets(self) -> list[tuple[int, bytes]]:
        return self._state.secrets

    @property
    def packets(self) -> int:
        return self._state.packets

    @property
    def bytes_read(self) -> int:
        return self._state.bytes_read

    def unusable(self) -> str | None:
        """Once read to its end: why the capture cannot be used at all, else None. A capture
        with no packet record that can be read is as unusable as an empty file: only its file
        header, blocks that hold no packet, or records too damaged to read."""
        if self.packets:
            return None
        if self.problems:
            return f"no packet could be read: {self.problems[0]}"
        return "no packet in the capture (a file header, and no packet record after it)"

    def __iter__(self) -> Iterator[Record]:
        return self._records

    def push_skip(self, skip: SkipFilter) -> None:
        """Have the reader drop the records `skip` matches, from its next chunk on (see
        `capture.skip`); `packets` still counts them."""
        self._state.skip = skip

    def close(self) -> None:
        """Stop reading and close the file; iterating afterwards yields nothing."""
        close = getattr(self._records, "close", None)
        if close is not None:
            close()
        for f in self._files:
            f.close()

    def __enter__(self) -> CaptureSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<CaptureSource {self.format} {os.fspath(self.path)!r} packets={self.packets} "
            f"problems={len(self.problems)}>"
        )


def still_written(path: str | os.PathLike) -> str | None:
    """For a capture cut short at its end: "may still be being written (...)" when its file was
    modified less than RECENT_WRITE_S seconds ago, else None."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        return None
    if not -1 < age < RECENT_WRITE_S:
        return None
    return (
        f"capture may still be being written (modified {max(age, 0):.0f} s ago; --follow reads "
        "it as it grows)"
    )


def open_capture(
    path: str | os.PathLike,
    *,
    follow: Follow | None = None,
    done: Callable[[], bool] | None = None,
    secrets: list[tuple[int, bytes]] | None = None,
) -> CaptureSource:
    """Open a pcap or pcapng file (optionally gzip-compressed) for reading.

    `follow`: read the file as it grows (see `Follow`; `done` tells it the writer moved on to a
    next file). `secrets`: the list the Decryption Secrets Blocks are added to (a series of
    files shares one).

    Raises NotACapture when the file is empty, too short or not a capture, UnsupportedCapture
    for a capture variant this reader does not know (or a compressed one to follow); OSError
    (e.g. a missing file) propagates.
    """
    name = os.fspath(path)
    raw = open(name, "rb", buffering=0)  # closed by CaptureSource.close
    files = [raw]  # to close, outermost first
    read: Callable[[int], bytes] = raw.read
    if follow is not None:
        read = follow.reader(raw.read, done)
    try:
        return _open(path, name, raw, read, files, secrets, follow is not None)
    except BaseException:
        for f in files:
            f.close()
        raise


def _open(
    path: str | os.PathLike,
    name: str,
    raw,
    read: Callable[[int], bytes],
    files: list,
    secrets: list[tuple[int, bytes]] | None,
    following: bool,
) -> CaptureSource:
    size = os.fstat(raw.fileno()).st_size
    state = ReadState(raw.tell)
    if secrets is not None:
        state.secrets = secrets
    head = _read_head(read, _HEAD_SIZE)
    compressed = head[:2] == _GZIP_MAGIC
    if compressed and following:
        raise UnsupportedCapture(f"{name}: a gzip-compressed capture cannot be followed")
    if compressed:
        raw.seek(0)
        gz = gzip.GzipFile(fileobj=raw, mode="rb")
        files.insert(0, gz)
        read = _gzip_read(gz.read1, state.problems)
        head = _read_head(read, _HEAD_SIZE)
        if not head and state.problems:
            raise NotACapture(f"{name}: gzip-compressed, but {state.problems[0]}")

    if not head:
        raise NotACapture(f"{name}: empty file" + (" (gzip-compressed)" if compressed else ""))
    magic = head[:4]
    try:
        if magic in pcap.MAGICS:
            fmt = "pcap"
            header = pcap.parse_header(head)
            records = pcap.read_records(read, head, header, state, CHUNK_SIZE)
        elif magic == pcapng.SHB_MAGIC:
            fmt = "pcapng"
            pcapng.check_header(head)
            records = pcapng.read_records(read, head, state, CHUNK_SIZE)
        else:
            raise NotACapture(f"not a pcap or pcapng capture (starts with {_describe(magic)})")
    except CaptureError as exc:
        raise type(exc)(f"{name}: {exc}") from None
    state.bytes_read = raw.tell()
    source = CaptureSource(path, fmt, size, state, records, tuple(files))
    source._recent_checked = following  # a followed file cut short was stopped, not written
    return source


def _read_head(read: Callable[[int], bytes], want: int) -> bytes:
    """The first bytes of the stream: at least ``want`` of them unless the stream is shorter."""
    head = read(CHUNK_SIZE)
    while head and len(head) < want:
        more = read(CHUNK_SIZE)
        if not more:
            break
        head += more
    return head


def _gzip_read(read1: Callable[[int], bytes], problems: list[str]) -> Callable[[int], bytes]:
    """A read(n) over GzipFile.read1 that ends the stream with a problem on damaged data.

    The data decompressed before the damage is still returned.
    """
    done = False

    def read(n: int) -> bytes:
        nonlocal done
        parts = []
        got = 0
        while got < n and not done:
            try:
                piece = read1(n - got)
            except _GZIP_ERRORS as exc:
                done = True
                problems.append(f"the compressed data is damaged ({exc}): reading stopped there")
                break
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    return read


def _describe(magic: bytes) -> str:
    """How a file starts, for an error message: quoted text when printable, else hex."""
    if all(32 <= b < 127 for b in magic):
        return repr(magic.decode("ascii"))
    return "0x" + magic.hex()
