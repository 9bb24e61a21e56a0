"""Value types shared by every layer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
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
    EVICTED = "evicted"  # evicted to keep memory under the limit (engines.lifecycle.Limits)

    def __str__(self) -> str:
        return self.value

    @property
    def closed(self) -> bool:
        """A FIN or RST ended it: the peers, not the capture, closed it."""
        return self in (EndKind.FIN, EndKind.RST)


def count(n: int, thing: str) -> str:
    """'1 TLS session', '2 TLS sessions', '1,000 rules': a number and its noun, agreed."""
    return f"{n:,} {thing}" if n == 1 else f"{n:,} {thing}s"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def packet_datetime(ts_ns: int) -> datetime | None:
    """A packet timestamp (integer nanoseconds) as an aware UTC datetime, to the microsecond;
    None when it is no date of the years 1 to 9999 (a damaged timestamp, or a pcapng interface
    whose if_tsresol does not match its timestamps). Computed, not asked of the platform's
    clock functions: never raises."""
    try:
        return _EPOCH + timedelta(microseconds=ts_ns // 1000)
    except OverflowError:
        return None


def iso_time(ts_ns: int) -> str:
    """A packet timestamp (integer nanoseconds) as ISO 8601 UTC text, to the microsecond.

    A timestamp that is no date (see `packet_datetime`) is shown as ``@`` and its integer
    nanoseconds since 1970 (``@57868...``), and the session says so in its anomalies.
    """
    dt = packet_datetime(ts_ns)
    if dt is None:
        return f"@{ts_ns}"
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond:06d}Z"
    )
