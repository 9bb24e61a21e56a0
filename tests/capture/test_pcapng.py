"""pcapng reading: sections, interfaces, packet blocks, secrets, damage; real captures vs tshark."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcaptools import finished

import tlsinspect.capture as capture
from tlsinspect.capture import open_capture
from tlsinspect.errors import NotACapture, UnsupportedCapture

CAPTURES = (Path(__file__).parents[2] / ".." / "shared" / "captures").resolve()
TLS_KEY_LOG = 0x544C534B


def pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def block(o: str, btype: int, body: bytes) -> bytes:
    body = pad4(body)
    blen = 12 + len(body)
    return struct.pack(o + "II", btype, blen) + body + struct.pack(o + "I", blen)


def options(o: str, opts) -> bytes:
    if not opts:
        return b""
    out = b"".join(struct.pack(o + "HH", code, len(v)) + pad4(v) for code, v in opts)
    return out + struct.pack(o + "HH", 0, 0)


def shb(o: str, version=(1, 0), opts=()) -> bytes:
    body = struct.pack(o + "IHHq", 0x1A2B3C4D, *version, -1) + options(o, opts)
    return block(o, 0x0A0D0D0A, body)


def idb(o: str, linktype: int, snaplen=0, tsresol=None, tsoffset=None, opts=()) -> bytes:
    opts = list(opts)
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(o + "q", tsoffset)))
    return block(o, 1, struct.pack(o + "HHI", linktype, 0, snaplen) + options(o, opts))


def epb(o: str, ifid: int, ts: int, data: bytes, orig_len=None, opts=()) -> bytes:
    fixed = struct.pack(
        o + "IIIII",
        ifid,
        ts >> 32,
        ts & 0xFFFFFFFF,
        len(data),
        len(data) if orig_len is None else orig_len,
    )
    return block(o, 6, fixed + pad4(data) + options(o, opts))


def opb(o: str, ifid: int, ts: int, data: bytes, orig_len=None) -> bytes:
    fixed = struct.pack(
        o + "HHIIII", ifid, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), orig_len or len(data)
    )
    return block(o, 2, fixed + pad4(data))


def spb(o: str, data: bytes, orig_len=None) -> bytes:
    return block(o, 3, struct.pack(o + "I", len(data) if orig_len is None else orig_len) + data)


def dsb(o: str, stype: int, secret: bytes) -> bytes:
    return block(o, 0x0A, struct.pack(o + "II", stype, len(secret)) + pad4(secret))


KEYLOG = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n" * 3 + b"x"  # odd length


def two_sections() -> tuple[bytes, list, list[str]]:
    """A little-endian section and a big-endian one; expected records and problem snippets."""
    le, be = "<", ">"
    s1 = [
        shb(le, opts=[(4, b"test-writer")]),
        idb(le, 1, 65535, opts=[(2, b"eth0"), (1, b"odd")]),
        idb(le, 101, 0, tsresol=9),
        idb(le, 113, 262144, tsresol=0x8A, tsoffset=100),
        block(le, 4, b"\x01\x00\x04\x00\x0a\x00\x00\x01\x00\x00\x00\x00"),  # NRB
        epb(
            le, 0, 1_700_000_000_123_456, b"A" * 60, 60, opts=[(2, b"\x01\x00\x00\x00"), (1, b"c")]
        ),
        epb(le, 1, 1_700_000_000_123_456_789, b"BBBBB", 1514),
        epb(le, 2, 5 * 1024 + 512, b"C" * 7),
        spb(le, b"D" * 10),
        opb(le, 1, 42, b"E" * 3, 3),
        dsb(le, TLS_KEY_LOG, KEYLOG),
        block(le, 5, struct.pack("<III", 0, 0, 0)),  # ISB
        block(le, 0x00000BAD, b"\x00\x00\x7e\x4d" + b"custom"),
        block(le, 0x12345678, b"whatever"),
        epb(le, 7, 1, b"lost"),
        epb(le, 7, 2, b"lost"),
    ]
    section2_at = sum(map(len, s1))
    s2 = [
        shb(be),
        idb(be, 228, 8, tsresol=6),
        epb(be, 0, 2_000_000, b"F" * 20, 20),
        epb(be, 1, 3, b"nope"),
        spb(be, b"G" * 10),
        dsb(be, 0x12345678, b""),
    ]
    expected = [
        (1_700_000_000_123_456_000, 1, b"A" * 60, 60, 0),
        (1_700_000_000_123_456_789, 101, b"BBBBB", 1514, 1),
        (105_500_000_000, 113, b"C" * 7, 7, 2),
        (105_500_000_000, 1, b"D" * 10, 10, 0),  # SPB: interface 0, timestamp of the last packet
        (42, 101, b"E" * 3, 3, 1),
        (2_000_000_000, 228, b"F" * 20, 20, 3),
        (2_000_000_000, 228, b"G" * 8, 10, 3),  # SPB cut by the interface's snaplen
    ]
    problems = [
        "2 packets skipped (first at byte ",
        "interface 7 is not declared in the section at byte 0, which has 3 interface(s)",
        "1 packet skipped",
        f"interface 1 is not declared in the section at byte {section2_at}",
    ]
    return b"".join(s1 + s2), expected, problems


def write(tmp_path, content, name="t.pcapng"):
    path = tmp_path / name
    path.write_bytes(content)
    return finished(path)


def read_all(path):
    with open_capture(path) as src:
        return src, list(src)


def test_two_sections_many_interfaces_and_blocks(tmp_path):
    content, expected, problems = two_sections()
    src, recs = read_all(write(tmp_path, content))
    assert src.format == "pcapng"
    assert recs == expected
    assert src.packets == len(expected)
    assert src.secrets == [(TLS_KEY_LOG, KEYLOG), (0x12345678, b"")]
    assert len(src.problems) == 2
    joined = "\n".join(src.problems)
    for snippet in problems:
        assert snippet in joined
    assert src.bytes_read == src.size == len(content)


@pytest.mark.parametrize("chunk", [1, 2, 5, 11, 12, 13, 27, 28, 29, 33, 64, 100, 333])
def test_any_chunk_size_gives_the_same_result(tmp_path, monkeypatch, chunk):
    content, expected, _ = two_sections()
    path = write(tmp_path, content)
    reference = read_all(path)[0].problems
    monkeypatch.setattr(capture, "CHUNK_SIZE", chunk)
    src, recs = read_all(path)
    assert recs == expected
    assert src.problems == reference
    assert src.secrets[0] == (TLS_KEY_LOG, KEYLOG)


def test_timestamp_resolutions_and_offset(tmp_path):
    o = "<"
    content = b"".join(
        [
            shb(o),
            idb(o, 1, tsresol=3),  # milliseconds
            idb(o, 1, tsresol=12),  # picoseconds
            idb(o, 1, tsresol=0x80 | 20),  # 2^-20 s
            idb(o, 1, tsoffset=-10),  # microseconds, 10 s earlier
            epb(o, 0, 1_500, b""),
            epb(o, 1, 1_500_000_000_001_999, b""),
            epb(o, 2, 3 << 19, b""),
            epb(o, 3, 20_000_001, b""),
        ]
    )
    src, recs = read_all(write(tmp_path, content))
    assert [r[0] for r in recs] == [1_500_000_000, 1_500_000_000_001, 1_500_000_000, 10_000_001_000]


def test_damaged_block_length_stops_reading(tmp_path):
    o = "<"
    good = shb(o) + idb(o, 1) + epb(o, 0, 1, b"ok")
    bad = bytearray(epb(o, 0, 2, b"bad!"))
    struct.pack_into("<I", bad, 4, len(bad) + 2)  # not a multiple of 4
    after = epb(o, 0, 3, b"never")
    src, recs = read_all(write(tmp_path, good + bytes(bad) + after))
    assert [r[2] for r in recs] == [b"ok"]
    assert src.problems == [
        f"pcapng block at byte {len(good)} has a damaged length ({len(bad) + 2}): reading stopped"
    ]


def test_mismatched_trailing_length_stops_reading(tmp_path):
    o = ">"
    good = shb(o) + idb(o, 1) + epb(o, 0, 1, b"ok")
    bad = bytearray(epb(o, 0, 2, b"bad!"))
    struct.pack_into(">I", bad, len(bad) - 4, 999)
    src, recs = read_all(write(tmp_path, good + bytes(bad) + epb(o, 0, 3, b"never")))
    assert [r[2] for r in recs] == [b"ok"]
    assert len(src.problems) == 1
    assert f"block at byte {len(good)} is damaged" in src.problems[0]
    assert "but 999 at the end" in src.problems[0]


@pytest.mark.parametrize("blen", [0, 8, 0x7FFFFFFC])
def test_impossible_block_lengths(tmp_path, blen):
    o = "<"
    good = shb(o) + idb(o, 1) + epb(o, 0, 1, b"ok")
    bad = bytearray(epb(o, 0, 2, b"bad!"))
    struct.pack_into("<I", bad, 4, blen)
    src, recs = read_all(write(tmp_path, good + bytes(bad)))
    assert len(recs) == 1
    assert src.problems == [
        f"pcapng block at byte {len(good)} has a damaged length ({blen}): reading stopped"
    ]


def test_captured_length_beyond_its_block(tmp_path):
    o = "<"
    good = shb(o) + idb(o, 1)
    bad = bytearray(epb(o, 0, 2, b"data"))
    struct.pack_into("<I", bad, 20, 500)
    src, recs = read_all(write(tmp_path, good + bytes(bad)))
    assert recs == []
    assert src.problems == [
        f"enhanced packet block at byte {len(good)} is damaged (captured length 500 does not fit "
        f"in its block length {len(bad)}): reading stopped"
    ]


def test_truncated_last_block(tmp_path):
    o = "<"
    good = shb(o) + idb(o, 1) + epb(o, 0, 1, b"ok")
    last = epb(o, 0, 2, b"x" * 100)
    src, recs = read_all(write(tmp_path, good + last[:50]))
    assert len(recs) == 1
    assert src.problems == [
        f"capture truncated: last enhanced packet block at byte {len(good)} needs {len(last)} "
        f"bytes, only 50 remain"
    ]


def test_stray_bytes_at_the_end(tmp_path):
    o = "<"
    good = shb(o) + idb(o, 1) + epb(o, 0, 1, b"ok")
    src, recs = read_all(write(tmp_path, good + b"\x06\x00\x00"))
    assert len(recs) == 1
    assert src.problems == [
        f"capture truncated: 3 stray bytes at byte {len(good)}, too few for a block"
    ]


def test_bad_byte_order_magic_in_a_later_section(tmp_path):
    o = "<"
    good = shb(o) + idb(o, 1) + epb(o, 0, 1, b"ok")
    bad = bytearray(shb(o))
    bad[8:12] = b"\x00\x11\x22\x33"
    src, recs = read_all(write(tmp_path, good + bytes(bad) + epb(o, 0, 1, b"no")))
    assert len(recs) == 1
    assert src.problems == [
        f"section header block at byte {len(good)} has a bad byte-order magic 0x00112233: "
        f"reading stopped"
    ]


def test_damaged_interface_options_are_reported_but_not_fatal(tmp_path):
    o = "<"
    body = struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 40) + b"\x09\x00\x00\x00"
    content = shb(o) + block(o, 1, body) + epb(o, 0, 7, b"ok")
    src, recs = read_all(write(tmp_path, content))
    assert recs == [(7000, 1, b"ok", 2, 0)]
    assert len(src.problems) == 1 and "damaged option list" in src.problems[0]


def test_bad_byte_order_magic_is_not_a_capture(tmp_path):
    content = bytearray(shb("<") + idb("<", 1))
    content[8:12] = b"abcd"
    path = write(tmp_path, bytes(content), "bad.pcapng")
    with pytest.raises(NotACapture, match=r"bad\.pcapng: starts like pcapng.*0x61626364"):
        open_capture(path)


def test_unsupported_version(tmp_path):
    path = write(tmp_path, shb("<", version=(2, 0)) + idb("<", 1))
    with pytest.raises(UnsupportedCapture, match=r"pcapng version 2\.0"):
        open_capture(path)


def test_short_section_header_is_not_a_capture(tmp_path):
    path = write(tmp_path, shb("<")[:20])
    with pytest.raises(NotACapture, match=r"t\.pcapng: pcapng section header cut short"):
        open_capture(path)


def test_gzip_compressed_pcapng(tmp_path):
    content, expected, _ = two_sections()
    src, recs = read_all(write(tmp_path, gzip.compress(content), "t.pcapng.gz"))
    assert src.format == "pcapng"
    assert recs == expected


def test_big_blocks_across_chunks(tmp_path, monkeypatch):
    o = "<"
    packets = [bytes([i]) * (1000 + i) for i in range(50)]
    content = shb(o) + idb(o, 1) + b"".join(epb(o, 0, i, p) for i, p in enumerate(packets))
    content += dsb(o, TLS_KEY_LOG, b"k" * 5000)
    monkeypatch.setattr(capture, "CHUNK_SIZE", 700)
    src, recs = read_all(write(tmp_path, content))
    assert [r[2] for r in recs] == packets
    assert src.secrets == [(TLS_KEY_LOG, b"k" * 5000)]
    assert src.problems == []


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    packets=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2**64 - 1), st.binary(max_size=200)),
        max_size=15,
    ),
    chunk=st.integers(1, 500),
    order=st.sampled_from("<>"),
)
def test_roundtrip_any_chunking(tmp_path, monkeypatch, packets, chunk, order):
    content = shb(order) + idb(order, 1) + idb(order, 101, tsresol=9)
    content += b"".join(epb(order, i, ts, d) for i, ts, d in packets)
    monkeypatch.setattr(capture, "CHUNK_SIZE", chunk)
    src, recs = read_all(write(tmp_path, content, "h.pcapng"))
    expected = [
        (ts * 1000 if i == 0 else ts, 1 if i == 0 else 101, d, len(d), i)
        for i, ts, d in packets
        if i < 2
    ]
    assert recs == expected
    assert len(src.problems) == (1 if any(i == 2 for i, _, _ in packets) else 0)


# Real captures, checked against tshark.

REAL = sorted(p for p in CAPTURES.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))


@pytest.mark.shared
def test_real_captures_are_there():
    assert CAPTURES.is_dir(), f"{CAPTURES} is missing"
    assert len(REAL) >= 10


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_capture_reads_cleanly(path):
    src, recs = read_all(path)
    assert recs
    assert src.problems == []
    assert src.bytes_read == src.size == path.stat().st_size
    assert all(len(r[2]) <= r[3] for r in recs)


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-n", "-r", str(path), "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def epoch_ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_capture_matches_tshark(path):
    rows = tshark_fields(path, "frame.number", "frame.time_epoch", "frame.len", "frame.cap_len")
    src, recs = read_all(path)
    assert len(recs) == len(rows)
    assert recs[0][0] == epoch_ns(rows[0][1])
    for rec, (_num, epoch, wire_len, cap_len) in zip(recs, rows, strict=True):
        assert rec[0] == epoch_ns(epoch)
        assert rec[3] == int(wire_len)
        assert len(rec[2]) == int(cap_len)
