"""locate_tcp over every link type and tunnel, against frames built with scapy and tshark."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH, ESP
from scapy.layers.l2 import (
    ARP,
    GRE,
    LLC,
    SNAP,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Dot3,
    Ether,
    Loopback,
)
from scapy.layers.ppp import GRE_PPTP, HDLC, PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from tlsinspect.capture import open_capture
from tlsinspect.net.ip import format_addr
from tlsinspect.net.link import MAX_NESTING, TOO_DEEP, header_cut, locate_fragment, locate_tcp

CAPTURES = (Path(__file__).parents[2] / ".." / "shared" / "captures").resolve()

LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276]


MAC_A = "02:00:00:00:00:01"
MAC_B = "02:00:00:00:00:02"


def eth(**kw) -> Ether:
    """Ethernet with both addresses given, so scapy never looks a MAC address up."""
    return Ether(src=MAC_A, dst=MAC_B, **kw)


def seg(payload: bytes = b"hello TLS") -> TCP:
    """The innermost TCP segment of a case, with a fixed checksum so it builds alone."""
    return TCP(sport=40000, dport=443, flags="PA", seq=1, chksum=0xBEEF) / Raw(payload)


def ip4(src="10.1.1.1", dst="10.2.2.2", **kw) -> IP:
    return IP(src=src, dst=dst, **kw)


def ip6(src="2001:db8::1", dst="2001:db8::2", **kw) -> IPv6:
    return IPv6(src=src, dst=dst, **kw)


def outer4() -> IP:
    return IP(src="192.0.2.1", dst="192.0.2.2")


def outer6() -> IPv6:
    return IPv6(src="fd00::1", dst="fd00::2")


def innermost_tcp(pkt):
    """The last TCP layer of a built packet, and the IP header right under it."""
    layer, tcp = pkt, None
    while layer:
        if type(layer) is TCP:
            tcp = layer
        layer = layer.payload
    ip = tcp.underlayer
    while not isinstance(ip, (IP, IPv6)):
        ip = ip.underlayer
    return tcp, ip


def packed(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


def null_header(family: int, order: str) -> bytes:
    return struct.pack(order + "I", family)


# (id, linktype, scapy packet, bytes before it) — the frame is prefix + bytes(packet)
CASES = [
    ("ether-ipv4", 1, eth() / ip4() / seg(), b""),
    ("ether-ipv4-options", 1, eth() / ip4(options=b"\x01\x01\x01\x00") / seg(), b""),
    ("ether-ipv4-no-payload", 1, eth() / ip4() / TCP(chksum=1), b""),
    ("ether-ipv6", 1, eth() / ip6() / seg(), b""),
    ("dot1q", 1, eth() / Dot1Q(vlan=5) / ip4() / seg(), b""),
    ("qinq-88a8", 1, eth() / Dot1AD(vlan=7) / Dot1Q(vlan=5) / ip6() / seg(), b""),
    ("qinq-9100", 1, eth(type=0x9100) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / ip4() / seg(), b""),
    ("many-tags", 1, eth() / Dot1Q() / Dot1Q() / Dot1Q() / Dot1Q() / ip4() / seg(), b""),
    (
        "dot3-snap",
        1,
        Dot3(dst=MAC_B, src=MAC_A)
        / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
        / SNAP(code=0x0800)
        / ip4()
        / seg(),
        b"",
    ),
    ("sll", 113, CookedLinux(proto=0x0800) / ip4() / seg(), b""),
    ("sll-vlan", 113, CookedLinux(proto=0x8100) / Dot1Q() / ip6() / seg(), b""),
    ("sll2", 276, CookedLinuxV2(proto=0x86DD) / ip6() / seg(), b""),
    ("raw-101-v4", 101, ip4() / seg(), b""),
    ("raw-101-v6", 101, ip6() / seg(), b""),
    ("raw-12", 12, ip4() / seg(), b""),
    ("raw-14", 14, ip6() / seg(), b""),
    ("raw-ipv4-228", 228, ip4() / seg(), b""),
    ("raw-ipv6-229", 229, ip6() / seg(), b""),
    ("null-scapy", 0, Loopback() / ip4() / seg(), b""),
    ("null-le-v4", 0, ip4() / seg(), null_header(2, "<")),
    ("null-be-v4", 0, ip4() / seg(), null_header(2, ">")),
    ("null-le-v6-24", 0, ip6() / seg(), null_header(24, "<")),
    ("null-le-v6-28", 0, ip6() / seg(), null_header(28, "<")),
    ("null-be-v6-30", 0, ip6() / seg(), null_header(30, ">")),
    ("loop-v4", 108, ip4() / seg(), null_header(2, ">")),
    ("loop-v6", 108, ip6() / seg(), null_header(24, ">")),
    ("pppoe-v4", 1, eth() / PPPoE(sessionid=9) / PPP(proto=0x0021) / ip4() / seg(), b""),
    ("pppoe-v6", 1, eth() / PPPoE(sessionid=9) / PPP(proto=0x0057) / ip6() / seg(), b""),
    ("mpls-v4", 1, eth() / MPLS(label=16, s=0) / MPLS(label=17, s=1) / ip4() / seg(), b""),
    ("mpls-v6", 1, eth() / MPLS(label=16, s=1) / ip6() / seg(), b""),
    ("mpls-multicast", 1, eth(type=0x8848) / MPLS(label=16, s=1) / ip4() / seg(), b""),
    (
        "mpls-pseudowire",
        1,
        eth() / MPLS(label=16, s=1) / Raw(b"\x00\x00\x00\x00") / eth() / ip4() / seg(),
        b"",
    ),
    ("ipip", 1, eth() / outer4() / ip4() / seg(), b""),
    ("6in4", 1, eth() / outer4() / ip6() / seg(), b""),
    ("4in6", 1, eth() / outer6() / ip4() / seg(), b""),
    ("6in6", 101, outer6() / ip6() / seg(), b""),
    ("gre-v4", 1, eth() / outer4() / GRE() / ip4() / seg(), b""),
    ("gre-v6", 1, eth() / outer4() / GRE() / ip6() / seg(), b""),
    ("gre-over-v6", 1, eth() / outer6() / GRE() / ip4() / seg(), b""),
    (
        "gre-all-fields",
        1,
        eth()
        / outer4()
        / GRE(chksum_present=1, key_present=1, seqnum_present=1, key=5, sequence_number=9)
        / ip4()
        / seg(),
        b"",
    ),
    ("gre-bridged", 1, eth() / outer4() / GRE(proto=0x6558) / eth() / ip4() / seg(), b""),
    ("gre-mpls", 1, eth() / outer4() / GRE(proto=0x8847) / MPLS(s=1) / ip4() / seg(), b""),
    (
        "erspan-1",
        1,
        eth() / outer4() / GRE(proto=0x88BE, seqnum_present=0) / eth() / ip4() / seg(),
        b"",
    ),
    ("erspan-2", 1, eth() / outer4() / GRE() / ERSPAN_II() / eth() / ip4() / seg(), b""),
    ("erspan-3", 1, eth() / outer4() / GRE() / ERSPAN_III() / eth() / ip6() / seg(), b""),
    (
        "erspan-3-platform",
        1,
        eth()
        / outer4()
        / GRE()
        / ERSPAN_III(o=1)
        / ERSPAN_PlatformSpecific()
        / eth()
        / ip4()
        / seg(),
        b"",
    ),
    (
        "vxlan",
        1,
        eth() / outer4() / UDP(dport=4789) / VXLAN(vni=3) / eth() / ip4() / seg(),
        b"",
    ),
    (
        "vxlan-gpe-v4",
        1,
        eth() / outer4() / UDP(dport=4790) / VXLAN(flags=0x0C, NextProtocol=1) / ip4() / seg(),
        b"",
    ),
    (
        "vxlan-gpe-v6",
        1,
        eth() / outer6() / UDP(dport=4790) / VXLAN(flags=0x0C, NextProtocol=2) / ip6() / seg(),
        b"",
    ),
    (
        "vxlan-gpe-ethernet",
        1,
        eth()
        / outer4()
        / UDP(dport=4790)
        / VXLAN(flags=0x0C, NextProtocol=3)
        / eth()
        / ip4()
        / seg(),
        b"",
    ),
    (
        "pptp-gre",
        1,
        eth() / outer4() / GRE_PPTP(call_id=7) / HDLC() / PPP(proto=0x0021) / ip4() / seg(),
        b"",
    ),
    (
        "pptp-gre-seq-ack-v6",
        1,
        eth()
        / outer4()
        / GRE_PPTP(seqnum_present=1, acknum_present=1, sequence_number=3, ack_number=2)
        / PPP(proto=0x0057)
        / ip6()
        / seg(),
        b"",
    ),
    (
        "pptp-gre-compressed-protocol",
        1,
        eth() / outer4() / GRE_PPTP(seqnum_present=1) / Raw(b"\x21") / ip4() / seg(),
        b"",
    ),
    (
        "vxlan-8472-vlan-v6",
        1,
        eth() / outer6() / UDP(dport=8472) / VXLAN(vni=3) / eth() / Dot1Q() / ip6() / seg(),
        b"",
    ),
    (
        "geneve-ether",
        1,
        eth()
        / outer4()
        / UDP(dport=6081)
        / GENEVE(proto=0x6558, optionlen=2, options=b"\x01\x02\x03\x04\x05\x06\x07\x08")
        / eth()
        / ip4()
        / seg(),
        b"",
    ),
    (
        "geneve-ipv4",
        1,
        eth() / outer4() / UDP(dport=6081) / GENEVE(proto=0x0800) / ip4() / seg(),
        b"",
    ),
    (
        "geneve-ipv6",
        1,
        eth() / outer6() / UDP(dport=6081) / GENEVE(proto=0x86DD) / ip6() / seg(),
        b"",
    ),
    (
        "ipv6-extensions",
        1,
        eth()
        / ip6()
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
        / IPv6ExtHdrDestOpt()
        / seg(),
        b"",
    ),
    ("ipv6-ah", 1, eth() / ip6() / AH(nh=6, payloadlen=4, spi=1, icv=b"\x00" * 12) / seg(), b""),
    ("ipv6-mobility", 101, ip6(nh=135) / Raw(b"\x06\x00" + b"\x00" * 6) / seg(), b""),
    ("ipv6-hip", 101, ip6(nh=139) / Raw(b"\x06\x01" + b"\x00" * 14) / seg(), b""),
    ("ipv6-shim6", 101, ip6(nh=140) / Raw(b"\x06\x00" + b"\x00" * 6) / seg(), b""),
    (
        "deep-mix",
        1,
        eth()
        / Dot1Q()
        / MPLS(s=1)
        / outer4()
        / GRE(proto=0x6558)
        / eth()
        / outer6()
        / UDP(dport=4789)
        / VXLAN()
        / eth()
        / PPPoE()
        / PPP(proto=0x0021)
        / ip4(src="10.9.9.9")
        / seg(),
        b"",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_finds_the_innermost_tcp(case):
    _name, linktype, pkt, prefix = case
    data = prefix + bytes(pkt)
    tcp, ip = innermost_tcp(pkt)
    found = locate_tcp(linktype, data)
    assert found is not None
    src, dst, start, end = found
    assert (src, dst) == (packed(ip.src), packed(ip.dst))
    assert data[start:end] == bytes(tcp)
    assert end == len(data)  # nothing follows the segment in these frames


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_padding_after_the_frame_is_excluded(case):
    _name, linktype, pkt, prefix = case
    data = prefix + bytes(pkt)
    _src, _dst, start, end = locate_tcp(linktype, data)
    assert locate_tcp(linktype, data + b"\x00" * 18)[2:] == (start, end)


def test_ethernet_padding_of_a_short_frame():
    data = bytes(eth() / ip4() / TCP(chksum=1)) + b"\x00" * 6  # padded to 60 bytes
    assert len(data) == 60
    assert locate_tcp(1, data)[2:] == (34, 54)


def test_padding_inside_a_tunnel_is_excluded():
    inner = bytes(eth() / ip4() / TCP(chksum=1)) + b"\xaa" * 6
    data = bytes(eth() / outer4() / UDP(dport=4789) / VXLAN() / Raw(inner))
    _src, _dst, start, end = locate_tcp(1, data)
    assert end - start == 20 and data[end : end + 6] == b"\xaa" * 6


def test_cut_by_the_snaplen():
    data = bytes(eth() / ip4() / seg(b"x" * 500))[:100]
    assert locate_tcp(1, data) == (packed("10.1.1.1"), packed("10.2.2.2"), 34, 100)


def test_cut_in_the_tcp_header():
    data = bytes(eth() / ip4() / seg())[: 14 + 20 + 10]
    assert locate_tcp(1, data) is None


def test_ipv4_total_length_zero_uses_the_capture():
    data = bytes(eth() / ip4(len=0) / seg(b"y" * 100))
    assert locate_tcp(1, data)[2:] == (34, len(data))


@pytest.mark.parametrize(
    "linktype, pkt",
    [
        (1, eth() / ip4() / UDP(dport=53) / Raw(b"dns")),
        (1, eth() / ip4() / ICMP()),
        (1, eth() / ARP()),
        (1, eth() / ip4(flags="MF") / seg()),
        (1, eth() / ip4(frag=10) / seg()),
        (1, eth() / ip6() / IPv6ExtHdrFragment(nh=6) / seg()),
        (1, eth() / ip6(nh=59)),
        (1, eth() / ip4() / ESP(spi=1, data=b"\x00" * 40)),
        (1, eth() / outer4() / UDP(dport=4789) / VXLAN() / eth() / ip4() / UDP()),
        (1, eth() / outer4() / UDP(dport=4789) / VXLAN() / eth() / ip4(frag=3) / seg()),
        (1, eth() / outer4() / GRE(version=1) / ip4() / seg()),
        (1, eth() / outer4() / GRE_PPTP() / PPP(proto=0xC021) / Raw(b"lcp")),
        (1, eth() / outer4() / UDP(dport=4790) / VXLAN(flags=0x0C, NextProtocol=4) / seg()),
        (1, eth(type=0x1234) / ip4() / seg()),
        (113, CookedLinux(proto=0x0806) / ARP()),
        (101, Raw(b"\x50" + b"\x00" * 60)),
        (147, eth() / ip4() / seg()),  # a user DLT: unknown
        (105, eth() / ip4() / seg()),  # 802.11: not decoded
    ],
    ids=lambda v: v if isinstance(v, int) else v.summary(),
)
def test_not_tcp(linktype, pkt):
    assert locate_tcp(linktype, bytes(pkt)) is None


def test_unknown_null_family():
    assert locate_tcp(0, null_header(7, "<") + bytes(ip4() / seg())) is None


@pytest.mark.parametrize("linktype", LINKTYPES)
def test_short_frames(linktype):
    data = bytes(eth() / ip4() / seg())
    for n in range(40):
        assert locate_tcp(linktype, data[:n]) is None
    assert locate_tcp(linktype, b"") is None


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_cut_inside_the_headers_is_named(case):
    """A frame cut at any length before its TCP header is whole: no TCP, and the header it
    ends in named (what the pipeline reports as skipped); whole, nothing is cut."""
    _name, linktype, pkt, prefix = case
    data = prefix + bytes(pkt)
    start = locate_tcp(linktype, data)[2]
    assert header_cut(linktype, data) is None
    for n in range(start + 20):
        cut = data[:n]
        assert locate_tcp(linktype, cut) is None
        assert locate_fragment(linktype, cut) is None
        where = header_cut(linktype, cut)
        assert isinstance(where, str) and where.endswith(("header", "tag", "stack")), (n, where)
    assert header_cut(linktype, data[: start + 20]) is None


def test_cut_names_the_header():
    v4 = bytes(eth() / ip4() / seg())
    assert [header_cut(1, v4[:n]) for n in (0, 13, 14, 33, 34, 53)] == [
        "Ethernet header",
        "Ethernet header",
        "IP header",
        "IPv4 header",
        "TCP header",
        "TCP header",
    ]
    hop = bytes(ip6(nh=0) / IPv6ExtHdrHopByHop(nh=6, options=[]) / seg())
    assert header_cut(229, hop[:39]) == "IPv6 header"
    assert header_cut(229, hop[:45]) == "IPv6 extension header"
    assert header_cut(229, hop[:50]) == "TCP header"


def test_not_tcp_is_not_a_cut():
    assert header_cut(1, bytes(eth() / ip4() / UDP(dport=53) / Raw(b"q"))) is None
    assert header_cut(1, bytes(eth() / ARP())) is None
    assert header_cut(105, b"\x00" * 3) is None  # a link type not read at all


def ip_in_ip(depth: int):
    pkt = ip4(src="10.0.0.1")
    for i in range(depth - 1):
        pkt = pkt / ip4(src=f"10.0.0.{i + 2}")
    return pkt / seg()


def test_nesting_is_limited():
    ok = ip_in_ip(MAX_NESTING + 1)  # MAX_NESTING encapsulations around the innermost IP
    assert locate_tcp(101, bytes(ok))[0] == packed(f"10.0.0.{MAX_NESTING + 1}")
    assert locate_tcp(101, bytes(ip_in_ip(MAX_NESTING + 2))) is None
    # a frame nested deeper is told apart from frames cut short and from frames not TCP
    assert header_cut(101, bytes(ip_in_ip(MAX_NESTING + 2))) == TOO_DEEP
    assert header_cut(101, bytes(ok)) is None
    assert MAX_NESTING == 16
    assert locate_tcp(101, bytes(ip_in_ip(40))) is None


@settings(max_examples=300, deadline=None)
@given(linktype=st.sampled_from(LINKTYPES + [2, 105, 127]), data=st.binary(max_size=200))
def test_random_bytes_never_raise(linktype, data):
    check_result(locate_tcp(linktype, data), data)


FRAMES = [(linktype, prefix + bytes(pkt)) for _name, linktype, pkt, prefix in CASES]


@settings(max_examples=500, deadline=None)
@given(
    frame=st.sampled_from(FRAMES),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 400),
)
def test_damaged_frames_never_raise(frame, edits, cut):
    linktype, data = frame
    data = bytearray(data)
    for at, value in edits:
        if at < len(data):
            data[at] = value
    data = bytes(data[: len(data) - cut if cut < len(data) else len(data)])
    check_result(locate_tcp(linktype, data), data)


def check_result(found, data):
    if found is None:
        return
    src, dst, start, end = found
    assert len(src) in (4, 16) and len(dst) == len(src)
    assert 0 <= start <= end <= len(data)
    assert end - start >= 20


def test_format_addr():
    assert format_addr(packed("192.0.2.33")) == "192.0.2.33"
    assert format_addr(packed("2001:db8:0:0:1:0:0:1")) == "2001:db8::1:0:0:1"
    assert format_addr(packed("2001:db8:0:1:1:1:1:1")) == "2001:db8:0:1:1:1:1:1"
    assert format_addr(packed("FE80::0")) == "fe80::"
    assert format_addr(packed("::ffff:192.0.2.1")) == "::ffff:192.0.2.1"
    assert format_addr(bytes(16)) == "::"
    with pytest.raises(ValueError):
        format_addr(b"\x01\x02\x03")


# Real captures: wherever tshark sees TCP, locate_tcp finds the same segment.


def tshark_tcp(path: Path):
    fields = [
        "frame.protocols",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.len",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
    ]
    args = ["tshark", "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("\t"), strict=True)) for line in out.splitlines()]


def last(value: str) -> str:
    return value.split(",")[-1]


REAL = sorted(p for p in CAPTURES.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))


@pytest.mark.shared
def test_vxlan_capture_is_there():
    assert (CAPTURES / "ndpi__vxlan.pcap").is_file()


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_capture_matches_tshark(path):
    rows = tshark_tcp(path)
    with open_capture(path) as src:
        records = list(src)
    assert len(records) == len(rows)
    tcp_frames = 0
    for number, ((_ts, linktype, data, _orig, _if), row) in enumerate(
        zip(records, rows, strict=True), 1
    ):
        found = locate_tcp(linktype, data)
        protocols = row["frame.protocols"].split(":")
        if not row["tcp.srcport"] or "icmp" in protocols or "icmpv6" in protocols:
            assert found is None, f"frame {number}: TCP found where tshark sees none"
            continue
        tcp_frames += 1
        assert found is not None, f"frame {number}: tshark sees TCP ({row['frame.protocols']})"
        src, dst, start, end = found
        sport, dport = struct.unpack_from("!HH", data, start)
        assert (sport, dport) == (int(last(row["tcp.srcport"])), int(last(row["tcp.dstport"])))
        header_len = (data[start + 12] >> 4) * 4
        assert end - start - header_len == int(last(row["tcp.len"]))
        inner_ip = [p for p in protocols if p in ("ip", "ipv6")][-1]
        want_src = last(row["ip.src" if inner_ip == "ip" else "ipv6.src"])
        want_dst = last(row["ip.dst" if inner_ip == "ip" else "ipv6.dst"])
        assert (format_addr(src), format_addr(dst)) == (want_src, want_dst)
    assert tcp_frames > 0
