"""The fields of a session in every output: one source for JSON, the table and the README.

`FIELDS` lists (name, JSON type, description); `session_dict()` builds one session's object with
exactly these keys, in this order. `markdown_table()` renders the README's field table (a test
checks that the README holds it verbatim).
"""

from __future__ import annotations

from ..model import iso_time
from ..record import SessionRecord
from ..tls import registry as reg
from ..x509 import ChainReport, cert_info, name_from_der

CHAIN_ITEM = (
    "objects, leaf first: `subject`, `issuer`, `subject_cn`, `issuer_cn`, `serial` (upper-case hex in whole bytes, as OpenSSL and Zeek print it), "
    "`not_before`, `not_after` (ISO 8601), `sha256`, `error` (why it could not be parsed, else "
    "null), "
    "`san` (`DNS:`, `IP:`, `URI:`, `email:` ...), `key_type`, `key_bits`, `key_curve`, "
    "`signature_algorithm`, `is_ca` (basicConstraints, null without it), `key_usage`, "
    "`extended_key_usage` (null without the extension), `checks` (`check`, `result`: "
    "`pass`/`warn`/`fail`/`info`, `detail`)"
)

FIELDS: list[tuple[str, str, str]] = [
    (
        "file",
        "string|null",
        "Path of the capture file the session comes from; of a rotated series read as one "
        "capture, the file where it started. Null for a live capture.",
    ),
    ("index", "integer", "Order in which the session was logged (1-based)."),
    (
        "start_time",
        "string",
        "Time of the connection's first packet, ISO 8601 UTC; `@` and the integer nanoseconds "
        "since 1970 when the packet time is no date (a damaged timestamp: anomaly "
        "`time_not_a_date`).",
    ),
    ("end_time", "string", "Time of the last packet the session's facts come from."),
    ("client_ip", "string", "Client address (IPv4 or IPv6 text)."),
    ("client_port", "integer", "Client TCP port."),
    ("server_ip", "string", "Server address."),
    ("server_port", "integer", "Server TCP port."),
    (
        "roles_from",
        "string",
        "How client and server were told apart: `syn`, `client_hello`, `server_hello` or `port` (a guess).",
    ),
    (
        "starttls",
        "string|null",
        "Plaintext protocol that upgraded to TLS on this connection (`smtp`, `imap`, `pop3`, `ftp`, `xmpp`, `ldap`, `postgresql`, `mysql`, `unknown`), null for TLS from the first byte.",
    ),
    ("sni", "string|null", "Server name the client asked for (server_name extension)."),
    ("alpn", "array", "Protocols the client offered with ALPN."),
    (
        "tls_version",
        "string|null",
        "Negotiated version, e.g. `TLS 1.2`, `TLS 1.3`; null when no ServerHello was seen.",
    ),
    ("client_version", "string|null", "Highest version the client offered."),
    ("cipher_suite", "string|null", "Negotiated cipher suite (IANA name as Wireshark prints it)."),
    (
        "verdict",
        "string",
        "`mutual`, `one-way`, `cert-requested-not-sent`, `failed`, `incomplete`, `encrypted` or `resumed`.",
    ),
    (
        "basis",
        "string",
        "How the verdict was reached: `observed` (plaintext handshake), `decrypted` or `inferred`.",
    ),
    ("reason", "string", "One line explaining the verdict."),
    (
        "diagnosis",
        "string|null",
        "Why the session failed, in plain words, from the alert, who sent it and the chain "
        "checks; for `mutual`/`one-way` only when a chain fails a check, else null.",
    ),
    (
        "cert_requested",
        "boolean|null",
        "The server sent a CertificateRequest: seen, decrypted or, for TLS 1.3 without keys, "
        "shown by the record sizes (`basis` says which); null when unknown.",
    ),
    (
        "requested_ca_names",
        "array",
        "Distinguished names of the CAs the server said it accepts (CertificateRequest), as text.",
    ),
    (
        "client_cert_sent",
        "boolean|null",
        "The client answered with a non-empty certificate chain; null when it sent no Certificate "
        "message, or when that is unknown (TLS 1.3 without keys and undecided sizes).",
    ),
    (
        "client_cert_verify",
        "boolean|null",
        "The client sent CertificateVerify (seen, decrypted or inferred); null when unknown.",
    ),
    ("client_chain", "array", "Certificates the client sent: " + CHAIN_ITEM + "."),
    ("server_chain", "array", "Certificates the server sent: " + CHAIN_ITEM + "."),
    (
        "chain_checks",
        "object",
        "Per chain (`client`, `server`; null when not sent): `result` (`pass`, `warn` or "
        "`fail`), `failed` and `warnings` (check names), `checks` on the whole chain (`order`, "
        "`path`, `ca_listed`, `ca_bundle`).",
    ),
    (
        "alerts",
        "array",
        "Alerts in order: `sender`, `level`, `description` (RFC name), `encrypted` (true when only the record was visible).",
    ),
    (
        "resumed_from",
        "object|null",
        "For a resumed session whose full handshake is in the capture: `verdict`, `client`, `start_time`, `client_subject`.",
    ),
    (
        "handshake",
        "array",
        "Handshake messages, ChangeCipherSpec, alerts and the first encrypted records in order, as `client:name` / `server:name`.",
    ),
    (
        "complete",
        "boolean",
        "The capture holds the whole handshake (false for `incomplete`, and when bytes were missing).",
    ),
    (
        "ended",
        "string|null",
        "How the connection ended, if it did before the verdict: `connection reset by the server`, ...",
    ),
    (
        "anomalies",
        "array",
        "Problems met while dissecting this session: missing bytes, malformed messages.",
    ),
]


