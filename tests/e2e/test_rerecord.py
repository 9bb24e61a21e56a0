"""Record fresh traffic from the real TLS stacks of this machine and check it at once: the
recording script writes the ground truth, tlsinspect must agree with it and with tshark."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT
from test_ground_truth import check_truth
from test_vs_tshark import ours, tshark_messages


@pytest.mark.parametrize("name", ["demo", "starttls"])
def test_fresh_recording_matches_its_truth(tmp_path, tshark, name):
    if os.geteuid() != 0:
        pytest.fail("recording on loopback needs root (CI runs as root)")
    for tool in ("dumpcap", "tcpdump", "openssl"):
        assert shutil.which(tool), f"{tool} missing: scripts/test installs it"
    cmd = [sys.executable, str(ROOT / "captures" / "record.py"), "--out", str(tmp_path)]
    for _attempt in range(2):  # the recording stops itself when a stack misbehaves under load
        r = subprocess.run([*cmd, "--only", name], capture_output=True, text=True, timeout=180)
        if r.returncode == 0:
            break
    assert r.returncode == 0, r.stdout + r.stderr
    truth = tmp_path / f"{name}.truth.json"
    check_truth(truth)
    capture = next(
        p
        for p in tmp_path.iterdir()
        if p.name.startswith(name) and p.suffix in (".pcap", ".pcapng")
    )
    assert ours(capture) == tshark_messages(tshark, capture)
