"""scripts/snapshot: two snapshots of one small capture are identical, and `diff` sees a change."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "scripts" / "snapshot"
CAPTURE = "starttls.pcap"  # small, no key log: one variant of every output


def _snapshot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SNAPSHOT), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def test_snapshot_is_deterministic_and_diff_detects_a_change(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        r = _snapshot("write", str(d), "--only", CAPTURE)
        assert r.returncode == 0, r.stderr
    files = _files(a)
    base = f"captures/{CAPTURE}"
    for output in ("table", "json", "jsonl", "csv", "tshark-json", "check-json", "compare-json"):
        assert files[f"{base}/plain.{output}.stdout"], output
    assert files[f"{base}/plain.table.exit"] == b"0\n"
    assert any(n.endswith(".pem") for n in files if "/plain.export-certs.files/" in n)
    assert files[f"{base}/plain.api.files/sessions.json"].startswith(b"[")
    assert b'time="<t>"' in files[f"{base}/plain.check-text.files/junit.xml"]
    assert files == _files(b)

    same = _snapshot("diff", str(a), str(b))
    assert same.returncode == 0, same.stdout
    assert "0 of" in same.stdout

    changed = b / base / "plain.json.stdout"
    changed.write_bytes(changed.read_bytes().replace(b"mutual", b"mutuel", 1))
    (b / base / "plain.csv.exit").unlink()
    found = _snapshot("diff", str(a), str(b))
    assert found.returncode == 1
    assert f"differs: {base}/plain.json.stdout" in found.stdout
    assert '-      "verdict": "mutual"' in found.stdout or "mutuel" in found.stdout
    assert f"only in {a}: {base}/plain.csv.exit" in found.stdout
    assert "2 of" in found.stdout
