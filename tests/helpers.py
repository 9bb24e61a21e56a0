"""What the tests share besides fixtures: where captures live, tshark as the oracle, the TCP
connections of a capture, the message fixtures, session facts built from a script of messages,
and a run of the pipeline. conftest.py keeps the fixtures and hooks; certs.py makes test
certificates, pcaptools.py derives damaged or rearranged captures.

The tlsinspect internals these helpers reach (beyond the public names: classify, session's
SessionFacts/SessionBuilder, engines.builtin.Analyzer, tls.*, infer) are imported in the block below,
and the shapes they read (a logged record's fields, the Analyzer's flow tables, the end of a
connection as the pipeline notes it on SessionFacts) in `analyze`, `open_flows`,
`flow_entries` and `_close`: a change of where they live is an edit here.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- tlsinspect internals the tests use ----------------------------------------------------------
from tlsinspect.capture import open_capture
from tlsinspect.engines.builtin import Analyzer
from tlsinspect.engines.lifecycle import CAPTURE_ENDS, FIN, IDLE, IDLE_TIMEOUT_NS, RST, closing
from tlsinspect.model import EndKind
from tlsinspect.net.link import locate_tcp
from tlsinspect.net.reassembly import Gap, HalfStream
from tlsinspect.session import MAX_ENCRYPTED, MAX_HISTORY, PHA_WATCH, SessionBuilder, SessionFacts
from tlsinspect.tls.compression import parse_compressed_certificate
from tlsinspect.tls.connection import MessageSeen, StreamLost, TlsEvent
from tlsinspect.tls.messages import parse_handshake

__all__ = [
    "Closed",
    "Dissected",
    "FIXTURES",
    "IDLE_TIMEOUT_NS",
    "Logged",
    "Lost",
    "MAX_ENCRYPTED",
    "MAX_HISTORY",
    "OWN",
    "PHA_WATCH",
    "Packet",
    "ROOT",
    "SHARED",
    "SHARED_ABSENT",
    "Sent",
    "TcpConnection",
    "analyze",
    "blind_verdict",
    "build_session",
    "client",
    "connection_packets",
    "fixture_bytes",
    "fixture_message",
    "fixture_table",
    "flow_entries",
    "flowed",
    "locate_tcp",
    "open_capture",
    "open_flows",
    "own_captures",
    "read",
    "report_header",
    "run_cli",
    "run_tshark",
    "server",
    "shared_captures",
    "shared_view",
    "tcp_connections",
    "tcp_info",
    "tshark_handshakes",
    "uses_shared",
]

ROOT = Path(__file__).resolve().parents[1]
OWN = ROOT / "captures"
SHARED = (ROOT / ".." / "shared" / "captures").resolve()
FIXTURES = ROOT / "tests" / "tls" / "fixtures"

Packet = tuple[int, int, bytes, int, int]  # (ts ns, link type, frame bytes, original length, iface)


def own_captures() -> list[Path]:
    found = sorted(p for p in OWN.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))
    if not found:
        raise RuntimeError(f"no recorded captures in {OWN}: run captures/record.py")
    return found


#: Why the tests of the public captures skip, or None when they are beside the checkout. A fresh
#: clone has no ../shared/captures/: its tests of them skip with this one reason (conftest.py);
#: CI has them and runs them.
SHARED_ABSENT = (
    None
    if (SHARED / "tshark-view.json").exists()
    else f"the public captures are not beside this checkout ({SHARED} is absent); CI has them"
)


def shared_view() -> list[dict]:
    """What tshark sees in each public capture; empty when they are absent."""
    if SHARED_ABSENT:
        return []
    return json.loads((SHARED / "tshark-view.json").read_text())


def shared_captures() -> list[Path]:
    """The public captures; empty when they are absent."""
    return sorted({SHARED / s["file"] for s in shared_view()})


def uses_shared(value: Any) -> bool:
    """Whether a test parameter is, or holds, a path among the public captures."""
    if isinstance(value, Path):
        return value.is_relative_to(SHARED)
    if isinstance(value, (tuple, list)):
        return any(uses_shared(v) for v in value)
    return False


# -- tshark ----------------------------------------------------------------------------------------


def _tshark_command(
    tshark: str, capture: Path, decode_as: list[int], keylog: Path | None
) -> list[str]:
    cmd = [tshark, "-n", "-r", str(capture), "-o", "tcp.reassemble_out_of_order:TRUE"]
    for port in decode_as:
        cmd += ["-d", f"tcp.port=={port},tls"]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    return cmd


def run_tshark(
    tshark: str,
    capture: Path,
    fields: list[str],
    display_filter: str,
    decode_as: list[int] = (),
    keylog: Path | None = None,
) -> list[list[str]]:
    cmd = _tshark_command(tshark, capture, list(decode_as), keylog)
    cmd += ["-Y", display_filter, "-T", "fields", "-E", "separator=\t"]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    return [line.split("\t") for line in out.splitlines()]


@dataclass
class Dissected:
    """One handshake message as tshark dissects it: its bytes (type, length, body) and its
    fields, each field name with its values in the order tshark shows them (byte fields as
    hex without colons)."""

    raw: bytes
    fields: dict[str, list[str]]

    @property
    def msg_type(self) -> int:
        return self.raw[0]

    def get(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    def one(self, name: str) -> str:
        values = self.get(name)
        assert len(values) == 1, (name, values)
        return values[0]


def _flatten(node: object, into: dict[str, list[str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_raw"):
                continue
            if isinstance(value, (dict, list)) and not _leaves(value):
                _flatten(value, into)
            else:
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, dict):
                        _flatten(v, into)
                    else:
                        into.setdefault(key, []).append(str(v))
    elif isinstance(node, list):
        for item in node:
            _flatten(item, into)


def _leaves(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _handshakes_in(node: object, out: list[Dissected]) -> None:
    """Every `tls.handshake` of a tshark JSON document, in document order, with its bytes."""
    if isinstance(node, dict):
        if "tls.handshake_raw" in node:
            raws = node["tls.handshake_raw"]
            msgs = node["tls.handshake"]
            if isinstance(raws[0], str):  # one message: [hex, offset, length, mask, type]
                raws, msgs = [raws], [msgs]
            assert len(raws) == len(msgs), node.keys()
            for raw, msg in zip(raws, msgs, strict=True):
                fields: dict[str, list[str]] = {}
                _flatten(msg, fields)
                out.append(Dissected(bytes.fromhex(raw[0]), fields))
        for key, value in node.items():
            if key not in ("tls.handshake_raw", "tls.handshake"):
                _handshakes_in(value, out)
    elif isinstance(node, list):
        for item in node:
            _handshakes_in(item, out)


def tshark_handshakes(
    tshark: str,
    capture: Path,
    frame: int,
    decode_as: list[int] = (),
    keylog: Path | None = None,
) -> list[Dissected]:
    """The handshake messages tshark dissects in one frame (decrypted with `keylog`), in order
    (one tshark run per frame and test run)."""
    return _tshark_handshakes(tshark, capture, frame, tuple(decode_as), keylog)


@functools.cache
def _tshark_handshakes(
    tshark: str, capture: Path, frame: int, decode_as: tuple[int, ...], keylog: Path | None
) -> list[Dissected]:
    cmd = _tshark_command(tshark, capture, list(decode_as), keylog)
    cmd += ["-Y", f"frame.number == {frame}", "-T", "json", "-x", "--no-duplicate-keys"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    (packet,) = json.loads(out)
    found: list[Dissected] = []
    _handshakes_in(packet["_source"]["layers"], found)
    for d in found:
        for key in list(d.fields):
            d.fields[key] = [_bytes_text(v) for v in d.fields[key]]
    return found


def _bytes_text(value: str) -> str:
    """tshark writes byte fields as colon-separated hex pairs: those become plain hex."""
    parts = value.split(":")
    if len(parts) > 1 and all(len(p) == 2 for p in parts):
        try:
            return bytes.fromhex("".join(parts)).hex()
        except ValueError:
            return value
    return value


def blind_verdict(truth: dict) -> str:
    """The verdict a recorded session must get without its key log. A TLS 1.2 client asked for
    its certificate only in a renegotiation did so in encrypted records: what the capture shows
    is the first handshake, one-way. A TLS 1.3 post-handshake answer shows in record sizes. A
    TLS 1.2 refusal sent after the handshake is an encrypted alert, then the close: `failed`
    without keys too (only the key log names the alert)."""
    return "one-way" if truth.get("later_auth") == "renegotiation" else truth["verdict"]


def run_cli(*args: str | Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """`python -m tlsinspect ARGS`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "tlsinspect", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def flowed(text: str) -> str:
    """A text report with its lines joined by single spaces: what it says, however the width
    wrapped it."""
    return " ".join(text.split())


