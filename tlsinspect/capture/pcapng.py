"""pcapng file framing.

A file is one or more sections, each opened by a Section Header Block (SHB) that sets the byte
order of the section and resets its list of interfaces. Blocks are (type, total length, body,
total length again), padded to 4 bytes. Read here:

    SHB  0x0A0D0D0A  byte order, version; the section length is not needed (it may be -1)
    IDB  1           link type, snaplen; options if_tsresol (9) and if_tsoffset (14)
    EPB  6           a packet of an interface, 64-bit timestamp in that interface's resolution
    SPB  3           a packet of interface 0 without timestamp (the last timestamp seen is reused)
    OPB  2           the obsolete packet block, laid out like an EPB with a 16-bit interface id
    DSB  0x0A        decryption secrets (e.g. a TLS key log), collected in ``state.secrets``

Every other block (NRB, ISB, custom blocks, unknown types) is skipped without notice. A block
whose length is damaged ends reading, with a problem sentence.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from tlsinspect.capture.pcap import read_exact
from tlsinspect.errors import NotACapture, UnsupportedCapture

SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 1
OPB_TYPE = 2
SPB_TYPE = 3
EPB_TYPE = 6
DSB_TYPE = 0x0A

_BOM_BIG = b"\x1a\x2b\x3c\x4d"
_BOM_LITTLE = b"\x4d\x3c\x2b\x1a"
_SHB_MIN = 28

#: A block longer than this is taken as a damaged length (and is never read into memory).
MAX_BLOCK = 64 << 20

_OPT_TSRESOL = 9
_OPT_TSOFFSET = 14

_BLOCK_NAMES = {
    SHB_TYPE: "section header block",
    IDB_TYPE: "interface description block",
    OPB_TYPE: "packet block",
    SPB_TYPE: "simple packet block",
    4: "name resolution block",
    5: "interface statistics block",
    EPB_TYPE: "enhanced packet block",
    DSB_TYPE: "decryption secrets block",
}


def _structs(order: str):
    return (
        struct.Struct(order + "8I").unpack_from,  # previous trailer + header + EPB fields
        struct.Struct(order + "7I").unpack_from,  # block header + EPB fields
        struct.Struct(order + "II").unpack_from,  # block header
        struct.Struct(order + "I").unpack_from,  # one 32-bit word
    )


_STRUCTS = {"<": _structs("<"), ">": _structs(">")}


def _byte_order(bom: bytes) -> str | None:
    if bom == _BOM_LITTLE:
        return "<"
    if bom == _BOM_BIG:
        return ">"
    return None


def check_header(head: bytes) -> None:
    """Check the first Section Header Block at the start of ``head``."""
    if len(head) < 12:
        raise NotACapture(f"pcapng section header cut short ({len(head)} of {_SHB_MIN} bytes)")
    order = _byte_order(bytes(head[8:12]))
    if order is None:
        raise NotACapture(
            f"starts like pcapng, but its byte-order magic is 0x{bytes(head[8:12]).hex()}"
        )
    if len(head) < _SHB_MIN:
        raise NotACapture(f"pcapng section header cut short ({len(head)} of {_SHB_MIN} bytes)")
    blen, _bom, major, minor = struct.unpack_from(order + "IIHH", head, 4)
    if major != 1:
        raise UnsupportedCapture(f"pcapng version {major}.{minor} is not supported (only 1.x)")
    if blen < _SHB_MIN or blen & 3:
        raise NotACapture(f"pcapng section header block has a damaged length ({blen})")


def _interface(buf: bytes, pos: int, blen: int, order: str):
    """Decode an IDB: (linktype, ts_mul, ts_div, ts_offset_ns, snaplen, problem or None).

    A timestamp t of the interface is ``t * ts_mul // ts_div + ts_offset_ns`` nanoseconds.
    """
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
    resol = 6
    offset = 0
    problem = None
    opt = pos + 16
    opt_end = pos + blen - 4
    opt_hdr = struct.Struct(order + "HH").unpack_from
    while opt + 4 <= opt_end:
        code, length = opt_hdr(buf, opt)
        if code == 0:
            break
        value = opt + 4
        if value + length > opt_end:
            problem = (
                f"interface description block at byte {{at}} has a damaged option list "
                f"(option {code} of {length} bytes overruns the block): options after it ignored"
            )
            break
        if code == _OPT_TSRESOL and length >= 1:
            resol = buf[value]
        elif code == _OPT_TSOFFSET and length >= 8:
            offset = struct.unpack_from(order + "q", buf, value)[0]
        opt = value + ((length + 3) & ~3)
    if resol & 0x80:
        mul, div = 1_000_000_000, 1 << (resol & 0x7F)
    elif resol <= 9:
        mul, div = 10 ** (9 - resol), 1
    else:
        mul, div = 1, 10 ** (resol - 9)
    return linktype, mul, div, offset * 1_000_000_000, snaplen, problem


def _truncated(block: bytes, at: int, order: str) -> str:
    """The problem sentence for a last block cut short by the end of the file."""
    if len(block) < 12:
        return f"capture truncated: {len(block)} stray bytes at byte {at}, too few for a block"
    btype = _STRUCTS[order][2](block, 0)[0]
    if btype == SHB_TYPE:
        order = _byte_order(block[8:12]) or order
    blen = _STRUCTS[order][2](block, 0)[1]
    name = _BLOCK_NAMES.get(btype, f"block of type 0x{btype:08x}")
    return (
        f"capture truncated: last {name} at byte {at} needs {blen} bytes, only {len(block)} remain"
    )


def _skipped_packets(unknown: dict[int, list[int]], section_at: int, declared: int) -> list[str]:
    """Problem sentences for packets skipped because of an undeclared interface id."""
    lines = []
    for ifid, (count, first) in sorted(unknown.items()):
        packets = "1 packet" if count == 1 else f"{count} packets"
        lines.append(
            f"{packets} skipped (first at byte {first}): interface {ifid} is not declared in "
            f"the section at byte {section_at}, which has {declared} interface(s)"
        )
    unknown.clear()
    return lines


_MIN_LEN = {
    EPB_TYPE: 32,
    OPB_TYPE: 32,
    SPB_TYPE: 16,
    IDB_TYPE: 20,
    SHB_TYPE: _SHB_MIN,
    DSB_TYPE: 20,
}


class _Section:
    """What reading keeps between blocks: the byte order and its unpackers, the interfaces and
    snaplens of the current section, and the packets of interfaces it does not declare.

    The blocks read here are the rare ones (section and interface headers, secrets, packet blocks
    the hot loop of `read_records` leaves: OPB, SPB, an EPB at a chunk's end); each method returns
    a problem sentence that ends reading, or None.
    """

    def __init__(self, order: str, problems: list[str], secrets: list) -> None:
        self.order = order
        self.structs = _STRUCTS[order]
        # interface id -> (linktype, ts_mul, ts_div or 0, ts_offset_ns, iface); a timestamp t is
        # t * ts_mul // ts_div + ts_offset_ns nanoseconds (div 0: t * ts_mul is the whole of it)
        self.ifaces: list[tuple[int, int, int, int, int]] = []
        self.snaplens: list[int] = []
        self.declared = 0  # interfaces declared in the file so far
        self.unknown: dict[int, list[int]] = {}  # undeclared interface id -> [packets, first byte]
        self.at = 0  # the current section's first byte
        self.problems = problems
        self.secrets = secrets

    def byte_order(self, buf, pos: int, at: int) -> str | None:
        """Take the byte order of the section header block at `pos`."""
        order = _byte_order(buf[pos + 8 : pos + 12])
        if order is None:
            return (
                f"section header block at byte {at} has a bad byte-order magic "
                f"0x{buf[pos + 8 : pos + 12].hex()}: reading stopped"
            )
        if order != self.order:
            self.order = order
            self.structs = _STRUCTS[order]
        return None

    def packet(self, buf, pos: int, btype: int, blen: int, at: int, last_ts: int):
        """An EPB, OPB or SPB read whole: (ts_ns, linktype, data, orig_len, iface), None when its
        interface is not declared (counted), or the problem sentence of a damaged block."""
        word = self.structs[3]
        if btype == SPB_TYPE:
            if not self.ifaces:
                self.unknown.setdefault(0, [0, at])[0] += 1
                return None
            orig_len = word(buf, pos + 8)[0]
            linktype, _mul, _div, _off, iface = self.ifaces[0]
            caplen = min(orig_len, blen - 16)
            if self.snaplens[0]:
                caplen = min(caplen, self.snaplens[0])
            return (last_ts, linktype, buf[pos + 12 : pos + 12 + caplen], orig_len, iface)
        _, _, ifid, hi, lo, caplen, orig_len = self.structs[1](buf, pos)
        if btype == OPB_TYPE:
            ifid = struct.unpack_from(self.order + "H", buf, pos + 8)[0]
        if caplen > blen - 32:
            return (
                f"{_BLOCK_NAMES[btype]} at byte {at} is damaged (captured length "
                f"{caplen} does not fit in its block length {blen}): reading stopped"
            )
        if ifid >= len(self.ifaces):
            self.unknown.setdefault(ifid, [0, at])[0] += 1
            return None
        linktype, mul, div, off, iface = self.ifaces[ifid]
        ts = (hi << 32 | lo) * mul // (div or 1) + off
        return (ts, linktype, buf[pos + 28 : pos + 28 + caplen], orig_len, iface)

    def other(self, buf, pos: int, btype: int, blen: int, at: int) -> str | None:
        """A block that is not a packet: IDB, SHB and DSB are read, every other type skipped."""
        if btype == IDB_TYPE:
            linktype, mul, div, off, snaplen, problem = _interface(buf, pos, blen, self.order)
            if problem:
                self.problems.append(problem.format(at=at))
            div = 0 if div == 1 and not off else div
            self.ifaces.append((linktype, mul, div, off, self.declared))
            self.snaplens.append(snaplen)
            self.declared += 1
        elif btype == SHB_TYPE:
            major, minor = struct.unpack_from(self.order + "HH", buf, pos + 12)
            if major != 1:
                return (
                    f"section at byte {at} has pcapng version {major}.{minor}, which is not "
                    f"supported: reading stopped"
                )
            self.skipped_packets()
            self.at = at
            self.ifaces = []
            self.snaplens = []
        elif btype == DSB_TYPE:
            secrets_type, length = self.structs[2](buf, pos + 8)
            if length > blen - 20:
                self.problems.append(
                    f"decryption secrets block at byte {at} is damaged (secrets length "
                    f"{length} overruns its block): skipped"
                )
            else:
                self.secrets.append((secrets_type, buf[pos + 16 : pos + 16 + length]))
        return None

    def skipped_packets(self) -> None:
        """Say how many packets the section's undeclared interfaces had."""
        if self.unknown:
            self.problems.extend(_skipped_packets(self.unknown, self.at, len(self.ifaces)))


def _damaged(buf, pos: int, btype: int, blen: int, at: int, word) -> str | None:
    """The problem sentence of a whole block whose lengths disagree, or None."""
    tail = word(buf, pos + blen - 4)[0]
    if tail != blen:
        return (
            f"pcapng block at byte {at} is damaged (its length is {blen} at the start "
            f"but {tail} at the end): reading stopped"
        )
    if blen < _MIN_LEN.get(btype, 12):
        return f"{_BLOCK_NAMES[btype]} at byte {at} has a damaged length ({blen}): reading stopped"
    return None


def read_records(
    read: Callable[[int], bytes],
    buf: bytes,
    state,
    chunk_size: int,
) -> Iterator[tuple[int, int, bytes, int, int]]:
    """Yield (ts_ns, linktype, data, orig_len, iface) for each packet block.

    ``buf`` holds the first bytes of the file; ``read(n)`` returns the next bytes, b"" at the
    end. ``state`` (packets, bytes_read, problems, secrets, tell) is updated along the way.
    """
    tell = state.tell
    sect = _Section(_byte_order(bytes(buf[8:12])) or "<", state.problems, state.secrets)
    link_hdr, epb_hdr, blk_hdr, _word = sect.structs
    ifaces = sect.ifaces
    unknown = sect.unknown
    last_ts = 0
    count = 0
    pos = 0
    base = 0  # file offset of buf[0]
    stop = None  # problem sentence that ends reading

    while stop is None:
        end = len(buf)
        limit = end - 28
        skip = state.skip  # a SkipFilter pushed down by the consumer: read at each chunk
        if skip is not None:
            get, value, ks, ke = skip.table.get, skip.value, skip.key_start, skip.key_end
            fl, mask, skip_link = skip.flags_at, skip.flags_mask, skip.linktype
            ma, mmask = skip.more_at, skip.more_mask
        else:
            get, value, ks, ke, fl, mask, skip_link = {}.get, None, 0, 0, 1 << 62, 0, -1
            ma, mmask = 0, 0
        skipped = 0
        while True:
            if pos <= limit:
                # One unpack at nxt - 4 checks a block's trailing length and reads the header
                # of the next block; the first element is the trailer of the block before pos.
                hdr = link_hdr(buf, pos - 4) if pos >= 4 else (0, *epb_hdr(buf, pos))
                while True:
                    # Enhanced packet blocks followed by a whole block header: the hot path.
                    _, btype, blen, ifid, hi, lo, caplen, orig_len = hdr
                    nxt = pos + blen
                    if btype == 6 and nxt <= limit and caplen <= blen - 32 and not blen & 3:
                        hdr = link_hdr(buf, nxt - 4)
                        if hdr[0] == blen:
                            try:
                                linktype, mul, div, off, iface = ifaces[ifid]
                            except IndexError:
                                unknown.setdefault(ifid, [0, base + pos])[0] += 1
                                pos = nxt
                                continue
                            count += 1
                            start = pos + 28
                            if div:
                                ts = (hi << 32 | lo) * mul // div + off
                            else:
                                ts = (hi << 32 | lo) * mul
                            last_ts = ts  # a simple packet block after this one takes it
                            if (
                                caplen > fl
                                and linktype == skip_link
                                and get(buf[start + ks : start + ke]) is value
                                and not buf[start + fl] & mask
                                and not buf[start + ma] & mmask
                            ):
                                skipped += 1
                                pos = nxt
                                continue
                            state.packets = count
                            yield (ts, linktype, buf[start : start + caplen], orig_len, iface)
                            pos = nxt
                            continue
                    break
            elif pos + 12 <= end:
                btype, blen = blk_hdr(buf, pos)
                nxt = pos + blen
            else:
                break

            # Any other block, a block to check, or one not wholly in the buffer.
            at = base + pos
            if btype == SHB_TYPE:
                stop = sect.byte_order(buf, pos, at)
                if stop is not None:
                    break
                link_hdr, epb_hdr, blk_hdr, _word = sect.structs
                blen = blk_hdr(buf, pos)[1]
                nxt = pos + blen
            if blen < 12 or blen & 3 or blen > MAX_BLOCK:
                stop = f"pcapng block at byte {at} has a damaged length ({blen}): reading stopped"
                break
            if nxt > end:
                break
            stop = _damaged(buf, pos, btype, blen, at, _word)
            if stop is not None:
                break
            if btype == EPB_TYPE or btype == OPB_TYPE or btype == SPB_TYPE:
                packet = sect.packet(buf, pos, btype, blen, at, last_ts)
                if isinstance(packet, str):
                    stop = packet
                    break
                if packet is not None:
                    last_ts = packet[0]
                    count += 1
                    state.packets = count
                    yield packet
            else:
                stop = sect.other(buf, pos, btype, blen, at)
                if stop is not None:
                    break
                ifaces = sect.ifaces  # a new section has a new list
            pos = nxt

        if skipped:
            skip.skipped += skipped
            state.packets = count
        if stop is not None:
            break
        if pos < end:
            # A block cut by the end of the chunk: read its missing bytes (or enough of its
            # header to learn its length) and go through it alone, so chunks are never copied.
            left = end - pos
            need = 12 - left if left < 12 else nxt - end
            block = buf[pos:] + read_exact(read, need)
            state.bytes_read = tell()
            if len(block) < left + need:
                stop = _truncated(block, base + pos, sect.order)
                break
            buf = block
            base += pos
        else:
            base += end
            buf = read(chunk_size)
            state.bytes_read = tell()
            if not buf:
                break
        pos = 0

    sect.skipped_packets()
    if stop is not None:
        state.problems.append(stop)
    state.bytes_read = tell()
