"""Exceptions of tlsinspect.

    TlsInspectError                 base of everything tlsinspect raises on purpose
    ├── CaptureError                the input cannot be used as a capture at all
    │   ├── NotACapture             the file does not start like a pcap or pcapng file
    │   └── UnsupportedCapture      a capture, but in a form we cannot read (e.g. pcapng with no section)
    └── DecodeError                 malformed bytes inside a parser (packet, TCP, TLS, certificate);
                                    always caught by the owner of the flow and turned into an anomaly

Parsers report an incomplete input by returning None or an empty list, never by raising
(the h11 NEED_DATA convention); DecodeError is only for bytes that can never become valid.
"""

from __future__ import annotations


class TlsInspectError(Exception):
    """Base class of every error tlsinspect raises on purpose."""


class CaptureError(TlsInspectError):
    """The input cannot be read as a packet capture."""


class NotACapture(CaptureError):
    """The file is neither pcap nor pcapng."""


class UnsupportedCapture(CaptureError):
    """The file is a capture, but in a variant tlsinspect cannot read."""


class DecodeError(TlsInspectError):
    """Bytes that can never become a valid message of the protocol being parsed."""
