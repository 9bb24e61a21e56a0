"""Zeek's `ssl.log` and `x509.log`: the sessions as Zeek 7 logs them, in its TSV or JSON form.

A projection of the finished `SessionRecord`, like every report: nothing here reads bytes,
parses a certificate or runs a check. The fields, their order, their types and their value
formats are those of Zeek 7.0 (`SSL::Info` of `base/protocols/ssl/main.zeek` and `files.zeek`,
`X509::Info` of `base/files/x509/main.zeek`), so that `zeek-cut`, RITA, Security Onion and
Malcolm read them as Zeek's own:

- `ssl.log`: Zeek's default fields, with `subject`, `issuer`, `client_subject` and
  `client_issuer` logged (Zeek 6.0 moved them out of the default log; they are the fields
  with `SSL::log_include_server_certificate_subject_issuer` and
  `SSL::log_include_client_certificate_subject_issuer` set to T), then tlsinspect's own fields,
  named `mtls_*`, and Zeek's `requested_client_certificate_authorities`
  (`policy/protocols/ssl/certificate-request-info`) for the CAs the server asked for.
- `x509.log`: one line per certificate, deduplicated as Zeek does (by fingerprint, leaf or
  not, and sender).

What differs from Zeek, by necessity: `uid` is not random but "C" and the base62 of a SHA-256
of the 5-tuple and the start time, so that a run gives the same uids again; `id.orig_*` is
the TLS client (the originator when the capture holds the SYN); `ts` of a
certificate is the time of the Certificate message that carried it, `ts` of a session the time
of its ClientHello (as Zeek), else of its first packet.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import TextIO

from ..model import CLIENT, SERVER
from ..record import SessionRecord
from ..session import ALERT, CHANGE_CIPHER_SPEC, HELLO_RETRY_REQUEST
from ..tls import registry as reg
from ..x509 import CertInfo, cert_info, rfc2253_from_der
from .flat import established

Row = dict[str, object]

#: (name, Zeek type, meaning) of each ssl.log field, in Zeek's order, then tlsinspect's.
SSL_FIELDS: list[tuple[str, str, str]] = [
    ("ts", "time", "Time of the ClientHello (else of the connection's first packet)."),
    ("uid", "string", "Connection id: C + base62 of a hash of the 5-tuple and start time."),
    ("id.orig_h", "addr", "Client address."),
    ("id.orig_p", "port", "Client port."),
    ("id.resp_h", "addr", "Server address."),
    ("id.resp_p", "port", "Server port."),
    ("version", "string", "Version the server chose: TLSv10, TLSv12, TLSv13, ..."),
    ("cipher", "string", "Cipher suite the server chose (IANA name)."),
    ("curve", "string", "ECDHE group the server chose (key share, ServerKeyExchange)."),
    ("server_name", "string", "SNI the client sent."),
    ("resumed", "bool", "The session was resumed."),
    ("last_alert", "string", "Last alert seen in the clear."),
    ("next_protocol", "string", "Application protocol the server chose (ALPN)."),
    ("established", "bool", "The handshake completed."),
    ("ssl_history", "string", "Messages in order, Zeek's letters: upper case from the client."),
    ("cert_chain_fps", "vector[string]", "SHA-256 of each certificate the server sent."),
    ("client_cert_chain_fps", "vector[string]", "SHA-256 of each certificate the client sent."),
    ("subject", "string", "Subject of the server's leaf certificate (RFC 2253)."),
    ("issuer", "string", "Issuer of the server's leaf certificate (RFC 2253)."),
    ("client_subject", "string", "Subject of the client's leaf certificate (RFC 2253)."),
    ("client_issuer", "string", "Issuer of the client's leaf certificate (RFC 2253)."),
    ("sni_matches_cert", "bool", "The server leaf names the SNI; unset without an SNI."),
    (
        "requested_client_certificate_authorities",
        "vector[string]",
        "CAs the server asked for in its CertificateRequest (RFC 2253).",
    ),
    ("mtls_verdict", "string", "tlsinspect's verdict: mutual, one-way, failed, ..."),
    ("mtls_basis", "string", "How it was reached: observed, decrypted or inferred."),
    ("mtls_reason", "string", "Why, in one line."),
    ("mtls_diagnosis", "string", "Why it failed, in plain words."),
    ("mtls_cert_requested", "bool", "The server sent a CertificateRequest."),
    ("mtls_client_cert_sent", "bool", "The client answered with a non-empty chain."),
    ("mtls_client_cert_verify", "bool", "The client sent CertificateVerify."),
    ("mtls_client_chain_result", "string", "Checks on the client's chain: pass, warn, fail."),
    ("mtls_client_chain_failed", "vector[string]", "Checks the client's chain failed."),
    ("mtls_server_chain_result", "string", "Checks on the server's chain: pass, warn, fail."),
    ("mtls_server_chain_failed", "vector[string]", "Checks the server's chain failed."),
    ("mtls_starttls", "string", "Plaintext protocol upgraded to TLS (smtp, imap, ...)."),
    ("mtls_anomalies", "vector[string]", "Problems met dissecting the session."),
]

#: (name, Zeek type, meaning) of each x509.log field, in Zeek's order.
X509_FIELDS: list[tuple[str, str, str]] = [
    ("ts", "time", "Time of the Certificate message that carried it."),
    ("fingerprint", "string", "SHA-256 of the DER certificate (Zeek's default hash)."),
    ("certificate.version", "count", "X.509 version (3)."),
    ("certificate.serial", "string", "Serial number, upper-case hex."),
    ("certificate.subject", "string", "Subject (RFC 2253)."),
    ("certificate.issuer", "string", "Issuer (RFC 2253)."),
    ("certificate.not_valid_before", "time", "Start of validity."),
    ("certificate.not_valid_after", "time", "End of validity."),
    ("certificate.key_alg", "string", "Public key algorithm (OpenSSL's name)."),
    ("certificate.sig_alg", "string", "Signature algorithm (OpenSSL's name)."),
    ("certificate.key_type", "string", "rsa, dsa or ecdsa."),
    ("certificate.key_length", "count", "Key size in bits."),
    ("certificate.exponent", "string", "RSA public exponent."),
    ("certificate.curve", "string", "EC curve (OpenSSL's short name)."),
    ("san.dns", "vector[string]", "DNS names of the subjectAltName."),
    ("san.uri", "vector[string]", "URIs of the subjectAltName."),
    ("san.email", "vector[string]", "Email addresses of the subjectAltName."),
    ("san.ip", "vector[addr]", "IP addresses of the subjectAltName."),
    ("basic_constraints.ca", "bool", "basicConstraints cA; unset without the extension."),
    ("basic_constraints.path_len", "count", "basicConstraints pathLenConstraint."),
    ("host_cert", "bool", "The leaf of its chain."),
    ("client_cert", "bool", "Sent by the client."),
]

LOG_FIELDS = {"ssl": SSL_FIELDS, "x509": X509_FIELDS}

# Zeek's `SSL::version_strings` (base/protocols/ssl/consts.zeek)
_VERSIONS = {
    0x0002: "SSLv2",
    0x0300: "SSLv3",
    0x0301: "TLSv10",
    0x0302: "TLSv11",
    0x0303: "TLSv12",
    0x0304: "TLSv13",
}

# Zeek's ssl_history letters (base/protocols/ssl/main.zeek), by tlsinspect's history names:
# the handshake messages by their registry name, plus ChangeCipherSpec and the alerts. What an
# observer cannot read (encrypted records) has no letter, as in Zeek.
_HISTORY_LETTERS = {
    "hello_request": "h",
    "client_hello": "c",
    "server_hello": "s",
    "hello_verify_request": "v",
    "new_session_ticket": "t",
    "end_of_early_data": "e",
    HELLO_RETRY_REQUEST: "j",
    "encrypted_extensions": "o",
    "certificate": "x",
    "server_key_exchange": "k",
    "certificate_request": "r",
    "server_hello_done": "n",
    "certificate_verify": "y",
    "client_key_exchange": "g",
    "finished": "f",
    "certificate_url": "w",
    "certificate_status": "u",
    "supplemental_data": "a",
    "key_update": "p",
    "message_hash": "m",
    CHANGE_CIPHER_SPEC: "i",
}
_HANDSHAKE_NAMES = frozenset(reg.HANDSHAKE_TYPES.values())
_MAX_HISTORY = 100  # Zeek's SSL::max_ssl_history_length

# OpenSSL's short names where `cryptography`'s differ (Zeek prints OpenSSL's)
_CURVES = {"secp256r1": "prime256v1", "secp192r1": "prime192v1"}
_KEY_TYPES = {"RSA": "rsa", "RSA-PSS": "rsa", "DSA": "dsa", "EC": "ecdsa"}

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def uid(r: SessionRecord) -> str:
    """A Zeek-like connection uid, the same on every run: "C" and the base62 of the first 96
    bits of a SHA-256 of the 5-tuple and the start time (Zeek's are random)."""
    key = f"tcp|{r.client[0]}|{r.client[1]}|{r.server[0]}|{r.server[1]}|{r.facts.start_ts}"
    n = int.from_bytes(hashlib.sha256(key.encode()).digest()[:12], "big")
    out = ""
    while n:
        n, d = divmod(n, 62)
        out += _BASE62[d]
    return "C" + (out or "0")


def _version(v: int) -> str:
    if v in _VERSIONS:
        return _VERSIONS[v]
    if v >> 8 == 0x7F:
        return f"TLSv13-draft{v & 0xFF}"
    return f"unknown-{v}"


def _named(kind: str, value: int) -> str:
    """A registry name, or Zeek's `unknown-N` for a value the table lacks."""
    name = reg.name_of(kind, value)
    return f"unknown-{value}" if name.startswith("unknown(") else name


def ssl_history(r: SessionRecord) -> str:
    """The session's messages as Zeek's ssl_history letters (client's upper case)."""
    out = []
    for role, name in r.facts.history:
        if name.startswith(ALERT):
            letter: str | None = "l"
        else:
            letter = _HISTORY_LETTERS.get(name)
            if letter is None and name in _HANDSHAKE_NAMES:
                letter = "z"  # a handshake type Zeek has no letter for
        if letter is not None:
            out.append(letter.upper() if role == CLIENT else letter)
    return "".join(out)[:_MAX_HISTORY]


def _leaf(certs: tuple[bytes, ...] | None) -> CertInfo | None:
    if not certs:
        return None
    info = cert_info(certs[0])
    return info if info.loaded else None


def _fingerprints(certs: tuple[bytes, ...] | None) -> list[str]:
    """The SHA-256 of each certificate a parser could load: Zeek logs no fingerprint, and no
    x509.log line, for a certificate its X.509 analyzer could not parse."""
    return [c.sha256 for c in map(cert_info, certs or ()) if c.loaded]


def _sni_matches(r: SessionRecord, sni: str | None) -> bool | None:
    """Zeek's sni_matches_cert: unset without an SNI or a server leaf; else the `name` check."""
    checks = r.server_checks
    if sni is None or checks is None or not checks.certs:
        return None
    for c in checks.certs[0]:
        if c.name == "name" and c.result in ("pass", "fail"):
            return c.result == "pass"
    return None


def ssl_row(r: SessionRecord) -> Row:
    """One session as an ssl.log row: field name -> value (None: unset)."""
    f = r.facts
    ch, sh = f.client_hello, f.server_hello
    sni = ch.server_name if ch else None
    clear_alerts = [a for a in f.alerts if a.description is not None]
    any_certs = bool(f.server_certs) or bool(f.client_certs)
    server_leaf, client_leaf = _leaf(f.server_certs), _leaf(f.client_certs)
    cr = f.cert_request
    verdict = r.decision.verdict.value
    done = established(
        {"verdict": verdict, "alerts": [a.to_dict() for a in f.alerts], "ended": f.ended}
    )
    if done is None:  # TLS 1.3 without keys, undecided: both Finished flights went by
        done = CLIENT in f.finished and bool(f.server_reply)
    row: Row = {
        "ts": f.hello_ts if f.hello_ts is not None else f.start_ts,
        "uid": uid(r),
        "id.orig_h": r.client[0],
        "id.orig_p": r.client[1],
        "id.resp_h": r.server[0],
        "id.resp_p": r.server[1],
        "version": _version(sh.selected_version) if sh else None,
        "cipher": _named("cipher", sh.cipher_suite) if sh else None,
        "curve": _named("group", r.server_group) if r.server_group is not None else None,
        "server_name": sni,
        "resumed": verdict == "resumed",
        "last_alert": reg.name_of("alert", clear_alerts[-1].description)
        if clear_alerts and clear_alerts[-1].description is not None
        else None,
        "next_protocol": r.server_alpn,
        "established": done,
        "ssl_history": ssl_history(r),
        "cert_chain_fps": _fingerprints(f.server_certs) if any_certs else None,
        "client_cert_chain_fps": _fingerprints(f.client_certs) if any_certs else None,
        "subject": server_leaf.subject_rfc2253 if server_leaf else None,
        "issuer": server_leaf.issuer_rfc2253 if server_leaf else None,
        "client_subject": client_leaf.subject_rfc2253 if client_leaf else None,
        "client_issuer": client_leaf.issuer_rfc2253 if client_leaf else None,
        "sni_matches_cert": _sni_matches(r, sni),
        "requested_client_certificate_authorities": [rfc2253_from_der(n) for n in cr.ca_names]
        if cr is not None and cr.ca_names
        else None,
        "mtls_verdict": verdict,
        "mtls_basis": r.decision.basis.value,
        "mtls_reason": r.decision.reason,
        "mtls_diagnosis": r.diagnosis,
        "mtls_cert_requested": r.auth.cert_requested,
        "mtls_client_cert_sent": r.auth.client_cert_sent,
        "mtls_client_cert_verify": r.auth.client_cert_verify,
        "mtls_client_chain_result": r.client_checks.summary()["result"]
        if r.client_checks
        else None,
        "mtls_client_chain_failed": r.client_checks.failed if r.client_checks else None,
        "mtls_server_chain_result": r.server_checks.summary()["result"]
        if r.server_checks
        else None,
        "mtls_server_chain_failed": r.server_checks.failed if r.server_checks else None,
        "mtls_starttls": r.starttls,
        "mtls_anomalies": [str(a) for a in r.anomalies],
    }
    return row


def _san(info: CertInfo, prefix: str) -> list[str] | None:
    """The SANs of one kind; None (unset) when there are none, as Zeek leaves them."""
    values = [s.split(":", 1)[1] for s in info.san if s.startswith(prefix + ":")]
    return values or None


def x509_row(der: bytes, ts: int, host: bool, client: bool) -> Row:
    """One certificate as an x509.log row."""
    c = cert_info(der)
    ec = c.key_type == "EC"
    return {
        "ts": ts,
        "fingerprint": c.sha256,
        "certificate.version": c.version,
        "certificate.serial": c.serial,  # already as Zeek prints it (i2a_ASN1_INTEGER)
        "certificate.subject": c.subject_rfc2253,
        "certificate.issuer": c.issuer_rfc2253,
        "certificate.not_valid_before": _ns(c.not_before),
        "certificate.not_valid_after": _ns(c.not_after),
        "certificate.key_alg": c.key_algorithm,
        "certificate.sig_alg": c.signature_algorithm,
        "certificate.key_type": _KEY_TYPES.get(c.key_type or ""),
        "certificate.key_length": c.key_bits if c.key_type in _KEY_TYPES else None,
        "certificate.exponent": str(c.rsa_exponent) if c.rsa_exponent is not None else None,
        "certificate.curve": _CURVES.get(c.key_curve, c.key_curve) if ec and c.key_curve else None,
        "san.dns": _san(c, "DNS"),
        "san.uri": _san(c, "URI"),
        "san.email": _san(c, "email"),
        "san.ip": _san(c, "IP"),
        "basic_constraints.ca": c.is_ca,
        "basic_constraints.path_len": c.path_length if c.is_ca is not None else None,
        "host_cert": host,
        "client_cert": client,
    }


def _ns(dt: object) -> int | None:
    from datetime import datetime

    if not isinstance(dt, datetime):
        return None
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def x509_rows(r: SessionRecord) -> list[Row]:
    """The x509.log rows of a session's certificates: the server's, then the client's."""
    f = r.facts
    rows = []
    for role, certs in ((SERVER, f.server_certs), (CLIENT, f.client_certs)):
        ts = f.certs_ts.get(role, f.start_ts)
        for i, der in enumerate(certs or ()):
            if cert_info(der).loaded:
                rows.append(x509_row(der, ts, i == 0, role == CLIENT))
    return rows


# -- Zeek's ASCII writer ------------------------------------------------------------------------

_UNSET, _EMPTY, _SET_SEP = "-", "(empty)", ","


def _escape(s: str, in_set: bool) -> str:
    """Zeek's escaping: the separators and non-printable characters as \\xNN, the backslash
    doubled; an empty string is (empty), a string that reads as unset starts escaped."""
    if s == "":
        return _EMPTY
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif o < 0x20 or o == 0x7F or (in_set and ch == _SET_SEP):
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    text = "".join(out)
    if text in (_UNSET, _EMPTY):
        return f"\\x{ord(text[0]):02x}{text[1:]}"
    return text


def _time_text(ns: int) -> str:
    us = ns // 1000
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def tsv_value(value: object, ztype: str) -> str:
    """One field in Zeek's TSV form."""
    if value is None:
        return _UNSET
    if ztype == "time" and isinstance(value, int):
        return _time_text(value)
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, list):
        if not value:
            return _EMPTY
        return _SET_SEP.join(_escape(str(v), True) for v in value)
    if isinstance(value, int):
        return str(value)
    return _escape(str(value), False)


