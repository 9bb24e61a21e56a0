"""NSS key logs: the real ones shipped with the captures, the same text damaged line by line, and
key logs carried in pcapng Decryption Secrets Blocks (written by editcap)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import OWN, SHARED
from hypothesis import given
from hypothesis import strategies as st

from tlsinspect.capture import open_capture
from tlsinspect.tls.keylog import (
    CLIENT_HANDSHAKE_TRAFFIC_SECRET,
    CLIENT_RANDOM,
    CLIENT_TRAFFIC_SECRET_0,
    DSB_TLS_KEY_LOG,
    EXPORTER_SECRET,
    SERVER_HANDSHAKE_TRAFFIC_SECRET,
    SERVER_TRAFFIC_SECRET_0,
    KeyLog,
    keylog_from_secrets,
    parse_keylog,
)

DEMO = OWN / "demo.keylog"
TLS13 = OWN / "tls13.keylog"
HOTPLACE = SHARED / "hotplace__tls13__sslkeylog"
SCAPY = SHARED / "scapy__tls_nss_example.keys.txt"

TLS13_LABELS = {
    CLIENT_HANDSHAKE_TRAFFIC_SECRET,
    SERVER_HANDSHAKE_TRAFFIC_SECRET,
    CLIENT_TRAFFIC_SECRET_0,
    SERVER_TRAFFIC_SECRET_0,
    EXPORTER_SECRET,
}


def secret_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line and not line.startswith(b"#")]


def first(path: Path, label: str) -> tuple[bytes, bytes]:
    """(client random, secret) of the first line with `label` in a real key log."""
    for line in secret_lines(path):
        name, random, secret = line.split()
        if name == label.encode():
            return bytes.fromhex(random.decode()), bytes.fromhex(secret.decode())
    raise AssertionError(f"no {label} in {path}")


@pytest.mark.parametrize(
    "path, sessions",
    # sessions: demo and tls13 from their .truth.json (one key log entry per recorded session,
    # the TLS 1.2 ones of demo included); hotplace and scapy counted in the files by hand
    [(DEMO, 7), (TLS13, 9), (HOTPLACE, 12), (SCAPY, 2)],
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
def test_real_key_logs(path: Path, sessions: int) -> None:
    keylog = parse_keylog(path.read_bytes())
    assert keylog.bad_lines == 0
    assert len(keylog) == sessions
    entries = sum(len(by_label) for by_label in keylog.secrets.values())
    assert entries == len(secret_lines(path))
    for by_label in keylog.secrets.values():
        if CLIENT_RANDOM in by_label:
            assert set(by_label) == {CLIENT_RANDOM}
            assert len(by_label[CLIENT_RANDOM]) == 48
        else:  # a TLS 1.3 session: every stack here logs the five secrets
            assert set(by_label) == TLS13_LABELS
            assert {len(s) for s in by_label.values()} in ({32}, {48})


def test_get_and_contains() -> None:
    keylog = parse_keylog(TLS13.read_bytes())
    random, secret = first(TLS13, SERVER_HANDSHAKE_TRAFFIC_SECRET)
    assert random in keylog
    assert bytearray(random) in keylog
    assert keylog.get(random, SERVER_HANDSHAKE_TRAFFIC_SECRET) == secret
    assert keylog.get(random, CLIENT_RANDOM) is None
    assert keylog.get(bytes(32), SERVER_HANDSHAKE_TRAFFIC_SECRET) is None
    assert bytes(32) not in keylog
    assert random.hex() not in keylog  # text is not a client random
    assert "sessions" in repr(keylog)


@pytest.mark.shared
def test_str_input_crlf_bom_tabs_comments_and_blank_lines() -> None:
    lines = secret_lines(SCAPY)
    text = (
        b"\xef\xbb\xbf# written on Windows\r\n\r\n   # an indented comment\r\n"
        + b"\r\n".join(b"\t".join(line.split()) + b"  " for line in lines)
        + b"\r\n\r\n"
    )
    reference = parse_keylog(SCAPY.read_bytes())
    for keylog in (parse_keylog(text), parse_keylog(text.decode("utf-8"))):
        assert keylog.secrets == reference.secrets
        assert keylog.bad_lines == 0


def test_unknown_labels_are_skipped_without_counting() -> None:
    random, secret = first(DEMO, CLIENT_RANDOM)
    text = b"\n".join(
        [
            # the older forms Wireshark also reads, and a label from a future version
            b"RSA 0123456789abcdef " + secret.hex().encode(),
            b"PMS_CLIENT_RANDOM " + random.hex().encode() + b" " + secret.hex().encode(),
            b"CLIENT_TRAFFIC_SECRET_1 " + random.hex().encode() + b" " + secret[:32].hex().encode(),
        ]
    )
    keylog = parse_keylog(text)
    assert len(keylog) == 0
    assert keylog.bad_lines == 0


def test_malformed_lines_are_counted_and_the_rest_kept() -> None:
    good = secret_lines(DEMO)
    label, random, secret = good[0].split()
    damaged = [
        label + b" " + random,  # a field missing
        good[0] + b" extra",  # a field too many
        label + b" " + random[:-2] + b" " + secret,  # client random of 31 bytes
        label + b" " + random + b" " + secret[:-2],  # master secret of 47 bytes
        label + b" " + random + b" " + secret[:-1],  # odd number of hex digits
        label + b" " + random.replace(random[:2], b"zz", 1) + b" " + secret,  # not hex
        label + b" " + random + b" " + b"\xc3\xa9" * 48,  # not ASCII
        b"CLIENT_HANDSHAKE_TRAFFIC_SECRET " + random + b" " + secret[:40],  # 20-byte secret
        b"\x00\xff garbage",
    ]
    text = b"\n".join(damaged[:4] + good + damaged[4:])
    keylog = parse_keylog(text)
    assert keylog.bad_lines == len(damaged)
    assert keylog.secrets == parse_keylog(DEMO.read_bytes()).secrets


def test_merge_and_later_entries_win() -> None:
    demo = parse_keylog(DEMO.read_bytes())
    tls13 = parse_keylog(TLS13.read_bytes())
    merged = KeyLog()
    merged.merge(demo)
    merged.merge(tls13)
    assert len(merged) == len(demo) + len(tls13)
    assert merged.bad_lines == 0
    for source in (demo, tls13):
        for random, by_label in source.secrets.items():
            for label, secret in by_label.items():
                assert merged.get(random, label) == secret

    random, secret = first(DEMO, CLIENT_RANDOM)
    replacement = parse_keylog(
        b"CLIENT_RANDOM " + random.hex().encode() + b" " + secret[::-1].hex().encode() + b"\nx\n"
    )
    assert replacement.bad_lines == 1
    merged.merge(replacement)
    assert merged.get(random, CLIENT_RANDOM) == secret[::-1]
    assert merged.bad_lines == 1
    assert len(merged) == len(demo) + len(tls13)

    line = b"CLIENT_RANDOM " + random.hex().encode() + b" "
    twice = parse_keylog(line + secret.hex().encode() + b"\n" + line + secret[::-1].hex().encode())
    assert twice.get(random, CLIENT_RANDOM) == secret[::-1]


def test_key_log_from_pcapng_decryption_secrets_block(tmp_path: Path) -> None:
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.fail("editcap is not installed: it comes with tshark (apt-get install tshark)")
    out = tmp_path / "with-secrets.pcapng"
    subprocess.run(
        [editcap, "--inject-secrets", f"tls,{TLS13}", str(OWN / "tls13.pcapng"), str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with open_capture(out) as src:
        for _ in src:
            pass
        blocks = list(src.secrets)
    assert [t for t, _ in blocks] == [DSB_TLS_KEY_LOG]
    keylog = keylog_from_secrets(blocks)
    assert keylog.secrets == parse_keylog(TLS13.read_bytes()).secrets
    # blocks of other kinds (here an SSH key log, type "SSHK") are not TLS key logs
    assert len(keylog_from_secrets([(0x5353484B, blocks[0][1])] + blocks[1:])) == 0


@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes) -> None:
    keylog = parse_keylog(data)
    assert keylog.bad_lines <= len(data.splitlines())


@pytest.mark.shared
@given(st.data())
def test_damaged_real_key_log_never_raises(data: st.DataObject) -> None:
    text = bytearray(HOTPLACE.read_bytes())
    for _ in range(data.draw(st.integers(0, 8))):
        at = data.draw(st.integers(0, len(text) - 1))
        text[at] = data.draw(st.integers(0, 255))
    keylog = parse_keylog(bytes(text))
    # one changed byte damages at most two lines (it may turn into a line break)
    assert len(keylog) <= 12 + 8
    assert keylog.bad_lines <= 2 * 8
