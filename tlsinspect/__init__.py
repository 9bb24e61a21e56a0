"""tlsinspect: tell mutual TLS from one-way TLS in packet captures, and say why.

Importing the package is cheap: the layers load when first used.
"""

from __future__ import annotations

from collections.abc import Iterator
from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline import SessionRecord

__all__ = ["analyze", "sessions"]
__version__ = "0.1.0"


def analyze(path: str | PathLike[str]) -> Iterator[SessionRecord]:
    """Yield every TLS session of a capture file as it is logged."""
    from .capture import open_capture
    from .pipeline import Analyzer

    with open_capture(path) as source:
        yield from Analyzer().run(source)


def sessions(path: str | PathLike[str]) -> list[dict[str, object]]:
    """Every TLS session of a capture as a dict with the JSON output's fields."""
    from .report.schema import session_dict

    return [session_dict(r) for r in analyze(path)]
