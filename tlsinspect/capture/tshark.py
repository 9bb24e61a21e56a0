"""Read what tshark dissects in a capture, through pyshark: the I/O edge of the tshark engine.

The only module that imports pyshark (lazily, so `import tlsinspect` never pays for it). It runs
tshark with TCP reassembly of out-of-order segments, `-d tcp.port==N,tls` for TLS on ports tshark
would not try, the key log given, and JSON output with raw bytes (`-x`), and turns every TCP
packet into a `TsharkPacket`: addresses, ports, flags, and the TLS records tshark dissected in
it, each handshake message as a flat map of tshark field names to their values in order.

What this module must not do: decide anything about TLS. It does not build messages, sessions or
verdicts (that is `tlsinspect.engines.tshark`, above the layers that own those); it only
reads tshark's output into plain values, so the two engines share every decision.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# LiveCaptureError: importable from here as before capture/tshark_live.py took the live part
from ..errors import INSTALL_HINT, LiveCaptureError, TsharkError, TsharkMissing, require

__all__ = [
    "INSTALL_HINT",
    "LiveCaptureError",
    "TsharkError",
    "TsharkMissing",
    "TsharkPacket",
    "TsharkRecord",
    "find_tshark",
    "read_packets",
    "tls_server_ports",
]

#: Preferences every run uses: reassemble out-of-order segments, as tlsinspect does.
PREFS = {"tcp.reassemble_out_of_order": "TRUE"}

# Subtrees tshark adds under a certificate or a distinguished name (its X.509 dissection):
# nothing the engine reads, and most of the JSON, so they are not walked.
_SKIP_PREFIXES = ("x509", "pkix", "per.", "ber.", "pkcs1", "cms.", "dsa.", "pkcs")
_SKIP_KEYS = frozenset({"tls.handshake.certificate_tree"})

Fields = dict[str, list[str]]

PREAMBLE_BYTES = 256  # bytes kept of a payload before TLS (as tls.records keeps of a preamble)


@dataclass(frozen=True, slots=True)
class TsharkRecord:
    """One TLS record as tshark dissected it.

    content_type  the type on the wire (for TLS 1.3, the opaque type: 23)
    inner_type    the real content type of a record tshark decrypted (None when it did not)
    length        the record length on the wire
    messages      the handshake messages it holds, each as field name -> values (raw bytes of a
                  field under "<name>_raw", in hex), and under "extensions" the list of
                  "type:hex data" of each hello extension, in order
    encrypted     tshark could not read the content ("Encrypted Handshake Message", an
                  encrypted alert, application data)
    alert         (level, description) of a readable alert
    sslv2         an SSLv2-compatible ClientHello
    """

    content_type: int
    length: int
    inner_type: int | None = None
    messages: tuple[Fields, ...] = ()
    encrypted: bool = False
    alert: tuple[int, int] | None = None
    sslv2: bool = False

    @property
    def decrypted(self) -> bool:
        return self.inner_type is not None


@dataclass(frozen=True, slots=True)
class TsharkPacket:
    """One TCP packet: tshark's stream number, endpoints, flags and TLS records."""

    number: int
    ts: int  # nanoseconds since the epoch
    stream: int  # tcp.stream: tshark's connection number (a reused 4-tuple gets a new one)
    src: str
    dst: str
    sport: int
    dport: int
    flags: int  # TCP flags, FIN 0x01 SYN 0x02 RST 0x04 ACK 0x10
    payload_len: int
    lost_before: bool = False  # tshark: "previous segment not captured"
    filled: bool = False  # a retransmission or out-of-order segment (may fill a hole)
    protocols: str = ""  # frame.protocols, e.g. "eth:ethertype:ip:tcp:pop:tls"
    payload: bytes = b""  # the first bytes of a payload that holds no TLS record (a preamble)
    records: tuple[TsharkRecord, ...] = field(default_factory=tuple)


def find_tshark() -> str:
    """The path of the tshark executable on PATH.

    Raises:
        TsharkMissing: there is none.
    """
    path = shutil.which("tshark")
    if path is None:
        raise TsharkMissing()
    return path


def _file_capture(path: str, **kwargs: Any) -> Any:
    # the only place pyshark is imported: tshark engine only
    pyshark = require("pyshark", "the tshark engine (--engine tshark, tlsinspect compare)")
    return pyshark.FileCapture(path, keep_packets=False, use_json=True, **kwargs)


