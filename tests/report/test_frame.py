"""The notebook API on the recorded captures: dtypes, and values checked against the truth."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from helpers import OWN, ROOT, blind_verdict, own_captures

pd = pytest.importorskip("pandas")

import tlsinspect  # noqa: E402
from tlsinspect import notebook  # noqa: E402
from tlsinspect.report import flat  # noqa: E402
from tlsinspect.report.frame import CERT_COLUMNS, cert_markdown_table  # noqa: E402

TLS12 = OWN / "tls12.pcapng"


def truth(capture: Path) -> list[dict]:
    name = capture.name.rsplit(".", 1)[0]
    return json.loads((OWN / f"{name}.truth.json").read_text())["sessions"]


@pytest.fixture(scope="module")
def tls12() -> pd.DataFrame:
    return tlsinspect.read_capture(TLS12)


@pytest.fixture(scope="module")
def everything() -> pd.DataFrame:
    return tlsinspect.read_capture(own_captures())


def test_dtypes(tls12):
    dt = tls12.dtypes
    assert str(dt["start_time"]) == "datetime64[ns, UTC]"
    assert str(dt["end_time"]) == "datetime64[ns, UTC]"
    for col in ("verdict", "tls_version", "basis", "client_version"):
        assert isinstance(dt[col], pd.CategoricalDtype), col
    for col in ("index", "client_port", "server_port", "client_chain_length"):
        assert dt[col] == "Int64", col
    for col in ("file", "client_ip", "server_ip", "sni", "reason", "client_subject_cn"):
        assert dt[col] == "string", col
    for col in ("cert_requested", "client_cert_sent", "complete", "established"):
        assert dt[col] == "boolean", col
    assert str(dt["client_not_after"]) == "datetime64[us, UTC]"
    assert str(dt["client_chain"]) == "object" and str(dt["alerts"]) == "object"
    # every verdict is a category, in the report's order, even those that never occur
    assert list(tls12["verdict"].cat.categories)[:2] == ["mutual", "one-way"]
    assert "encrypted" in tls12["verdict"].cat.categories
    assert tls12["tls_version"].cat.ordered
    assert (tls12["tls_version"] >= "TLS 1.2").all()


def test_columns_are_the_json_fields_then_the_flat_extras(tls12):
    names = [n for n, _, _ in flat.columns()]
    assert names[0] == "file" and list(tls12.columns) == names
    assert set(flat.column_dtypes()) == set(tls12.columns)
    for col, dtype in flat.column_dtypes().items():
        assert str(tls12[col].dtype) == dtype, col


def test_values_equal_the_json_output(tls12):
    sessions = sorted(tlsinspect.sessions(TLS12), key=lambda s: (s["start_time"], s["index"]))
    assert len(tls12) == len(sessions)
    for (_, row), s in zip(tls12.iterrows(), sessions, strict=True):
        assert row["index"] == s["index"]
        assert row["start_time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ") == s["start_time"]
        assert row["verdict"] == s["verdict"]
        assert row["reason"] == s["reason"]
        assert row["client_chain"] == s["client_chain"]
        assert row["alerts"] == s["alerts"]
        assert row["server_port"] == s["server_port"]
        assert (row["sni"] if row["sni"] is not pd.NA else None) == s["sni"]
    assert (tls12["file"] == str(TLS12)).all()
    # nanoseconds from the packets are kept beyond the JSON's microseconds
    assert (tls12["end_time"] >= tls12["start_time"]).all()


@pytest.mark.parametrize("capture", own_captures(), ids=lambda p: p.name)
def test_verdict_counts_and_ports_equal_the_truth(everything, capture):
    rows = everything[everything["file"] == str(capture)]
    t = truth(capture)
    counts = {k: v for k, v in rows["verdict"].value_counts().items() if v}
    if capture.name.startswith("stack_"):
        # other stacks' recordings may leave a TLS 1.3 session undecided without keys (their
        # verdicts are checked in tests/e2e/test_stacks.py): the frame must say what JSON says
        expected = Counter(s["verdict"] for s in tlsinspect.sessions(capture))
        assert sum(expected.values()) == len(t)
    else:
        expected = Counter(blind_verdict(s) for s in t)
    assert counts == dict(expected)
    assert sorted(rows["server_port"]) == sorted(s["server_port"] for s in t)
    # rows of one capture are in start order
    assert rows["start_time"].is_monotonic_increasing


def test_leaf_columns_against_the_truth(tls12):
    by_port: dict[int, list[dict]] = {}
    for s in truth(TLS12):
        by_port.setdefault(s["server_port"], []).append(s)
    for _, row in tls12.iterrows():
        t = by_port[row["server_port"]].pop(0)
        chain = t["client_chain"] or []
        assert row["client_chain_length"] == len(chain)
        if chain:
            assert row["client_subject_cn"] == chain[0]
            assert row["client_issuer_cn"] == chain[1]
            assert row["client_san"] == [f"URI:spiffe://example.test/{chain[0].split('-')[1]}"]
            assert len(row["client_sha256"]) == 64
            assert row["client_not_before"] <= row["start_time"] <= row["client_not_after"]
        else:
            assert row["client_subject_cn"] is pd.NA and row["client_san"] == []
        if t["server_chain"]:
            assert row["server_subject_cn"] == "server.example.test"
            assert "DNS:server.example.test" in row["server_san"]
        alert = t["alert"]
        if alert:
            assert row["fatal_alert"] == alert["description"]
            assert row["fatal_alert_sender"] == alert["sender"]
            assert row["established"] is False or row["established"] == False  # noqa: E712
        else:
            assert row["fatal_alert"] is pd.NA
    refused = tls12[tls12["server_port"] == 8403].iloc[0]
    assert refused["verdict"] == "cert-requested-not-sent" and refused["established"]


def test_several_captures_by_list_and_glob(everything):
    files = own_captures()
    assert list(everything["file"].unique()) == [str(p) for p in files]
    assert len(everything) == sum(len(truth(p)) for p in files)
    globbed = tlsinspect.read_capture(str(OWN / "*.pcap"))
    assert set(globbed["file"]) == {str(p) for p in files if p.suffix == ".pcap"}
    with pytest.raises(FileNotFoundError, match="no capture matches"):
        tlsinspect.read_capture(str(OWN / "*.nothing"))


def test_ecs_names_and_values(tls12):
    ecs = tlsinspect.read_capture(TLS12, ecs=True)
    assert len(ecs) == len(tls12)
    for name in (
        "@timestamp",
        "client.ip",
        "client.port",
        "server.ip",
        "server.port",
        "tls.version",
        "tls.version_protocol",
        "tls.cipher",
        "tls.client.server_name",
        "tls.established",
        "tls.resumed",
        "tls.client.x509.subject.common_name",
        "tls.client.x509.issuer.common_name",
        "tls.server.x509.subject.common_name",
        "tls.server.issuer",
        "tls.client.hash.sha256",
        "tls.server.hash.sha256",
        "file.path",
        "tlsinspect.verdict",
    ):
        assert name in ecs.columns, name
    assert set(ecs["tls.version"].astype(str)) == {"1.2"}
    assert set(ecs["tls.version_protocol"]) == {"tls"}
    assert ecs["client.port"].dtype == "Int64"
    assert str(ecs["@timestamp"].dtype) == "datetime64[ns, UTC]"
    assert list(ecs["tls.resumed"]) == list(tls12["verdict"] == "resumed")
    assert list(ecs["tls.client.x509.subject.common_name"].fillna("")) == list(
        tls12["client_subject_cn"].fillna("")
    )
    assert list(ecs["tls.client.hash.sha256"].fillna("")) == list(
        tls12["client_sha256"].fillna("").str.upper()
    )
    assert not [c for c in ecs.columns if "_" in c.split(".")[0] and c[0] != "@"]
    first = ecs.iloc[0]
    assert first["tls.client.x509.alternative_names"] == ["spiffe://example.test/alice"]
    assert "127.0.0.1" in first["tls.server.x509.alternative_names"]


def test_the_key_log_is_passed_to_the_analyzer_only_when_given(monkeypatch):
    calls: list[list[bytes]] = []
    keys = notebook.CaptureKeys

    def spy(texts, secrets):
        calls.append(list(texts))
        return keys(texts, secrets)

    monkeypatch.setattr(notebook, "CaptureKeys", spy)
    tlsinspect.read_capture(TLS12)
    tlsinspect.read_capture([TLS12, OWN / "tls13.pcapng"], keylog=OWN / "demo.keylog")
    assert calls[0] == []
    assert calls[1:] == [[(OWN / "demo.keylog").read_bytes()]] * 2


def test_read_certificates(tls12):
    certs = tlsinspect.read_certificates(tls12)
    assert len(certs) == int(
        tls12["client_chain_length"].sum() + tls12["server_chain_length"].sum()
    )
    declared = [n for n, _, _ in CERT_COLUMNS]
    assert [c for c in certs.columns if c in declared] == declared
    # keys a chain item has beyond those come after `error`, typed from their values
    cols = list(certs.columns)
    extra = cols[cols.index("error") + 1 : cols.index("session_start")]
    assert set(cols) == set(declared) | set(extra)
    for name, dtype, _ in CERT_COLUMNS:
        assert str(certs[name].dtype) == dtype, name
    alice = certs[(certs["session"] == 1) & (certs["role"] == "client")]
    assert list(alice["position"]) == [0, 1]
    assert list(alice["subject_cn"]) == ["client-alice", "Test Client Intermediate CA"]
    assert alice["issuer_cn"].iloc[0] == alice["subject_cn"].iloc[1]
    assert certs["valid_at_capture"].all()
    leaf = alice.iloc[0]
    expected = (leaf["not_after"] - leaf["session_start"]) / pd.Timedelta(days=1)
    assert leaf["days_left"] == pytest.approx(expected)
    # straight from the capture, the same rows
    again = tlsinspect.read_certificates(TLS12)
    assert list(again["sha256"]) == list(certs["sha256"])
    with pytest.raises(ValueError, match="not a read_capture"):
        tlsinspect.read_certificates(tlsinspect.read_capture(TLS12, ecs=True))


def test_sessions_render_in_a_notebook():
    sessions = tlsinspect.read_sessions(TLS12)
    assert [s.index for s in sessions] == sorted(s.index for s in sessions)
    mutual = next(s for s in sessions if s.verdict == "mutual")
    html = mutual._repr_html_()
    assert "mutual" in html and mutual.reason in html
    # the chain tree: the leaf, then its issuer below it
    assert html.index("client-alice") < html.index("Test Client Intermediate CA")
    assert html.index("server.example.test</b>") < html.index("Test Root CA")
    assert "127.0.0.1:8401" in html and str(TLS12) in html
    assert mutual.to_dict() == next(
        s for s in tlsinspect.sessions(TLS12) if s["index"] == mutual.index
    )
    assert repr(mutual).startswith(f"<Session #{mutual.index} mutual 127.0.0.1:")
    assert sessions._repr_html_().count("<div style=") >= len(sessions)
    failed = next(s for s in sessions if s.verdict == "failed")
    assert "unknown_ca" in failed._repr_html_() and "Rogue CA" in failed._repr_html_()


def test_progress_only_when_asked_or_on_a_terminal(capsys):
    tlsinspect.read_capture(TLS12)  # stderr is not a terminal here: nothing
    assert capsys.readouterr().err == ""
    tlsinspect.read_capture(TLS12, progress=True)
    err = capsys.readouterr().err
    assert "tls12.pcapng:" in err and "59.7k" in err  # the file's size in bytes


def test_readme_documents_every_column():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- columns:start -->\n", 1)[1].split("\n<!-- columns:end -->", 1)[0]
    assert block == flat.markdown_table(), "regenerate with tlsinspect.report.flat.markdown_table()"
    block = readme.split("<!-- certs:start -->\n", 1)[1].split("\n<!-- certs:end -->", 1)[0]
    assert block == cert_markdown_table()


def test_a_capture_without_tls_gives_empty_typed_frames(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    frame = tlsinspect.read_capture(empty)
    assert len(frame) == 0 and list(frame.columns) == list(flat.column_dtypes())
    assert str(frame["start_time"].dtype) == "datetime64[ns, UTC]"
    assert len(tlsinspect.read_certificates(frame)) == 0
    assert len(tlsinspect.read_capture(empty, ecs=True)) == 0


def test_a_ca_bundle_adds_its_check_as_on_the_command_line():
    from helpers import run_cli

    capture, bundle = OWN / "certs.pcapng", OWN / "certs-pki" / "certs-test-root-ca.pem"
    r = run_cli("--format", "json", "--ca-bundle", bundle, capture)
    assert r.returncode == 0, r.stderr
    cli_sessions = json.loads(r.stdout)
    api = sorted(tlsinspect.sessions(capture, ca_bundle=bundle), key=lambda s: s["start_time"])
    assert [s["chain_checks"] for s in api] == [s["chain_checks"] for s in cli_sessions]
    assert any("ca_bundle" in s["chain_checks"].get("client", {}).get("failed", []) for s in api)
    frame = tlsinspect.read_capture(capture, ca_bundle=bundle)
    by_port = {s["client_port"]: s for s in cli_sessions}
    for _, row in frame.iterrows():
        s = by_port[row["client_port"]]
        for role in ("client", "server"):
            checks = s["chain_checks"].get(role)
            assert list(row[f"{role}_chain_failed"]) == (checks["failed"] if checks else [])
    without = tlsinspect.read_capture(capture)
    assert not any("ca_bundle" in f for f in without["client_chain_failed"])
