"""Anomalies: what went wrong while dissecting a session, each under a registered name.

As Zeek names its weirds (`weird.log`'s `name`), every problem the dissector meets in a session
is an `Anomaly` of one of the `NAMES` below, with the side whose bytes it concerns and the
detail. The JSON output's `anomalies` holds their text (`str(anomaly)`), in the order of
`NAMES`, then of their finding; a program that needs the kind reads `name`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: name -> what it means. The order is the order of the output.
NAMES: dict[str, str] = {
    "stream_lost": "one direction of the connection cannot be followed past a point: bytes "
    "missing from the capture, or bytes that are not TLS records",
    "malformed_message": "a handshake message or alert that does not parse",
    "message_too_large": "a handshake message whose header claims more bytes than tlsinspect "
    "reads of one message (1 MiB): it is not read, nor anything after it in that direction, "
    "and the session is left incomplete",
    "keys_missing": "records the key log could not decrypt: no secret for the session, or "
    "a decryption that failed",
    "flow_evicted": "the connection was evicted from memory before it ended, because a limit "
    "of what tlsinspect holds at once was reached (connections followed, buffered bytes; "
    "`--memory-limit`): the rest of it is not read and the session is left incomplete",
    "time_not_a_date": "a packet time of the session is no date of the years 1 to 9999 (a "
    "damaged timestamp, or a pcapng interface whose if_tsresol does not match its "
    "timestamps): the times are shown as @ and their nanoseconds since 1970, and the "
    "certificates' validity is not checked",
}

_TEXT = {
    "stream_lost": "{role}'s stream lost: {detail}",
    "malformed_message": "{role} {message}: {detail}",
    "message_too_large": "{role} {message}: {detail}",
    "keys_missing": "{role}: {detail}",
    "flow_evicted": "evicted: {detail}",
    "time_not_a_date": "packet time not a date: {detail}",
}


@dataclass(frozen=True, slots=True)
class Anomaly:
    name: str  # a key of NAMES
    role: str  # "client" or "server": whose bytes ("capture" for time_not_a_date)
    detail: str
    message: str = ""  # the message concerned (malformed_message, message_too_large)

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise ValueError(f"not a registered anomaly name: {self.name!r}")

    def __str__(self) -> str:
        return _TEXT[self.name].format(role=self.role, detail=self.detail, message=self.message)


def ordered(anomalies: list[Anomaly]) -> tuple[Anomaly, ...]:
    """Anomalies in output order: by registered name, then as found."""
    rank = {name: i for i, name in enumerate(NAMES)}
    return tuple(sorted(anomalies, key=lambda a: rank[a.name]))
