"""Find the TCP segment in a captured frame, through link layers and tunnels.

``locate_tcp(linktype, data)`` returns ``(src, dst, tcp_start, tcp_end)``: the packed addresses
of the innermost IP header that carries TCP, and the bounds of the TCP header plus payload in
``data`` (bounded by the IP length, so link-layer padding is excluded, and by the captured
bytes). It returns None for anything else: not TCP, an IP fragment, a header cut short, an
unknown link type. It never raises. ``locate_fragment(linktype, data)`` returns the fragment a
frame carries, for ``net.fragments`` to reassemble.

Link types: Ethernet (1) with any number of 802.1Q/802.1ad/QinQ tags and 802.2 SNAP, Linux
cooked SLL (113) and SLL2 (276), raw IP (101, 12, 14), raw IPv4 (228), raw IPv6 (229), BSD
loopback NULL (0, host byte order) and OpenBSD LOOP (108, network byte order).

Tunnels, peeled down to the inner IP/TCP, at most MAX_NESTING deep: PPPoE session, MPLS (to the
bottom of the stack, then IPv4, IPv6 or a pseudowire control word and Ethernet), IP-in-IP (4 and
41, in IPv4 or IPv6), GRE version 0 (IPv4, IPv6, transparent Ethernet bridging, MPLS, ERSPAN
types I, II and III), PPTP's enhanced GRE (version 1, PPP inside), VXLAN (UDP 4789 and 8472),
VXLAN-GPE (UDP 4790: IPv4, IPv6 or Ethernet inside) and Geneve (UDP 6081).

The decoding is a small loop over "what comes at this offset", named by an EtherType
(0x6558, transparent Ethernet bridging, stands for an Ethernet header).
"""

from __future__ import annotations

from tlsinspect.net.ip import (
    IPPROTO_FRAGMENT,
    IPPROTO_GRE,
    IPPROTO_IPIP,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HEADER,
    Fragment,
    ip_header_cut,
    ipv4,
    ipv4_fragment,
    ipv6,
    ipv6_fragment,
)

#: At most this many encapsulations (inner Ethernet, IP in IP, GRE, UDP tunnels, MPLS, PPPoE)
#: are peeled off before giving up. Real stacks rarely pass 4 or 5 (VXLAN over an MPLS VPN over
#: GRE); the bound keeps the work per frame small (a step costs a few hundred nanoseconds, and
#: only frames that are tunnelled take them). A frame nested deeper is counted apart
#: (`header_cut` returns TOO_DEEP), so that its connections are not lost without a word.
MAX_NESTING = 16

#: What `header_cut` returns for a frame whose tunnels nest deeper than MAX_NESTING.
TOO_DEEP = "tunnels nested too deep"

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_BRIDGED = 0x6558  # transparent Ethernet bridging: an Ethernet header follows
ETH_PPPOE_SESSION = 0x8864
ETH_MPLS = 0x8847
ETH_MPLS_MULTICAST = 0x8848
ETH_ERSPAN_2 = 0x88BE
ETH_ERSPAN_3 = 0x22EB
_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})

_PPP_IPV4 = 0x0021
_PPP_IPV6 = 0x0057

_VXLAN_PORTS = frozenset({4789, 8472})
_VXLAN_GPE_PORT = 4790
_GPE_NEXT = {1: ETH_IPV4, 2: ETH_IPV6, 3: ETH_BRIDGED}  # VXLAN-GPE next protocol -> EtherType
_GENEVE_PORT = 6081
_PPTP_PPP = 0x880B  # the protocol type of PPTP's enhanced GRE
_PPP_TO_ETHERTYPE = {_PPP_IPV4: ETH_IPV4, _PPP_IPV6: ETH_IPV6}

_LINK_RAW = frozenset({101, 12, 14})
_LINK_NULL = 0
_LINK_LOOP = 108
_AF_INET = 2
_AF_INET6 = frozenset({24, 28, 30})  # NetBSD/OpenBSD, FreeBSD, Darwin

_SNAP = b"\xaa\xaa\x03"


def locate_tcp(linktype: int, data: bytes) -> tuple[bytes, bytes, int, int] | None:
    """(src, dst, tcp_start, tcp_end) of the innermost TCP segment of a frame, or None."""
    n = len(data)
    if linktype == 1 and n >= 54 and data[12] == 8 and data[13] == 0:
        # The common case first: Ethernet, IPv4 without options, TCP.
        vihl, total, frag, proto, src, dst = IPV4_HEADER.unpack_from(data, 14)
        if vihl == 0x45 and proto == IPPROTO_TCP and not frag & 0x3FFF and total >= 40:
            end = 14 + total
            return src, dst, 34, end if end < n else n
    start = _network(linktype, data)
    if not isinstance(start, tuple):
        return None
    found = _walk(data, *start, n, False)
    return found if isinstance(found, tuple) else None


