"""IPv4 and IPv6 headers, and the text form of addresses.

The header functions are pure and never raise: they take the frame, the offset of the IP header
and the end of the bytes it may use (the capture length, or the end of an outer IP packet), and
return ``(protocol, l4_start, ip_end, src, dst)`` or None when the header is cut short, is not
of its version, or belongs to a fragment (which ``ipv4_fragment`` and ``ipv6_fragment`` read,
for ``net.fragments`` to put back together). ``ip_end`` is bounded by the IP length (so link-layer
padding is left out) and by ``end`` (so a packet cut by the snaplen stays in bounds).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from functools import lru_cache

IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPPROTO_FRAGMENT = 44  # the IPv6 fragment header

#: version/IHL, total length, flags/fragment offset, protocol, source, destination
IPV4_HEADER = struct.Struct("!BxHxxHxB2x4s4s")
#: version/traffic class, payload length, next header, source, destination
IPV6_HEADER = struct.Struct("!B3xHBx16s16s")

_IPV4_FRAGMENT = 0x3FFF  # MF flag and fragment offset

#: IPv6 extension headers walked over: hop-by-hop, routing, destination options, mobility,
#: HIP, shim6 (length in 8-byte units, not counting the first 8), and AH (in 4-byte units,
#: not counting the first 8). A fragment header (44) or "no next header" (59) ends the walk
#: and, not being TCP, makes the packet unusable.
_IPV6_EXTENSIONS = frozenset({0, 43, 60, 135, 139, 140, 51})
_IPV6_AH = 51

_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def ipv4(data: bytes, off: int, end: int) -> tuple[int, int, int, bytes, bytes] | None:
    """Decode the IPv4 header at ``off``: (protocol, l4_start, ip_end, src, dst) or None."""
    if off + 20 > end:
        return None
    vihl, total, frag, proto, src, dst = IPV4_HEADER.unpack_from(data, off)
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < 20 or frag & _IPV4_FRAGMENT:
        return None
    if total:
        if total < ihl:
            return None
        ip_end = off + total
        if ip_end > end:
            ip_end = end
    else:
        ip_end = end  # total length 0: segmentation offload, the capture tells the length
    l4 = off + ihl
    if l4 > ip_end:
        return None
    return proto, l4, ip_end, src, dst


def ipv6(data: bytes, off: int, end: int) -> tuple[int, int, int, bytes, bytes] | None:
    """Decode the IPv6 header at ``off`` and skip its extension headers.

    Returns (next header after the extensions, its start, ip_end, src, dst) or None.
    """
    if off + 40 > end:
        return None
    vtc, plen, nh, src, dst = IPV6_HEADER.unpack_from(data, off)
    if vtc >> 4 != 6:
        return None
    l4 = off + 40
    ip_end = l4 + plen if plen else end  # payload length 0: jumbogram or offload
    if ip_end > end:
        ip_end = end
    while nh in _IPV6_EXTENSIONS:
        if l4 + 8 > ip_end:
            return None
        if nh == _IPV6_AH:
            size = (data[l4 + 1] + 2) << 2
        else:
            size = (data[l4 + 1] + 1) << 3
        nh = data[l4]
        l4 += size
    if l4 > ip_end:
        return None
    return nh, l4, ip_end, src, dst


def ip_header_cut(data: bytes, off: int, end: int) -> str | None:
    """For an IP packet at ``off`` that `ipv4`/`ipv6` returned None for: the name of the header
    the bytes up to ``end`` end inside of ("IPv4 header", "IPv6 extension header", ...), or None
    when the packet is whole but not usable (another version, a fragment, bad lengths)."""
    if off >= end:
        return "IP header"
    version = data[off] >> 4
    if version == 4:
        if off + 20 > end or off + ((data[off] & 0x0F) << 2) > end:
            return "IPv4 header"
        return None
    if version != 6:
        return None
    if off + 40 > end:
        return "IPv6 header"
    nh, pos = data[off + 6], off + 40
    while nh in _IPV6_EXTENSIONS:  # the same walk as ipv6(), on the captured bytes
        if pos + 8 > end:
            return "IPv6 extension header"
        size = (data[pos + 1] + 2) << 2 if nh == _IPV6_AH else (data[pos + 1] + 1) << 3
        nh = data[pos]
        pos += size
    return "IPv6 extension header" if pos > end else None


@lru_cache(maxsize=4096)
def format_addr(addr: bytes) -> str:
    """Text form of a packed address: dotted quad, or RFC 5952 IPv6 text.

    IPv4-mapped IPv6 addresses keep their IPv4 part dotted (``::ffff:192.0.2.1``).
    """
    if len(addr) == 4:
        return str(ipaddress.IPv4Address(bytes(addr)))
    if len(addr) == 16:
        if addr[:12] == _V4_MAPPED_PREFIX:
            return "::ffff:" + str(ipaddress.IPv4Address(bytes(addr[12:])))
        return ipaddress.IPv6Address(bytes(addr)).compressed
    raise ValueError(f"not a packed IPv4 or IPv6 address ({len(addr)} bytes)")


# -- fragments ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fragment:
    """One fragment of an IP datagram (RFC 791; RFC 8200 section 4.5).

    key      what identifies its datagram: version, source, destination, (IPv4) protocol, id
    offset   where its bytes go in the fragmentable part of the datagram
    more     more fragments follow (MF)
    header   IPv4: its header; IPv6: the fixed header, its next header set to the fragmentable
             part's (extension headers before the fragment header are left out: none of them
             tells where the TCP segment is)
    payload  its bytes of the fragmentable part
    """

    key: bytes
    offset: int
    more: bool
    header: bytes
    payload: bytes


def ipv4_fragment(data: bytes, off: int, end: int) -> Fragment | None:
    """The IPv4 fragment at ``off``, or None when it is not a (well-formed) fragment."""
    if off + 20 > end:
        return None
    vihl, total, frag, proto, src, dst = IPV4_HEADER.unpack_from(data, off)
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < 20 or not frag & _IPV4_FRAGMENT or total < ihl:
        return None
    ip_end = min(off + total, end)
    if off + ihl > ip_end:
        return None
    ident = data[off + 4 : off + 6]
    return Fragment(
        b"4" + src + dst + bytes((proto,)) + ident,
        (frag & 0x1FFF) << 3,
        bool(frag & 0x2000),
        bytes(data[off : off + ihl]),
        bytes(data[off + ihl : ip_end]),
    )


def ipv6_fragment(data: bytes, off: int, end: int) -> Fragment | None:
    """The IPv6 packet at ``off`` if it carries a fragment header, else None."""
    ip = ipv6(data, off, end)
    if ip is None:
        return None
    nh, pos, ip_end, src, dst = ip
    if nh != IPPROTO_FRAGMENT or pos + 8 > ip_end:
        return None
    field = (data[pos + 2] << 8) | data[pos + 3]
    header = bytearray(data[off : off + 40])
    header[6] = data[pos]  # the fragmentable part's first header
    return Fragment(
        b"6" + src + dst + data[pos + 4 : pos + 8],
        field & 0xFFF8,
        bool(field & 1),
        bytes(header),
        bytes(data[pos + 8 : ip_end]),
    )


def rebuild(header: bytes, payload_len: int) -> bytes:
    """The header of a reassembled datagram: its length set, fragmentation fields cleared."""
    h = bytearray(header)
    if h[0] >> 4 == 4:
        total = len(h) + payload_len
        h[2], h[3] = total >> 8, total & 0xFF
        h[6] = h[7] = 0
    else:
        h[4], h[5] = payload_len >> 8, payload_len & 0xFF
    return bytes(h)
