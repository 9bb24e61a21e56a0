"""Classic pcap (libpcap) file framing.

File header (24 bytes): magic, version 2.4, thiszone, sigfigs, snaplen, link type; then records
of a 16-byte header (ts_sec, ts_frac, incl_len, orig_len) and incl_len captured bytes. The magic
gives the byte order and the timestamp resolution (a1b2c3d4: microseconds, a1b23c4d: nanoseconds).
The "modified" pcap of some old Linux tcpdump builds (a1b2cd34) is read too: its record headers
carry 8 more bytes (ifindex, protocol, packet type), which are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

from tlsinspect.errors import NotACapture, UnsupportedCapture

HEADER_SIZE = 24

#: A record claiming more captured bytes than this is taken as damage and ends reading.
MAX_CAPLEN = 256 * 1024

#: magic -> (struct byte order, nanoseconds per timestamp fraction unit, record header size)
MAGICS: dict[bytes, tuple[str, int, int]] = {
    b"\xa1\xb2\xc3\xd4": (">", 1000, 16),
    b"\xd4\xc3\xb2\xa1": ("<", 1000, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1, 16),
    b"\xa1\xb2\xcd\x34": (">", 1000, 24),
    b"\x34\xcd\xb2\xa1": ("<", 1000, 24),
}

_LINKTYPE_MASK = 0x03FFFFFF  # the upper bits may carry the FCS length (LT_FCS_LENGTH)


class PcapHeader(NamedTuple):
    byteorder: str  # "<" or ">"
    ts_unit_ns: int  # 1000 for microsecond files, 1 for nanosecond files
    record_header_size: int  # 16, or 24 for the modified format
    version: tuple[int, int]
    snaplen: int
    linktype: int


def parse_header(head: bytes) -> PcapHeader:
    """Check and decode the 24-byte file header at the start of ``head``."""
    if len(head) < HEADER_SIZE:
        raise NotACapture(f"pcap file header cut short ({len(head)} of {HEADER_SIZE} bytes)")
    order, unit, rec_size = MAGICS[bytes(head[:4])]
    major, minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(order + "HHiIII", head, 4)
    if major != 2:
        raise UnsupportedCapture(f"pcap version {major}.{minor} is not supported (only 2.x)")
    return PcapHeader(order, unit, rec_size, (major, minor), snaplen, network & _LINKTYPE_MASK)


def read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    """``n`` bytes from ``read``, or fewer at the end of the stream."""
    data = read(n)
    while len(data) < n:
        more = read(n - len(data))
        if not more:
            break
        data += more
    return data


def read_records(
    read: Callable[[int], bytes],
    buf: bytes,
    header: PcapHeader,
    state,
    chunk_size: int,
) -> Iterator[tuple[int, int, bytes, int, int]]:
    """Yield (ts_ns, linktype, data, orig_len, 0) for each record.

    ``buf`` holds the first bytes of the file (header included); ``read(n)`` returns the next
    bytes, b"" at the end. ``state`` (packets, bytes_read, problems, tell) is updated as records
    are yielded.

    Records are sliced out of chunks of ``chunk_size`` bytes. The record cut by the end of a
    chunk is completed with a small read of its missing bytes, so that chunks are never copied.

    A `SkipFilter` in ``state.skip`` (read at each chunk) drops the records it matches here.
    """
    unpack = struct.Struct(header.byteorder + "IIII").unpack_from
    unit = header.ts_unit_ns
    linktype = header.linktype
    hsize = header.record_header_size
    max_caplen = MAX_CAPLEN
    problems = state.problems
    tell = state.tell
    count = 0
    pos = HEADER_SIZE
    base = 0  # file offset of buf[0]
    while True:
        end = len(buf)
        limit = end - hsize
        skip = state.skip
        if skip is not None and skip.linktype == linktype:
            get, value, ks, ke = skip.table.get, skip.value, skip.key_start, skip.key_end
            fl, mask, ma, mmask = skip.flags_at, skip.flags_mask, skip.more_at, skip.more_mask
        else:
            get, value, ks, ke, fl, mask, ma, mmask = {}.get, None, 0, 0, 1 << 62, 0, 0, 0
        skipped = 0
        while pos <= limit:
            sec, frac, caplen, orig_len = unpack(buf, pos)
            start = pos + hsize
            nxt = start + caplen
            if nxt > end or caplen > max_caplen:
                break
            count += 1
            if caplen > fl and get(buf[start + ks : start + ke]) is value:
                if not buf[start + fl] & mask and not buf[start + ma] & mmask:
                    skipped += 1
                    pos = nxt
                    continue
            state.packets = count
            yield (sec * 1_000_000_000 + frac * unit, linktype, buf[start:nxt], orig_len, 0)
            pos = nxt
        if skipped:
            skip.skipped += skipped
            state.packets = count

        if pos < end:
            # A record cut by the end of the chunk (or a damaged one): complete it on its own.
            at = base + pos
            rec = buf[pos:]
            if len(rec) < hsize:
                rec += read_exact(read, hsize - len(rec))
                if len(rec) < hsize:
                    problems.append(
                        f"capture truncated: last packet record at byte {at} has only "
                        f"{len(rec)} of its {hsize} header bytes"
                    )
                    break
            sec, frac, caplen, orig_len = unpack(rec, 0)
            if caplen > max_caplen:
                problems.append(
                    f"packet record at byte {at} claims {caplen} captured bytes, more than the "
                    f"{max_caplen} accepted: the file is damaged there, reading stopped"
                )
                break
            rec_end = hsize + caplen
            rec += read_exact(read, rec_end - len(rec))
            if len(rec) < rec_end:
                problems.append(
                    f"capture truncated: last packet record at byte {at} needs {caplen} bytes, "
                    f"only {len(rec) - hsize} remain"
                )
                break
            count += 1
            state.packets = count
            yield (sec * 1_000_000_000 + frac * unit, linktype, rec[hsize:], orig_len, 0)
            base = at + rec_end
        else:
            base += end
        buf = read(chunk_size)
        state.bytes_read = tell()
        if not buf:
            break
        pos = 0
    state.bytes_read = tell()
