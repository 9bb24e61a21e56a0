"""NSS key log files (SSLKEYLOGFILE): the secrets a TLS stack wrote down, by client random.

The format (https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/) is one
secret per line, `LABEL <client_random> <secret>`, both in hex: the client random is the 32-byte
Random of the ClientHello, which names the session. Lines starting with `#` are comments.

Sans-IO: `parse_keylog` takes the text (from a file, or from the data of a pcapng Decryption
Secrets Block of type `DSB_TLS_KEY_LOG`, which holds the same text), never a path. A line that
cannot be read is counted in `KeyLog.bad_lines` and skipped, never raised: one damaged line must
not cost the secrets of the other sessions. Lines with a label this module does not know (such as
the older `RSA` and `PMS_CLIENT_RANDOM` forms) are skipped without being counted.
"""

from __future__ import annotations

from collections.abc import Iterable

# pcapng Decryption Secrets Block type of a TLS key log ("TLSK"), pcapng spec section 4.7.
DSB_TLS_KEY_LOG = 0x544C534B

CLIENT_RANDOM = "CLIENT_RANDOM"
CLIENT_EARLY_TRAFFIC_SECRET = "CLIENT_EARLY_TRAFFIC_SECRET"
CLIENT_HANDSHAKE_TRAFFIC_SECRET = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HANDSHAKE_TRAFFIC_SECRET = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
CLIENT_TRAFFIC_SECRET_0 = "CLIENT_TRAFFIC_SECRET_0"
SERVER_TRAFFIC_SECRET_0 = "SERVER_TRAFFIC_SECRET_0"
EARLY_EXPORTER_SECRET = "EARLY_EXPORTER_SECRET"
EXPORTER_SECRET = "EXPORTER_SECRET"

# Accepted secret lengths per label. CLIENT_RANDOM carries the TLS 1.2 (and older) master
# secret, always 48 bytes (RFC 5246 section 8.1). The TLS 1.3 secrets are as long as the
# cipher suite's hash (RFC 8446 section 7.1): SHA-256 or SHA-384.
_TLS13_LENGTHS = frozenset({32, 48})
LABELS: dict[str, frozenset[int]] = {
    CLIENT_RANDOM: frozenset({48}),
    CLIENT_EARLY_TRAFFIC_SECRET: _TLS13_LENGTHS,
    CLIENT_HANDSHAKE_TRAFFIC_SECRET: _TLS13_LENGTHS,
    SERVER_HANDSHAKE_TRAFFIC_SECRET: _TLS13_LENGTHS,
    CLIENT_TRAFFIC_SECRET_0: _TLS13_LENGTHS,
    SERVER_TRAFFIC_SECRET_0: _TLS13_LENGTHS,
    EARLY_EXPORTER_SECRET: _TLS13_LENGTHS,
    EXPORTER_SECRET: _TLS13_LENGTHS,
}
_LABELS_BY_BYTES = {label.encode("ascii"): label for label in LABELS}

_RANDOM_LEN = 32
_BOM = b"\xef\xbb\xbf"


class KeyLog:
    """Secrets by client random and label, gathered from one or more key logs.

    Attributes:
        secrets: client random (32 bytes) -> {label: secret}. A later line for the same client
            random and label replaces the earlier one.
        bad_lines: lines that were neither blank, a comment, a line with an unknown label, nor a
            well-formed secret (summed over everything merged in).
    """

    __slots__ = ("secrets", "bad_lines")

    def __init__(self) -> None:
        self.secrets: dict[bytes, dict[str, bytes]] = {}
        self.bad_lines = 0

    def get(self, client_random: bytes, label: str) -> bytes | None:
        """The secret logged under `label` for the session of `client_random`, or None."""
        by_label = self.secrets.get(bytes(client_random))
        return None if by_label is None else by_label.get(label)

    def add(self, client_random: bytes, label: str, secret: bytes) -> None:
        self.secrets.setdefault(bytes(client_random), {})[label] = bytes(secret)

    def merge(self, other: KeyLog) -> None:
        """Add the secrets of `other` (its entries win on a clash) and its bad-line count."""
        for client_random, by_label in other.secrets.items():
            self.secrets.setdefault(client_random, {}).update(by_label)
        self.bad_lines += other.bad_lines

    def __len__(self) -> int:
        """Number of sessions (client randoms) with at least one secret."""
        return len(self.secrets)

    def __contains__(self, client_random: object) -> bool:
        return (
            isinstance(client_random, (bytes, bytearray)) and bytes(client_random) in self.secrets
        )

    def __repr__(self) -> str:
        return f"KeyLog({len(self)} sessions, {self.bad_lines} bad lines)"


def parse_keylog(text: bytes | str) -> KeyLog:
    """Read the NSS key log format.

    Accepts LF and CRLF line ends, a leading UTF-8 byte order mark, comments (`#` after optional
    blanks), blank lines, and spaces or tabs between the three fields.

    Returns:
        A KeyLog; lines that cannot be read are counted in `bad_lines`.

    Raises:
        Nothing: this parser never raises on its input.
    """
    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
    keylog = KeyLog()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            keylog.bad_lines += 1
            continue
        label = _LABELS_BY_BYTES.get(fields[0])
        if label is None:
            continue
        client_random = _unhex(fields[1])
        secret = _unhex(fields[2])
        if (
            client_random is None
            or len(client_random) != _RANDOM_LEN
            or secret is None
            or len(secret) not in LABELS[label]
        ):
            keylog.bad_lines += 1
            continue
        keylog.add(client_random, label, secret)
    return keylog


def keylog_from_secrets(blocks: Iterable[tuple[int, bytes]]) -> KeyLog:
    """Merge the TLS key logs among pcapng Decryption Secrets Blocks, given as (type, data)
    pairs (as `CaptureSource.secrets` lists them); blocks of other types are skipped."""
    keylog = KeyLog()
    for secrets_type, data in blocks:
        if secrets_type == DSB_TLS_KEY_LOG:
            keylog.merge(parse_keylog(bytes(data)))
    return keylog


def _unhex(field: bytes) -> bytes | None:
    try:
        return bytes.fromhex(field.decode("ascii"))
    except ValueError:  # also UnicodeDecodeError, a subclass
        return None


__all__ = [
    "CLIENT_EARLY_TRAFFIC_SECRET",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_RANDOM",
    "CLIENT_TRAFFIC_SECRET_0",
    "DSB_TLS_KEY_LOG",
    "EARLY_EXPORTER_SECRET",
    "EXPORTER_SECRET",
    "LABELS",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_TRAFFIC_SECRET_0",
    "KeyLog",
    "keylog_from_secrets",
    "parse_keylog",
]
