"""Key logs that do not help are reported: unusable ones stop the run, useless ones warn."""

from __future__ import annotations

from helpers import OWN, report_header, run_cli

TLS13 = OWN / "tls13.pcapng"


def test_a_file_without_key_log_lines_is_unusable(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("these are not secrets\n# nor is this\n")
    r = run_cli("--keylog", bad, TLS13)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no key log line" in lines[0] and str(bad) in lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    tshark = run_cli("--engine", "tshark", "--keylog", bad, TLS13)
    assert tshark.returncode == 2 and tshark.stderr.strip() == lines[0]


def test_a_key_log_of_other_sessions_warns_once():
    r = run_cli("--keylog", OWN / "demo.keylog", TLS13)
    assert r.returncode == 0, r.stderr
    warnings = [w for w in r.stderr.splitlines() if "decrypts none" in w]
    assert len(warnings) == 1 and "9 encrypted handshakes" in warnings[0]
    assert "0 of 9 decrypted with the key log" in report_header(r.stdout)


def test_the_header_counts_the_decrypted_sessions():
    r = run_cli("--keylog", OWN / "tls13.keylog", TLS13)
    assert r.returncode == 0, r.stderr
    assert "9 of 9 decrypted with the key log" in report_header(r.stdout)
    assert "decrypts none" not in r.stderr
    plain = run_cli(TLS13)
    assert "decrypted" not in report_header(plain.stdout)
