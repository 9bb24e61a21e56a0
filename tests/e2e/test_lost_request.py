"""A capture that lost the server's CertificateRequest (a mirror port dropping packets).

From each recorded capture with a key log, the frames tshark dissects a CertificateRequest in
are deleted with editcap. What is left must never be called one-way for a session whose server
asked (the absence of a request is shown only by the server's flight read to its end, or by the
client's answer read without a Certificate), nor mutual for one whose truth is not; a client
Certificate read without the request is answered as one (RFC 8446 4.4.2, RFC 5246 7.4.6: a
client sends it only when asked).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import OWN, own_captures, run_cli, run_tshark

TSHARK = shutil.which("tshark")
EDITCAP = shutil.which("editcap")
pytestmark = pytest.mark.skipif(
    TSHARK is None or EDITCAP is None, reason="tshark and editcap (Wireshark) are not installed"
)

KEYED = [p for p in own_captures() if p.with_suffix(".keylog").exists()]


Conn = tuple[int, int]  # (client port, server port)


def _truth(capture: Path) -> dict[Conn, dict]:
    """The recorded truth by connection; a session recorded without its client port is keyed by
    its server port alone when no other session has that server port."""
    sessions = json.loads(capture.with_suffix(".truth.json").read_text())["sessions"]
    ports = [t["server_port"] for t in sessions]
    out: dict[Conn, dict] = {}
    for t in sessions:
        if t.get("client_port"):
            out[(t["client_port"], t["server_port"])] = t
        elif ports.count(t["server_port"]) == 1:
            out[(0, t["server_port"])] = t
    return out


def _truth_of(conn: Conn, truth: dict[Conn, dict]) -> dict | None:
    return truth.get(conn) or truth.get((0, conn[1]))


def _without_requests(capture: Path, keylog: Path, out: Path) -> set[Conn]:
    """Write `capture` less its frames holding a CertificateRequest to `out`; return the
    connections that lost one."""
    rows = run_tshark(
        TSHARK,  # type: ignore[arg-type]
        capture,
        ["frame.number", "tcp.srcport", "tcp.dstport"],
        "tls.handshake.type == 13",
        keylog=keylog,
    )
    frames = [r[0] for r in rows]
    subprocess.run([EDITCAP, str(capture), str(out), *frames], check=True, timeout=60)  # type: ignore[list-item]
    return {(int(r[2]), int(r[1])) for r in rows}  # the server sent it


@pytest.mark.parametrize("capture", KEYED, ids=lambda p: p.name)
def test_lost_request_is_never_one_way(capture: Path, tmp_path: Path) -> None:
    keylog = capture.with_suffix(".keylog")
    damaged = tmp_path / capture.name
    lost = _without_requests(capture, keylog, damaged)
    truth = _truth(capture)
    assert lost, f"{capture.name}: tshark dissects no CertificateRequest in it"
    r = run_cli(damaged, "--keylog", keylog, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    seen = [json.loads(line) for line in r.stdout.splitlines()]
    checked = 0
    for s in seen:
        conn = (s["client_port"], s["server_port"])
        t = _truth_of(conn, truth)
        if t is None:
            continue
        if t["verdict"] != "mutual":
            assert s["verdict"] != "mutual", (capture.name, conn, s["reason"], t)
        if conn in lost:
            checked += 1
            assert s["verdict"] != "one-way", (capture.name, conn, s["reason"])
            if s["verdict"] == "mutual":
                assert "CertificateRequest was not read" in s["reason"], s["reason"]
    known = {c for c in lost if _truth_of(c, truth) is not None}
    assert checked == len(known) > 0, (capture.name, checked, lost)


def test_a_client_certificate_answers_a_request_not_read(tmp_path: Path) -> None:
    """Post-handshake requests travel alone in their record: with those frames gone, the
    client's Certificate and CertificateVerify still decide the session, and say how."""
    capture = OWN / "later_tls13.pcapng"
    keylog = capture.with_suffix(".keylog")
    damaged = tmp_path / capture.name
    lost = _without_requests(capture, keylog, damaged)
    truth = _truth(capture)
    r = run_cli(damaged, "--keylog", keylog, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    answered = []
    for s in map(json.loads, r.stdout.splitlines()):
        conn = (s["client_port"], s["server_port"])
        t = _truth_of(conn, truth)
        if conn in lost and t is not None and t.get("later_auth") and t["verdict"] == "mutual":
            answered.append(s)
    assert answered, "no mutual session of the recording lost its request"
    for s in answered:
        assert s["verdict"] == "mutual", s["reason"]
        assert s["cert_requested"] is False and s["client_cert_verify"] is True
        assert "the client's Certificate answers one" in s["reason"]
