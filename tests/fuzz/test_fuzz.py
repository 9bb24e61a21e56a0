"""The CI slice of the fuzzing (tests/fuzz/README.md): every target for a few seconds with a
fixed seed, no crash allowed; every crash found so far replayed from its saved input; and the
mutator and the runner checked on their own.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import campaign
import corpus
import mutator
import pytest
import reencrypt
import targets

from tlsinspect.net.ip import format_addr

HERE = Path(__file__).resolve().parent
REGRESSIONS = HERE / "regressions"

#: Per target: at most this many inputs, for at most SECONDS (about a minute for all).
INPUTS = 30_000
SECONDS = 5.0
SEED = 20261207


def _describe(crashes: list[campaign.Crash]) -> str:
    return "\n\n".join(f"{c.key} x{c.count}: {c.message}\n{c.trace}" for c in crashes)


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_target_does_not_crash(name: str) -> None:
    c = campaign.run_random(name, INPUTS, SECONDS, SEED)
    assert c.inputs >= min(INPUTS, len(targets.TARGETS[name].seeds()), 50)
    assert not c.crashes, _describe(list(c.crashes.values()))


def _regressions() -> list[Path]:
    return sorted(p for p in REGRESSIONS.glob("*/*") if p.suffix in (".bin", ".pcap", ".pcapng"))


def test_regressions_are_named_after_a_target() -> None:
    found = _regressions()
    assert found, f"no saved crash inputs under {REGRESSIONS}"
    dirs = {p.parent.name for p in found}
    assert dirs <= set(targets.TARGETS), dirs - set(targets.TARGETS)


@pytest.mark.parametrize("path", _regressions(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_regression(path: Path) -> None:
    """An input that once crashed its target now gives one of the allowed outcomes."""
    targets.TARGETS[path.parent.name].run(path.read_bytes())


# -- the harness itself -----------------------------------------------------------------------


def test_a_crash_is_named_by_its_innermost_project_frame(tmp_path: Path) -> None:
    """Two inputs failing at the same place are one crash, counted twice, saved once."""
    t = targets.Target("addr", format_addr, lambda: [], 64)
    targets.TARGETS["addr"] = t
    try:
        c = campaign.Campaign("addr", "random", tmp_path)
        for data in (b"\x01\x02\x03", b"\x01" * 5, b"\x01" * 4):
            c.one(data)
    finally:
        del targets.TARGETS["addr"]
    assert c.inputs == 3
    [crash] = c.crashes.values()
    assert crash.key.startswith("ValueError@tlsinspect/net/ip.py:format_addr:")
    assert crash.count == 2
    assert crash.file is not None and Path(crash.file).read_bytes() == b"\x01\x02\x03"


def test_mutator_is_reproducible_from_its_seed() -> None:
    for seed in (0, 1, 977):
        assert mutator.mutate_capture(seed) == mutator.mutate_capture(seed)
    assert mutator.mutate_capture(1)[0] != mutator.mutate_capture(2)[0]


def test_mutator_finds_the_fields_it_mutates() -> None:
    kinds = set()
    for conn in corpus.connections():
        kinds |= {f.kind.split(" (")[0] for f in mutator.structure(conn).fields}
    wanted = {
        "record length",
        "handshake length",
        "ClientHello session_id",
        "ClientHello cipher_suites",
        "ClientHello extensions",
        "ClientHello extension 0 length",
        "server_name host_name",
        "ServerHello extensions",
        "Certificate certificate_list",
        "Certificate cert_data",
        "DER length",
        "CertificateRequest certificate_types",
        "CertificateRequest signature_algorithms",
        "CertificateRequest certificate_authorities",
        "CertificateRequest distinguished name",
    }
    assert wanted <= kinds, wanted - kinds


def test_a_length_field_is_where_the_mutator_says() -> None:
    """A Certificate's cert_data length is followed by a DER certificate of that length."""
    conn = next(c for c in corpus.connections() if c.capture == "demo.pcapng")
    fields = [f for f in mutator.structure(conn).fields if f.kind == "Certificate cert_data"]
    assert fields
    streams = conn.streams()
    for f in fields:
        side = next(
            s
            for s, pieces in enumerate(conn.stream_map())
            if f.where[0][0] in {p for p, _a, _b in pieces}
        )
        where = [(p, o) for p, a, b in conn.stream_map()[side] for o in range(a, b)]
        at = where.index(f.where[-1]) + 1
        n = int.from_bytes(bytes(conn.packets[p][2][o] for p, o in f.where), "big")
        der = streams[side][at : at + n]
        assert der[0] == 0x30 and der[1] == 0x82  # a SEQUENCE of two length bytes
        assert 4 + int.from_bytes(der[2:4], "big") == n


