"""Streamed outputs: JSON Lines, CSV and ECS, written session by session as the engine logs them
(Zeek's logs are streamed too, into their two files: `report.zeek`).

Each session is written and flushed as soon as it is logged, so a consumer reading a pipe sees the
first session long before a large capture is read to its end (the CSV header comes first, before
any packet is read).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TextIO

from ..record import SessionRecord
from .ecs import write_ecs
from .flat import csv_header, csv_line, extend
from .schema import session_dict

STREAMED_FORMATS = ("jsonl", "csv", "ecs")


def write_streamed(fmt: str, records: Iterable[SessionRecord], out: TextIO) -> int:
    """Write every record to `out` as it comes, in `fmt` ("jsonl", "csv" or "ecs"); return the
    count."""
    if fmt not in STREAMED_FORMATS:
        raise ValueError(f"not a streamed format: {fmt!r}")
    if fmt == "ecs":
        return write_ecs(records, out)
    n = 0
    if fmt == "csv":
        out.write(csv_header())
        out.flush()
        for r in records:
            out.write(csv_line(extend(session_dict(r))))
            out.flush()
            n += 1
    else:
        for r in records:
            out.write(json.dumps(session_dict(r)) + "\n")
            out.flush()
            n += 1
    return n
