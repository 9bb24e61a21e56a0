"""Elastic Common Schema: one JSON object per session, for Elasticsearch, OpenSearch and the
pipelines of Packetbeat users.

A projection of the finished `SessionRecord`. The columns of a flat row (`report.flat`) take
the ECS names the DataFrame gives them with `ecs=True` (`flat.ECS_NAMES`: one table for both),
with the same values (`tls.version` "1.2" and `tls.version_protocol` "tls", fingerprints in upper
case, SANs without their type); the columns ECS has no field for go under
`tlsinspect.`. Added to them, from the same record: `source.*` and `destination.*` (the client
and the server: TLS has no other direction), `network.*`, `event.*`, `ecs.version`, the leaf
certificates' other `x509` facts, `tls.{client,server}.certificate_chain` (base64 DER, as ECS's
example), `tls.next_protocol`, `tls.curve` and `tls.client.supported_ciphers`.

Dotted names are nested objects in the output (`{"tls": {"client": {"server_name": ...}}}`),
and fields without a value are left out, as Beats do. The ECS fields written, with their ECS
types, are listed in tests/report/ecs_fields.csv, against which the tests check the output.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import TextIO

from ..record import SessionRecord
from ..tls import registry as reg
from ..x509 import CertInfo, cert_info
from .flat import ecs_name, flat_row

ECS_VERSION = "8.11.0"


def _ecs_value(column: str, value: object) -> object:
    """A flat column's value as the DataFrame's `ecs=True` has it."""
    if column in ("client_sha256", "server_sha256"):  # serials are upper case already
        return value.upper() if isinstance(value, str) else value
    if column in ("client_san", "server_san") and isinstance(value, list):
        return [str(n).split(":", 1)[-1] for n in value]
    return value


def _x509(info: CertInfo) -> dict[str, object]:
    """The leaf's facts that no DataFrame column has, under tls.<side>.x509."""
    return {
        "x509.issuer.distinguished_name": info.issuer,
        "x509.subject.distinguished_name": info.subject,
        "x509.not_before": info.not_before.isoformat() if info.not_before else None,
        "x509.not_after": info.not_after.isoformat() if info.not_after else None,
        "x509.public_key_algorithm": info.key_type,
        "x509.public_key_curve": info.key_curve,
        "x509.public_key_exponent": info.rsa_exponent,
        "x509.public_key_size": info.key_bits,
        "x509.signature_algorithm": info.signature_algorithm,
        "x509.version_number": str(info.version) if info.version is not None else None,
    }


def ecs_fields(r: SessionRecord) -> dict[str, object]:
    """One session as dotted ECS names -> values (None for no value)."""
    row = flat_row(r)
    out: dict[str, object] = {}
    for column, value in row.items():
        name = ecs_name(column)
        if column == "tls_version":
            protocol, _, number = str(value).lower().partition(" ") if value else ("", "", "")
            out["tls.version"] = number or None
            out["tls.version_protocol"] = protocol or None
            continue
        out[name] = _ecs_value(column, value)
    f = r.facts
    verdict = r.decision.verdict.value
    out["tls.resumed"] = verdict == "resumed"
    done = out.get("tls.established")
    start, end = f.start_ts, f.end_ts or f.start_ts
    out.update(
        {
            "ecs.version": ECS_VERSION,
            "event.kind": "event",
            "event.category": ["network"],
            "event.type": ["connection", "protocol"],
            "event.dataset": "tlsinspect.session",
            "event.start": row["start_time"],
            "event.duration": end - start,
            "event.outcome": "unknown" if done is None else "success" if done else "failure",
            "event.sequence": r.index,
            "source.ip": r.client[0],
            "source.port": r.client[1],
            "destination.ip": r.server[0],
            "destination.port": r.server[1],
            "network.transport": "tcp",
            "network.protocol": "tls",
            "network.type": "ipv6" if ":" in r.server[0] else "ipv4",
            "tls.next_protocol": r.server_alpn,
            "tls.curve": reg.name_of("group", r.server_group)
            if r.server_group is not None
            else None,
        }
    )
    ch = f.client_hello
    if ch is not None:
        out["tls.client.supported_ciphers"] = [reg.name_of("cipher", c) for c in ch.cipher_suites]
    for side, certs in (("client", f.client_certs), ("server", f.server_certs)):
        if not certs:
            continue
        out[f"tls.{side}.certificate_chain"] = [base64.b64encode(d).decode() for d in certs]
        leaf = cert_info(certs[0])
        out.update({f"tls.{side}.{k}": v for k, v in _x509(leaf).items()})
    return out


def nest(fields: dict[str, object]) -> dict[str, object]:
    """Dotted names as nested objects; names without a value left out."""
    doc: dict[str, object] = {}
    for name, value in fields.items():
        if value is None or value == [] and not name.startswith("tlsinspect."):
            continue
        parts = name.split(".") if name != "@timestamp" else [name]
        node = doc
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            assert isinstance(child, dict), name  # no ECS field is both a value and an object
            node = child
        node[parts[-1]] = value
    return doc


def ecs_document(r: SessionRecord) -> dict[str, object]:
    """One session as an ECS document."""
    return nest(ecs_fields(r))


def write_ecs(records: Iterable[SessionRecord], out: TextIO) -> int:
    """One ECS JSON object per line, written and flushed as each session is logged."""
    n = 0
    for r in records:
        out.write(json.dumps(ecs_document(r), separators=(",", ":")) + "\n")
        out.flush()
        n += 1
    return n
