"""Write packets as a pcapng file (the `--write` of `tlsinspect live`).

One section, one interface, written as a stream (pcapng spec, draft-ietf-opsawg-pcapng):

    SHB  0x0A0D0D0A  byte-order magic, version 1.0, section length -1 (unknown: streamed),
                     shb_os and shb_userappl
    IDB  1           the interface's link type and snaplen; if_name, if_filter (the BPF text),
                     if_tsresol (6: microseconds, or 9: nanoseconds)
    EPB  6           one per packet: 64-bit timestamp in if_tsresol units, captured and
                     original length, the bytes padded to 4
    ISB  5           at close, when statistics are given: isb_starttime, isb_endtime,
                     isb_ifrecv (packets the kernel delivered to the filter), isb_ifdrop
                     (dropped by the kernel), isb_osdrop (dropped by the capturing program)

Every block is written whole with one `write()` on a buffered file, so the file is valid up to
its last complete block whatever happens to the process; `flush()` pushes the buffer to the OS
(the live command does so about every second) and `close()` ends the file cleanly.

What this module must not do: look inside packets, or write anything but pcapng framing.
"""

from __future__ import annotations

import platform
import struct
from typing import BinaryIO

SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 1
ISB_TYPE = 5
EPB_TYPE = 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_ENDOFOPT = 0
SHB_OS = 3
SHB_USERAPPL = 4
IF_NAME = 2
IF_TSRESOL = 9
IF_FILTER = 11
ISB_STARTTIME = 2
ISB_ENDTIME = 3
ISB_IFRECV = 4
ISB_IFDROP = 5
ISB_OSDROP = 7

_EPB_HEAD = struct.Struct("<IIIIIII")  # type, length, interface, ts high, ts low, caplen, len
_U32 = struct.Struct("<I")


def _pad(n: int) -> int:
    return (4 - n % 4) % 4


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * _pad(len(value))


def _options(opts: list[bytes]) -> bytes:
    if not opts:
        return b""
    return b"".join(opts) + struct.pack("<HH", OPT_ENDOFOPT, 0)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + _U32.pack(total)


class PcapngWriter:
    """A pcapng file of one interface, written packet by packet.

    `tsresol` is the number of decimal digits of a second the timestamps keep: 6 (µs) or 9 (ns).
    """

    def __init__(
        self,
        out: BinaryIO,
        linktype: int,
        snaplen: int,
        *,
        if_name: str | None = None,
        bpf: str | None = None,
        tsresol: int = 6,
        application: str = "tlsinspect",
    ) -> None:
        if tsresol not in (6, 9):
            raise ValueError(f"tsresol must be 6 or 9, not {tsresol}")
        self._out = out
        self._div = 10 ** (9 - tsresol)  # nanoseconds per timestamp unit
        self.snaplen = snaplen
        self.packets = 0
        self.closed = False
        shb_opts = [
            _option(SHB_OS, f"{platform.system()} {platform.release()}".encode()),
            _option(SHB_USERAPPL, application.encode()),
        ]
        shb = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(shb_opts)
        idb_opts = []
        if if_name:
            idb_opts.append(_option(IF_NAME, if_name.encode()))
        if bpf:
            idb_opts.append(_option(IF_FILTER, b"\x00" + bpf.encode()))  # 0: libpcap syntax
        idb_opts.append(_option(IF_TSRESOL, bytes([tsresol])))
        idb = struct.pack("<HHI", linktype, 0, snaplen) + _options(idb_opts)
        out.write(_block(SHB_TYPE, shb) + _block(IDB_TYPE, idb))

    def _ts(self, ts_ns: int) -> tuple[int, int]:
        units = ts_ns // self._div
        return units >> 32, units & 0xFFFFFFFF

    def write_packet(self, ts_ns: int, data: bytes, orig_len: int | None = None) -> None:
        """One Enhanced Packet Block; `data` longer than the snaplen is cut to it."""
        if len(data) > self.snaplen:
            data = data[: self.snaplen]
        caplen = len(data)
        pad = _pad(caplen)
        total = 32 + caplen + pad
        hi, lo = self._ts(ts_ns)
        head = _EPB_HEAD.pack(EPB_TYPE, total, 0, hi, lo, caplen, max(orig_len or 0, caplen))
        self._out.write(head + data + b"\x00" * pad + _U32.pack(total))
        self.packets += 1

    def write_statistics(
        self,
        ts_ns: int,
        *,
        start_ns: int | None = None,
        received: int | None = None,
        kernel_drops: int | None = None,
        own_drops: int | None = None,
    ) -> None:
        """An Interface Statistics Block (what was seen and lost on the interface)."""
        opts = []
        if start_ns is not None:
            opts.append(_option(ISB_STARTTIME, struct.pack("<II", *self._ts(start_ns))))
        opts.append(_option(ISB_ENDTIME, struct.pack("<II", *self._ts(ts_ns))))
        if received is not None:
            opts.append(_option(ISB_IFRECV, struct.pack("<Q", received)))
        if kernel_drops is not None:
            opts.append(_option(ISB_IFDROP, struct.pack("<Q", kernel_drops)))
        if own_drops is not None:
            opts.append(_option(ISB_OSDROP, struct.pack("<Q", own_drops)))
        hi, lo = self._ts(ts_ns)
        self._out.write(_block(ISB_TYPE, struct.pack("<III", 0, hi, lo) + _options(opts)))

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.flush()
            self._out.close()
