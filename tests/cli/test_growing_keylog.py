"""The key log of `tlsinspect live`, re-read as a running client appends to it."""

from __future__ import annotations

import os
from pathlib import Path

from tlsinspect.cli.live import GrowingKeyLog

LABEL = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"


def line(n: int) -> bytes:
    return f"{LABEL} {n:064x} {'ab' * 32}\n".encode()


def random(n: int) -> bytes:
    return bytes.fromhex(f"{n:064x}")


def test_appended_lines_are_read_and_a_partial_line_waits(tmp_path: Path):
    path = tmp_path / "keys.log"
    keys = GrowingKeyLog(str(path))  # the file does not exist yet
    keys.refresh(force=True)
    assert len(keys.log) == 0
    path.write_bytes(line(1) + line(2)[:40])  # the client is in the middle of a line
    keys.refresh(force=True)
    assert keys.log.get(random(1), LABEL) == bytes.fromhex("ab" * 32)
    assert keys.log.get(random(2), LABEL) is None
    with open(path, "ab") as f:
        f.write(line(2)[40:])
    keys.refresh(force=True)
    assert keys.log.get(random(2), LABEL) is not None


def test_a_replaced_file_is_read_from_its_start(tmp_path: Path):
    path = tmp_path / "keys.log"
    path.write_bytes(line(1) + line(2))
    keys = GrowingKeyLog(str(path))
    keys.refresh(force=True)
    tmp = tmp_path / "new.log"
    tmp.write_bytes(line(3))
    os.replace(tmp, path)  # a new file, shorter than what was read
    keys.refresh(force=True)
    assert keys.log.get(random(3), LABEL) is not None
    assert keys.log.get(random(1), LABEL) is not None  # secrets are only ever added


def test_only_the_newest_sessions_are_kept(tmp_path: Path):
    path = tmp_path / "keys.log"
    keys = GrowingKeyLog(str(path))
    keys.KEPT = 100
    with open(path, "ab") as f:
        for n in range(1, 251):
            f.write(line(n))
            if n % 50 == 0:
                f.flush()
                keys.refresh(force=True)
    assert len(keys.log) == 100
    assert keys.log.get(random(150), LABEL) is None
    assert keys.log.get(random(151), LABEL) is not None
    assert keys.log.get(random(250), LABEL) is not None
