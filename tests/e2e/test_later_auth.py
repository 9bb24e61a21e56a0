"""Client authentication asked for after the first handshake (TLS 1.2 renegotiation, TLS 1.3
post-handshake authentication), HelloRetryRequest and 0-RTT resumption, against the ground truth
that captures/record_later.py wrote, with the key log and without it.

With the key log every verdict must be the truth's. Without it, a later authentication is
hidden: the verdict is what the first handshake showed (one-way), and the reason must say that
an encrypted handshake followed (TLS 1.2) or that the client offered post-handshake
authentication (TLS 1.3). HelloRetryRequest sessions get the truth's verdict either way; a 0-RTT
resumption is resumed, and with the key log linked to the mutual session it resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import OWN, run_tshark
from test_vs_tshark import NAME_TO_TYPE

import tlsinspect

NAMES = ("later_tls12", "later_tls13")


def _doc(name: str) -> dict:
    return json.loads((OWN / f"{name}.truth.json").read_text())


def _truths() -> list[tuple[str, dict]]:
    return [(name, t) for name in NAMES for t in _doc(name)["sessions"]]


TRUTHS = _truths()
IDS = [t["scenario"] for _, t in TRUTHS]


def _cases(want) -> list:
    """The truth sessions for which ``want(t)`` holds, as test parameters."""
    return [
        pytest.param(name, t, id=case_id)
        for (name, t), case_id in zip(TRUTHS, IDS, strict=True)
        if want(t)
    ]


_CACHE: dict[tuple[str, bool], list[dict]] = {}


def _sessions(name: str, keyed: bool) -> list[dict]:
    if (name, keyed) not in _CACHE:
        doc = _doc(name)
        keylog = OWN / doc["keylog"] if keyed else None
        found = tlsinspect.sessions(OWN / doc["capture"], keylog=keylog)
        _CACHE[name, keyed] = sorted(found, key=lambda s: (s["start_time"], s["index"]))
    return _CACHE[name, keyed]


def _session(name: str, t: dict, keyed: bool) -> dict:
    """The session of truth entry ``t``: same server port, the n-th connection to it."""
    same_port = [x for x in _doc(name)["sessions"] if x["server_port"] == t["server_port"]]
    n = same_port.index(t)
    found = [s for s in _sessions(name, keyed) if s["server_port"] == t["server_port"]]
    assert len(found) == len(same_port), [s["reason"] for s in found]
    s = found[n]
    assert s["server_ip"] == t["server_ip"] and s["client_ip"] == t["client_ip"]
    if t["client_port"] is not None:
        assert s["client_port"] == t["client_port"]
    return s


def _label(t: dict, s: dict) -> str:
    return f"{t['scenario']}: {s['verdict']} ({s['basis']}): {s['reason']}; {s['anomalies']}"


def _later(t: dict) -> bool:
    return t["later_auth"] is not None


def _not_resumed(t: dict) -> bool:
    return t["verdict"] != "resumed"


def test_every_session_is_found():
    for name in NAMES:
        doc = _doc(name)
        assert (OWN / doc["capture"]).stat().st_size < 200_000
        for keyed in (True, False):
            assert len(_sessions(name, keyed)) == len(doc["sessions"])


# -- with the key log ------------------------------------------------------------------------


@pytest.mark.parametrize("name, t", _cases(lambda t: True))
def test_verdict_with_key_log(name: str, t: dict):
    s = _session(name, t, keyed=True)
    label = _label(t, s)
    assert s["verdict"] == t["verdict"], label
    assert s["tls_version"] == t["tls_version"], label
    assert s["sni"] == t["sni"], label
    if t["client_chain"] is not None:
        assert s["cert_requested"], label
        assert [c["subject_cn"] for c in s["client_chain"]] == t["client_chain"], label
    if t["server_chain"] is not None:
        assert [c["subject_cn"] for c in s["server_chain"]] == t["server_chain"], label


@pytest.mark.parametrize("name, t", _cases(_later))
def test_reason_names_the_later_authentication(name: str, t: dict):
    s = _session(name, t, keyed=True)
    assert t["later_auth"] in s["reason"], _label(t, s)


@pytest.mark.parametrize("name, t", _cases(lambda t: not _later(t)))
def test_no_later_authentication_claimed_when_there_was_none(name: str, t: dict):
    s = _session(name, t, keyed=True)
    for word in ("renegotiation client authentication", "post-handshake"):
        assert word not in s["reason"], _label(t, s)


@pytest.mark.parametrize("name, t", _cases(_not_resumed))
def test_basis_is_decrypted_with_key_log(name: str, t: dict):
    s = _session(name, t, keyed=True)
    assert s["basis"] == "decrypted", _label(t, s)


@pytest.mark.parametrize("name, t", _cases(lambda t: True))
def test_no_decryption_problem_with_key_log(name: str, t: dict):
    s = _session(name, t, keyed=True)
    assert not [a for a in s["anomalies"] if "decrypt" in a or "key log" in a], _label(t, s)


# -- without the key log ---------------------------------------------------------------------


@pytest.mark.parametrize("name, t", _cases(_later))
def test_later_authentication_without_key_log(name: str, t: dict):
    """A renegotiation is encrypted whole: the first handshake (no CertificateRequest) is all
    that can be seen. A TLS 1.3 post-handshake answer shows in the sizes of the client's records
    after the handshake: inferred, it must equal the truth (and the decrypted verdict)."""
    s = _session(name, t, keyed=False)
    label = _label(t, s)
    if t["later_auth"] == "renegotiation":
        assert s["verdict"] == "one-way" and s["basis"] == "observed", label
        assert not s["cert_requested"], label  # the renegotiation's request is not seen
    else:
        assert s["verdict"] == t["verdict"] and s["basis"] == "inferred", label
        assert s["verdict"] == _session(name, t, keyed=True)["verdict"], label
        # the sizes showed the later request and the client's answer: the facts say so
        assert s["cert_requested"] is True, label
        assert s["client_cert_sent"] is (t["verdict"] == "mutual"), label
    assert s["client_chain"] == [], label


@pytest.mark.parametrize("name, t", _cases(_later))
def test_without_key_log_the_later_handshake_is_mentioned(name: str, t: dict):
    s = _session(name, t, keyed=False)
    said = " ".join([s["reason"], *s["anomalies"]])
    assert t["later_auth"] in said, _label(t, s)


def test_renegotiation_without_request_is_one_way_either_way():
    name = "later_tls12"
    (t,) = [x for x in _doc(name)["sessions"] if x["scenario"].endswith("without-request")]
    for keyed in (True, False):
        s = _session(name, t, keyed)
        assert s["verdict"] == "one-way", _label(t, s)
    assert "renegotiation" in _session(name, t, keyed=False)["reason"]


# -- HelloRetryRequest and 0-RTT -------------------------------------------------------------


@pytest.mark.parametrize("name, t", _cases(lambda t: t["hello_retry_request"]))
def test_hello_retry_request_with_and_without_key_log(name: str, t: dict):
    for keyed, basis in ((True, "decrypted"), (False, "inferred")):
        s = _session(name, t, keyed)
        label = _label(t, s)
        assert s["verdict"] == t["verdict"], label
        assert s["basis"] == basis, label
        assert "server:hello_retry_request" in s["handshake"], label
        assert s["handshake"].count("client:client_hello") == 2, label


@pytest.mark.parametrize("name, t", _cases(lambda t: t["early_data"]))
def test_0rtt_resumption_is_resumed(name: str, t: dict):
    for keyed in (True, False):
        s = _session(name, t, keyed)
        label = _label(t, s)
        assert s["verdict"] == "resumed", label
        assert s["client_chain"] == [] and not s["cert_requested"], label
        assert "client:early_data" in s["handshake"], label


@pytest.mark.parametrize("name, t", _cases(lambda t: t["early_data"]))
def test_0rtt_resumption_links_to_its_mutual_origin_with_key_log(name: str, t: dict):
    s = _session(name, t, keyed=True)
    assert s["resumed_from"] is not None, _label(t, s)
    assert (s["resumed_from"]["verdict"] == "mutual") == t["resumed_from_mutual"]


# -- the captures themselves, as tshark decrypts them ----------------------------------------


def _tshark_flows(tshark: str, name: str) -> dict[int, list[tuple[str, int, int]]]:
    """Per server port, the handshake messages tshark decrypts with the key log, in order, as
    (sender, type, certificates_length or -1); each later-auth server port has one connection."""
    doc = _doc(name)
    ports = sorted({t["server_port"] for t in doc["sessions"]})
    rows = run_tshark(
        tshark,
        OWN / doc["capture"],
        ["tcp.srcport", "tcp.dstport", "tls.handshake.type", "tls.handshake.certificates_length"],
        "tls.handshake.type",
        decode_as=ports,
        keylog=OWN / doc["keylog"],
    )
    flows: dict[int, list[tuple[str, int, int]]] = {}
    for sport, dport, types, lengths in rows:
        server = int(sport) if int(sport) in ports else int(dport)
        sender = "server" if int(sport) == server else "client"
        sizes = [int(n) for n in lengths.split(",") if n]
        for kind in (int(x) for x in types.split(",")):
            size = sizes.pop(0) if kind == 11 and sizes else -1
            flows.setdefault(server, []).append((sender, kind, size))
    return flows


@pytest.mark.parametrize("name", NAMES)
def test_tshark_decrypts_the_later_certificate_request_and_answer(tshark, name: str):
    flows = _tshark_flows(tshark, name)
    for t in _doc(name)["sessions"]:
        if t["early_data"] or t["verdict"] == "resumed":
            continue
        flow = flows[t["server_port"]]
        first_client_finished = flow.index(("client", 20, -1))
        later = flow[first_client_finished + 1 :]
        requests = [m for m in later if m[:2] == ("server", 13)]
        if t["later_auth"] is None:
            assert not requests, (t["scenario"], flow)
            continue
        assert len(requests) == 1, (t["scenario"], flow)
        answer = later[later.index(requests[0]) + 1 :]
        certs = [m for m in answer if m[:2] == ("client", 11)]
        assert len(certs) == 1, (t["scenario"], flow)
        assert (certs[0][2] > 0) == bool(t["client_chain"]), (t["scenario"], flow)
        hello_request = ("server", 0, -1) in later[: later.index(requests[0])]
        assert hello_request == (t["later_auth"] == "renegotiation"), (t["scenario"], flow)


def _decrypted_like_tshark(tshark: str, name: str) -> list[tuple[dict, bool]]:
    """Each session with the key log, and whether the handshake messages tlsinspect decrypted
    are the first ones tshark decrypts on that connection (tshark goes on after the verdict)."""
    doc = _doc(name)
    ports = sorted({t["server_port"] for t in doc["sessions"]})
    rows = run_tshark(
        tshark,
        OWN / doc["capture"],
        ["tcp.srcport", "tcp.dstport", "tls.handshake.type"],
        "tls.handshake.type",
        decode_as=ports,
        keylog=OWN / doc["keylog"],
    )
    theirs: dict[int, list[tuple[str, int]]] = {}
    for sport, dport, types in rows:
        client = int(dport) if int(sport) in ports else int(sport)
        sender = "client" if int(sport) == client else "server"
        theirs.setdefault(client, []).extend((sender, int(x)) for x in types.split(","))
    out = []
    for s in _sessions(name, keyed=True):
        mine = [
            (role, NAME_TO_TYPE[msg])
            for role, msg in (item.split(":", 1) for item in s["handshake"])
            if msg in NAME_TO_TYPE
        ]
        out.append((s, mine == theirs[s["client_port"]][: len(mine)]))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_decrypted_messages_are_the_ones_tshark_decrypts(tshark, name: str):
    for s, same in _decrypted_like_tshark(tshark, name):
        assert same, (s["server_port"], s["handshake"])


def test_the_0rtt_session_decrypts_to_end_of_early_data():
    (s,) = [s for s in _sessions("later_tls13", True) if "client:early_data" in s["handshake"]]
    assert "client:end_of_early_data" in s["handshake"], s["handshake"]


def test_truth_has_the_fields_of_the_other_captures_and_the_new_ones():
    base = json.loads((OWN / "tls12.truth.json").read_text())["sessions"][0].keys()
    for name in NAMES:
        doc = _doc(name)
        assert doc["recorded_by"] == "captures/record_later.py"
        assert Path(OWN / doc["keylog"]).exists()
        for t in doc["sessions"]:
            assert set(base) <= set(t), t["scenario"]
            assert t["later_auth"] in (None, "renegotiation", "post-handshake")
            assert isinstance(t["hello_retry_request"], bool) and isinstance(t["early_data"], bool)
            assert t["ended"] is None
