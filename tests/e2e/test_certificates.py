"""Certificate checks on real traffic: `captures/certs.pcapng`, recorded by
`captures/record_certs.py` with certificates made wrong in known ways.

Three oracles. The recording script's truth says which checks must fail or warn on each chain
and whether the root-only CA bundle trusts it; the TLS stacks' own alerts are in the truth too.
`openssl verify` is run on every chain, from the PEM files `--export-certs` wrote, at the
capture's time: its verdict (and the kind of failure) must agree with tlsinspect's `ca_bundle`
check. And a fresh recording made during the test run must match its own truth the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from helpers import OWN, ROOT, flowed

CERTS = OWN / "certs.pcapng"
TRUTH = OWN / "certs.truth.json"

# Words the diagnosis must hold, per scenario (from what the script built and the stacks said).
DIAGNOSIS: dict[str, tuple[str, ...]] = {
    "certs-unknown-ca-refused": (
        "server rejected the client certificate: unknown_ca",
        "client chain issued by 'Rogue CA', server asked for 'Certs Test Root CA'",
    ),
    "certs-expired-client-refused": (
        "server rejected the client certificate: certificate_expired",
        "'client-expired' expired on ",
    ),
    "certs-expired-client-accepted": (
        "handshake completed, but the server accepted a client certificate",
        "'client-expired' expired on ",
    ),
    "certs-client-without-clientauth-eku": (
        "server rejected the client certificate: unsupported_certificate",
        "serverAuth does not include clientAuth",
    ),
    "certs-server-name-mismatch": (
        "the client accepted a server certificate that fails checks",
        "SNI 'other.example.net' matches none",
    ),
    "certs-missing-intermediate-refused": (
        "server rejected the client certificate: unknown_ca",
        "without its issuer 'Certs Client Intermediate CA'",
    ),
    "certs-expired-server-refused": (
        "client rejected the server certificate: certificate_expired",
        "'expired.example.test' expired on ",
    ),
}

# openssl verify error numbers (include/openssl/x509_vfy.h) by the kind of failure
OPENSSL_KIND = {
    9: "validity",  # certificate is not yet valid
    10: "validity",  # certificate has expired
    2: "path",  # unable to get issuer certificate
    18: "path",  # self-signed certificate
    19: "path",  # self-signed certificate in certificate chain
    20: "path",  # unable to get local issuer certificate
    21: "path",  # unable to verify the first certificate
    26: "purpose",  # unsupported certificate purpose
    62: "name",  # hostname mismatch
    64: "name",  # IP address mismatch
}


def _kind(ca_bundle_detail: str) -> str:
    """The kind of failure tlsinspect's `ca_bundle` check names."""
    if "expired on" in ca_bundle_detail or "not yet valid" in ca_bundle_detail:
        return "validity"
    if "name mismatch" in ca_bundle_detail:
        return "name"
    if "key usage" in ca_bundle_detail:
        return "purpose"
    return "path"


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlsinspect", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _json(*args: str | Path) -> list[dict]:
    r = run_cli("--format", "json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _by_port(sessions: list[dict]) -> dict[int, dict]:
    out = {s["server_port"]: s for s in sessions}
    assert len(out) == len(sessions), "one session per server port"
    return out


def _bundle_check(s: dict, role: str) -> dict:
    return next(c for c in s["chain_checks"][role]["checks"] if c["check"] == "ca_bundle")


def check_against_truth(truth_path: Path, export: Path) -> dict[str, int]:
    """tlsinspect (with and without the CA bundle) against the truth; returns counts."""
    doc = json.loads(truth_path.read_text())
    capture = truth_path.parent / doc["capture"]
    bundle = truth_path.parent / doc["ca_bundle"]
    plain = _by_port(_json(capture))
    anchored = _by_port(_json("--ca-bundle", bundle, "--export-certs", export, capture))
    assert len(plain) == len(doc["sessions"])
    counts = {"sessions": 0, "chains": 0, "checks": 0, "bundle": 0}
    for t in doc["sessions"]:
        s, sb = plain[t["server_port"]], anchored[t["server_port"]]
        label = f"{t['scenario']}: {s['reason']}"
        assert s["verdict"] == t["verdict"], label
        if t["alert"]:
            sent = [(a["sender"], a["description"]) for a in s["alerts"]]
            assert (t["alert"]["sender"], t["alert"]["description"]) in sent, label
        for role in ("client", "server"):
            summary = s["chain_checks"][role]
            expected = t["checks"].get(role)
            if expected is None:
                assert summary is None, (label, role)
                continue
            assert sorted(summary["failed"]) == sorted(expected["fail"]), (label, role, summary)
            assert sorted(summary["warnings"]) == sorted(expected["warn"]), (label, role, summary)
            for item in s[f"{role}_chain"]:
                counts["checks"] += len(item["checks"])
            counts["checks"] += len(summary["checks"])
            check = _bundle_check(sb, role)
            trusted = check["result"] in ("pass", "warn")
            assert trusted == t["ca_bundle"][role], (label, role, check)
            # the bundle's check is the only difference the bundle makes
            others = [n for n in sb["chain_checks"][role]["failed"] if n != "ca_bundle"]
            assert sorted(others) == sorted(expected["fail"]), (label, role)
            counts["chains"] += 1
            counts["bundle"] += 1
        # the diagnosis: every session that did not simply work has one; it names the alert
        if t["verdict"] in ("mutual", "one-way") and not any(
            c["fail"] for c in t["checks"].values()
        ):
            assert s["diagnosis"] is None, label
        else:
            assert s["diagnosis"], label
            if t["alert"]:
                assert t["alert"]["description"] in s["diagnosis"], label
        for words in DIAGNOSIS.get(t["scenario"], ()):
            assert words in (s["diagnosis"] or ""), (label, s["diagnosis"])
        counts["sessions"] += 1
    return counts


def openssl_agreement(truth_path: Path, export: Path) -> tuple[int, int]:
    """Run `openssl verify` on every chain exported by `--export-certs`, at the capture time,
    with the truth's CA bundle; it must agree with tlsinspect's `ca_bundle` check on the
    verdict and on the kind of failure. Returns (chains compared, agreeing)."""
    doc = json.loads(truth_path.read_text())
    capture = truth_path.parent / doc["capture"]
    bundle = truth_path.parent / doc["ca_bundle"]
    sessions = _json("--ca-bundle", bundle, capture)
    index = json.loads((export / "index.json").read_text())
    files = {e["sha256"]: export / e["file"] for e in index}
    compared = agreed = 0
    for s in sessions:
        epoch = int(datetime.fromisoformat(s["start_time"].replace("Z", "+00:00")).timestamp())
        for role in ("client", "server"):
            chain = s[f"{role}_chain"]
            if not chain:
                continue
            pems = [files[c["sha256"]] for c in chain]
            cmd = ["openssl", "verify", "-attime", str(epoch), "-CAfile", str(bundle)]
            cmd += ["-purpose", "sslclient" if role == "client" else "sslserver"]
            if role == "server":
                cmd += (
                    ["-verify_hostname", s["sni"]] if s["sni"] else ["-verify_ip", s["server_ip"]]
                )
            if len(pems) > 1:
                untrusted = export / f"untrusted-{s['index']}-{role}.pem"
                untrusted.write_text("".join(p.read_text() for p in pems[1:]))
                cmd += ["-untrusted", str(untrusted)]
            cmd.append(str(pems[0]))
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            check = _bundle_check(s, role)
            ours = check["result"] in ("pass", "warn")
            theirs = r.returncode == 0
            label = (s["server_port"], role, check["detail"], r.stdout + r.stderr)
            assert ours == theirs, label
            if not theirs:
                numbers = [int(n) for n in re.findall(r"error (\d+) at", r.stdout + r.stderr)]
                assert numbers, label
                assert OPENSSL_KIND.get(numbers[0]) == _kind(check["detail"]), label
            compared += 1
            agreed += 1
    return compared, agreed


def test_recorded_certificate_capture_matches_its_truth(tmp_path):
    counts = check_against_truth(TRUTH, tmp_path / "export")
    assert counts["sessions"] == 13 and counts["chains"] == 22, counts


def test_openssl_verify_agrees_on_every_chain(tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    export = tmp_path / "export"
    r = run_cli("--format", "json", "--export-certs", export, CERTS)
    assert r.returncode == 0, r.stderr
    compared, agreed = openssl_agreement(TRUTH, export)
    assert compared == 22 and agreed == compared


def test_export_certs_writes_every_certificate_once(tmp_path):
    export = tmp_path / "export"
    sessions = _json("--export-certs", export, CERTS)
    seen = {c["sha256"] for s in sessions for c in s["client_chain"] + s["server_chain"]}
    pems = {p.name.removesuffix(".pem") for p in export.glob("*.pem")}
    assert pems == seen
    index = json.loads((export / "index.json").read_text())
    assert {e["sha256"] for e in index} == seen
    uses = sum(len(s["client_chain"]) + len(s["server_chain"]) for s in sessions)
    assert sum(len(e["used_by"]) for e in index) == uses
    rows = (export / "index.csv").read_text().splitlines()
    assert rows[0].startswith("sha256,file,subject") and len(rows) == uses + 1
    # each PEM is the certificate the JSON describes
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    for e in index:
        cert = x509.load_pem_x509_certificate((export / e["file"]).read_bytes())
        assert cert.fingerprint(hashes.SHA256()).hex() == e["sha256"]


def test_text_report_shows_chains_as_trees_with_checks_and_diagnoses():
    r = run_cli(CERTS)
    assert r.returncode == 0, r.stderr
    out = flowed(r.stdout)  # the phrases below, however the width wrapped them
    assert "diagnosis: server rejected the client certificate: unknown_ca" in out
    assert "`- [1] Certs Client Intermediate CA" in out
    assert "FAIL validity" in out and "warn key_strength, signature_hash" in out
    assert "chain order: warn, out of order" in out
    assert "ok name: SNI 'api.svc.example.test' matches DNS:*.svc.example.test" in out


def test_ca_bundle_errors_are_reported_in_one_line(tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    r = run_cli("--ca-bundle", empty, CERTS)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = run_cli("--ca-bundle", tmp_path / "missing.pem", CERTS)
    assert r.returncode == 2 and "missing.pem" in r.stderr


def test_fresh_recording_matches_its_truth_and_openssl(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("recording on loopback needs root (CI runs as root)")
    for tool in ("dumpcap", "openssl"):
        assert shutil.which(tool), f"{tool} missing: scripts/test installs it"
    out = tmp_path / "rec"
    r = subprocess.run(
        [sys.executable, str(ROOT / "captures" / "record_certs.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    export = tmp_path / "export"
    counts = check_against_truth(out / "certs.truth.json", export)
    compared, agreed = openssl_agreement(out / "certs.truth.json", export)
    assert counts["chains"] == compared == agreed == 22