def chain(
    ders: tuple[bytes, ...] | None, report: ChainReport | None = None
) -> list[dict[str, object]]:
    out = [cert_info(d).to_dict() for d in ders or ()]
    if report is not None:
        for item, checks in zip(out, report.certs, strict=True):
            item["checks"] = [c.to_dict() for c in checks]
    return out


def version_name(v: int) -> str | None:
    return reg.name_of("version", v) if v else None


def session_dict(r: SessionRecord) -> dict[str, object]:
    """One session's output object: a projection of its record, nothing computed."""
    f = r.facts
    d = r.decision
    ch, sh = f.client_hello, f.server_hello
    cr = f.cert_request
    origin = r.origin
    auth = r.auth
    return {
        "file": r.file,
        "index": r.index,
        "start_time": iso_time(f.start_ts),
        "end_time": iso_time(f.end_ts or f.start_ts),
        "client_ip": r.client[0],
        "client_port": r.client[1],
        "server_ip": r.server[0],
        "server_port": r.server[1],
        "roles_from": f.roles_from,
        "starttls": r.starttls,
        "sni": ch.server_name if ch else None,
        "alpn": list(ch.alpn) if ch else [],
        "tls_version": version_name(sh.selected_version) if sh else None,
        "client_version": version_name(ch.max_version) if ch else None,
        "cipher_suite": reg.name_of("cipher", sh.cipher_suite) if sh else None,
        "verdict": d.verdict.value,
        "basis": d.basis.value,
        "reason": d.reason,
        "diagnosis": r.diagnosis,
        "cert_requested": auth.cert_requested,
        "requested_ca_names": [name_from_der(n) for n in cr.ca_names] if cr else [],
        "client_cert_sent": auth.client_cert_sent,
        "client_cert_verify": auth.client_cert_verify,
        "client_chain": chain(f.client_certs, r.client_checks),
        "server_chain": chain(f.server_certs, r.server_checks),
        "chain_checks": {
            "client": r.client_checks.summary() if r.client_checks else None,
            "server": r.server_checks.summary() if r.server_checks else None,
        },
        "alerts": [a.to_dict() for a in f.alerts],
        "resumed_from": None
        if origin is None
        else {
            "verdict": origin.verdict.value,
            "client": origin.client,
            "start_time": origin.start,
            "client_subject": origin.client_subject,
        },
        "handshake": [f"{role}:{name}" for role, name in f.history],
        "complete": d.verdict.value != "incomplete" and not f.lost,
        "ended": f.ended,
        "anomalies": [str(a) for a in r.anomalies],
    }


def markdown_table() -> str:
    lines = ["| field | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {t} | {doc} |" for n, t, doc in FIELDS]
    return "\n".join(lines)
