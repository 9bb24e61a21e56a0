"""The fuzz targets, one per layer, and the contract they hold the project to.

Each target takes the bytes of one input and runs one layer on them. The outcomes allowed are
those the layers document (tlsinspect/errors.py): a value, "need more" (None or an empty list),
or the project's DecodeError, which the owner of the flow turns into an anomaly. A capture that
cannot be used at all is a CaptureError from `open_capture` (the command line's exit 2). Any
other exception escaping a target is a crash. For the whole pipeline (`pipeline`) there is no
exception at all: every input gives a report.

`crash_key(exc)` names a crash for deduplication: its type and the innermost frame of the
project's code in its traceback.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import corpus

import tlsinspect.capture as capture_mod
from tlsinspect.capture import open_capture
from tlsinspect.classify import classify
from tlsinspect.engines.builtin import Analyzer, CaptureKeys
from tlsinspect.errors import CaptureError, DecodeError
from tlsinspect.net.fragments import Defragmenter
from tlsinspect.net.link import header_cut, locate_fragment, locate_tcp
from tlsinspect.net.reassembly import Gap, HalfStream
from tlsinspect.report.flat import csv_line, extend
from tlsinspect.report.schema import session_dict
from tlsinspect.report.table import render
from tlsinspect.session import SessionBuilder, SessionFacts
from tlsinspect.tls import compression, extensions
from tlsinspect.tls import messages as m
from tlsinspect.tls.connection import TlsConnection
from tlsinspect.tls.handshake import HandshakeAssembler
from tlsinspect.tls.keylog import LABELS, KeyLog, parse_keylog
from tlsinspect.tls.records import RecordLayer
from tlsinspect.x509 import cert_info, check_chain

PROJECT = os.sep + "tlsinspect" + os.sep

#: The capture readers' chunk sizes tried, chosen by the input's length (so that a saved input
#: is a plain capture file and replays the same way).
CHUNKS = (1 << 20, 4096, 512, 61, 28, 16)


class ContractBroken(AssertionError):
    """A target returned something its layer does not document."""


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise ContractBroken(what)


# -- capture readers --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _scratch_dir() -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="tlsinspect-fuzz-", dir=base)


def _scratch(data: bytes) -> str:
    path = os.path.join(_scratch_dir(), "input")
    with open(path, "wb") as f:
        f.write(data)
    return path


def _read(data: bytes, chunk: int) -> tuple[list[tuple[int, int, bytes, int, int]], list[str]]:
    """The records and problems of a capture read in chunks of `chunk` bytes."""
    old = capture_mod.CHUNK_SIZE
    capture_mod.CHUNK_SIZE = chunk
    try:
        try:
            src = open_capture(_scratch(data))
        except CaptureError as exc:
            return [], [f"CaptureError: {exc}"]
        with src:
            out = []
            for rec in src:
                ts, lt, frame, orig_len, iface = rec
                _expect(
                    isinstance(ts, int) and isinstance(lt, int) and isinstance(orig_len, int),
                    f"record fields of the wrong types: {rec!r:.200}",
                )
                _expect(isinstance(iface, int) and iface >= 0, f"interface {iface!r}")
                _expect(isinstance(frame, (bytes, memoryview)), f"frame of type {type(frame)}")
                out.append((ts, lt, bytes(frame), orig_len, iface))
            _expect(all(isinstance(p, str) for p in src.problems), "a problem that is not text")
            return out, list(src.problems)
    finally:
        capture_mod.CHUNK_SIZE = old


def capture(data: bytes) -> None:
    """pcap/pcapng (and gzip) framing: open_capture and every record it yields, read in
    chunks of 1 MiB and of a size chosen by the input's length: the same records and problems
    whatever the chunks (a reader's chunks are no boundary in the file)."""
    whole = _read(data, CHUNKS[0])
    chunked = _read(data, CHUNKS[len(data) % len(CHUNKS)])
    _expect(whole[1] == chunked[1], f"problems depend on the chunks: {whole[1]} != {chunked[1]}")
    _expect(whole[0] == chunked[0], "records depend on the chunks")


def _capture_seeds() -> list[bytes]:
    from mutator import serialize

    out = []
    for i, conn in enumerate(corpus.connections()[::3]):
        out.append(serialize(conn.packets, fmt=("pcap", "pcapng", "pcap_ns", "pcapng_be")[i % 4]))
    return out


# -- link, IP, tunnels, fragments, TCP reassembly ---------------------------------------------

#: The link types the decoder reads, chosen by the first byte of a frame's record.
LINKTYPES = (1, 113, 276, 101, 228, 229, 0, 108, 12, 14)


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The frames of a `net` input: records of (link type index, u16 length, frame)."""
    out = []
    pos = 0
    while pos + 3 <= len(data):
        lt = LINKTYPES[data[pos] % len(LINKTYPES)]
        n = int.from_bytes(data[pos + 1 : pos + 3], "big")
        out.append((lt, data[pos + 3 : pos + 3 + n]))
        pos += 3 + n
    return out


def join_frames(frames: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for lt, frame in frames:
        out += bytes((LINKTYPES.index(lt),)) + len(frame).to_bytes(2, "big") + frame
    return bytes(out)


def net(data: bytes) -> None:
    """Frames through link/IP/tunnel decoding, defragmentation and TCP reassembly."""
    defrag = Defragmenter()
    streams: dict[bytes, HalfStream] = {}
    for ts, (lt, frame) in enumerate(split_frames(data)):
        loc = locate_tcp(lt, frame)
        cut = header_cut(lt, frame)
        _expect(cut is None or isinstance(cut, str), f"header_cut gave {cut!r}")
        if loc is None:
            frag = locate_fragment(lt, frame)
            whole = None if frag is None else defrag.add(frag, ts * 10**6)
            if whole is None:
                continue
            _expect(isinstance(whole, bytes), "a reassembled datagram that is not bytes")
            lt, frame = 101, whole
            loc = locate_tcp(101, frame)
            if loc is None:
                continue
        src, dst, t, end = loc
        _expect(0 <= t <= end <= len(frame), f"TCP bounds {t}..{end} in a frame of {len(frame)}")
        if t + 20 > len(frame):
            continue  # the pipeline skips these (counted as cut short)
        flags = frame[t + 13]
        doff = (frame[t + 12] >> 4) * 4
        stream = streams.setdefault(src + dst + frame[t : t + 4], HalfStream())
        seq = int.from_bytes(frame[t + 4 : t + 8], "big")
        if flags & 0x02:
            stream.syn(seq)
            seq = (seq + 1) & 0xFFFFFFFF
        payload = frame[t + doff : end] if t + doff < end else b""
        for chunk in stream.segment(seq, payload):
            _expect(isinstance(chunk, (bytes, Gap)), f"a stream chunk of type {type(chunk)}")
    defrag.finish()
    for stream in streams.values():
        for chunk in stream.flush():
            _expect(isinstance(chunk, (bytes, Gap)), f"a stream chunk of type {type(chunk)}")


def _net_seeds() -> list[bytes]:
    out = []
    frames = corpus.frames()
    for i in range(0, len(frames), 4):
        out.append(join_frames(frames[i : i + 4]))
    for conn in corpus.connections()[::6]:
        out.append(join_frames([(lt, d) for _ts, lt, d, _o, _i in conn.packets[:12]]))
    return out


# -- record layer and handshake assembly ------------------------------------------------------


def _cut(stream: bytes, step: int, midstream: bool) -> tuple[list[object], str | None]:
    layer = RecordLayer(midstream=midstream)
    assembler = HandshakeAssembler()
    out: list[object] = []
    for i in range(0, len(stream), step):
        for ct, version, payload in layer.feed(stream[i : i + step]):
            _expect(isinstance(payload, bytes), "a record payload that is not bytes")
            _expect(0 <= version <= 0xFFFF, f"record version {version}")
            out.append((ct, version, payload))
            if ct != 22:
                continue
            try:
                msgs = assembler.feed(payload)
            except DecodeError as exc:
                out.append(str(exc))
                assembler = HandshakeAssembler()  # the owner gives the stream up there
                continue
            for msg_type, body in msgs:
                _expect(0 <= msg_type <= 255 and isinstance(body, bytes), "a bad message")
                out.append((msg_type, body))
    _expect(layer.error is None or isinstance(layer.error, str), "an error that is not text")
    return out, layer.error


def records(data: bytes) -> None:
    """One direction's stream through the record layer and the handshake assembler, whole and
    cut in pieces: the same records, messages and errors (TCP segments are no boundary).

    The first byte chooses the pieces' size and whether the stream was joined midway."""
    if not data:
        return
    mode, stream = data[0], data[1:]
    step = (1, 3, 5, 64, 1500, 1 << 20)[mode % 6]
    whole = _cut(stream, 1 << 20, bool(mode & 0x80))
    pieces = _cut(stream, step, bool(mode & 0x80))
    _expect(whole == pieces, f"records depend on the segments ({step} bytes)")


def _records_seeds() -> list[bytes]:
    out = []
    for i, conn in enumerate(corpus.connections()):
        for side, stream in enumerate(conn.streams()):
            if stream:
                out.append(bytes(((i + side) % 6,)) + stream[:4096])
    return out


# -- message parsers --------------------------------------------------------------------------

_Parser = Callable[[bytes], object]

#: The message and extension parsers, chosen by the input's first byte.
PARSERS: tuple[tuple[str, _Parser], ...] = (
    ("client_hello", m.parse_client_hello),
    ("server_hello", m.parse_server_hello),
    ("certificate_tls12", lambda b: m.parse_certificate(b, tls13=False)),
    ("certificate_tls13", lambda b: m.parse_certificate(b, tls13=True)),
    ("certificate_request_tls12", lambda b: m.parse_certificate_request(b, tls13=False)),
    ("certificate_request_tls13", lambda b: m.parse_certificate_request(b, tls13=True)),
    ("certificate_verify_tls12", lambda b: m.parse_certificate_verify(b, 0x0303)),
    ("certificate_verify_unknown", lambda b: m.parse_certificate_verify(b, 0)),
    ("certificate_verify_tls10", lambda b: m.parse_certificate_verify(b, 0x0301)),
    ("new_session_ticket_tls12", lambda b: m.parse_new_session_ticket(b, tls13=False)),
    ("new_session_ticket_tls13", lambda b: m.parse_new_session_ticket(b, tls13=True)),
    ("alert", m.parse_alert),
    ("sslv2_client_hello", m.parse_sslv2_client_hello),
    ("compressed_certificate", lambda b: compression.parse_compressed_certificate(b, 0x0304)),
    ("server_name", extensions.server_name),
    ("alpn", extensions.alpn),
    ("client_supported_versions", extensions.client_supported_versions),
    ("server_supported_version", extensions.server_supported_version),
    ("signature_algorithms", extensions.signature_algorithms),
    ("psk_identities", extensions.psk_identities),
    ("certificate_authorities", extensions.certificate_authorities),
    ("deflate_record", lambda b: compression.RecordInflater().inflate(b)),
    ("handshake_tls12", lambda b: m.parse_handshake(b[0], b[1:], 0x0303) if b else None),
    ("handshake_tls13", lambda b: m.parse_handshake(b[0], b[1:], 0x0304) if b else None),
)

_EXTENSION_PARSERS = {
    extensions.SERVER_NAME: "server_name",
    extensions.ALPN: "alpn",
    extensions.SUPPORTED_VERSIONS: "client_supported_versions",
    extensions.SIGNATURE_ALGORITHMS: "signature_algorithms",
    extensions.PRE_SHARED_KEY: "psk_identities",
    extensions.CERTIFICATE_AUTHORITIES: "certificate_authorities",
}


def messages(data: bytes) -> None:
    """One message (or extension) body; the first byte chooses the parser."""
    if not data:
        return
    _name, parse = PARSERS[data[0] % len(PARSERS)]
    try:
        parse(data[1:])
    except DecodeError:
        pass


def _messages_seeds() -> list[bytes]:
    names = [n for n, _p in PARSERS]
    by_type = {
        1: ["client_hello"],
        2: ["server_hello"],
        11: ["certificate_tls12"],
        13: ["certificate_request_tls12"],
        15: ["certificate_verify_tls12", "certificate_verify_unknown"],
        4: ["new_session_ticket_tls12", "new_session_ticket_tls13"],
    }
    out = []
    seen: set[tuple[int, bytes]] = set()
    for msg_type, body, _version in corpus.handshake_messages():
        if (msg_type, body[:64]) in seen:
            continue
        seen.add((msg_type, body[:64]))
        for name in by_type.get(msg_type, []):
            out.append(bytes((names.index(name),)) + body[:16384])
        out.append(bytes((names.index("handshake_tls12"), msg_type)) + body[:16384])
        if msg_type == 1:
            try:
                hello = m.parse_client_hello(body)
            except DecodeError:
                continue
            for ext_type, ext_data in hello.extensions:
                name = _EXTENSION_PARSERS.get(ext_type)
                if name is not None:
                    out.append(bytes((names.index(name),)) + ext_data)
    return out


# -- certificates -----------------------------------------------------------------------------


def x509(data: bytes) -> None:
    """A DER certificate: its facts and the checks on it as a one-certificate chain.

    Never raises (cert_info, check_chain document it)."""
    from datetime import datetime, timezone

    info = cert_info(bytes(data))
    info.to_dict()
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for role in ("client", "server"):
        check_chain([bytes(data)], role, at, sni="example.com", ca_names=(data[:64],)).summary()


def _x509_seeds() -> list[bytes]:
    return corpus.certificates()


# -- key logs and decryption ------------------------------------------------------------------


def keylog(data: bytes) -> None:
    """A key log text: never raises (parse_keylog documents it)."""
    log = parse_keylog(data)
    _expect(isinstance(log, KeyLog), "parse_keylog gave something else")


def _keylog_seeds() -> list[bytes]:
    return [text[:4096] for text in corpus.keylog_texts()]


_LABELS = sorted(LABELS)


class _FuzzedKeys:
    """A key log whose secrets of one label are damaged as the input says (length, bits)."""

    active = True

    def __init__(self, keys: KeyLog, label: int, damage: int) -> None:
        self._keys = keys
        self._label = label
        self._damage = damage

    def get(self, client_random: bytes, label: str) -> bytes | None:
        secret = self._keys.get(client_random, label)
        damaged = _LABELS[self._label % len(_LABELS)]  # (not hash(): it is salted per process)
        if secret is None or label != damaged or not self._damage:
            return secret
        d = self._damage
        if d & 0x80:
            return secret[: d & 0x3F]
        return secret[:-1] + bytes((secret[-1] ^ d,))


def decrypt(data: bytes) -> None:
    """A keyed connection of the recorded captures, its streams damaged as the input says,
    through TlsConnection with the recorded key log and the session builder.

    Input: connection index (u8), key damage (u8 label, u8 damage), then edits of 4 bytes each
    (side and op in one byte, u16 position in the side's stream, u8 value). TlsConnection
    documents no exception: its parsers' DecodeErrors become events."""
    conns = corpus.keyed_connections()
    if len(data) < 3 or not conns:
        return
    conn = conns[data[0] % len(conns)]
    keys = _FuzzedKeys(corpus.keylog(), data[1], data[2])
    streams = [bytearray(s) for s in conn.streams()]
    for i in range(3, len(data) - 3, 4):
        op, pos, value = data[i], int.from_bytes(data[i + 1 : i + 3], "big"), data[i + 3]
        s = streams[op & 1]
        if not s:
            continue
        pos %= len(s)
        kind = (op >> 1) % 5
        if kind == 0:
            s[pos] ^= value or 1
        elif kind == 1:
            s[pos] = value
        elif kind == 2:
            del s[pos : pos + value + 1]
        elif kind == 3:
            s[pos:pos] = s[pos : pos + value + 1]  # a repeated piece
        else:
            del s[pos:]
    _feed(conn, (bytes(streams[0]), bytes(streams[1])), keys)


def _feed(conn: corpus.Connection, streams: tuple[bytes, bytes], keys: object) -> None:
    """Both sides' streams through TlsConnection and the session builder, interleaved in the
    recorded packets' order, a packet's worth of bytes at a time, then what is left."""
    tls = TlsConnection(False, keys)  # type: ignore[arg-type]
    builder = SessionBuilder(SessionFacts(start_ts=0, addrs=(b"\1" * 4, b"\2" * 4), ports=(1, 2)))
    builder.set_client(0, "syn")
    pos = [0, 0]
    maps = conn.stream_map()
    order = sorted(((pkt, side, end - start) for side in (0, 1) for pkt, start, end in maps[side]))
    for ts, (_pkt, side, n) in enumerate(order):
        chunk = streams[side][pos[side] : pos[side] + n]
        pos[side] += n
        for ev in tls.receive(side, chunk, ts):
            builder.apply(ev)
    for side in (0, 1):
        if pos[side] < len(streams[side]):
            for ev in tls.receive(side, streams[side][pos[side] :], len(order)):
                builder.apply(ev)
    classify(builder.facts)


def decrypted(data: bytes) -> None:
    """A keyed connection whose decrypted records are edited as the input says and encrypted
    again (reencrypt.py), through TlsConnection with the recorded key log, the session builder
    and classify. Input: connection index (u8), then edits of 4 bytes (see reencrypt.edit)."""
    from reencrypt import edit, keyed

    conns = keyed()
    if not data or not conns:
        return
    k = conns[data[0] % len(conns)]
    _feed(k.conn, edit(k, data[1:]), _capture_keys())


def _as_capture(data: bytes) -> bytes | None:
    from reencrypt import capture_of

    return capture_of(data)


def _decrypted_seeds() -> list[bytes]:
    import random

    from reencrypt import keyed

    rng = random.Random(0)
    out = []
    for i in range(len(keyed())):
        out.append(bytes((i,)))
        out.append(bytes((i, rng.randrange(256), rng.randrange(256), rng.randrange(64), 0)))
    return out


def _decrypt_seeds() -> list[bytes]:
    return [bytes((i, 0, 0)) for i in range(len(corpus.keyed_connections()))]


# -- the whole pipeline -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _keylog_text() -> bytes:
    return b"\n".join(corpus.keylog_texts())


@functools.lru_cache(maxsize=1)
def _capture_keys() -> CaptureKeys:
    """The recorded key logs as the engine holds them (a KeySource)."""
    return CaptureKeys([_keylog_text()], [])


def pipeline(data: bytes, keys: bool = True) -> None:
    """A capture through the built-in engine and every report format, with the recorded key
    logs (`keys`). No exception at all: a capture that cannot be used is the one-line report of
    `open_capture`'s CaptureError, anything else is sessions and capture problems."""
    path = _scratch(data)
    try:
        src = open_capture(path)
    except CaptureError as exc:
        _expect(bool(str(exc)), "a CaptureError without a message")
        return
    with src:
        analyzer = Analyzer(CaptureKeys([_keylog_text()] if keys else [], src.secrets))
        sessions = []
        out = io.StringIO()
        for record in analyzer.run(src):
            d = session_dict(record)
            out.write(json.dumps(d) + "\n")
            out.write(csv_line(extend(d)))
            sessions.append(d)
        render(sessions, "fuzz", analyzer.stats.problems + src.problems)


def blind(data: bytes) -> None:
    """`pipeline` without the key logs: TLS 1.3 verdicts inferred from the record sizes."""
    pipeline(data, keys=False)


def _pipeline_seeds() -> list[bytes]:
    return _capture_seeds()


# -- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    seeds: Callable[[], list[bytes]]
    max_len: int  # libFuzzer's -max_len
    #: its share of a run's inputs (`run` without --target): the slow whole-pipeline targets
    #: get fewer than the parsers, which run a hundred times faster
    share: float = 1.0
    #: for a target driven by the structure-aware mutator: seed number -> input (no libFuzzer)
    generate: Callable[[int], bytes] | None = None
    #: the capture file an input stands for, saved beside a crashing input
    as_capture: Callable[[bytes], bytes | None] | None = None


def _mutated(seed: int) -> bytes:
    from mutator import mutate_capture

    return mutate_capture(seed)[0]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("capture", capture, _capture_seeds, 1 << 16),
        Target("net", net, _net_seeds, 1 << 14, 1.5),
        Target("records", records, _records_seeds, 1 << 13, 0.5),
        Target("messages", messages, _messages_seeds, 1 << 14, 3),
        Target("x509", x509, _x509_seeds, 1 << 13),
        Target("keylog", keylog, _keylog_seeds, 1 << 12),
        Target("decrypt", decrypt, _decrypt_seeds, 1 << 10, 0.5),
        Target("decrypted", decrypted, _decrypted_seeds, 1 << 10, 0.5, None, _as_capture),
        Target("pipeline", pipeline, _pipeline_seeds, 1 << 16, 0.25),
        Target("mutated", pipeline, _pipeline_seeds, 1 << 20, 0.25, _mutated),
        Target("blind", blind, _pipeline_seeds, 1 << 20, 0.25, _mutated),
    )
}


# -- crashes ----------------------------------------------------------------------------------


def _innermost(exc: BaseException) -> traceback.FrameSummary | None:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if PROJECT in f.filename]
    return ours[-1] if ours else (frames[-1] if frames else None)


def crash_key(exc: BaseException) -> str:
    """The exception's type and the innermost frame of the project's code it went through:
    `IndexError@tlsinspect/net/link.py:_gre:301`."""
    f = _innermost(exc)
    if f is None:
        return type(exc).__name__
    path = f.filename
    if PROJECT in path:
        path = "tlsinspect" + os.sep + path.split(PROJECT, 1)[1]
    else:
        path = Path(path).name
    return f"{type(exc).__name__}@{path}:{f.name}:{f.lineno}"
