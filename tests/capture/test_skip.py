"""The skip filter pushed down to the readers: what it drops, and that it changes no result.

The pipeline installs it so that packets of decided flows are dropped inside the reader's loop;
the sessions must be exactly those of the same packets fed one by one without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import OWN, SHARED, own_captures, shared_captures

from tlsinspect.capture import SkipFilter, open_capture
from tlsinspect.engines.builtin import Analyzer
from tlsinspect.report.schema import session_dict


def _key(data: bytes) -> bytes:
    return data[26:38]


@pytest.mark.parametrize(
    "path",
    [OWN / "tls12.pcapng", OWN / "stacks.pcap", SHARED / "zeek__client-certificate.pcap"],
    ids=lambda p: p.name,
)
def test_matching_records_are_dropped_and_counted(path: Path):
    with open_capture(path) as src:
        records = list(src)
    eth = [r for r in records if r[1] == 1 and len(r[2]) > 47]
    # the busiest Ethernet flow (an SLL2 capture has none: nothing may be dropped)
    keys = [_key(r[2]) for r in eth]
    eth_key = max(keys, key=keys.count) if keys else None
    table = {eth_key: "drop"} if eth_key else {}
    with open_capture(path) as src:
        skip = SkipFilter(1, 26, 38, table, "drop", 47, 0x07, 20, 0x20)
        src.push_skip(skip)
        kept = list(src)
        packets = src.packets
    expect = [
        r
        for r in records
        if not (
            r[1] == 1
            and len(r[2]) > 47
            and _key(r[2]) == eth_key
            and not r[2][47] & 0x07
            and not r[2][20] & 0x20
        )
    ]
    assert kept == expect
    assert skip.skipped == len(records) - len(expect)
    assert packets == len(records)  # dropped records are still counted as read
    if eth_key:
        assert skip.skipped > 0


def _sessions(source) -> list[dict]:
    return [session_dict(r) for r in Analyzer().run(source)]


@pytest.mark.parametrize("path", [*own_captures(), *shared_captures()], ids=lambda p: p.name)
def test_sessions_are_the_same_with_and_without_the_filter(path: Path):
    with open_capture(path) as src:
        pushed = _sessions(src)  # the Analyzer pushes its filter down to the reader
    with open_capture(path) as src:
        plain = _sessions(iter(list(src)))  # a plain iterator: no filter to push (nor file)
    assert {s.pop("file") for s in pushed} == {str(path)}
    assert {s.pop("file") for s in plain} == {None}
    assert pushed == plain