def tls_server_ports(path: str | os.PathLike[str], tshark: str | None = None) -> list[int]:
    """Ports where a ClientHello travels that tshark did not dissect as TLS (TLS on a port it
    gives to another protocol, or to none): the server ports to decode as TLS.

    A TCP payload that starts with a handshake record header whose message is a ClientHello
    (type 1), or an SSLv2-compatible ClientHello, and that tshark shows without a TLS layer.
    """
    tshark = tshark or find_tshark()
    hello = (
        "tcp.len >= 6 && !tls && ("
        "(tcp.payload[0] == 0x16 && tcp.payload[1] == 0x03 && tcp.payload[5] == 0x01)"
        " || (tcp.payload[0] >= 0x80 && tcp.payload[2] == 0x01 && tcp.payload[3] <= 0x03))"
    )
    cap = _file_capture(
        os.fspath(path), display_filter=hello, tshark_path=tshark, override_prefs=dict(PREFS)
    )
    ports: set[int] = set()
    failure: BaseException | None = None
    try:
        for pkt in cap:
            tcp = _layer_dicts(pkt, "tcp")
            if tcp:
                ports.add(int(tcp[-1].get("tcp.dstport", 0)))
    except Exception as exc:  # pyshark raises its own types for tshark's failures
        failure = exc
    finally:
        failure = _close(cap) or failure
    if failure is not None and _cut_short(failure) is None:
        raise TsharkError(_tshark_failure(failure))
    ports.discard(0)
    return sorted(ports)


def read_packets(
    path: str | os.PathLike[str],
    *,
    keylog: str | None = None,
    decode_as: Iterable[int] = (),
    tshark: str | None = None,
    problems: list[str] | None = None,
) -> Iterator[TsharkPacket]:
    """Every TCP packet of a capture as tshark dissects it, in capture order.

    `keylog`: one NSS key log file for tshark's TLS decryption (secrets embedded in a pcapng file
    are used by tshark in any case). `decode_as`: TCP ports to dissect as TLS. A capture file
    that ends inside a record is read up to there, and `problems` (when given) gets a sentence
    saying so, as the built-in reader's `problems` does.

    Raises:
        TsharkMissing: no tshark.
        TsharkError: tshark failed on the file.
    """
    tshark = tshark or find_tshark()
    prefs = dict(PREFS)
    if keylog:
        prefs["tls.keylog_file"] = os.path.abspath(keylog)
    cap = _file_capture(
        os.fspath(path),
        display_filter="tcp",
        include_raw=True,
        tshark_path=tshark,
        override_prefs=prefs,
        decode_as={f"tcp.port=={p}": "tls" for p in decode_as} or None,
    )
    yield from _convert(cap, problems)


def _convert(cap: Any, problems: list[str] | None = None) -> Iterator[TsharkPacket]:
    failure: BaseException | None = None
    try:
        for pkt in cap:
            converted = _packet(pkt)
            if converted is not None:
                yield converted
    except GeneratorExit:
        _close(cap)
        raise
    except Exception as exc:  # pyshark's TSharkCrashException and friends
        failure = exc
    failure = _close(cap) or failure
    if failure is None:
        return
    cut = _cut_short(failure)
    if cut is None:
        raise TsharkError(_tshark_failure(failure))
    if problems is not None:
        problems.append(f"capture truncated: {cut}; the packets before the cut were analysed")


def _close(cap: Any) -> BaseException | None:
    """Close a pyshark capture; what tshark's failure raised, if it failed.

    pyshark raises a tshark exit code other than 0 from close() (and again from __del__, as long
    as it still lists the process): it is caught here, and the process forgotten."""
    try:
        cap.close()
    except Exception as exc:
        return exc
    finally:
        procs = getattr(cap, "_running_processes", None)
        if isinstance(procs, set):
            procs.clear()
    return None


#: What tshark says (exit code 2) of a capture file that ends inside a packet record, after
#: dissecting the records before it: the end of the capture, not a failure.
_CUT_SHORT = "cut short in the middle of a packet"


def _cut_short(exc: BaseException) -> str | None:
    """tshark's own words when `exc` is its failure on a capture cut inside a record."""
    for line in str(exc).splitlines():
        if _CUT_SHORT in line:
            text = line.split("tshark:", 1)[-1].strip()
            return "tshark: " + text.rstrip(".")
    return None


def _tshark_failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    lines = [t for t in text if t.startswith("Last error line:")]  # tshark's own message
    if lines:
        return "tshark failed: " + lines[-1].split(":", 1)[1].strip()
    return f"tshark failed: {text[-1] if text else type(exc).__name__}"


# -- one packet ------------------------------------------------------------------------------


def _layer_dicts(pkt: Any, name: str) -> list[Any]:
    """The JSON values of every layer `name` of a pyshark packet (tunnels repeat ip, tcp...)."""
    out: list[Any] = []
    for layer in pkt.layers:
        if layer.layer_name != name:
            continue
        for one in [layer, *layer.duplicate_layers]:
            out.append(one._all_fields if one._all_fields else getattr(one, "value", ""))
    return out


def _ns(epoch: str) -> int:
    whole, _, frac = epoch.partition(".")
    return int(whole) * 10**9 + int((frac + "000000000")[:9])