def test_serialized_packets_read_back() -> None:
    conn = corpus.connections()[0]
    for fmt in ("pcap", "pcap_ns", "pcap_be", "pcapng", "pcapng_be"):
        data = mutator.serialize(conn.packets, fmt, keylog=b"# none\n")
        path = targets._scratch(data)
        with corpus.open_capture(path) as src:
            back = [(ts, lt, bytes(d), o) for ts, lt, d, o, _i in src]
        want = [(ts, lt, d, o) for ts, lt, d, o, _i in conn.packets]
        if fmt.startswith("pcap") and not fmt.startswith("pcapng"):
            if fmt != "pcap_ns":
                want = [(ts // 1000 * 1000, lt, d, o) for ts, lt, d, o in want]
        assert back == want, fmt


def test_byte_mutator_is_bounded_and_seeded() -> None:
    seeds = [bytes(range(200)), b"\x16\x03\x01\x00\x05hello"]
    a = [mutator.mutate_bytes(random.Random(5), seeds, 100) for _ in range(3)]
    b = [mutator.mutate_bytes(random.Random(5), seeds, 100) for _ in range(3)]
    assert a == b
    assert all(len(x) <= 100 for x in a)


def test_runner_prints_the_figures(tmp_path: Path) -> None:
    """`run` on two targets: a line per target with inputs, rate, crashes and slowest inputs;
    the inputs shared by the targets' weights (keylog 1, mutated 0.25: 320 and 80)."""
    env = dict(os.environ, PYTHONPATH=str(corpus.ROOT))
    out = subprocess.run(
        [sys.executable, str(HERE / "run"), "--inputs", "400", "--target", "keylog",
         "--target", "mutated", "--workdir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    for name, n in (("keylog", 320), ("mutated", 80)):
        [line] = [x for x in lines if x.startswith(name + " ")]
        assert f" {n} inputs" in line and "/s" in line and "0 distinct crashes" in line, line
    assert sum("slowest:" in x for x in lines) == 2
    assert "all targets: 400 inputs" in out.stdout


def test_key_update_in_a_tls12_direction_is_a_key_problem() -> None:
    """A KeyUpdate decrypted in a TLS 1.2 direction (after a decrypted HelloRetryRequest made
    the connection look like TLS 1.3) once escaped as a DecodeError: it is the session's key
    problem now, and the session keeps its report."""
    import tlsinspect

    path = REGRESSIONS / "pipeline" / "tls12_key_update_after_decrypted_hello_retry_request.pcap"
    [s] = tlsinspect.sessions(path, keylog=corpus.OWN / "compress.keylog")
    assert s["client_chain"] and s["tls_version"] == "TLS 1.2"
    assert any("only a TLS 1.3 direction is re-keyed" in a for a in s["anomalies"]), s


def _decrypted_types(
    k: reencrypt.Keyed, streams: tuple[bytes, bytes], side: int
) -> tuple[list[int], int]:
    """The types of the handshake messages decrypted from one side, and the key problems."""
    from tlsinspect.tls.connection import KeysMissing, MessageSeen, TlsConnection

    tls = TlsConnection(False, targets._capture_keys())
    seen = []
    problems = 0
    pos = [0, 0]
    for s, n in reencrypt._feed_order(k.conn):
        evs = tls.receive(s, streams[s][pos[s] : pos[s] + n], 0)
        pos[s] += n
        problems += sum(isinstance(e, KeysMissing) for e in evs)
        seen += [e.msg.msg_type for e in evs if isinstance(e, MessageSeen) and e.decrypted
                 and e.side == side and hasattr(e.msg, "msg_type")]  # fmt: skip
    return seen, problems


def test_reencrypted_edits_reach_the_parsers_behind_decryption() -> None:
    """A TLS 1.3 server's EncryptedExtensions, its type byte set to Finished's and encrypted
    again, decrypts without a key problem and is read as a Finished."""
    for k in reencrypt.keyed():
        for side in (0, 1):
            first = k.protected[side].get(min(k.protected[side], default=-1))
            if first is not None and first.tls13 and first.inner == 22 and first.plain[0] == 8:
                break
        else:
            continue
        break
    else:
        pytest.fail("no TLS 1.3 EncryptedExtensions among the keyed recordings")
    types, problems = _decrypted_types(k, k.conn.streams(), side)
    assert types[0] == 8 and not problems
    edits = bytes(((1 << 1) | side, 0, 0, 20))  # set byte 0 of that side's plaintexts to 20
    assert reencrypt.edit(k, edits)[1 - side] == k.conn.streams()[1 - side]
    assert _decrypted_types(k, reencrypt.edit(k, edits), side)[0][0] == 20
