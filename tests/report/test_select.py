"""Selecting sessions (report/select.py): the words it takes, and on the recorded captures, that
each option keeps exactly the sessions the recording's ground truth says it must."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import OWN
from truthcases import CASES, analysed, case_id, truth_sessions

import tlsinspect
from tlsinspect.record import SessionRecord
from tlsinspect.report.select import VERDICTS, Selection, selection
from tlsinspect.report.table import VERDICT_ORDER

# -- the words --------------------------------------------------------------------------------


def test_every_verdict_of_the_project_is_a_word_of_the_selection():
    assert set(VERDICTS) == set(VERDICT_ORDER)


def test_a_wrong_verdict_names_every_verdict():
    with pytest.raises(ValueError) as exc:
        selection(verdict="mutal")
    assert "'mutal' is not a verdict" in str(exc.value)
    for v in VERDICTS:
        assert v in str(exc.value)


def test_a_close_verdict_is_suggested():
    with pytest.raises(ValueError, match="did you mean one-way"):
        selection(verdict="oneway")


@pytest.mark.parametrize("word", ["99999", "http", "9000-8000", "-1", "80-"])
def test_a_wrong_port_is_refused(word):
    with pytest.raises(ValueError, match="is not a port"):
        selection(port=word)


@pytest.mark.parametrize(
    "given, message",
    [
        ({"server": " "}, "an empty server pattern keeps nothing"),
        ({"client_identity": [""]}, "an empty client identity pattern keeps nothing"),
        ({"verdict": ""}, "an empty verdict keeps nothing"),
        ({"port": "443,"}, "an empty port keeps nothing"),
    ],
)
def test_an_empty_value_is_refused(given, message):
    """`--verdict "$V"` with V unset must not quietly keep every session."""
    with pytest.raises(ValueError, match=message):
        selection(**given)


def test_nothing_given_keeps_everything():
    assert selection() == Selection() and not selection(verdict=[], port=None)


def test_values_split_and_deduplicated():
    s = selection(verdict=["mutual,one-way", "mutual"], port=[443, "8000-8999,443"])
    assert s.verdicts == ("mutual", "one-way")
    assert s.ports == ((443, 443), (8000, 8999))
    assert not selection() and s


def test_fingerprints_and_bracketed_addresses():
    s = selection(client_identity=["SHA256:4E:87:9E:DB", "client-*"], server="[::1]:84*")
    assert s.fingerprints == ("4e879edb",)
    assert s.servers == ("[[]::1[]]:84*",)  # brackets literal, the rest a glob
    assert selection(client_identity="4e87").fingerprints == ()  # too short to be one
    assert selection(server="[ab]c").servers == ("[ab]c",)  # no IPv6 address: a class


# -- on the recorded captures -------------------------------------------------------------------


def _servers(records) -> Counter:
    return Counter((r.server[0], r.server[1]) for r in records)


def _truth_servers(sessions) -> Counter:
    return Counter((t["server_ip"], t["server_port"]) for t in sessions)


def test_there_are_cases():
    assert len(CASES) >= 10, CASES


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_verdict_keeps_exactly_the_sessions_of_that_verdict(case):
    records, truth = analysed(*case), truth_sessions(*case)
    assert len(records) == len(truth)
    for v in VERDICTS:
        kept = list(selection(verdict=v).filter(records))
        assert _servers(kept) == _truth_servers(t for t in truth if t["expected"] == v), v
    both = selection(verdict=["mutual", "one-way"]).filter(records)  # ORed
    assert _servers(both) == _truth_servers(
        t for t in truth if t["expected"] in ("mutual", "one-way")
    )


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_port_and_server_address_keep_exactly_those_servers(case):
    records, truth = analysed(*case), truth_sessions(*case)
    ports = sorted({t["server_port"] for t in truth})
    low = ports[: max(1, len(ports) // 2)]
    span = f"{low[0]}-{low[-1]}"
    kept = list(selection(port=span).filter(records))
    assert _servers(kept) == _truth_servers(
        t for t in truth if low[0] <= t["server_port"] <= low[-1]
    )
    for ip in {t["server_ip"] for t in truth}:
        shown = f"[{ip}]" if ":" in ip else ip
        for pattern in (ip, f"{shown}:*", f"{shown}:{ports[-1]}"):
            kept = list(selection(server=pattern).filter(records))
            expected = [
                t
                for t in truth
                if t["server_ip"] == ip
                and (pattern.endswith("*") or pattern == ip or t["server_port"] == ports[-1])
            ]
            assert _servers(kept) == _truth_servers(expected), pattern


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_options_are_anded(case):
    records, truth = analysed(*case), truth_sessions(*case)
    port = truth[0]["server_port"]
    kept = list(selection(verdict="mutual", port=port).filter(records))
    assert _servers(kept) == _truth_servers(
        t for t in truth if t["expected"] == "mutual" and t["server_port"] == port
    )


def _visible_client_cn(t: dict, keyed: bool) -> str | None:
    """The CN of the client leaf the capture shows: a TLS 1.3 client certificate is encrypted
    without keys, a TLS 1.2 one sent only in a renegotiation too."""
    if not t["client_chain"]:
        return None
    if not keyed and (t["tls_version"] == "TLS 1.3" or t.get("later_auth")):
        return None
    return t["client_chain"][0]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_client_identity_keeps_exactly_the_sessions_of_that_certificate(case):
    records, truth = analysed(*case), truth_sessions(*case)
    names = Counter(_visible_client_cn(t, case[1]) for t in truth)
    for cn in names:
        if cn is None:
            continue
        kept = list(selection(client_identity=cn.upper()).filter(records))  # without case
        expected = [t for t in truth if _visible_client_cn(t, case[1]) == cn]
        assert _servers(kept) == _truth_servers(expected), cn
        # the test PKIs name client-NAME spiffe://DOMAIN/NAME too (captures/README.md)
        # (a client certificate without a SAN is matched by its CN only)
        by_uri = list(selection(client_identity=f"spiffe://*/{cn[7:]}").filter(records))
        named = [r for r in kept if any(_is_spiffe(s, cn[7:]) for s in _client_sans(r))]
        assert _servers(by_uri) == _servers(named), cn


def _is_spiffe(san: str, name: str) -> bool:
    return san.startswith("URI:spiffe://") and san.endswith(f"/{name}")


def _client_sans(r: SessionRecord) -> tuple[str, ...]:
    from tlsinspect.x509 import cert_info

    return cert_info(r.facts.client_certs[0]).san if r.facts.client_certs else ()


def test_client_identity_by_fingerprint_prefix():
    records = analysed(OWN / "tls12.truth.json", False)
    sent = [r for r in records if r.facts.client_certs]
    assert sent
    from tlsinspect.x509 import cert_info

    prints = Counter(cert_info(r.facts.client_certs[0]).sha256 for r in sent)
    for fp, n in prints.items():
        for given in (
            fp[:12],
            "sha256:" + fp[:16].upper(),
            ":".join(fp[i : i + 2] for i in range(0, 20, 2)),
        ):
            assert len(list(selection(client_identity=given).filter(records))) == n, given


def test_server_names_match_sni_and_certificate_without_case():
    from tlsinspect.x509 import cert_info

    records = analysed(OWN / "certs.truth.json", False)
    truth = truth_sessions(OWN / "certs.truth.json", False)
    for sni in {t["sni"] for t in truth if t["sni"]}:
        kept = list(selection(server=sni.upper()).filter(records))
        # every session that asked for the name is kept; another only when its certificate
        # names it
        assert _truth_servers(t for t in truth if t["sni"] == sni) <= _servers(kept), sni
        for r in kept:
            ch = r.facts.client_hello
            if ch is None or ch.server_name != sni:
                leaf = cert_info(r.facts.server_certs[0])
                names = [leaf.subject_cn] + [s.partition(":")[2] for s in leaf.san]
                assert sni in names, sni


def test_the_python_api_takes_the_same_selection():
    path = OWN / "tls12.pcapng"
    truth = truth_sessions(OWN / "tls12.truth.json", False)
    mutual = tlsinspect.sessions(path, verdict="mutual")
    assert len(mutual) == sum(t["expected"] == "mutual" for t in truth)
    assert {s["verdict"] for s in mutual} == {"mutual"}
    frame = tlsinspect.read_capture(path, port=["8401-8403"], progress=False)
    assert sorted(frame.server_port) == sorted(
        t["server_port"] for t in truth if 8401 <= t["server_port"] <= 8403
    )
    listed = tlsinspect.read_sessions(path, server="[::1]:*", progress=False)
    assert {s.server_ip for s in listed} == {"::1"}
    with pytest.raises(ValueError, match="not a verdict"):
        tlsinspect.read_capture(path, verdict="two-way", progress=False)
