"""`--format zeek` and `zeek-json`: the logs read back as zeek-cut reads them, and their values
against Zeek's own logs of the same captures (Zeek's btest baselines in zeek_baselines/, see
its README), else against what tshark dissects; both engines on the committed captures."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from certs import make
from helpers import SHARED, build_session, own_captures, run_cli, run_tshark, server, shared_view

from tlsinspect.classify import classify
from tlsinspect.record import build_record
from tlsinspect.report.zeek import LOG_FIELDS, markdown_table, ssl_row, x509_rows
from tlsinspect.tls import messages as m

BASELINES = Path(__file__).parent / "zeek_baselines"
MASKED = "XXXXXXXXXX.XXXXXX"
ZEEK_CAPTURES = sorted(SHARED.glob("zeek__*.pcap"))
# names Zeek used before 6.0 for fields whose value did not change
RENAMED = {"fp": "fingerprint"}


def zeek_cut(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """A Zeek TSV log as zeek-cut reads it: the header's directives, then one dict per row.
    Asserts what zeek-cut relies on: the directives first, as many #types as #fields, and as
    many cells in every row."""
    directives: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines[0].startswith("### "):  # btest's own note, first in a stored baseline
        lines = lines[1:]
    assert lines[0] == "#separator \\x09", lines[0]
    for line in lines[1:]:
        if line.startswith("#"):
            key, _, value = line[1:].replace(" ", "\t", 1).partition("\t")
            directives[key] = value
            continue
        fields = directives["fields"].split("\t")
        assert len(directives["types"].split("\t")) == len(fields)
        cells = line.split("\t")
        assert len(cells) == len(fields), (path, line)
        rows.append(dict(zip(fields, cells, strict=True)))
    for key in ("set_separator", "empty_field", "unset_field", "path", "open", "fields", "types"):
        assert key in directives, (path, key)
    return directives, rows


def write_logs(tmp_path: Path, capture: Path, *args: str) -> Path:
    out = tmp_path / f"{capture.stem}-{'-'.join(a.strip('-') for a in args) or 'zeek'}"
    r = run_cli("--format", "zeek", "-o", out, *args, capture)
    assert r.returncode == 0, r.stderr
    return out


def _baselines() -> list[tuple[Path, Path]]:
    out = []
    for d in sorted(p for p in BASELINES.iterdir() if p.is_dir()):
        for log in sorted(d.glob("*.log")):
            out.append((SHARED / f"zeek__{d.name}.pcap", log))
    return out


def test_every_zeek_capture_has_a_baseline_or_a_tshark_comparison():
    if not ZEEK_CAPTURES:
        pytest.skip(
            f"no Zeek captures in {SHARED}: the shared captures must be beside the checkout"
        )
    stems = {c.name.removeprefix("zeek__").removesuffix(".pcap") for c in ZEEK_CAPTURES}
    with_baseline = {d.name for d in BASELINES.iterdir() if d.is_dir()}
    assert with_baseline <= stems
    assert stems - with_baseline == {c for c, _ in NO_BASELINE}


@pytest.mark.parametrize(
    "capture,baseline", _baselines(), ids=lambda p: p.parent.name + "/" + p.name
)
def test_values_are_zeeks(tmp_path, capture, baseline):
    if not capture.exists():
        pytest.skip(f"{capture} is absent: the shared captures must be beside the checkout")
    logs = write_logs(tmp_path, capture)
    path = baseline.name.split("-")[0].removesuffix(".log")
    _, ours = zeek_cut(logs / f"{path}.log")
    _, zeeks = zeek_cut(baseline)
    key = "uid" if path == "ssl" else "fingerprint"
    assert len(ours) == len(zeeks)
    compared = 0
    for zeek_row in zeeks:
        zeek_row = {RENAMED.get(k, k): v for k, v in zeek_row.items()}
        if key == "fingerprint":
            (row,) = [r for r in ours if r["fingerprint"] == zeek_row["fingerprint"]]
        else:
            (row,) = ours
        for name, value in zeek_row.items():
            if name in ("uid", "cert_chain_fuids", "client_cert_chain_fuids") or value == MASKED:
                continue  # Zeek's test uids and file ids; times btest masked
            assert row[name] == value, (name, row[name], value)
            compared += 1
    assert compared >= 10 * len(zeeks)


# Captures with no Zeek baseline found: (name, reason), compared with tshark below
NO_BASELINE = [
    ("client-certificate", "Zeek's test of it prints events, not logs"),
    ("globus-url-copy", "Zeek's tests of it log no ssl.log"),
    ("hrr", "no Zeek test of it logs ssl.log"),
    ("tls-12-amazon-rds", "Zeek's MySQL test of it logs mysql.log"),
]


def _as_tshark(zeek: str) -> str:
    """A Zeek TSV name (RFC 2253, last RDN first, backslashes doubled by the log) in tshark's
    form: certificate order, ", " between, nothing escaped."""
    if zeek == "-":
        return zeek
    text = zeek.replace("\\\\", "\\")
    parts = re.split(r"(?<!\\),", text)
    return ", ".join(re.sub(r"\\(.)", r"\1", p) for p in reversed(parts))


@pytest.mark.parametrize("name", [n for n, _ in NO_BASELINE])
def test_values_without_a_baseline_are_tsharks(tmp_path, tshark, name):
    capture = SHARED / f"zeek__{name}.pcap"
    if not capture.exists():
        pytest.skip(f"{capture} is absent: the shared captures must be beside the checkout")
    (view,) = [s for s in shared_view() if s["file"] == capture.name]
    logs = write_logs(tmp_path, capture)
    (row,) = zeek_cut(logs / "ssl.log")[1]
    _, certs = zeek_cut(logs / "x509.log")
    version = view["tls_version"]
    assert row["version"] == ("TLSv" + version[4:].replace(".", "") if version else "-")
    assert row["server_name"] == (view["sni"] or "-")
    if view["classification"] != "unknown-encrypted":  # tshark cannot tell without keys
        assert row["established"] == ("T" if view["handshake_complete"] else "F")
    clear = [a["description"] for a in view["alerts"] if a.get("description")]
    assert row["last_alert"] == (clear[-1] if clear else "-")
    for side, prefix in (("server", ""), ("client", "client_")):
        chain = view[f"{side}_chain"]
        leaf = chain[0] if chain else None
        assert _as_tshark(row[f"{prefix}subject"]) == (leaf["subject"] if leaf else "-")
        assert _as_tshark(row[f"{prefix}issuer"]) == (leaf["issuer"] if leaf else "-")
    decode = view["decode_as_tls_ports"] or []
    fields = ["tcp.srcport", "tls.handshake.certificate"]
    rows = run_tshark(tshark, capture, fields, "tls.handshake.type == 11", decode)
    sent: dict[str, list[str]] = {"server": [], "client": []}
    client_port = view["client"].rsplit(":", 1)[1]
    for port, ders in rows:
        side = "client" if port == client_port else "server"
        sent[side] += [
            hashlib.sha256(bytes.fromhex(d.replace(":", ""))).hexdigest()
            for d in ders.split(",")
            if d
        ]
    for side, field in (("server", "cert_chain_fps"), ("client", "client_cert_chain_fps")):
        assert row[field].split(",") == sent[side] or (
            row[field] in ("-", "(empty)") and not sent[side]
        )
    assert {c["fingerprint"] for c in certs} == set(sent["server"] + sent["client"])
    assert {c["fingerprint"] for c in certs if c["client_cert"] == "T"} == set(sent["client"])


def _json_rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _tsv_of(value: object, ztype: str) -> str:
    """What a Zeek JSON value is in TSV, for the values these captures hold."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, list):
        return ",".join(str(v).replace(",", "\\x2c") for v in value) if value else "(empty)"
    if ztype == "time":
        return f"{value:.6f}"
    return str(value)


