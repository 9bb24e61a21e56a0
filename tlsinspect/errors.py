"""Exceptions of tlsinspect: every class tlsinspect raises on purpose is defined here.

    TlsInspectError                 base of everything tlsinspect raises on purpose
    ├── CaptureError                the input cannot be used as a capture at all
    │   ├── NotACapture             the file does not start like a pcap or pcapng file
    │   ├── UnsupportedCapture      a capture, but in a form we cannot read (e.g. pcapng with no section)
    │   └── LiveCaptureError        a live capture cannot start, or dumpcap failed (capture.live,
    │                               capture.tshark); the message is one sentence for the user
    ├── TsharkError                 tshark could not be run, or failed on the capture (capture.tshark)
    │   └── TsharkMissing           no tshark executable: the message says how to install it
    ├── DecodeError                 malformed bytes inside a parser (packet, TCP, TLS, certificate);
    │   │                           always caught by the owner of the flow and turned into an anomaly
    │   ├── UnsupportedCipher       a cipher suite or version tls.decrypt cannot decrypt
    │   └── MessageTooLarge         a handshake header claims more bytes than are read of one
    │                               message (tls.handshake.MAX_MESSAGE): the message is not read
    ├── CertificateError            certificate bytes tlsinspect cannot use: a CA bundle with no PEM
    │                               certificate, DER that does not hold together, a signature it cannot
    │                               check (x509); also a ValueError, see below
    ├── PolicyError                 a policy file that cannot be used (policy); the message names the
    │                               file and the line
    └── MissingPackage              a Python package a use needs is not installed (a broken install:
                                    `pip install tlsinspect` installs them all); also an ImportError

Parsers report an incomplete input by returning None or an empty list, never by raising
(the h11 NEED_DATA convention); DecodeError is only for bytes that can never become valid.

Each class is also importable from the module that raises it (`capture.live.LiveCaptureError`,
`capture.tshark.TsharkError`, `policy.PolicyError`, `tls.decrypt.UnsupportedCipher`, ...): those
modules import it from here.

CertificateError subclasses ValueError as well, rather than having its callers changed: x509
raised ValueError before, and `tlsinspect.read_ca_bundle` documents ValueError for a file with no
PEM certificate, so the command line's `except ValueError` (its "no PEM certificate read" message)
and a user's own handler catch it as before, and x509's readers, which catch ValueError for the
short element lists of damaged DER as well, catch it with the same handlers and messages.

`tls.records` does not raise DecodeError for a stream that stops being TLS records: the call that
meets the bad header returns the records before it as well, and says why in `RecordLayer.error`
(the comment there tells why it is not an exception).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: TsharkMissing's message.
INSTALL_HINT = (
    "tshark is not installed (or not on PATH): install it with `apt-get install tshark` "
    "(Debian, Ubuntu), `dnf install wireshark-cli` (Fedora) or `brew install wireshark` (macOS)"
)


class TlsInspectError(Exception):
    """Base class of every error tlsinspect raises on purpose."""


class CaptureError(TlsInspectError):
    """The input cannot be read as a packet capture."""


class NotACapture(CaptureError):
    """The file is neither pcap nor pcapng."""


class UnsupportedCapture(CaptureError):
    """The file is a capture, but in a variant tlsinspect cannot read."""


class LiveCaptureError(CaptureError):
    """The capture cannot start: the message is one sentence for the user."""


class TsharkError(TlsInspectError):
    """tshark could not be run, or failed on the capture."""


class TsharkMissing(TsharkError):
    """No tshark executable was found."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


class DecodeError(TlsInspectError):
    """Bytes that can never become a valid message of the protocol being parsed."""


class UnsupportedCipher(DecodeError):
    """The session's cipher suite or version is one tls.decrypt cannot decrypt."""


class MessageTooLarge(DecodeError):
    """A handshake message claims more bytes than tlsinspect reads of one message. Legal on the
    wire (up to 2^24-1), but buffering it would let one connection hold 16 MiB: it is not read,
    nor anything after it in that direction."""

    def __init__(self, msg_type: int, length: int, limit: int, seen: int) -> None:
        super().__init__(
            f"handshake message type {msg_type} claims {length:,} bytes (limit {limit:,})"
        )
        self.msg_type = msg_type
        self.length = length  # what its header claims
        self.limit = limit
        self.seen = seen  # bytes of it (header included) in the records read so far


class CertificateError(TlsInspectError, ValueError):
    """Certificate bytes that cannot be used: no PEM certificate in a CA bundle, malformed DER,
    a signature algorithm that cannot be verified."""


class PolicyError(TlsInspectError):
    """The policy cannot be used: TOML syntax, an unknown key or a wrong value."""


class MissingPackage(TlsInspectError, ImportError):
    """A Python package that one use of tlsinspect needs cannot be imported."""


def require(module: str, use: str) -> ModuleType:
    """Import `module`, which `use` needs, when it is needed (so that `import tlsinspect` and the
    command line never pay for it).

    Raises:
        MissingPackage: it cannot be imported; the message is one sentence for the user.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise MissingPackage(
            f"{use} needs the Python package {package}, which cannot be imported ({exc}); "
            f"`pip install tlsinspect` installs it"
        ) from None


__all__ = [
    "CaptureError",
    "CertificateError",
    "DecodeError",
    "INSTALL_HINT",
    "LiveCaptureError",
    "MissingPackage",
    "MessageTooLarge",
    "NotACapture",
    "PolicyError",
    "TlsInspectError",
    "TsharkError",
    "TsharkMissing",
    "UnsupportedCapture",
    "UnsupportedCipher",
    "require",
]