def locate_fragment(linktype: int, data: bytes) -> Fragment | None:
    """The IP fragment a frame carries, when its innermost IP packet is one (the outer layers,
    tunnels included, are left behind: the reassembled datagram is decoded as raw IP)."""
    start = _network(linktype, data)
    if not isinstance(start, tuple):
        return None
    found = _walk(data, *start, len(data), True)
    return found if isinstance(found, Fragment) else None


def header_cut(linktype: int, data: bytes) -> str | None:
    """The header a frame's bytes end inside of, when they end before its TCP header does
    (a snaplen shorter than the headers, a damaged frame): "IPv4 header", "TCP header", ...

    None when the frame is complete up to its TCP header, or is not TCP as far as it goes (a
    frame cut inside an IP header before its protocol field counts as cut). For the pipeline
    to tell, among the frames `locate_tcp` did not find TCP in, those it had to skip. TOO_DEEP
    (not a header's name) when the walk stopped at MAX_NESTING encapsulations: what is inside
    was not looked at.
    """
    start = _network(linktype, data)
    if isinstance(start, str):
        return start
    if start is None:
        return None
    found = _walk(data, *start, len(data), False)
    return found if isinstance(found, str) else None


def _network(linktype: int, data: bytes) -> tuple[int, int] | str | None:
    """(EtherType, offset) of what the link layer carries, the name of the link-layer header
    the frame ends inside of, or None (not a network layer this module reads)."""
    n = len(data)
    if linktype == 1:
        return (data[12] << 8 | data[13], 14) if n >= 14 else "Ethernet header"
    if linktype == 113:  # Linux cooked capture: 16-byte header, protocol last
        return (data[14] << 8 | data[15], 16) if n >= 16 else "Linux cooked header"
    if linktype == 276:  # Linux cooked capture v2: 20-byte header, protocol first
        return (data[0] << 8 | data[1], 20) if n >= 20 else "Linux cooked v2 header"
    if linktype in _LINK_RAW:
        if not n:
            return "IP header"
        version = data[0] >> 4
        if version == 4:
            return ETH_IPV4, 0
        if version == 6:
            return ETH_IPV6, 0
        return None
    if linktype == 228:
        return ETH_IPV4, 0
    if linktype == 229:
        return ETH_IPV6, 0
    if linktype == _LINK_NULL or linktype == _LINK_LOOP:
        if n < 4:
            return "loopback header"
        family = data[0] << 24 | data[1] << 16 | data[2] << 8 | data[3]
        if linktype == _LINK_NULL and family > 0xFFFF:
            family = data[3] << 24 | data[2] << 16 | data[1] << 8 | data[0]  # little-endian host
        if family == _AF_INET:
            return ETH_IPV4, 4
        if family in _AF_INET6:
            return ETH_IPV6, 4
        return None
    return None


# What one step of the walk gives: (EtherType next, its offset, the end of the datagram, whether
# that step nests a new header stack, counted against MAX_NESTING), or a header's name when it is
# cut short (see `header_cut`), or None when the protocol is not one that leads to TCP.
_Step = tuple[int, int, int, bool] | str | None


def _walk(
    data: bytes, et: int, off: int, end: int, fragments: bool
) -> tuple[bytes, bytes, int, int] | Fragment | str | None:
    """Decode from ``off``, where a protocol named by the EtherType ``et`` starts. With
    `fragments`, an IP fragment met on the way is returned (else it ends the walk: None).
    A header that runs past ``end`` returns its name (see `header_cut`), more than MAX_NESTING
    encapsulations TOO_DEEP."""
    nesting = 0
    while nesting <= MAX_NESTING:
        ip_at = off
        if et == ETH_IPV4:
            ip = ipv4(data, off, end)
        elif et == ETH_IPV6:
            ip = ipv6(data, off, end)
        else:
            step = _link_step(data, et, off, end)
            if step is None or isinstance(step, str):
                return step
            et, off, end, nested = step
            nesting += nested
            continue
        if ip is None:  # an IPv4 fragment, or a header cut short
            if fragments and et == ETH_IPV4:
                return ipv4_fragment(data, ip_at, end)
            return ip_header_cut(data, ip_at, end)
        proto, off, end, src, dst = ip
        if proto == IPPROTO_FRAGMENT:  # IPv6: the fragment header ends the extension headers
            return ipv6_fragment(data, ip_at, end) if fragments else None
        if proto == IPPROTO_TCP:
            if end - off < 20:
                return "TCP header"
            return src, dst, off, end
        nesting += 1
        if proto == IPPROTO_IPIP:
            et = ETH_IPV4
        elif proto == IPPROTO_IPV6:
            et = ETH_IPV6
        else:
            step = _gre(data, off, end) if proto == IPPROTO_GRE else None
            if proto == IPPROTO_UDP:
                step = _udp(data, off, end)
            if step is None or isinstance(step, str):
                return step
            et, off, end, nested = step
            nesting += nested
    return TOO_DEEP