CAPTURES = [*own_captures(), *ZEEK_CAPTURES]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_tsv_and_json_hold_the_same_rows(tmp_path, capture):
    tsv = write_logs(tmp_path, capture)
    js = tmp_path / "json"
    r = run_cli("--format", "zeek-json", "-o", js, capture)
    assert r.returncode == 0, r.stderr
    for path, fields in LOG_FIELDS.items():
        directives, rows = zeek_cut(tsv / f"{path}.log")
        assert directives["path"] == path
        assert directives["fields"].split("\t") == [n for n, _, _ in fields]
        assert directives["types"].split("\t") == [t for _, t, _ in fields]
        objects = _json_rows(js / f"{path}.log")
        assert len(objects) == len(rows)
        types = {n: t for n, t, _ in fields}
        for row, obj in zip(rows, objects, strict=True):
            assert set(obj) == {n for n, v in row.items() if v != "-"}
            for name, value in obj.items():
                if isinstance(value, str) and ("\\" in value or "\t" in value):
                    continue  # escaped differently in each form
                assert row[name] == _tsv_of(value, types[name]), (name, row[name], value)


def test_a_session_s_uid_is_the_same_on_every_run(tmp_path):
    capture = own_captures()[0]
    first = zeek_cut(write_logs(tmp_path / "1", capture) / "ssl.log")[1]
    again = zeek_cut(write_logs(tmp_path / "2", capture) / "ssl.log")[1]
    uids = [r["uid"] for r in first]
    assert uids and len(set(uids)) == len(uids)
    assert all(u.startswith("C") and u[1:].isalnum() for u in uids)
    assert [r["uid"] for r in again] == uids


