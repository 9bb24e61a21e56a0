"""Names, limits and errors every recorder uses."""

from __future__ import annotations

import re

SERVER_NAME = "server.example.test"
HOST = "127.0.0.1"
PING = b"ping\n"
PONG = b"pong\n"
IO_TIMEOUT = 5.0
TOOL_TIMEOUT = 10.0

TLS12 = "TLS 1.2"
TLS13 = "TLS 1.3"

MUTUAL = "mutual"
ONE_WAY = "one-way"
NOT_SENT = "cert-requested-not-sent"
FAILED = "failed"
RESUMED = "resumed"

RENEGOTIATION = "renegotiation"
POST_HANDSHAKE = "post-handshake"

ALERTS: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}


class Pairing:
    """A scenario between two programs, whose ``stack`` is ``SERVER/CLIENT``."""

    stack: str

    @property
    def server(self) -> str:
        return self.stack.split("/")[0]

    @property
    def client(self) -> str:
        return self.stack.split("/")[1]


class RecordingError(RuntimeError):
    """A session did not behave as its scenario requires, or a tool failed."""


def check(scenario: str, what: str, got: object, expected: object) -> None:
    if got != expected:
        raise RecordingError(f"{scenario}: {what} is {got!r}, expected {expected!r}")


def alert_name(code: int) -> str:
    """The RFC name of alert number ``code``."""
    if code not in ALERTS:
        raise RecordingError(f"unknown alert number {code}")
    return ALERTS[code]


def alert_from_openssl_reason(reason: str | None) -> str | None:
    """Map an OpenSSL error reason such as ``TLSV1_ALERT_UNKNOWN_CA`` to the alert name."""
    match = re.fullmatch(r"(?:SSLV3|TLSV1|TLSV13)_ALERT_([A-Z_]+)", reason or "")
    if match is None:
        return None
    name = match.group(1).lower()
    if name not in ALERTS.values():
        raise RecordingError(f"unknown alert reason {reason}")
    return name