def report_header(stdout: str) -> str:
    """The text report's header (its first paragraph, wrapped to the width), on one line."""
    return flowed(stdout.split("\n\n", 1)[0])


# -- packets and TCP connections ------------------------------------------------------------------


def read(path: Path) -> list[Packet]:
    with open_capture(path) as src:
        return list(src)


def tcp_info(p: Packet) -> tuple[int, int, int, int] | None:
    """(source port, destination port, flags, payload length) of a TCP packet."""
    loc = locate_tcp(p[1], p[2])
    if loc is None:
        return None
    _, _, t, end = loc
    data = p[2]
    doff = (data[t + 12] >> 4) * 4
    return (
        int.from_bytes(data[t : t + 2], "big"),
        int.from_bytes(data[t + 2 : t + 4], "big"),
        data[t + 13],
        end - t - doff,
    )


SYN, ACK = 0x02, 0x10

Endpoint = tuple[bytes, int]  # (raw address, port)


@dataclass
class TcpConnection:
    """One TCP connection of a capture. Side 0 sent the connection's first packet."""

    index: int  # as tshark's tcp.stream numbers them: in the order of their first packet
    ends: tuple[Endpoint, Endpoint]
    packets: list[int] = field(default_factory=list)  # indexes in the capture's packet list
    payloads: list[tuple[int, bytes]] = field(default_factory=list)  # (side, payload), in order
    syn_seq: int | None = None  # sequence number of the client's SYN

    @property
    def ports(self) -> tuple[int, int]:
        return self.ends[0][1], self.ends[1][1]

    def stream(self, side: int, packets: list[Packet]) -> bytes:
        """The bytes `side` sent, put in sequence order; asserts none is missing."""
        half = HalfStream()
        out = bytearray()
        for i in self.packets:
            data = packets[i][2]
            loc = locate_tcp(packets[i][1], data)
            assert loc is not None
            src, _dst, t, end = loc
            if (bytes(src), int.from_bytes(data[t : t + 2], "big")) != self.ends[side]:
                continue
            seq = int.from_bytes(data[t + 4 : t + 8], "big")
            if data[t + 13] & SYN:
                half.syn(seq)
                seq = (seq + 1) & 0xFFFFFFFF  # data on a SYN (TCP Fast Open) follows the ISN
            payload = bytes(data[t + (data[t + 12] >> 4) * 4 : end])
            if payload:
                for chunk in half.segment(seq, payload):
                    assert not isinstance(chunk, Gap), f"connection {self.index}: bytes missing"
                    out += chunk
        return bytes(out)


