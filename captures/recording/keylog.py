"""NSS key logs as the programs of a recording write them: several programs append to one file,
both ends of a session may log the same secrets."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .core import TLS12

HANDSHAKE_LABELS = frozenset({"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET"})


def fresh(path: Path) -> Path:
    """An empty key log at ``path``, for the programs to append to."""
    path.unlink(missing_ok=True)
    path.touch()
    return path


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="ascii").splitlines() if line.strip()]


def append(path: Path, new: Iterable[str]) -> None:
    with path.open("a", encoding="ascii") as fh:
        fh.writelines(f"{line}\n" for line in new)


def dedupe(path: Path) -> None:
    """Keep each line once, in order."""
    kept = dict.fromkeys(lines(path))
    path.write_text("".join(f"{line}\n" for line in kept), encoding="ascii")


def labels(new: Iterable[str]) -> set[str]:
    return {line.split()[0] for line in new}


def keyed(version: str, found: set[str]) -> bool:
    """The labels ``found`` decrypt a handshake of ``version``."""
    if version == TLS12:
        return "CLIENT_RANDOM" in found
    return HANDSHAKE_LABELS <= found


def client_randoms(path: Path) -> set[str]:
    """The client randoms (lower-case hex) the key log has secrets for."""
    return {parts[1].lower() for parts in map(str.split, lines(path)) if len(parts) == 3}