TSHARK_AGREES = (
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "version",
    "cipher",
    "curve",
    "next_protocol",
    "server_name",
    "cert_chain_fps",
    "client_cert_chain_fps",
    "subject",
    "issuer",
    "client_subject",
    "client_issuer",
    "mtls_verdict",
)


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_both_engines_write_the_same_logs(tmp_path, tshark, capture):
    builtin = zeek_cut(write_logs(tmp_path, capture) / "ssl.log")[1]
    other = zeek_cut(write_logs(tmp_path, capture, "--engine", "tshark") / "ssl.log")[1]

    def key(r: dict[str, str]) -> tuple[str, ...]:
        return tuple(r[n] for n in TSHARK_AGREES)

    ours = {r["uid"]: key(r) for r in builtin if r["version"] != "-"}
    theirs = {r["uid"]: key(r) for r in other if r["version"] != "-"}
    common = ours.keys() & theirs.keys()
    assert common or not ours
    for uid in common:
        assert ours[uid] == theirs[uid], uid


def test_an_unwritable_directory_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_cli("--format", "zeek", "-o", blocker / "logs", own_captures()[0])
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_readme_table_is_the_fields():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("<!-- zeek:start -->\n", 1)[1].split("\n<!-- zeek:end -->", 1)[0]
    assert block == markdown_table()


def test_a_certificate_no_parser_loads_has_no_fingerprint_nor_x509_line():
    """As Zeek, whose X.509 analyzer logs nothing for a certificate it cannot parse."""
    leaf, root = (
        make("zeek-leaf", make("zeek-root", None, ca=True)).der,
        make("zeek-root", None, ca=True).der,
    )
    marker = bytes.fromhex("a003020102")  # version 3; 4 is refused
    broken = leaf.replace(marker, bytes.fromhex("a003020103"))
    facts = build_session(server(m.Certificate((broken, root)))).facts
    r = build_record(1, facts, classify(facts), ("192.0.2.1", 50000), ("192.0.2.2", 443))
    row = ssl_row(r)
    assert row["cert_chain_fps"] == [hashlib.sha256(root).hexdigest()]
    assert row["client_cert_chain_fps"] == [] and row["subject"] is None
    assert [x["fingerprint"] for x in x509_rows(r)] == row["cert_chain_fps"]
