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
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterator

from tlsinspect.capture import pcap, pcapng
from tlsinspect.capture.skip import SkipFilter
from tlsinspect.errors import CaptureError, NotACapture

__all__ = ["CaptureSource", "SkipFilter", "open_capture"]

Record = tuple[int, int, bytes, int, int]

#: How many bytes each read asks for.
CHUNK_SIZE = 1 << 20

#: Enough leading bytes to check any supported file header (pcap: 24, pcapng SHB: 28).
_HEAD_SIZE = 28

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


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

    @property
    def problems(self) -> list[str]:
        return self._state.problems

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


def open_capture(path: str | os.PathLike) -> CaptureSource:
    """Open a pcap or pcapng file (optionally gzip-compressed) for reading.

    Raises NotACapture when the file is empty, too short or not a capture, UnsupportedCapture
    for a capture variant this reader does not know; OSError (e.g. a missing file) propagates.
    """
    name = os.fspath(path)
    raw = open(name, "rb", buffering=0)  # closed by CaptureSource.close
    files = [raw]  # to close, outermost first
    try:
        return _open(path, name, raw, files)
    except BaseException:
        for f in files:
            f.close()
        raise


def _open(path: str | os.PathLike, name: str, raw, files: list) -> CaptureSource:
    size = os.fstat(raw.fileno()).st_size
    read: Callable[[int], bytes] = raw.read
    state = ReadState(raw.tell)
    head = _read_head(read, _HEAD_SIZE)
    compressed = head[:2] == _GZIP_MAGIC
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
    return CaptureSource(path, fmt, size, state, records, tuple(files))


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