def json_value(value: object, ztype: str) -> object:
    """One field as Zeek's JSON writer gives it: times as epoch seconds, the rest as is."""
    if ztype == "time" and isinstance(value, int):
        return (value // 1000) / 1e6  # microseconds, as Zeek's times hold
    return value


def header(path: str, opened: str) -> str:
    """Zeek's header lines of a log (what zeek-cut reads)."""
    fields = LOG_FIELDS[path]
    return (
        "#separator \\x09\n"
        f"#set_separator\t{_SET_SEP}\n"
        f"#empty_field\t{_EMPTY}\n"
        f"#unset_field\t{_UNSET}\n"
        f"#path\t{path}\n"
        f"#open\t{opened}\n"
        "#fields\t" + "\t".join(n for n, _, _ in fields) + "\n"
        "#types\t" + "\t".join(t for _, t, _ in fields) + "\n"
    )


def tsv_line(path: str, row: Mapping[str, object]) -> str:
    return "\t".join(tsv_value(row.get(n), t) for n, t, _ in LOG_FIELDS[path]) + "\n"


def json_line(path: str, row: Mapping[str, object]) -> str:
    """One row as Zeek's JSON logs have it: dotted keys, unset fields left out."""
    obj = {n: json_value(row[n], t) for n, t, _ in LOG_FIELDS[path] if row.get(n) is not None}
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


def _stamp() -> str:
    """Zeek's #open/#close time: the local wall-clock time the log was opened or closed."""
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime())


