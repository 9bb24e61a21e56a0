"""The pcapng writer of `tlsinspect live --write`: read back by tlsinspect's reader and tshark.

The packets written are those of a recorded capture, so what comes back can be compared with
the original: bytes, timestamps (to the resolution written), link type, the verdicts.
"""

from __future__ import annotations

import io
import struct
import subprocess
from pathlib import Path

import pytest
from helpers import OWN

import tlsinspect
from tlsinspect.capture import open_capture
from tlsinspect.capture.pcapng_writer import PcapngWriter

SOURCE = OWN / "tls12.pcapng"


def packets(path: Path = SOURCE) -> list[tuple[int, int, bytes, int, int]]:
    with open_capture(path) as src:
        return list(src)


def write(path: Path, tsresol: int, records: list, snaplen: int = 262144) -> PcapngWriter:
    w = PcapngWriter(
        open(path, "wb"),
        records[0][1],
        snaplen,
        if_name="lo",
        bpf="tcp port 8401",
        tsresol=tsresol,
    )
    for ts, _lt, data, orig, _iface in records:
        w.write_packet(ts, data, orig)
    w.write_statistics(
        records[-1][0], start_ns=records[0][0], received=len(records), kernel_drops=3, own_drops=1
    )
    w.close()
    return w


def blocks(data: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of every block, checking each block's two lengths agree."""
    out, i = [], 0
    while i < len(data):
        btype, total = struct.unpack_from("<II", data, i)
        assert total % 4 == 0 and struct.unpack_from("<I", data, i + total - 4)[0] == total
        out.append((btype, data[i + 8 : i + total - 4]))
        i += total
    assert i == len(data)
    return out


def options(body: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i + 4 <= len(body):
        code, n = struct.unpack_from("<HH", body, i)
        if code == 0:
            break
        out[code] = body[i + 4 : i + 4 + n]
        i += 4 + n + (4 - n % 4) % 4
    return out


@pytest.mark.parametrize("tsresol", [6, 9])
def test_round_trip_through_our_reader(tmp_path: Path, tsresol: int):
    original = packets()
    out = tmp_path / "copy.pcapng"
    w = write(out, tsresol, original)
    assert w.packets == len(original)
    copy = packets(out)
    assert len(copy) == len(original)
    unit = 10 ** (9 - tsresol)
    for (ts, lt, data, orig, _), (ts2, lt2, data2, orig2, iface2) in zip(
        original, copy, strict=True
    ):
        assert (lt2, data2, orig2, iface2) == (lt, data, orig, 0)
        assert ts2 == ts // unit * unit


def verdicts(path: Path) -> list[tuple[int, int, str, str]]:
    return sorted(
        (s["client_port"], s["server_port"], s["verdict"], s["sni"])
        for s in tlsinspect.sessions(path)
    )


def test_the_verdicts_survive_the_copy(tmp_path: Path):
    out = tmp_path / "copy.pcapng"
    write(out, 6, packets())
    assert verdicts(out) == verdicts(SOURCE)


def test_tshark_reads_it(tmp_path: Path, tshark: str):
    original = packets()
    out = tmp_path / "copy.pcapng"
    write(out, 9, original)
    r = subprocess.run(
        [
            tshark,
            "-r",
            str(out),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.len",
            "-e",
            "frame.interface_name",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(rows) == len(original)
    for (ts, _lt, _data, orig, _), (epoch, length, name) in zip(original, rows, strict=True):
        whole, frac = epoch.split(".")
        assert int(whole) * 10**9 + int(frac.ljust(9, "0")[:9]) == ts
        assert int(length) == orig and name == "lo"


def test_blocks_and_options(tmp_path: Path):
    original = packets()[:5]
    out = tmp_path / "five.pcapng"
    write(out, 6, original, snaplen=100)
    found = blocks(out.read_bytes())
    assert [t for t, _ in found] == [0x0A0D0D0A, 1] + [6] * 5 + [5]
    shb = found[0][1]
    assert struct.unpack_from("<IHHq", shb) == (0x1A2B3C4D, 1, 0, -1)
    assert options(shb[16:])[4] == b"tlsinspect"
    idb = found[1][1]
    linktype, _, snaplen = struct.unpack_from("<HHI", idb)
    assert (linktype, snaplen) == (original[0][1], 100)
    idb_opts = options(idb[8:])
    assert idb_opts[2] == b"lo" and idb_opts[9] == b"\x06" and idb_opts[11] == b"\x00tcp port 8401"
    for (_t, body), (_ts, _lt, data, orig, _) in zip(found[2:7], original, strict=True):
        caplen, origlen = struct.unpack_from("<II", body, 12)
        assert caplen == min(len(data), 100) and origlen == orig  # cut to the snaplen
    isb = options(found[7][1][12:])
    assert struct.unpack("<Q", isb[4])[0] == 5  # isb_ifrecv
    assert struct.unpack("<Q", isb[5])[0] == 3  # isb_ifdrop
    assert struct.unpack("<Q", isb[7])[0] == 1  # isb_osdrop


def test_a_file_cut_after_any_block_is_still_readable(tmp_path: Path, tshark: str):
    """What a killed process leaves (its last flushed block complete) is a valid capture."""
    buf = io.BytesIO()
    original = packets()[:20]
    w = PcapngWriter(buf, original[0][1], 65535)
    ends = [buf.tell()]
    for ts, _lt, data, orig, _ in original:
        w.write_packet(ts, data, orig)
        ends.append(buf.tell())
    data = buf.getvalue()
    for n, end in enumerate(ends):
        cut = tmp_path / f"cut{n}.pcapng"
        cut.write_bytes(data[:end])
        assert len(packets(cut)) == n
        r = subprocess.run([tshark, "-r", str(cut)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.splitlines()) == n


def test_bad_resolution():
    with pytest.raises(ValueError):
        PcapngWriter(io.BytesIO(), 1, 65535, tsresol=3)