def _packet(pkt: Any) -> TsharkPacket | None:
    frame = pkt.frame_info._all_fields
    protocols = frame.get("frame.protocols", "")
    tcps = _layer_dicts(pkt, "tcp")
    if not tcps or not isinstance(tcps[-1], dict):
        return None
    tcp = tcps[-1]
    # the addresses of the TCP segment: the last IP layer before the (innermost) TCP one
    names = protocols.split(":")
    last_tcp = len(names) - 1 - names[::-1].index("tcp") if "tcp" in names else len(names)
    ip_name = next((n for n in reversed(names[:last_tcp]) if n in ("ip", "ipv6")), None)
    if ip_name is None:
        return None
    ip = _layer_dicts(pkt, ip_name)[-1]
    prefix = "ip" if ip_name == "ip" else "ipv6"
    analysis = tcp.get("tcp.analysis", {})
    flags_of = analysis.get("tcp.analysis.flags", {}) if isinstance(analysis, dict) else {}
    marks = set(flags_of) if isinstance(flags_of, dict) else set()
    records: list[TsharkRecord] = []
    for tls in _layer_dicts(pkt, "tls"):
        if not isinstance(tls, dict):
            continue  # "Transport Layer Security": a segment of a record completed later
        for rec in _as_list(tls.get("tls.record")):
            if isinstance(rec, dict):
                records.append(_record(rec))
    payload = b""
    if not records and "tcp.payload" in tcp:
        text = tcp["tcp.payload"][: 3 * PREAMBLE_BYTES]
        payload = bytes.fromhex(text.replace(":", ""))
    return TsharkPacket(
        number=int(frame.get("frame.number", 0)),
        ts=_ns(frame.get("frame.time_epoch", "0")),
        stream=int(tcp.get("tcp.stream", 0)),
        src=ip.get(f"{prefix}.src", ""),
        dst=ip.get(f"{prefix}.dst", ""),
        sport=int(tcp.get("tcp.srcport", 0)),
        dport=int(tcp.get("tcp.dstport", 0)),
        flags=int(tcp.get("tcp.flags", "0"), 16),
        payload_len=int(tcp.get("tcp.len", 0)),
        lost_before="tcp.analysis.lost_segment" in marks,
        filled=bool(
            marks
            & {
                "tcp.analysis.retransmission",
                "tcp.analysis.out_of_order",
                "tcp.analysis.spurious_retransmission",
                "tcp.analysis.fast_retransmission",
            }
        ),
        protocols=protocols,
        payload=payload,
        records=tuple(records),
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _record(rec: dict[str, Any]) -> TsharkRecord:
    if "tls.record.opaque_type" in rec:
        # TLS 1.3 protected record: tshark shows the real type only when it decrypted it
        outer = int(rec["tls.record.opaque_type"])
        inner = int(rec["tls.record.content_type"]) if "tls.record.content_type" in rec else None
    elif "tls.record.content_type" in rec:
        outer, inner = int(rec["tls.record.content_type"]), None
    else:
        # an SSLv2-compatible record: tshark names its fields tls.record.* / tls.handshake.*
        # without a content type
        msgs = tuple(_fields(h) for h in _as_list(rec.get("tls.handshake")) if isinstance(h, dict))
        if not msgs and "tls.handshake.type" in rec:
            msgs = (_fields(rec),)
        return TsharkRecord(22, int(rec.get("tls.record.length", 0)), messages=msgs, sslv2=True)
    length = int(rec.get("tls.record.length", 0))
    ct = inner if inner is not None else outer
    if ct == 22:
        hs = _as_list(rec.get("tls.handshake"))
        msgs = tuple(_fields(h) for h in hs if isinstance(h, dict))
        encrypted = not msgs  # "Encrypted Handshake Message"
        return TsharkRecord(outer, length, inner, msgs, encrypted)
    if ct == 21:
        alert = rec.get("tls.alert_message")
        if isinstance(alert, dict) and "tls.alert_message.desc" in alert:
            level = int(alert.get("tls.alert_message.level", 0))
            return TsharkRecord(
                outer, length, inner, alert=(level, int(alert["tls.alert_message.desc"]))
            )
        return TsharkRecord(outer, length, inner, encrypted=True)
    if ct == 20:
        return TsharkRecord(outer, length, inner)
    return TsharkRecord(outer, length, inner, encrypted=True)


def _fields(node: dict[str, Any]) -> Fields:
    out: Fields = {}
    _walk(node, out)
    return out


def _raw_hex(value: Any) -> list[str]:
    """Hex of a "<field>_raw" value: [hex, offset, length, bitmask, type] or a list of them."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        return [str(v[0]) for v in value if v]
    if isinstance(value, list) and value:
        return [str(value[0])]
    return []


def _walk(node: dict[str, Any], out: Fields) -> None:
    for key, value in node.items():
        if key in _SKIP_KEYS or key.startswith(_SKIP_PREFIXES):
            continue
        if key.startswith("Extension: "):
            for ext in _as_list(value):
                if isinstance(ext, dict):
                    t = ext.get("tls.handshake.extension.type", "")
                    data = _raw_hex(ext.get("tls.handshake.extension.data_raw"))
                    out.setdefault("extensions", []).append(f"{t}:{data[0] if data else ''}")
                    _walk(ext, out)
            continue
        if key.endswith("_raw"):
            out.setdefault(key, []).extend(_raw_hex(value))
            continue
        for item in _as_list(value):
            if isinstance(item, dict):
                _walk(item, out)
            elif isinstance(item, str):
                out.setdefault(key, []).append(item)


# -- live: dumpcap captures, tshark dissects ---------------------------------------------------
