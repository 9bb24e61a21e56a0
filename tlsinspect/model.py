"""Value types shared by every layer."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum

CLIENT, SERVER = "client", "server"


class Verdict(str, Enum):
    MUTUAL = "mutual"
    ONE_WAY = "one-way"
    CERT_REQUESTED_NOT_SENT = "cert-requested-not-sent"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    ENCRYPTED = "encrypted"
    RESUMED = "resumed"

    def __str__(self) -> str:
        return self.value


class Basis(str, Enum):
    """How a verdict was reached."""

    OBSERVED = "observed"  # from plaintext handshake messages
    DECRYPTED = "decrypted"
    INFERRED = "inferred"

    def __str__(self) -> str:
        return self.value


class EndKind(str, Enum):
    """How a connection's session came to be logged, when it was not its decided verdict."""

    FIN = "fin"  # a FIN (the first one; the session is logged on the second)
    RST = "rst"  # a reset
    EOF = "eof"  # the capture ended
    IDLE = "idle"  # silent longer than the idle timeout (packet time)
    REUSE = "reuse"  # its address/port pair was reused by a new connection

    def __str__(self) -> str:
        return self.value

    @property
    def closed(self) -> bool:
        """A FIN or RST ended it: the peers, not the capture, closed it."""
        return self in (EndKind.FIN, EndKind.RST)


def count(n: int, thing: str) -> str:
    """'1 TLS session', '2 TLS sessions', '1,000 rules': a number and its noun, agreed."""
    return f"{n:,} {thing}" if n == 1 else f"{n:,} {thing}s"


def iso_time(ts_ns: int) -> str:
    """A packet timestamp (integer nanoseconds) as ISO 8601 UTC text, to the microsecond."""
    dt = datetime.fromtimestamp(ts_ns // 10**9, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ts_ns % 10**9) // 1000:06d}Z"
