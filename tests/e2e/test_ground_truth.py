"""Verdicts against what really happened: the recording script's ground truth for our captures,
and tshark's view of the shared captures from other projects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import OWN, SHARED, blind_verdict, run_tshark, shared_view

import tlsinspect

# the recordings of other TLS stacks (stack_*) have their own test, tests/e2e/test_stacks.py:
# there a TLS 1.3 verdict without keys may be undecided
TRUTHS = sorted(p for p in OWN.glob("*.truth.json") if not p.name.startswith("stack_"))


def _expected_basis(t: dict) -> str:
    # TLS 1.3 hides CertificateRequest, the client's Certificate and the alerts that follow them:
    # without keys the verdict is inferred from the sizes of the encrypted records
    if t["tls_version"] == "TLS 1.3" and t["verdict"] != "resumed":
        return "inferred"
    return "observed"


def _match(sessions: list[dict], t: dict, used: set[int]) -> dict:
    for s in sessions:
        if s["index"] in used:
            continue
        if s["server_port"] != t["server_port"] or s["server_ip"] != t["server_ip"]:
            continue
        if t.get("client_port") and s["client_port"] != t["client_port"]:
            continue
        used.add(s["index"])
        return s
    raise AssertionError(f"no session for {t['scenario']} ({t['server_ip']}:{t['server_port']})")


def test_every_recorded_capture_has_ground_truth():
    assert TRUTHS, "captures/*.truth.json missing: run captures/record.py"
    for truth in TRUTHS:
        assert (OWN / json.loads(truth.read_text())["capture"]).exists()


@pytest.mark.parametrize("truth", TRUTHS, ids=lambda p: p.name.removesuffix(".truth.json"))
def test_verdicts_match_ground_truth(truth: Path):
    check_truth(truth)


def check_truth(truth: Path) -> None:
    doc = json.loads(truth.read_text())
    sessions = sorted(
        tlsinspect.sessions(truth.parent / doc["capture"]), key=lambda s: s["start_time"]
    )
    assert len(sessions) == len(doc["sessions"]), [s["reason"] for s in sessions]
    used: set[int] = set()
    for t in doc["sessions"]:
        s = _match(sessions, t, used)
        label = f"{t['scenario']}: {s['reason']}"
        assert s["verdict"] == blind_verdict(t), label
        assert s["basis"] == _expected_basis(t), label
        # without a ServerHello no version was negotiated: the truth names the one offered
        version = s["tls_version"] if s["tls_version"] is not None else s["client_version"]
        assert version == t["tls_version"], label
        assert s["sni"] == t["sni"], label
        if (
            t["tls_version"] != "TLS 1.3"
            and t["client_chain"] is not None
            and not t.get("later_auth")
        ):
            assert [c["subject_cn"] for c in s["client_chain"]] == t["client_chain"], label
        if t["tls_version"] != "TLS 1.3" and t["verdict"] != "resumed":
            assert [c["subject_cn"] for c in s["server_chain"]] == (t["server_chain"] or []), label
        if t.get("alert") and t["tls_version"] != "TLS 1.3" and not t.get("late_refusal"):
            sent = [(a["sender"], a["description"]) for a in s["alerts"]]
            assert (t["alert"]["sender"], t["alert"]["description"]) in sent, label
            assert t["alert"]["description"] in s["reason"], label
        # a TLS 1.3 ticket travels encrypted: linking a PSK resumption to its origin needs keys
        if (
            t["verdict"] == "resumed"
            and t.get("resumed_from_mutual") is not None
            and t["tls_version"] != "TLS 1.3"
        ):
            assert s["resumed_from"] is not None, label
            assert (s["resumed_from"]["verdict"] == "mutual") == t["resumed_from_mutual"], label
        if t.get("starttls"):
            assert s["starttls"] == t["starttls"], label
        if t.get("ended"):  # e.g. "reset by server", "closed by server"
            how, _, who = t["ended"].partition(" by ")
            assert s["ended"] and how in s["ended"] and who in s["ended"], label
            assert who in s["reason"] and how in s["reason"], label


# tshark's classification of the shared captures, and what tlsinspect says instead where it sees
# more: tshark calls a handshake refused by an alert right after the ClientHello "incomplete",
# tlsinspect calls it failed and names the alert; TLS 1.3 without decryption is "encrypted".
TSHARK_TO_OURS = {
    "mutual": "mutual",
    "one-way": "one-way",
    "requested-but-no-client-cert": "cert-requested-not-sent",
    "unknown-encrypted": "encrypted",
    "incomplete": "incomplete",
}


def _psk_resumptions(tshark: str, capture: Path) -> set[int]:
    """Client ports of TLS 1.3 sessions whose ServerHello accepted a pre-shared key."""
    rows = run_tshark(
        tshark,
        capture,
        ["tcp.dstport"],
        "tcp and tls.handshake.type == 2 and tls.handshake.extension.type == 41",
    )
    return {int(r[0]) for r in rows}


INFERABLE = {"mutual", "one-way", "cert-requested-not-sent", "failed"}


def _shared_expectation(v: dict, psk: set[int]) -> str | set[str]:
    port = int(v["client"].rsplit(":", 1)[1])
    if port in psk:
        return "resumed"  # tshark's view does not classify TLS 1.3 PSK resumption
    if v["tls_version"] == "TLS 1.3":
        # decrypted by tshark with the key log: the inferred verdict must be the same;
        # without a key log nobody knows, so only that a verdict was inferred is checked
        return TSHARK_TO_OURS[v["classification"]] if v["keylog"] else INFERABLE
    if v["classification"] == "incomplete" and any(a["level"] == "fatal" for a in v["alerts"]):
        return "failed"
    if v["classification"] == "one-way" and v["handshake_complete"] and not v["server_chain"]:
        return "resumed"  # a completed handshake without a server certificate is abbreviated
    return TSHARK_TO_OURS[v["classification"]]


@pytest.mark.parametrize("view", shared_view(), ids=lambda v: f"{v['file']}#{v['stream']}")
def test_shared_capture_sessions(tshark, view: dict):
    sessions = tlsinspect.sessions(SHARED / view["file"])
    mine = [
        s
        for s in sessions
        if f"{s['client_ip']}:{s['client_port']}"
        == view["client"].replace("[", "").replace("]", "")
        or f"[{s['client_ip']}]:{s['client_port']}" == view["client"]
    ]
    assert len(mine) == 1, [(s["client_ip"], s["client_port"]) for s in sessions]
    s = mine[0]
    psk = _psk_resumptions(tshark, SHARED / view["file"])
    expected = _shared_expectation(view, psk)
    if isinstance(expected, set):
        assert s["verdict"] in expected and s["basis"] == "inferred", s["reason"]
    else:
        assert s["verdict"] == expected, s["reason"]
    if view["tls_version"] == "TLS 1.3" and expected != "resumed":
        assert s["basis"] == "inferred", s["reason"]
    assert s["tls_version"] == view["tls_version"]
    assert s["sni"] == view["sni"]
    for role in ("client", "server"):
        theirs = view[f"{role}_chain"] or []
        if view["tls_version"] == "TLS 1.3":
            continue  # certificates are encrypted
        assert [c["subject"] for c in s[f"{role}_chain"]] == [c["subject"] for c in theirs]
        assert [c["issuer"] for c in s[f"{role}_chain"]] == [c["issuer"] for c in theirs]


@pytest.mark.parametrize("name", sorted({v["file"] for v in shared_view()}))
def test_shared_captures_sessions_beyond_tshark_view_are_joined_late(tshark, name):
    """tshark's view lists connections with a handshake; tlsinspect also reports TLS connections
    the capture joined after their handshake, as incomplete. tshark must see TLS records there."""
    seen = {v["client"] for v in shared_view() if v["file"] == name}
    for s in tlsinspect.sessions(SHARED / name):
        client = f"{s['client_ip']}:{s['client_port']}"
        if client in seen or f"[{s['client_ip']}]:{s['client_port']}" in seen:
            continue
        assert s["verdict"] == "incomplete", s
        assert "starts after the handshake" in s["reason"]
        rows = run_tshark(
            tshark,
            SHARED / name,
            ["tls.record.content_type"],
            f"tcp.port == {s['client_port']} and tls.record",
            decode_as=[s["server_port"]],
        )
        assert rows, f"tshark sees no TLS record on {client}"
