"""Certificates: facts from DER (`cert_info`) and the checks on a chain (`check_chain`).

Owns everything tlsinspect says about a certificate: its identity (names, SANs, serial, validity,
key, signature algorithm, basic constraints, key usages), and whether a chain as sent holds
together: each certificate signed by the next, valid at the time of the capture, fit for its
role, naming the server the client asked for, issued by a CA the server listed, and, given trust
anchors, trusted.

Pure: DER bytes and a time in, values out. No files, no clock ("now" never enters: the caller
passes the capture's packet time), no logging. Certificates are parsed with `cryptography`, once
per distinct DER (`cache.bounded_cache`, bounded in entries and in bytes; Zeek keeps its
certificate cache by SHA-256 the same way); a
certificate `cryptography` refuses is read by hand as far as its DER goes (`read_tbs`), so that
the report can still show what it held and why it failed.

The modules, each using only those below it:

    chains      check_chain -> ChainReport: the checks on a chain as sent
    trust       Anchors, load_anchors, validate: the CA bundle's opinion of a chain
    checks      Check, PASS/WARN/FAIL/INFO, CHECKS: the checks on one certificate
    identity    match_server_name, dns_name_matches: the server's name (RFC 6125)
    signatures  signature_problem, issuer links: who signed whom
    facts       cert_info -> CertInfo: what one certificate says
    names       name_from_der, short_name, same_name, format_name: distinguished names
    der         read_tbs, DER elements and OIDs, read by hand
    cache       bounded_cache: the caches of the modules above, bounded in entries and bytes

References: RFC 5280 (profile, 4.1 structure, 4.2.1.x extensions, 6.1 path validation, 7.1
name comparison), RFC 6125 section 6 (service identity: DNS-ID, wildcards, CN fallback),
RFC 5246 7.4.2 / RFC 8446 4.4.2 (certificate_list order), RFC 5246 7.4.4 / RFC 8446 4.2.4
(certificate_authorities), CA/Browser Forum Baseline Requirements 6.3.2 (398-day server
certificates since 2020-09-01).
"""

from __future__ import annotations

from .chains import ChainReport, check_chain
from .checks import (
    CHECKS,
    FAIL,
    INFO,
    MIN_EC_BITS,
    MIN_RSA_BITS,
    PASS,
    WARN,
    WEAK_HASHES,
    Check,
)
from .der import RawTbs, read_tbs
from .facts import CertInfo, cert_info
from .identity import NameMatch, dns_name_matches, match_server_name
from .names import format_name, name_from_der, rfc2253_from_der, same_name, short_name
from .signatures import signature_problem
from .trust import Anchors, load_anchors, validate

__all__ = [
    "Anchors",
    "CHECKS",
    "CertInfo",
    "ChainReport",
    "Check",
    "FAIL",
    "INFO",
    "MIN_EC_BITS",
    "MIN_RSA_BITS",
    "NameMatch",
    "PASS",
    "RawTbs",
    "WARN",
    "WEAK_HASHES",
    "cert_info",
    "check_chain",
    "dns_name_matches",
    "format_name",
    "load_anchors",
    "match_server_name",
    "name_from_der",
    "rfc2253_from_der",
    "read_tbs",
    "same_name",
    "short_name",
    "signature_problem",
    "validate",
]