def tcp_connections(packets: list[Packet]) -> list[TcpConnection]:
    """The TCP connections of a capture, as tshark's tcp.stream tells them apart: by their two
    endpoints, and a new one when a SYN with a new sequence number reuses an address/port pair
    (a retransmitted SYN has the same number)."""
    current: dict[frozenset[Endpoint], TcpConnection] = {}
    found: list[TcpConnection] = []
    for i, (_ts, linktype, data, _orig, _iface) in enumerate(packets):
        loc = locate_tcp(linktype, data)
        if loc is None:
            continue
        src, dst, t, end = loc
        a = (bytes(src), int.from_bytes(data[t : t + 2], "big"))
        b = (bytes(dst), int.from_bytes(data[t + 2 : t + 4], "big"))
        flags = data[t + 13]
        seq = int.from_bytes(data[t + 4 : t + 8], "big")
        key = frozenset((a, b))
        conn = current.get(key)
        syn = flags & SYN and not flags & ACK
        if conn is None or (syn and conn.syn_seq is not None and conn.syn_seq != seq):
            conn = current[key] = TcpConnection(len(found), (a, b))
            found.append(conn)
        if syn and conn.syn_seq is None:
            conn.syn_seq = seq
        conn.packets.append(i)
        payload = bytes(data[t + (data[t + 12] >> 4) * 4 : end])
        if payload:
            conn.payloads.append((0 if a == conn.ends[0] else 1, payload))
    return found


def connection_packets(packets: list[Packet], server_port: int) -> list[int]:
    """Indexes of the packets of the connection(s) to or from `server_port`, in capture order."""
    return sorted(i for c in tcp_connections(packets) if server_port in c.ports for i in c.packets)


# -- handshake message fixtures (tests/tls/fixtures) ----------------------------------------------


