"""Every TLS stack where mTLS lives, against the ground truth of its recording.

captures/stack_*.pcapng are recorded by captures/record_*.py from real programs (Go crypto/tls,
Java JSSE, Erlang ssl, NSS, wolfSSL, mbedTLS, tlslite-ng), each as server and as client, crossed
with OpenSSL and GnuTLS; the truth is what both programs reported. With the key log every verdict
must equal the truth. Without it a TLS 1.3 verdict is inferred from record sizes: it must equal
the truth or be `encrypted` (undecided), at least 99% right per stack, and never a wrong `mutual`.
The per-stack table is printed at the end of the run.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from helpers import OWN, blind_verdict

import tlsinspect

TRUTHS = sorted(OWN.glob("stack_*.truth.json"))
TABLE: dict[str, Counter[str]] = defaultdict(Counter)


def _name(truth: Path) -> str:
    return truth.name.removeprefix("stack_").removesuffix(".truth.json")


def _pair(doc: dict, keyed: bool) -> list[tuple[dict, dict]]:
    """(truth, session) pairs: by server port and client port, else in order of time."""
    capture = OWN / doc["capture"]
    keylog = OWN / doc["keylog"] if keyed and doc.get("keylog") else None
    sessions = sorted(tlsinspect.sessions(capture, keylog=keylog), key=lambda s: s["start_time"])
    assert len(sessions) == len(doc["sessions"]), [s["reason"] for s in sessions]
    used: set[int] = set()
    pairs = []
    for t in doc["sessions"]:
        for s in sessions:
            if s["index"] in used or s["server_port"] != t["server_port"]:
                continue
            if t.get("client_port") and s["client_port"] != t["client_port"]:
                continue
            used.add(s["index"])
            pairs.append((t, s))
            break
        else:
            raise AssertionError(f"no session for {t['scenario']} (port {t['server_port']})")
    return pairs


def _label(t: dict, s: dict) -> str:
    return f"{t['scenario']} ({t['stack']}, {t['tls_version']}): {s['verdict']}: {s['reason']}"


def test_stacks_are_recorded():
    names = {_name(t) for t in TRUTHS}
    assert {"go", "java", "wolfssl"} <= names, names


@pytest.mark.parametrize("truth", TRUTHS, ids=_name)
def test_with_keys_every_verdict_is_right(truth: Path):
    doc = json.loads(truth.read_text())
    if not doc.get("keylog"):
        pytest.skip(f"{truth.name}: no key log was written for this recording")
    wrong = []
    for t, s in _pair(doc, keyed=True):
        if t["tls_version"] == "TLS 1.3" and not t.get("keyed", True):
            continue  # neither program wrote this session's secrets: checked without keys
        TABLE[_name(truth)]["keyed right" if s["verdict"] == t["verdict"] else "keyed wrong"] += 1
        if s["verdict"] != t["verdict"]:
            wrong.append(_label(t, s))
        if t["tls_version"] == "TLS 1.3" and t.get("keyed", True) and t["verdict"] != "resumed":
            assert s["basis"] == "decrypted", _label(t, s)
        if s["client_chain"] and t["client_chain"] is not None:
            assert [c["subject_cn"] for c in s["client_chain"]] == t["client_chain"], _label(t, s)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("truth", TRUTHS, ids=_name)
def test_without_keys_no_wrong_mutual(truth: Path):
    doc = json.loads(truth.read_text())
    tally: Counter[str] = Counter()
    wrong, false_mutual = [], []
    for t, s in _pair(doc, keyed=False):
        expected = blind_verdict(t)
        label = _label(t, s)
        assert s["sni"] == t["sni"], label
        version = s["tls_version"] if s["tls_version"] is not None else s["client_version"]
        assert version == t["tls_version"], label
        if t["tls_version"] != "TLS 1.3" and t["verdict"] != "resumed":
            assert [c["subject_cn"] for c in s["server_chain"]] == (t["server_chain"] or []), label
        if s["verdict"] == "mutual" and expected != "mutual":
            false_mutual.append(label)
        if t["tls_version"] != "TLS 1.3":
            if s["verdict"] != expected:
                wrong.append(label)
            tally["1.2 right" if s["verdict"] == expected else "1.2 wrong"] += 1
            continue
        if s["verdict"] == expected:
            tally["1.3 right"] += 1
        elif s["verdict"] == "encrypted" and expected != "resumed":
            tally["1.3 undecided"] += 1
            assert "key log would decide" in s["reason"], label
            if t.get("later_auth") == "post-handshake" and "in one record" in s["reason"]:
                # an answer to a post-handshake request sent in one record (NSS) has the
                # size of application data: undecided by design, counted apart
                tally["1.3 undecided (post-handshake answer in one record)"] += 1
            assert s["cert_requested"] is None or isinstance(s["cert_requested"], bool)
        else:
            tally["1.3 wrong"] += 1
            wrong.append(label)
        # the facts agree with the verdict, however it was reached
        if s["verdict"] == "mutual":
            assert s["cert_requested"] and s["client_cert_sent"] and s["client_cert_verify"], label
        if s["verdict"] == "one-way":
            assert s["cert_requested"] is False and not s["client_cert_sent"], label
        if s["verdict"] == "cert-requested-not-sent":
            assert s["cert_requested"] and s["client_cert_sent"] is False, label
    TABLE[_name(truth)].update(tally)
    assert not false_mutual, "wrong mutual:\n" + "\n".join(false_mutual)
    assert not wrong, "\n".join(wrong)
    apart = tally["1.3 undecided (post-handshake answer in one record)"]
    total = tally["1.3 right"] + tally["1.3 undecided"] - apart
    if total:
        assert tally["1.3 right"] >= 0.99 * total, dict(tally)
