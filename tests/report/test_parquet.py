"""`--format parquet`: the sessions of read_capture() and the certificates of read_certificates(),
with their columns, dtypes and values, read back with pandas, pyarrow and (when it is installed)
DuckDB."""

from __future__ import annotations

import io
import json
import math
import os
import pty
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import OWN, ROOT, run_cli, shared_captures

import tlsinspect
from tlsinspect.report import parquet
from tlsinspect.report.frame import CERT_COLUMNS

# (capture, key log): TLS 1.2 chains and failures, TCP edge cases, several stacks, compressed
# certificates with keys, TLS 1.3 without keys (no chain at all) and with them
CASES = [
    (OWN / "certs.pcapng", None),
    (OWN / "tls12.pcapng", None),
    (OWN / "tcp_edge.pcapng", None),
    (OWN / "stacks.pcap", None),
    (OWN / "compress.pcapng", OWN / "compress.keylog"),
    (OWN / "tls13.pcapng", None),
    (OWN / "tls13.pcapng", OWN / "tls13.keylog"),
] + [(p, None) for p in shared_captures()]


def plain(value: object) -> object:
    """A value as read_capture() holds it: pandas reads a Parquet list as a numpy array."""
    if isinstance(value, np.ndarray | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def by(frame: pd.DataFrame, *keys: str) -> pd.DataFrame:
    return frame.sort_values(list(keys)).reset_index(drop=True)


def assert_same_column(expected: pd.Series, got: pd.Series, dtype: bool = True) -> None:
    if dtype:
        assert got.dtype == expected.dtype, (expected.name, expected.dtype, got.dtype)
    if expected.dtype == object:
        want = [plain(v) for v in expected]
        # a column of nulls only: read_certificates() leaves it objects, Parquet has its type
        have = [None if v is pd.NA else plain(v) for v in got]
        assert have == want, expected.name
    else:
        pd.testing.assert_series_equal(got, expected, check_dtype=dtype)


def write(tmp_path: Path, capture: Path, keylog: Path | None) -> tuple[Path, Path, int]:
    sessions, certs = tmp_path / "s.parquet", tmp_path / "s.certs.parquet"
    kwargs = {"keylog": keylog} if keylog else {}
    n = parquet.write_parquet(tlsinspect.analyze(capture, **kwargs), sessions, str(capture), certs)
    return sessions, certs, n


@pytest.mark.parametrize(
    "capture, keylog", CASES, ids=[f"{c.name}{'+keys' if k else ''}" for c, k in CASES]
)
def test_read_back_equals_read_capture(tmp_path, monkeypatch, capture, keylog):
    monkeypatch.setattr(parquet, "ROW_GROUP", 3)  # several row groups, even on small captures
    sessions, certs, n = write(tmp_path, capture, keylog)
    expected = by(tlsinspect.read_capture(capture, keylog, progress=False), "index")
    assert n == len(expected)
    assert pq.ParquetFile(sessions).metadata.num_row_groups == max(1, math.ceil(n / 3))
    got = by(pd.read_parquet(sessions), "index")
    assert list(got.columns) == list(expected.columns)
    for name in expected.columns:
        assert_same_column(expected[name], got[name])

    expected_certs = tlsinspect.read_certificates(tlsinspect.read_capture(capture, keylog))
    got_certs = pd.read_parquet(certs)
    assert len(got_certs) == len(expected_certs)
    if expected_certs.empty:  # TLS 1.3 without keys: the columns, no rows
        assert {n for n, _, _ in CERT_COLUMNS} <= set(got_certs.columns)
        return
    keys = ("session", "role", "position")
    expected_certs, got_certs = by(expected_certs, *keys), by(got_certs, *keys)
    assert list(got_certs.columns) == list(expected_certs.columns)
    declared = {n for n, _, _ in CERT_COLUMNS}
    for name in expected_certs.columns:
        # the chain item's own keys have a dtype of their own in the file; read_certificates()
        # infers one from the values, the same unless a column holds no value at all
        assert_same_column(
            expected_certs[name],
            got_certs[name],
            dtype=name in declared or expected_certs[name].notna().any(),
        )


def test_pyarrow_sees_the_json_output_as_lists_and_structs(tmp_path):
    """The Parquet values are the JSON output's, nested as it nests them (what DuckDB and Spark
    query), read here with pyarrow alone."""
    capture = OWN / "certs.pcapng"
    out = tmp_path / "certs.parquet"
    r = run_cli("--format", "parquet", "-o", out, capture)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    table = pq.read_table(out)
    sessions = json.loads(run_cli("--format", "json", capture).stdout)
    rows = sorted(table.to_pylist(), key=lambda s: s["index"])
    assert len(rows) == len(sessions)
    for got, want in zip(rows, sorted(sessions, key=lambda s: s["index"]), strict=True):
        for key in ("sni", "reason", "alerts", "client_chain", "server_chain", "chain_checks"):
            assert got[key] == want[key], key
        assert got["verdict"] == want["verdict"] and got["file"] == str(capture)
    chain = table.schema.field("client_chain").type
    assert pa.types.is_list(chain) and pa.types.is_struct(chain.value_type)
    assert table.schema.field("start_time").type == pa.timestamp("ns", tz="UTC")
    certs = pq.read_table(tmp_path / "certs.certs.parquet")
    assert certs.num_rows == sum(len(s["client_chain"]) + len(s["server_chain"]) for s in sessions)


def test_the_suffix_picks_parquet_and_a_pipe_takes_it(tmp_path):
    capture = OWN / "tls12.pcapng"
    out = tmp_path / "run.parquet"
    r = run_cli("-o", out, capture)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:4] == b"PAR1" and (tmp_path / "run.certs.parquet").exists()
    piped = subprocess.run(
        [sys.executable, "-m", "tlsinspect", "--format", "parquet", str(capture)],
        capture_output=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert pq.read_table(io.BytesIO(piped.stdout)).equals(pq.read_table(out))


def test_parquet_to_a_terminal_is_one_line_and_exit_2():
    controller, terminal = pty.openpty()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "tlsinspect", "--format", "parquet", str(OWN / "tls12.pcapng")],
            stdout=terminal,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--output" in r.stderr, r.stderr


def test_an_unwritable_output_is_one_line(tmp_path):
    r = run_cli("-o", tmp_path / "missing" / "x.parquet", OWN / "tls12.pcapng")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "x.parquet" in r.stderr and "Traceback" not in r.stderr


def test_an_object_column_without_a_parquet_type_is_refused():
    frame = pd.DataFrame({"new": pd.Series([], dtype=object)})
    with pytest.raises(ValueError, match="'new' has no Parquet type"):
        parquet._schema(frame, {})


def test_duckdb_reads_it(tmp_path):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (optional)")
    capture = OWN / "certs.pcapng"
    out = tmp_path / "s.parquet"
    assert run_cli("--format", "parquet", "-o", out, capture).returncode == 0
    sessions = json.loads(run_cli("--format", "json", capture).stdout)
    got = dict(duckdb.sql(f"SELECT verdict, count(*) FROM '{out}' GROUP BY verdict").fetchall())
    assert got == Counter(s["verdict"] for s in sessions)
    leaf = duckdb.sql(
        f"SELECT index, client_chain[1].subject_cn FROM '{out}' WHERE len(client_chain) > 0"
    ).fetchall()
    want = [(s["index"], s["client_chain"][0]["subject_cn"]) for s in sessions if s["client_chain"]]
    assert sorted(leaf) == sorted(want)