@functools.cache
def fixture_table() -> dict[str, Any]:
    """The fixtures by file name without `.bin`: cut.py's table (capture, frame, version...)."""
    spec = importlib.util.spec_from_file_location("fixtures_cut", FIXTURES / "cut.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return {f.file.removesuffix(".bin"): f for f in module.FIXTURES}


def fixture_bytes(name: str) -> bytes:
    """A fixture's handshake message: type, 3-byte length, body."""
    return (FIXTURES / f"{name}.bin").read_bytes()


def fixture_message(name: str) -> Any:
    """A fixture parsed as tlsinspect parses that message in its connection's version."""
    raw = fixture_bytes(name)
    version = fixture_table()[name].version
    if raw[0] == 25:  # RFC 8879 CompressedCertificate
        return parse_compressed_certificate(raw[4:], version)
    return parse_handshake(raw[0], raw[4:], version)


# -- session facts from a script of messages --------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """`role` sent `msg` (a tlsinspect.tls.messages value); `decrypted`: read with a key log."""

    role: str
    msg: object
    decrypted: bool = False


@dataclass(frozen=True)
class Lost:
    """The capture lost bytes of what `role` sent: its stream cannot be followed."""

    role: str
    reason: str = "1,000 bytes missing from the capture at stream offset 4,000"


@dataclass(frozen=True)
class Closed:
    """The connection ended: "fin" or "rst" sent by `role`, or "eof" / "idle" (the capture ends,
    the flow idled out), as the pipeline records them on the facts."""

    kind: str
    role: str | None = None


Step = Sent | Lost | Closed | TlsEvent


def client(*msgs: object, decrypted: bool = False) -> list[Sent]:
    return [Sent("client", msg, decrypted) for msg in msgs]


def server(*msgs: object, decrypted: bool = False) -> list[Sent]:
    return [Sent("server", msg, decrypted) for msg in msgs]


TICK = 1_000_000  # ns between two steps of a script


def build_session(
    *steps: Step | list[Step],
    client_side: int | None = 0,
    ports: tuple[int, int] = (50000, 443),
) -> SessionBuilder:
    """A SessionBuilder fed a script, one step every TICK ns. The client is side
    `client_side`, known from the SYN as when the capture holds it; None leaves the roles to the
    hellos (a `Sent` then needs them known, or uses side 0 for "client")."""
    facts = SessionFacts(start_ts=0, addrs=(b"\xc0\x00\x02\x01", b"\xc0\x00\x02\x02"), ports=ports)
    builder = SessionBuilder(facts)
    if client_side is not None:
        builder.set_client(client_side, "syn")
    flat = [x for step in steps for x in (step if isinstance(step, list) else [step])]
    for n, step in enumerate(flat, 1):
        ts = n * TICK
        if isinstance(step, (Sent, Lost)):
            side = _side(facts, step.role, client_side)
            if isinstance(step, Sent):
                builder.apply(MessageSeen(side, ts, step.msg, step.decrypted))
            else:
                builder.apply(StreamLost(side, ts, step.reason))
        elif isinstance(step, Closed):
            _close(facts, step, ts)
        else:
            builder.apply(step)
    return builder


def _side(facts: SessionFacts, role: str, client_side: int | None) -> int:
    known = facts.client_side if facts.client_side is not None else client_side
    client = 0 if known is None else known
    return client if role == "client" else 1 - client


def _close(f: SessionFacts, step: Closed, ts: int) -> None:
    """What the engines note of a connection's end (engines.lifecycle: closing, Logbook.log)."""
    f.end_ts = max(f.end_ts, ts)
    if step.kind in ("fin", "rst"):
        side = _side(f, step.role or "client", f.client_side)
        closed = closing(f, [False, False], side, FIN if step.kind == "fin" else RST, ts)
        if step.kind == "rst" and closed is not None:  # a reset is recorded when it is logged
            f.end_kind, f.ended, f.closed_by = closed
            if f.closed_ts is None:
                f.closed_ts = ts
    elif f.end_kind is None:
        f.end_kind = EndKind(step.kind)
        f.ended = CAPTURE_ENDS if step.kind == "eof" else IDLE


# -- the pipeline ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """What a test reads of a session the Analyzer logged."""

    client: tuple[str, int]
    server: tuple[str, int]
    verdict: str
    basis: str
    reason: str
    end_kind: str | None
    roles_from: str


def analyze(
    packets: list[Packet], analyzer: Analyzer | None = None
) -> tuple[list[Logged], Analyzer]:
    """Feed packets to an Analyzer (a new one by default); the sessions in the order logged."""
    analyzer = analyzer or Analyzer()
    out = [
        Logged(
            r.client,
            r.server,
            str(r.decision.verdict),
            str(r.decision.basis),
            r.decision.reason,
            r.facts.end_kind,
            r.facts.roles_from,
        )
        for r in analyzer.run(iter(packets))
    ]
    return out, analyzer


def open_flows(analyzer: Analyzer) -> int:
    """Flows still holding state (not yet logged): none once a run has ended."""
    return len(analyzer.active) + sum(isinstance(v, tuple) for v in analyzer.flows.values())


def flow_entries(analyzer: Analyzer) -> set[tuple[int, int]]:
    """(source port, destination port) of every entry of the flow table, logged flows included."""
    out = set()
    for key in analyzer.flows:
        n = (len(key) - 4) // 2
        out.add(
            (int.from_bytes(key[2 * n : 2 * n + 2], "big"), int.from_bytes(key[2 * n + 2 :], "big"))
        )
    return out
