"""captures/compress.pcapng (captures/record_compress.py): what only the key log shows.

- TLS 1.3 certificate compression (RFC 8879) between tlslite-ng client and server: zlib, brotli
  and zstd, on the server's chain and on the client's; with the key log the chains are the ones
  the stacks sent and the verdicts the truth's, and tshark with the same key log finds the same
  handshake messages (type 25). tshark 4.0 decompresses only the brotli ones: it gives
  `tls.handshake.certificates_length` for those and nothing for zlib and zstd.
- TLS 1.2 servers (tlslite-ng) that refuse the client's chain after their own Finished: with the
  key log the alert is read and named, `failed`; without it the handshake looks mutual.
"""

from __future__ import annotations

import json

import pytest
from helpers import OWN, run_tshark

import tlsinspect

TRUTH = json.loads((OWN / "compress.truth.json").read_text())
PORTS = [t["server_port"] for t in TRUTH["sessions"]]
BY_NAME = {t["scenario"]: t for t in TRUTH["sessions"]}


def _sessions(keyed: bool) -> dict[str, dict]:
    keylog = OWN / TRUTH["keylog"] if keyed else None
    found = tlsinspect.sessions(OWN / TRUTH["capture"], keylog=keylog)
    by_port = {s["client_port"]: s for s in found}
    assert len(found) == len(TRUTH["sessions"])
    return {t["scenario"]: by_port[t["client_port"]] for t in TRUTH["sessions"]}


KEYED = _sessions(True)
BLIND = _sessions(False)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_decrypted_verdicts_and_chains_are_the_truth(name: str) -> None:
    t, s = BY_NAME[name], KEYED[name]
    label = f"{name}: {s['reason']}"
    assert s["verdict"] == t["verdict"], label
    assert [c["subject_cn"] for c in s["server_chain"]] == t["server_chain"], label
    assert [c["subject_cn"] for c in s["client_chain"]] == (t["client_chain"] or []), label
    assert s["client_cert_sent"] is (
        bool(t["client_chain"]) if t["client_chain"] is not None else None
    ), label
    assert not s["anomalies"], label
    if t["tls_version"] == "TLS 1.3" or t.get("late_refusal"):
        assert s["basis"] == "decrypted", label


@pytest.mark.parametrize("name", [n for n, t in BY_NAME.items() if "compressed_certificate" in t])
def test_compressed_certificates_are_named_in_the_history(name: str) -> None:
    t, s = BY_NAME[name], KEYED[name]
    for role in ("server", "client"):
        sent = [h for h in s["handshake"] if h.startswith(f"{role}:")]
        compressed = t["compressed_certificate"][role] is not None
        assert (f"{role}:compressed_certificate" in sent) is compressed, s["handshake"]
        if role == "server":
            assert (f"{role}:certificate" in sent) is not compressed, s["handshake"]


@pytest.mark.parametrize("name", [n for n, t in BY_NAME.items() if t.get("late_refusal")])
def test_a_late_refusal_is_named_with_the_key_log(name: str) -> None:
    t, s = BY_NAME[name], KEYED[name]
    alert = t["alert"]["description"]
    assert s["verdict"] == "failed"
    assert f"alert {alert} " in s["reason"] and "from the server after the handshake" in s["reason"]
    assert {"sender": "server", "level": "fatal", "description": alert, "encrypted": False} in s[
        "alerts"
    ]
    assert s["handshake"][-1] == f"server:alert:{alert}"
    # without the key log: the encrypted alert comes right after the handshake, then the close
    assert BLIND[name]["verdict"] == "failed", BLIND[name]["reason"]
    assert "encrypted alert" in BLIND[name]["reason"]


def test_the_check_that_passes_stays_mutual() -> None:
    s = KEYED["tls12-late-check-passes"]
    assert s["verdict"] == "mutual" and not s["alerts"]


def test_blind_inference_of_a_compressed_empty_certificate() -> None:
    s = BLIND["tls13-compressed-cert-requested-not-sent"]
    assert (s["verdict"], s["basis"]) == ("cert-requested-not-sent", "inferred"), s["reason"]
    assert "compressed" in s["reason"]
    for name, t in BY_NAME.items():
        if t["tls_version"] == "TLS 1.3":
            assert BLIND[name]["verdict"] == t["verdict"], BLIND[name]["reason"]


NOT_HANDSHAKE = {
    "change_cipher_spec",
    "encrypted_data",
    "encrypted_handshake",
    "encrypted_alert",
    "application_data",
}


def _ours(s: dict) -> list[tuple[str, str]]:
    return [
        tuple(h.split(":", 1))  # type: ignore[misc]
        for h in s["handshake"]
        if h.split(":", 1)[1] not in NOT_HANDSHAKE and ":alert:" not in h
    ]


def test_tshark_with_the_key_log_sees_the_same_messages(tshark: str) -> None:
    rows = run_tshark(
        tshark,
        OWN / TRUTH["capture"],
        ["tcp.srcport", "tcp.dstport", "tls.handshake.type", "tls.handshake.certificates_length"],
        "tls.handshake.type",
        decode_as=PORTS,
        keylog=OWN / TRUTH["keylog"],
    )
    names = {v: k for k, v in tlsinspect_names().items()}
    seen: dict[int, list[tuple[str, str]]] = {}
    lengths: dict[int, list[str]] = {}
    for sport, dport, types, cert_lengths in rows:
        client = int(dport) if int(sport) in PORTS else int(sport)
        role = "server" if int(sport) in PORTS else "client"
        for t in types.split(","):
            seen.setdefault(client, []).append((role, names[int(t)]))
        lengths.setdefault(client, []).append(cert_lengths)
    for name, t in BY_NAME.items():
        assert seen[t["client_port"]] == _ours(KEYED[name]), name
        # tshark 4.0 decompresses brotli certificates only
        comp = t.get("compressed_certificate") or {}
        if comp.get("server") in ("zlib", "zstd") and comp.get("client") != "brotli":
            assert not any(lengths[t["client_port"]]), name
        if comp.get("server") == "brotli":
            assert any(lengths[t["client_port"]]), name


def tlsinspect_names() -> dict[str, int]:
    from tlsinspect.tls import registry as reg

    return {name: code for code, name in reg.HANDSHAKE_TYPES.items()}
