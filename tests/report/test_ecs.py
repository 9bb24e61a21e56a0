"""`--format ecs`: every name is an ECS field of the right type (ecs_fields.csv, from the ECS
reference) or under `tlsinspect.`, the names are those of `read_capture(ecs=True)`, and the
values are those of the JSON output."""

from __future__ import annotations

import csv
import ipaddress
import json
from datetime import datetime
from pathlib import Path

import pytest
from helpers import SHARED, own_captures, run_cli

from tlsinspect.report.flat import columns, ecs_name

REFERENCE = Path(__file__).parent / "ecs_fields.csv"
CAPTURES = [*own_captures(), *sorted(SHARED.glob("zeek__*.pcap"))]


def ecs_types() -> dict[str, str]:
    lines = [ln for ln in REFERENCE.read_text().splitlines() if not ln.startswith("#")]
    return {row["field"]: row["type"] for row in csv.DictReader(lines)}


def flatten(doc: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not name.startswith("tlsinspect."):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _is(ecs_type: str, value: object) -> bool:
    if ecs_type == "keyword":
        return isinstance(value, str)
    if ecs_type == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if ecs_type == "boolean":
        return isinstance(value, bool)
    if ecs_type == "ip":
        return isinstance(value, str) and bool(ipaddress.ip_address(value))
    if ecs_type == "date":
        return isinstance(value, str) and bool(datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise AssertionError(f"no check for ECS type {ecs_type}")


def documents(capture: Path) -> list[dict[str, object]]:
    r = run_cli("--format", "ecs", capture)
    assert r.returncode == 0, r.stderr
    return [flatten(json.loads(line)) for line in r.stdout.splitlines()]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_names_types_and_values(capture):
    types = ecs_types()
    docs = documents(capture)
    r = run_cli("--format", "json", capture)
    sessions = {s["index"]: s for s in json.loads(r.stdout)}
    assert len(docs) == len(sessions)
    for doc in docs:
        for name, value in doc.items():
            if name.startswith("tlsinspect."):
                continue
            assert name in types, f"{name} is not an ECS field"
            for v in value if isinstance(value, list) else [value]:
                assert _is(types[name], v), (name, value)
        s = sessions[doc["event.sequence"]]
        assert doc["tlsinspect.index"] == s["index"]
        assert doc["@timestamp"] == doc["event.start"] == s["start_time"]
        assert (doc["source.ip"], doc["source.port"]) == (s["client_ip"], s["client_port"])
        assert (doc["destination.ip"], doc["destination.port"]) == (
            s["server_ip"],
            s["server_port"],
        )
        assert (doc["client.ip"], doc["server.port"]) == (s["client_ip"], s["server_port"])
        assert doc.get("tls.client.server_name") == s["sni"]
        assert doc.get("tls.cipher") == s["cipher_suite"]
        version = s["tls_version"]
        if version is None:
            assert "tls.version" not in doc
        else:
            protocol, number = version.lower().split(" ", 1)
            assert (doc["tls.version_protocol"], doc["tls.version"]) == (protocol, number)
        assert doc["tls.resumed"] == (s["verdict"] == "resumed")
        assert doc["tlsinspect.verdict"] == s["verdict"]
        assert doc["tlsinspect.reason"] == s["reason"]
        for side in ("client", "server"):
            chain = s[f"{side}_chain"]
            if not chain:
                assert f"tls.{side}.hash.sha256" not in doc
                continue
            assert doc[f"tls.{side}.hash.sha256"] == chain[0]["sha256"].upper()
            assert len(doc[f"tls.{side}.certificate_chain"]) == len(chain)
            assert doc[f"tls.{side}.subject"] == chain[0]["subject"]
            if chain[0]["serial"]:
                assert doc[f"tls.{side}.x509.serial_number"] == chain[0]["serial"].upper()
            sans = [n.split(":", 1)[1] for n in chain[0]["san"]]
            assert doc.get(f"tls.{side}.x509.alternative_names", []) == sans


def test_the_names_are_the_dataframe_s():
    """Each DataFrame column's ECS name is written, under the same name, when it has a value."""
    docs = [d for c in CAPTURES for d in documents(c)]
    seen = {name for d in docs for name in d}
    names = {ecs_name(c) for c, _, _ in columns()} - {"tls.version"}
    assert names <= seen, names - seen
    pd = pytest.importorskip("pandas")
    import tlsinspect

    frame = tlsinspect.read_capture(str(CAPTURES[0]), ecs=True)
    assert isinstance(frame, pd.DataFrame)
    ecs_columns = set(frame.columns) - {"file.path"}
    assert ecs_columns <= names | {"tls.version", "tls.version_protocol", "tls.resumed"}
