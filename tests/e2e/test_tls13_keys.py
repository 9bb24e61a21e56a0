"""TLS 1.3 client authentication seen through key logs, and inferred without them.

For every capture that comes with a key log: the verdict inferred from record sizes alone must
equal the verdict read from the decrypted handshake, the decrypted handshake messages must be
the ones tshark decrypts with the same key log, and the client chain must be shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import OWN, SHARED
from test_vs_tshark import NAME_TO_TYPE, _endpoint, tshark_messages

import tlsinspect

KEYED = [
    (OWN / "tls13.pcapng", OWN / "tls13.keylog"),
    (OWN / "demo.pcapng", OWN / "demo.keylog"),
    (
        SHARED / "hotplace__tls13_TLS_AES_128_GCM_SHA256.pcapng",
        SHARED / "hotplace__tls13__sslkeylog",
    ),
    (SHARED / "scapy__tls_nss_example.pcap", SHARED / "scapy__tls_nss_example.keys.txt"),
]
IDS = [c.name for c, _ in KEYED]


def by_client(sessions: list[dict]) -> dict[str, dict]:
    return {_endpoint(s["client_ip"], s["client_port"]): s for s in sessions}


@pytest.mark.parametrize("capture, keylog", KEYED, ids=IDS)
def test_inferred_verdict_equals_decrypted_verdict(capture: Path, keylog: Path):
    blind = by_client(tlsinspect.sessions(capture))
    keyed = by_client(tlsinspect.sessions(capture, keylog=keylog))
    assert blind.keys() == keyed.keys()
    tls13 = [c for c, s in keyed.items() if s["tls_version"] == "TLS 1.3"]
    assert tls13
    for client in tls13:
        k, b = keyed[client], blind[client]
        if k["verdict"] == "resumed":
            continue
        assert k["basis"] == "decrypted", k["reason"]
        assert b["basis"] == "inferred", b["reason"]
        assert b["verdict"] == k["verdict"], (client, b["reason"], k["reason"])


@pytest.mark.parametrize("capture, keylog", KEYED, ids=IDS)
def test_decrypted_messages_match_tshark_with_the_same_key_log(tshark, capture, keylog):
    theirs = tshark_messages(tshark, capture, keylog)
    mine: dict[frozenset, list[tuple[str, int]]] = {}
    for s in tlsinspect.sessions(capture, keylog=keylog):
        c = _endpoint(s["client_ip"], s["client_port"])
        sv = _endpoint(s["server_ip"], s["server_port"])
        for item in s["handshake"]:
            role, name = item.split(":", 1)
            if name in NAME_TO_TYPE:
                mine.setdefault(frozenset((c, sv)), []).append(
                    (c if role == "client" else sv, NAME_TO_TYPE[name])
                )
    # tshark goes on decrypting after the handshake (NewSessionTicket, KeyUpdate); tlsinspect
    # stops once the verdict is decided, so its messages must be a prefix of tshark's
    assert mine.keys() == theirs.keys()
    for conn, msgs in mine.items():
        assert msgs == theirs[conn][: len(msgs)], conn
        assert len(msgs) >= 5


def test_client_chain_of_a_decrypted_tls13_session():
    truth = json.loads((OWN / "tls13.truth.json").read_text())["sessions"]
    sessions = tlsinspect.sessions(OWN / "tls13.pcapng", keylog=OWN / "tls13.keylog")
    for t in truth:
        s = next(
            x
            for x in sessions
            if x["server_port"] == t["server_port"]
            and (t["client_port"] is None or x["client_port"] == t["client_port"])
        )
        assert s["verdict"] == t["verdict"], (t["scenario"], s["reason"])
        if t["verdict"] in ("mutual", "failed") and t["client_chain"]:
            assert [c["subject_cn"] for c in s["client_chain"]] == t["client_chain"], t["scenario"]
        if t.get("alert"):
            assert t["alert"]["description"] in [a["description"] for a in s["alerts"]]


def test_wrong_key_and_missing_key_are_reported_on_the_session(tmp_path):
    capture = OWN / "tls13.pcapng"
    lines = (OWN / "tls13.keylog").read_text().splitlines()
    wrong = tmp_path / "wrong.keylog"
    # every secret flipped: the client randoms are found, the keys do not open the records
    wrong.write_text(
        "\n".join(
            " ".join(p[:2] + [p[2][:-2] + ("00" if p[2][-2:] != "00" else "11")])
            for p in (line.split() for line in lines if line and not line.startswith("#"))
        )
    )
    for s in tlsinspect.sessions(capture, keylog=wrong):
        if s["tls_version"] == "TLS 1.3" and s["verdict"] != "resumed":
            assert any("decryption failed" in a for a in s["anomalies"]), s["anomalies"]
            assert s["basis"] == "inferred"
    # a key log of other sessions: the client randoms are not in it
    for s in tlsinspect.sessions(capture, keylog=OWN / "demo.keylog"):
        if s["tls_version"] == "TLS 1.3" and s["verdict"] != "resumed":
            assert any("no " in a and "key log" in a for a in s["anomalies"]), s["anomalies"]
            assert s["basis"] == "inferred"


def test_cli_keylog_option_and_secrets_embedded_in_pcapng(tmp_path, tshark):
    capture, keylog = OWN / "demo.pcapng", OWN / "demo.keylog"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tlsinspect",
            "--format",
            "json",
            "--keylog",
            str(keylog),
            str(capture),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    with_flag = json.loads(r.stdout)
    assert any(s["basis"] == "decrypted" for s in with_flag)
    editcap = Path(tshark).with_name("editcap")
    injected = tmp_path / "demo-dsb.pcapng"
    subprocess.run(
        [str(editcap), "--inject-secrets", f"tls,{keylog}", str(capture), str(injected)],
        check=True,
        capture_output=True,
    )
    embedded = json.loads(
        subprocess.run(
            [sys.executable, "-m", "tlsinspect", "--format", "json", str(injected)],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
    assert [(s["verdict"], s["basis"]) for s in embedded] == [
        (s["verdict"], s["basis"]) for s in with_flag
    ]