# Zeek's X509::known_log_certs_maximum_size: beyond it certificates are logged again
_MAX_KNOWN_CERTS = 1_000_000


class ZeekLogs:
    """ssl.log and x509.log in a directory, written as sessions are logged (each line flushed)."""

    def __init__(self, directory: str, *, use_json: bool = False) -> None:
        self.use_json = use_json
        os.makedirs(directory, exist_ok=True)
        self.files: dict[str, TextIO] = {}
        try:
            for path in LOG_FIELDS:
                out = open(os.path.join(directory, f"{path}.log"), "w", encoding="utf-8")
                self.files[path] = out
                if not use_json:
                    out.write(header(path, _stamp()))
                out.flush()
        except OSError:
            self.close()
            raise
        self.known: set[tuple[str, bool, bool]] = set()

    def write(self, r: SessionRecord) -> None:
        line = json_line if self.use_json else tsv_line
        ssl, x509 = self.files["ssl"], self.files["x509"]
        for row in x509_rows(r):
            key = (str(row["fingerprint"]), bool(row["host_cert"]), bool(row["client_cert"]))
            if key in self.known:
                continue
            if len(self.known) < _MAX_KNOWN_CERTS:
                self.known.add(key)
            x509.write(line("x509", row))
        x509.flush()
        ssl.write(line("ssl", ssl_row(r)))
        ssl.flush()

    def close(self) -> None:
        for out in self.files.values():
            if not self.use_json and not out.closed:
                out.write(f"#close\t{_stamp()}\n")
            out.close()
        self.files = {}


def markdown_table() -> str:
    """The README's table of ssl.log fields: name, Zeek type, meaning."""
    lines = ["| field | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {t} | {doc} |" for n, t, doc in SSL_FIELDS]
    return "\n".join(lines)


def write_zeek(records: Iterable[SessionRecord], directory: str, *, use_json: bool) -> int:
    """Write ssl.log and x509.log into `directory` as the records come; return the count."""
    logs = ZeekLogs(directory, use_json=use_json)
    n = 0
    try:
        for r in records:
            logs.write(r)
            n += 1
    finally:
        logs.close()
    return n


if __name__ == "__main__":  # python -m tlsinspect.report.zeek: the README's ssl.log table
    print(markdown_table())
