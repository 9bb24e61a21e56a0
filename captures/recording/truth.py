"""The ground truth of a recording: the verdict of a session from what its programs reported,
its entry, and the ``X.truth.json`` file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .capture import DUMPCAP_LO, CaptureTool
from .core import FAILED, MUTUAL, NOT_SENT, ONE_WAY, RESUMED


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


def session_entry(
    *,
    scenario: str,
    stack: str,
    ip: str,
    client_port: int | None,
    server_port: int,
    version: str,
    sni: str | None,
    verdict: str,
    resumed_from_mutual: bool | None,
    alert: str | None,
    client_chain: Sequence[str] | None,
    server_chain: Sequence[str] | None,
    starttls: str | None = None,
) -> dict[str, Any]:
    """One truth entry. Every alert recorded here is one the client reported receiving, so its
    sender is the server."""
    return {
        "scenario": scenario,
        "stack": stack,
        "client_ip": ip,
        "client_port": client_port,
        "server_ip": ip,
        "server_port": server_port,
        "tls_version": version,
        "sni": sni,
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
