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


def iso_time(ts_ns: int) -> str:
    """A packet timestamp (integer nanoseconds) as ISO 8601 UTC text, to the microsecond."""
    dt = datetime.fromtimestamp(ts_ns // 10**9, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ts_ns % 10**9) // 1000:06d}Z"
