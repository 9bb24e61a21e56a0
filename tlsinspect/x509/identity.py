"""Server identity (RFC 6125 section 6): whether a server certificate names the host the client
asked for (DNS-ID, wildcards, IP addresses, CN fallback).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .facts import CertInfo


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def dns_name_matches(pattern: str, host: str) -> bool:
    """A DNS-ID from a certificate matches a host name (RFC 6125 6.4.1 and 6.4.3).

    Case-insensitive, a trailing dot ignored. A wildcard is honoured only as the whole leftmost
    label and stands for exactly one label ("*.example.com" matches "a.example.com", not
    "example.com" nor "a.b.example.com"); it needs two labels after it, as OpenSSL requires.
    Partial-label wildcards ("w*.example.com"), which 6.4.3 lets a client accept, are refused
    here as RFC 9525 and the browsers and Python do. A-labels are compared as ASCII.
    """
    p = pattern.rstrip(".").lower()
    h = host.rstrip(".").lower()
    if not p or not h:
        return False
    if "*" not in p:
        return p == h
    first, _, rest = p.partition(".")
    if first != "*" or "*" in rest or rest.count(".") < 1:
        return False
    head, _, tail = h.partition(".")
    return bool(head) and tail == rest


@dataclass(frozen=True, slots=True)
class NameMatch:
    matched: str | None  # the identifier that matched ("DNS:*.example.test"), None if none
    presented: tuple[str, ...]  # what the certificate offers for the comparison


def match_server_name(info: CertInfo, host: str) -> NameMatch:
    """Whether a server certificate names `host` (a DNS name, or an IP address in text).

    DNS names are compared with the DNS SANs; IP addresses with the IP SANs (RFC 6125 leaves
    IPs to RFC 5280; RFC 2818 3.1 asks for an iPAddress SAN). The subject CN counts only when
    the certificate has no DNS, URI or IP SAN at all (RFC 6125 6.4.4).
    """
    dns = [s[4:] for s in info.san if s.startswith("DNS:")]
    ips = [s[3:] for s in info.san if s.startswith("IP:")]
    has_ids = bool(dns or ips or any(s.startswith("URI:") for s in info.san))
    presented = tuple(f"DNS:{d}" for d in dns) + tuple(f"IP:{i}" for i in ips)
    addr = _ip(host)
    if addr is not None:
        for i in ips:
            if _ip(i) == addr:
                return NameMatch(f"IP:{i}", presented)
        return NameMatch(None, presented)
    for d in dns:
        if dns_name_matches(d, host):
            return NameMatch(f"DNS:{d}", presented)
    if not has_ids and info.subject_cn:
        if dns_name_matches(info.subject_cn, host):
            return NameMatch(f"CN:{info.subject_cn}", (f"CN:{info.subject_cn}",))
        return NameMatch(None, (f"CN:{info.subject_cn}",))
    return NameMatch(None, presented)


__all__ = ["NameMatch", "dns_name_matches", "match_server_name"]
