"""Reading session rows: flat rows (`report.flat.flat_row()`) or `read_capture()` records.

The two differ in how a value is missing (None, or pandas' NA, NaT and NaN) and in how a time
is held (ISO text, or a pandas Timestamp for a DataFrame's time columns); these functions read
both the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone


def value(row: Mapping[str, object], key: str) -> object:
    """A value of a row; pandas' missing values (NA, NaT, NaN) read as None."""
    v = row.get(key)
    if v is None or type(v).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(v, float) and v != v:
        return None
    return v


def list_value(row: Mapping[str, object], key: str) -> list:
    v = value(row, key)
    return list(v) if isinstance(v, list | tuple) else []


def time_value(v: object) -> datetime | None:
    """A time of a row as an aware datetime (UTC when it names no zone), None when it has none."""
    if isinstance(v, str):
        v = _time_from_text(v)
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
    return None


def _time_from_text(text: str) -> datetime | None:
    """An ISO 8601 time of a row ('Z' for UTC), None when it is empty or not a time."""
    # Rows should carry datetimes. Flat rows hold their times (start_time, and a certificate's
    # not_before and not_after, in DataFrame records too) as ISO text, and here the policy turns
    # that text back into the datetimes it came from; once rows carry datetimes, this goes.
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def san_values(row: Mapping[str, object], role: str, kinds: Iterable[str]) -> list[str]:
    out = []
    for entry in list_value(row, f"{role}_san"):
        kind, _, text = str(entry).partition(":")
        if kind in kinds:
            out.append(text)
    return out
