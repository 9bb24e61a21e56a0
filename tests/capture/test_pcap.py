"""Classic pcap reading: byte orders, resolutions, truncation, garbage, gzip, chunk edges."""

from __future__ import annotations

import gzip
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcaptools import finished

import tlsinspect.capture as capture
from tlsinspect.capture import CaptureSource, open_capture
from tlsinspect.errors import NotACapture, UnsupportedCapture

MAGIC_MICRO = 0xA1B2C3D4
MAGIC_NANO = 0xA1B23C4D
MAGIC_MODIFIED = 0xA1B2CD34


def pcap_bytes(records, order="<", magic=MAGIC_MICRO, linktype=1, snaplen=65535, version=(2, 4)):
    """A pcap file: records are (sec, frac, data, orig_len)."""
    out = [struct.pack(order + "IHHiIII", magic, *version, 0, 0, snaplen, linktype)]
    extra = b"\x00" * 8 if magic == MAGIC_MODIFIED else b""
    for sec, frac, data, orig_len in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(data), orig_len) + extra + data)
    return b"".join(out)


RECORDS = [
    (1_700_000_000, 123_456, b"\x01" * 60, 60),
    (1_700_000_001, 999_999, bytes(range(200)), 1514),  # cut by the snaplen
    (0, 0, b"", 0),
    (4_000_000_000, 1, b"\xff" * 7, 7),
]


def write(tmp_path, content, name="t.pcap"):
    path = tmp_path / name
    path.write_bytes(content)
    return finished(path)


def read_all(path):
    with open_capture(path) as src:
        return src, list(src)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("magic, unit", [(MAGIC_MICRO, 1000), (MAGIC_NANO, 1)])
def test_byte_orders_and_resolutions(tmp_path, order, magic, unit):
    path = write(tmp_path, pcap_bytes(RECORDS, order, magic, linktype=113))
    src, recs = read_all(path)
    assert src.format == "pcap"
    assert src.path == path
    assert src.problems == []
    assert src.packets == len(RECORDS)
    assert src.size == src.bytes_read == path.stat().st_size
    assert recs == [
        (sec * 1_000_000_000 + frac * unit, 113, data, orig, 0) for sec, frac, data, orig in RECORDS
    ]
    assert all(type(r[2]) is bytes for r in recs)


def test_timestamps_in_nanoseconds(tmp_path):
    micro = write(tmp_path, pcap_bytes([(10, 5, b"x", 1)]), "micro.pcap")
    nano = write(tmp_path, pcap_bytes([(10, 5, b"x", 1)], magic=MAGIC_NANO), "nano.pcap")
    assert read_all(micro)[1][0][0] == 10_000_005_000
    assert read_all(nano)[1][0][0] == 10_000_000_005


def test_modified_pcap_record_headers_are_skipped(tmp_path):
    path = write(tmp_path, pcap_bytes(RECORDS, ">", MAGIC_MODIFIED))
    src, recs = read_all(path)
    assert [r[2] for r in recs] == [r[2] for r in RECORDS]
    assert src.problems == []


def test_fcs_bits_of_the_link_type_are_masked(tmp_path):
    path = write(tmp_path, pcap_bytes(RECORDS[:1], linktype=0x14000000 | 1))
    assert read_all(path)[1][0][1] == 1


def test_truncated_last_record(tmp_path):
    content = pcap_bytes(RECORDS[:2])
    path = write(tmp_path, content[:-100])
    src, recs = read_all(path)
    assert len(recs) == 1 and recs[0][2] == RECORDS[0][2]
    last_at = 24 + 16 + 60
    assert src.problems == [
        f"capture truncated: last packet record at byte {last_at} needs 200 bytes, only 100 remain"
    ]
    assert src.packets == 1


def test_truncated_record_header(tmp_path):
    content = pcap_bytes(RECORDS[:2])
    path = write(tmp_path, content[: 24 + 16 + 60 + 5])
    src, recs = read_all(path)
    assert len(recs) == 1
    assert len(src.problems) == 1
    assert (
        "capture truncated" in src.problems[0]
        and "only 5 of its 16 header bytes" in (src.problems[0])
    )


def test_header_only_file_has_no_packets_and_no_problem(tmp_path):
    src, recs = read_all(write(tmp_path, pcap_bytes([])))
    assert recs == [] and src.problems == []


def test_insane_captured_length_stops_reading(tmp_path):
    good = pcap_bytes(RECORDS[:1])
    bad = struct.pack("<IIII", 1, 2, 300_000, 300_000) + b"\x00" * 1000
    src, recs = read_all(write(tmp_path, good + bad + b"\x00" * 400_000))
    assert len(recs) == 1
    assert len(src.problems) == 1
    assert "claims 300000 captured bytes" in src.problems[0]
    assert "reading stopped" in src.problems[0]


def test_garbage_is_not_a_capture(tmp_path):
    path = write(tmp_path, b"hello world, this is text\n", "x.txt")
    with pytest.raises(NotACapture) as err:
        open_capture(path)
    assert str(err.value) == f"{path}: not a pcap or pcapng capture (starts with 'hell')"
    assert "\n" not in str(err.value)


