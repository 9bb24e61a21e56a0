"""Distinguished names (X.501): as text in certificate order, their CN, and their comparison
(RFC 5280 7.1), from `cryptography` Names or straight from DER (as in CertificateRequest's list
of certificate authorities).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..errors import CertificateError
from .cache import NAME_CACHE_BYTES, bounded_cache
from .der import _STRING_TAGS, _der_items, _elements, _oid

# OpenSSL's short names (what `openssl x509 -subject` and tshark print); others stay dotted.
_SHORT_BY_DOTTED = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.12": "title",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}


def format_name(name: x509.Name) -> str:
    """A distinguished name in certificate order, "C=US, O=Let's Encrypt, CN=R3" (as tshark)."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            key = _SHORT_BY_DOTTED.get(attr.oid.dotted_string, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def _cn(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    v = attrs[-1].value
    return v if isinstance(v, str) else v.hex()


def _name_parts(der: bytes) -> list[tuple[str, str]]:
    """(dotted OID, value text) of each attribute of a DER Name, in wire order; raises
    ValueError (CertificateError, or an element list too short to unpack) or IndexError on bad
    DER."""
    (tag, s, e), *_ = _der_items(der, 0, len(der))
    if tag != 0x30:
        raise CertificateError("not a SEQUENCE")
    parts = []
    for _set, ss, se in _der_items(der, s, e):
        for _, as_, ae in _der_items(der, ss, se):
            (_otag, os_, oe), (vtag, vs, ve) = _der_items(der, as_, ae)[:2]
            raw = der[vs:ve]
            enc = _STRING_TAGS.get(vtag)
            parts.append((_oid(der[os_:oe]), raw.decode(enc, "replace") if enc else raw.hex()))
    return parts


@bounded_cache(4096, NAME_CACHE_BYTES)
def name_from_der(der: bytes) -> str:
    """A DER-encoded X.501 Name (as in CertificateRequest's CA list) as text, in wire order."""
    try:
        return ", ".join(f"{_SHORT_BY_DOTTED.get(o, o)}={v}" for o, v in _name_parts(der))
    except (ValueError, IndexError) as exc:
        return f"<unreadable name {der[:16].hex()}...: {exc}>"


# RFC 2253 2.4: characters escaped with a backslash anywhere in a value
_RFC2253_SPECIAL = frozenset(',+"\\<>;')


def _rfc2253_value(text: str) -> str:
    """A value escaped as OpenSSL's XN_FLAG_RFC2253 without ASN1_STRFLGS_ESC_MSB does: the RFC
    2253 specials and control characters escaped, other characters (UTF-8) kept as they are."""
    out = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch in _RFC2253_SPECIAL or (ch == "#" and i == 0) or (ch == " " and i in (0, last)):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


@bounded_cache(4096, NAME_CACHE_BYTES)
def rfc2253_from_der(der: bytes) -> str:
    """A DER Name as RFC 2253 text, the way OpenSSL's `X509_NAME_print_ex` writes it with
    `XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB` (what Zeek logs as `subject`, `issuer`): the
    last attribute first (of the name and of a multi-valued RDN), "," between RDNs and "+"
    inside one, OpenSSL's short names, and the value
    of an attribute whose type has no short name, or which is not a string, as "#" and the hex
    of its DER. Unreadable DER gives "<unreadable name ...>"."""
    try:
        (tag, s, e), *_ = _der_items(der, 0, len(der))
        if tag != 0x30:
            raise CertificateError("not a SEQUENCE")
        rdns = []
        for _set, ss, se in _der_items(der, s, e):
            attrs = []
            for _, as_, ae in _der_items(der, ss, se):
                (_otag, _oh, os_, oe), (vtag, vh, vs, ve) = _elements(der, as_, ae)[:2]
                oid = _oid(der[os_:oe])
                key = _SHORT_BY_DOTTED.get(oid)
                enc = _STRING_TAGS.get(vtag)
                if key is None or enc is None:
                    attrs.append(f"{key or oid}=#{der[vh:ve].hex().upper()}")
                else:
                    attrs.append(f"{key}={_rfc2253_value(der[vs:ve].decode(enc, 'replace'))}")
            rdns.append("+".join(reversed(attrs)))  # XN_FLAG_DN_REV reverses every entry
        return ",".join(reversed(rdns))
    except (ValueError, IndexError) as exc:
        return f"<unreadable name {der[:16].hex()}...: {exc}>"


@bounded_cache(4096, NAME_CACHE_BYTES)
def _cn_from_der(der: bytes) -> str | None:
    try:
        cns = [v for o, v in _name_parts(der) if o == "2.5.4.3"]
    except (ValueError, IndexError):
        return None
    return cns[-1] if cns else None


@bounded_cache(4096, NAME_CACHE_BYTES)
def short_name(der: bytes) -> str:
    """The CN of a DER Name, or the whole name as text when it has none (for messages)."""
    return _cn_from_der(der) or name_from_der(der)


@bounded_cache(4096, NAME_CACHE_BYTES)
def _normalized_name(der: bytes) -> tuple[tuple[str, str], ...] | None:
    """A Name reduced for comparison as RFC 5280 7.1 allows (case folded, inner white space
    collapsed), so that two encodings of the same name compare equal; None if unreadable."""
    try:
        return tuple((o, " ".join(v.casefold().split())) for o, v in _name_parts(der))
    except (ValueError, IndexError):
        return None


def same_name(a: bytes, b: bytes) -> bool:
    """Two DER Names are the same name: byte-equal, or equal after RFC 5280 normalisation."""
    if a == b:
        return True
    na = _normalized_name(a)
    return na is not None and na == _normalized_name(b)


__all__ = ["format_name", "name_from_der", "rfc2253_from_der", "same_name", "short_name"]
