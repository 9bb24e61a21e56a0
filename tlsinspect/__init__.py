"""tlsinspect: tell mutual TLS from one-way TLS in packet captures, and say why.

Importing the package is cheap: the layers load when first used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from os import PathLike
from typing import TYPE_CHECKING

from .errors import (
    CaptureError,
    CertificateError,
    DecodeError,
    LiveCaptureError,
    MessageTooLarge,
    MissingPackage,
    NotACapture,
    PolicyError,
    TlsInspectError,
    TsharkError,
    TsharkMissing,
    UnsupportedCapture,
    UnsupportedCipher,
)

if TYPE_CHECKING:
    from .capture import CaptureSource
    from .model import Basis, Verdict
    from .notebook import read_capture, read_certificates, read_sessions, summary
    from .record import SessionRecord
    from .report.frame import Session
    from .report.select import Values
    from .x509 import Anchors

__all__ = [
    # capture in, sessions out
    "analyze",
    "sessions",
    "read_ca_bundle",
    "read_keylogs",
    "SessionRecord",
    "Verdict",
    "Basis",
    # the notebook API (pandas)
    "read_capture",
    "read_certificates",
    "read_sessions",
    "summary",
    "Session",
    # the exceptions (tlsinspect.errors draws their tree)
    "TlsInspectError",
    "CaptureError",
    "NotACapture",
    "UnsupportedCapture",
    "LiveCaptureError",
    "TsharkError",
    "TsharkMissing",
    "DecodeError",
    "UnsupportedCipher",
    "MessageTooLarge",
    "CertificateError",
    "PolicyError",
    "MissingPackage",
]

# Names whose module is imported on first use (the session layers for SessionRecord, pandas for
# the notebook API): name -> module that defines it.
_LAZY = {
    "SessionRecord": "tlsinspect.record",
    "Verdict": "tlsinspect.model",
    "Basis": "tlsinspect.model",
    "read_capture": "tlsinspect.notebook",
    "read_certificates": "tlsinspect.notebook",
    "read_sessions": "tlsinspect.notebook",
    "summary": "tlsinspect.notebook",
    "Session": "tlsinspect.report.frame",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tlsinspect' has no attribute {name!r}")


__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it from here


def analyze(
    path: str | PathLike[str],
    *,
    on_open: Callable[[CaptureSource], object] | None = None,
    keylog: str | PathLike[str] | list[str | PathLike[str]] | None = None,
    ca_bundle: str | PathLike[str] | None = None,
    memory_limit: int | None = None,
) -> Iterator[SessionRecord]:
    """Yield every TLS session of a capture file as it is logged.

    `on_open` is called with the open CaptureSource before the first packet is read (its
    `bytes_read / size` tell the progress, its `problems` what was skipped). `keylog`: one or
    several NSS key log files; secrets embedded in the capture (pcapng Decryption Secrets
    Blocks) are used in any case. `ca_bundle`: a PEM file of trusted CAs; each chain's
    `chain_checks` then has the `ca_bundle` check, as with `tlsinspect --ca-bundle`.
    `memory_limit`: the peak RSS in MB the analysis stays under (default 200), as with
    `tlsinspect --memory-limit`: past the limits it implies, connections are evicted and
    their sessions yielded incomplete (anomaly `flow_evicted`).

    Raises:
        ValueError: `memory_limit` is below 100 MB.
    """
    from .capture import open_capture
    from .engines.builtin import Analyzer, CaptureKeys
    from .engines.lifecycle import DEFAULT_LIMITS, Limits

    limits = DEFAULT_LIMITS if memory_limit is None else Limits.for_memory(memory_limit)
    anchors = read_ca_bundle(ca_bundle)
    with open_capture(path) as source:
        if on_open is not None:
            on_open(source)
        keys = CaptureKeys(read_keylogs(keylog), source.secrets)
        yield from Analyzer(keys, anchors, limits).run(source)


def read_keylogs(paths: str | PathLike[str] | list[str | PathLike[str]] | None) -> list[bytes]:
    """The contents of the key log files given (the I/O half of key log handling)."""
    if paths is None:
        return []
    if isinstance(paths, (str, PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def sessions(
    path: str | PathLike[str],
    *,
    keylog: str | PathLike[str] | list[str | PathLike[str]] | None = None,
    ca_bundle: str | PathLike[str] | None = None,
    verdict: Values = None,
    server: Values = None,
    port: Values = None,
    client_identity: Values = None,
) -> list[dict[str, object]]:
    """Every TLS session of a capture as a dict with the JSON output's fields.

    `ca_bundle`: a PEM file of trusted CAs; each chain's `chain_checks` then has the
    `ca_bundle` check, as with `tlsinspect --ca-bundle`. `verdict`, `server`, `port` and
    `client_identity` keep only some sessions, as the command line's options of those names
    do (`tlsinspect.report.select`): a value or a list of values each.

    Raises:
        ValueError: a selection value that means nothing (the message says why), before the
            capture is read.
    """
    from .report.schema import session_dict
    from .report.select import selection

    sel = selection(verdict, server, port, client_identity)
    records = analyze(path, keylog=keylog, ca_bundle=ca_bundle)
    return [session_dict(r) for r in sel.filter(records)]


def read_ca_bundle(path: str | PathLike[str] | None) -> Anchors | None:
    """The trust anchors of a PEM CA bundle file (the I/O half; None for no path).

    Raises:
        OSError: the file cannot be read.
        CertificateError: it holds no PEM certificate (a ValueError too).
    """
    if path is None:
        return None
    from .x509 import load_anchors

    with open(path, "rb") as f:
        return load_anchors(f.read())
