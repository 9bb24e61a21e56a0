"""The ground truth of a recording: the verdict of a session from what its programs reported,
its entry, and the ``X.truth.json`` file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .capture import DUMPCAP_LO, CaptureTool
from .core import FAILED, HOST, MUTUAL, NOT_SENT, ONE_WAY, RESUMED, SERVER_NAME
from .pki import Identity


def verdict_of(*, requested: bool, resumed: bool, completed: bool, cert_sent: bool) -> str:
    """Verdict of a session from what the server asked and what the client did; an empty client
    Certificate counts as ``cert-requested-not-sent`` whether or not the server then aborted."""
    if resumed:
        return RESUMED
    if requested and not cert_sent:
        return NOT_SENT
    if not completed:
        return FAILED
    return MUTUAL if cert_sent else ONE_WAY


@dataclass(frozen=True)
class Where:
    """The connection a truth entry is about."""

    scenario: str
    stack: str
    """``SERVER/CLIENT``"""
    server_port: int
    version: str
    client_port: int | None = None
    ip: str = HOST
    sni: str | None = SERVER_NAME


def chain_sent(requested: bool, cert_sent: bool, identity: Identity | None) -> Sequence[str] | None:
    """The truth's ``client_chain``: None when the server did not ask, else the chain the client
    sent (empty when it sent none)."""
    if not requested:
        return None
    return identity.sent if cert_sent and identity is not None else ()


def session_entry(
    where: Where,
    verdict: str,
    client_chain: Sequence[str] | None,
    server_chain: Sequence[str] | None,
    *,
    alert: str | None = None,
    resumed_from_mutual: bool | None = None,
    starttls: str | None = None,
) -> dict[str, Any]:
    """One truth entry: ``client_chain`` and ``server_chain`` as sent (None: not asked for, or
    no Certificate). Every alert recorded here is one the client reported receiving, so its
    sender is the server."""
    return {
        "scenario": where.scenario,
        "stack": where.stack,
        "client_ip": where.ip,
        "client_port": where.client_port,
        "server_ip": where.ip,
        "server_port": where.server_port,
        "tls_version": where.version,
        "sni": where.sni,
        "verdict": verdict,
        "resumed_from_mutual": resumed_from_mutual,
        "alert": None if alert is None else {"sender": "server", "description": alert},
        "client_chain": None if client_chain is None else list(client_chain),
        "server_chain": None if server_chain is None else list(server_chain),
        "starttls": starttls,
    }


def write(
    path: Path,
    *,
    capture: str,
    keylog: str | None,
    recorded_by: str,
    tools: dict[str, str],
    sessions: list[dict[str, Any]],
    tool: CaptureTool = DUMPCAP_LO,
    **extra: Any,
) -> None:
    """Write the truth file; ``extra`` fields come after ``captured_with``."""
    doc = {
        "capture": capture,
        "keylog": keylog,
        "recorded_by": recorded_by,
        "captured_with": tool.description,
        **extra,
        "tools": tools,
        "sessions": sessions,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def publish(*paths: Path | None) -> None:
    """Make the files of a recording readable by all (it is made as root)."""
    for path in paths:
        if path is not None:
            path.chmod(0o644)


def write_recording(
    out: Path, name: str, recorded_by: str, tools: dict[str, str], sessions: list[dict[str, Any]]
) -> Path:
    """The truth of ``NAME.pcapng`` and its key log ``NAME.keylog`` in ``out``, written as
    ``NAME.truth.json``; returns the capture."""
    pcap, keylog, truth = (
        out / f"{name}{suffix}" for suffix in (".pcapng", ".keylog", ".truth.json")
    )
    write(
        truth,
        capture=pcap.name,
        keylog=keylog.name,
        recorded_by=recorded_by,
        tools=tools,
        sessions=sessions,
    )
    publish(pcap, keylog, truth)
    return pcap
