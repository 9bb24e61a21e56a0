"""Value types shared by every layer."""

from __future__ import annotations

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