def _link_step(data: bytes, et: int, off: int, end: int) -> _Step:
    """One header below IP: a VLAN tag, bridged Ethernet, PPPoE, MPLS, ERSPAN, 802.2 SNAP."""
    if et in _VLAN_TAGS:
        if off + 4 > end:
            return "802.1Q tag"
        return data[off + 2] << 8 | data[off + 3], off + 4, end, False
    if et == ETH_BRIDGED:
        if off + 14 > end:
            return "Ethernet header"
        return data[off + 12] << 8 | data[off + 13], off + 14, end, True
    if et == ETH_PPPOE_SESSION:
        # version/type, code, session id, length, then the PPP protocol
        if off + 8 > end:
            return "PPPoE header"
        length = data[off + 4] << 8 | data[off + 5]
        if off + 6 + length < end:
            end = off + 6 + length
        ppp = data[off + 6] << 8 | data[off + 7]
        if ppp == _PPP_IPV4:
            return ETH_IPV4, off + 8, end, True
        if ppp == _PPP_IPV6:
            return ETH_IPV6, off + 8, end, True
        return None
    if et == ETH_MPLS or et == ETH_MPLS_MULTICAST:
        return _mpls(data, off, end)
    if et == ETH_ERSPAN_2:
        return ETH_BRIDGED, off + 8, end, False
    if et == ETH_ERSPAN_3:
        if off + 12 > end:
            return "ERSPAN header"
        off += 20 if data[off + 11] & 1 else 12  # O flag: platform specific subheader
        return ETH_BRIDGED, off, end, False
    if et <= 1500:
        # 802.3 length field: only an 802.2 SNAP header leads on to an EtherType
        if off + 8 > end:
            return "802.2 header"
        if data[off : off + 3] != _SNAP:
            return None
        return data[off + 6] << 8 | data[off + 7], off + 8, end, False
    return None


def _mpls(data: bytes, off: int, end: int) -> _Step:
    while True:  # pop labels down to the bottom of the stack
        if off + 4 > end:
            return "MPLS label stack"
        bottom = data[off + 2] & 1
        off += 4
        if bottom:
            break
    if off >= end:
        return "MPLS label stack"
    first = data[off] >> 4
    if first == 4:
        return ETH_IPV4, off, end, True
    if first == 6:
        return ETH_IPV6, off, end, True
    if first == 0:  # pseudowire control word, then Ethernet
        return ETH_BRIDGED, off + 4, end, True
    return None


def _gre(data: bytes, off: int, end: int) -> _Step:
    if off + 4 > end:
        return "GRE header"
    flags, version = data[off], data[off + 1]
    et = data[off + 2] << 8 | data[off + 3]
    if version & 0x07 == 1 and et == _PPTP_PPP and flags & 0x20:
        # enhanced GRE of PPTP (RFC 2637): key (payload length, call id), then a
        # sequence number (S) and an acknowledgment number (A), then PPP
        off += 8 + (4 if flags & 0x10 else 0) + (4 if version & 0x80 else 0)
        if off + 2 <= end and data[off] == 0xFF and data[off + 1] == 0x03:
            off += 2  # PPP address and control, when not compressed
        elif off + 1 == end and data[off] == 0xFF:
            return "PPP header"  # cut between the address and the control field
        if off + 1 > end:
            return "GRE header"
        ppp = data[off]
        if not ppp & 1:  # a two-byte protocol (else compressed to one)
            if off + 2 > end:
                return "GRE header"
            ppp = ppp << 8 | data[off + 1]
            off += 1
        off += 1
        et = _PPP_TO_ETHERTYPE.get(ppp, 0)
        return (et, off, end, True) if et else None
    if version & 0x07 or flags & 0x40:  # else only version 0, no source routing
        return None
    off += 4 + ((flags >> 7) + (flags >> 5 & 1) + (flags >> 4 & 1)) * 4
    if et == ETH_ERSPAN_2 and not flags & 0x10:
        et = ETH_BRIDGED  # ERSPAN type I: no sequence number, no ERSPAN header
    return et, off, end, False


def _udp(data: bytes, off: int, end: int) -> _Step:
    """UDP to the tunnels it carries: VXLAN, VXLAN-GPE, Geneve."""
    if off + 8 > end:
        return "UDP header"
    port = data[off + 2] << 8 | data[off + 3]
    length = data[off + 4] << 8 | data[off + 5]
    if 8 <= length and off + length < end:
        end = off + length
    if port in _VXLAN_PORTS:
        return ETH_BRIDGED, off + 16, end, False  # UDP header, VXLAN header
    if port == _VXLAN_GPE_PORT:
        if off + 16 > end:
            return "VXLAN-GPE header"
        et = _GPE_NEXT.get(data[off + 11], 0)  # the next protocol field
        return (et, off + 16, end, False) if et else None
    if port == _GENEVE_PORT:
        if off + 16 > end:
            return "Geneve header"
        et = data[off + 10] << 8 | data[off + 11]
        return et, off + 16 + ((data[off + 8] & 0x3F) << 2), end, False
    return None