def test_binary_garbage_is_described_in_hex(tmp_path):
    path = write(tmp_path, b"\x7fELF" + b"\x00" * 60, "a.out")
    with pytest.raises(NotACapture, match=r"starts with 0x7f454c46"):
        open_capture(path)


def test_empty_file(tmp_path):
    path = write(tmp_path, b"", "empty.pcap")
    with pytest.raises(NotACapture) as err:
        open_capture(path)
    assert str(err.value) == f"{path}: empty file"


def test_file_shorter_than_the_header(tmp_path):
    path = write(tmp_path, pcap_bytes([])[:10])
    with pytest.raises(NotACapture, match=r"t\.pcap: pcap file header cut short \(10 of 24"):
        open_capture(path)


def test_unsupported_version(tmp_path):
    path = write(tmp_path, pcap_bytes(RECORDS, version=(3, 0)))
    with pytest.raises(UnsupportedCapture, match=r"t\.pcap: pcap version 3\.0"):
        open_capture(path)


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_capture(tmp_path / "nope.pcap")


def test_str_path_is_accepted(tmp_path):
    path = write(tmp_path, pcap_bytes(RECORDS))
    with open_capture(str(path)) as src:
        assert len(list(src)) == len(RECORDS)


def test_gzip_compressed_capture(tmp_path):
    content = pcap_bytes(RECORDS, ">", MAGIC_NANO)
    path = write(tmp_path, gzip.compress(content), "t.pcap.gz")
    src, recs = read_all(path)
    assert src.format == "pcap"
    assert [r[2] for r in recs] == [r[2] for r in RECORDS]
    assert src.problems == []
    assert src.size == path.stat().st_size
    assert src.bytes_read == src.size


def test_gzip_of_garbage_is_not_a_capture(tmp_path):
    path = write(tmp_path, gzip.compress(b"hello there"), "t.gz")
    with pytest.raises(NotACapture, match=r"starts with 'hell'"):
        open_capture(path)


def test_gzip_of_nothing_is_an_empty_file(tmp_path):
    path = write(tmp_path, gzip.compress(b""), "t.gz")
    with pytest.raises(NotACapture, match=r"empty file"):
        open_capture(path)


def test_damaged_gzip_stream_keeps_the_packets_before(tmp_path):
    records = [(i, i, bytes([i]) * 500, 500) for i in range(200)]
    compressed = gzip.compress(pcap_bytes(records), compresslevel=1)
    path = write(tmp_path, compressed[: len(compressed) // 2], "cut.pcap.gz")
    src, recs = read_all(path)
    assert 0 < len(recs) < 200
    assert recs == [
        (i * 1_000_000_000 + i * 1000, 1, bytes([i]) * 500, 500, 0) for i in range(len(recs))
    ]
    assert any("compressed data is damaged" in p for p in src.problems)


def test_packets_counts_as_records_are_yielded(tmp_path):
    path = write(tmp_path, pcap_bytes(RECORDS))
    with open_capture(path) as src:
        seen = []
        for _ in src:
            seen.append(src.packets)
    assert seen == [1, 2, 3, 4]


def test_close_stops_iteration(tmp_path):
    path = write(tmp_path, pcap_bytes(RECORDS))
    src = open_capture(path)
    assert isinstance(src, CaptureSource)
    it = iter(src)
    next(it)
    src.close()
    assert list(it) == []
    assert all(f.closed for f in src._files)


@pytest.mark.parametrize("chunk", [1, 3, 16, 17, 25, 100, 4096])
def test_small_chunks_give_the_same_records(tmp_path, monkeypatch, chunk):
    path = write(tmp_path, pcap_bytes(RECORDS * 5))
    expected = read_all(path)[1]
    monkeypatch.setattr(capture, "CHUNK_SIZE", chunk)
    src, recs = read_all(path)
    assert recs == expected
    assert src.problems == []
    assert src.bytes_read == src.size


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1),
            st.integers(0, 999_999),
            st.binary(max_size=300),
            st.integers(0, 2**32 - 1),
        ),
        max_size=20,
    ),
    chunk=st.integers(1, 700),
    cut=st.integers(0, 50),
    order=st.sampled_from("<>"),
)
def test_roundtrip_any_chunking_and_cut(tmp_path, monkeypatch, records, chunk, cut, order):
    content = pcap_bytes(records, order)
    content = content[: max(24, len(content) - cut)]
    path = write(tmp_path, content, "h.pcap")
    monkeypatch.setattr(capture, "CHUNK_SIZE", chunk)
    src, recs = read_all(path)
    expected = [(s * 1_000_000_000 + f * 1000, 1, d, o, 0) for s, f, d, o in records]
    assert recs == expected[: len(recs)]
    boundaries = [24]
    for _s, _f, data, _o in records:
        boundaries.append(boundaries[-1] + 16 + len(data))
    if len(content) in boundaries:
        assert len(recs) == boundaries.index(len(content)) and src.problems == []
    else:
        assert len(recs) < len(records)
        assert len(src.problems) == 1 and src.problems[0].startswith("capture truncated")
