"""`tlsinspect live -i IFACE`: watch an interface and print each TLS session as it is decided.

    tlsinspect live -i IFACE [--filter BPF] [--duration S] [--count N] [--write FILE.pcapng]
                    [--format table|jsonl] [--keylog FILE] [--engine builtin|tshark]

`--engine tshark` (`_capture_tshark`): `capture.tshark_live.TsharkLive` runs dumpcap and tshark, and
the tshark engine's `TsharkAnalyzer` decides; output, statistics and stopping are shared with
the built-in engine, described below.

Packets come from `capture.live` (scapy, kernel BPF filter, default `tcp`) through a bounded
queue into the same `engines.builtin.Analyzer` as capture files, which yields each session as soon as
its verdict is known; it is printed at once (jsonl: one JSON object per line, flushed; table:
one line per session, then the totals). `--write` saves every packet taken off the queue as
pcapng (link type and snaplen of the interface, microsecond timestamps), flushed about every
second and closed cleanly on every ending path, so the file can be analysed again later.

Stopping: `--duration`, `--count`, SIGINT (Ctrl-C) or SIGTERM end the packet stream; the packets
already captured are still analysed, then the analyzer logs the sessions still open (as the end
of a capture file does: `incomplete` when their handshake was not finished), the totals and the
capture statistics are printed (packets seen, dropped by the kernel, dropped because the
analysis fell behind, sessions), with a warning when packets were dropped. A second SIGINT
stops at once.

A key log still being written (the SSLKEYLOGFILE of a running client) is re-read as it grows
(`GrowingKeyLog`). Memory stays bounded: the queue is bounded, the analyzer forgets decided flows
and logs idle ones, and the totals are counters.

Exit codes: 0 after a capture (however it was stopped), 2 when it cannot start (unknown
interface, permission denied, bad filter, unwritable --write file, missing key log): one line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import FrameType
from typing import Any, TextIO

from ..capture.live import CaptureStats, LiveCaptureError, LiveSource
from ..capture.pcapng_writer import PcapngWriter
from ..capture.tshark import TsharkError
from ..capture.tshark_live import TsharkLive
from ..engines.builtin import Analyzer
from ..engines.tshark import TsharkAnalyzer
from ..model import count
from ..record import SessionRecord
from ..report.schema import session_dict
from ..report.table import VERDICT_ORDER
from ..tls.keylog import KeyLog, parse_keylog
from .common import Parser, add_format, add_keylog

POLL = 0.2  # seconds between checks of the stop conditions while no packet comes
FLUSH_EVERY = 1.0  # seconds between flushes of the --write file
NAME = "tlsinspect live"


class GrowingKeyLog:
    """A key log file that a running TLS client is still appending to (a `KeySource`).

    The file is checked (one `stat`) at most every `CHECK_EVERY` seconds when a secret is looked
    up, and only the bytes added since the last read are parsed (a line not yet ended with a
    newline waits for the next read). A file that shrank was replaced: it is read again from
    its start. Secrets are only ever added, so a session decrypted earlier stays decrypted.

    A client writes a session's secrets while its handshake runs, so the capture may show the
    ServerHello a moment before the key log holds the keys. When a lookup for a packet captured
    less than `WAIT` seconds ago misses, the file is polled until that packet is `WAIT` seconds
    old (once per client random): the analysis then pauses briefly, the capture thread goes on
    queueing packets.
    """

    CHECK_EVERY = 0.5
    WAIT = 0.25
    POLL_EVERY = 0.02
    REMEMBERED = 4096  # client randoms already waited for
    # sessions whose secrets are kept: the newest ones. A session needs its keys while its
    # handshake is analysed, seconds after the client wrote them, so over hours of a busy
    # client the oldest are forgotten and memory stays bounded (about 400 bytes a session).
    KEPT = 1 << 16

    def __init__(self, path: str) -> None:
        self.path = path
        self.log = KeyLog()
        self.packet_ts = 0  # capture time (ns) of the packet being analysed, set by the caller
        self.reads = 0
        self._offset = 0
        self._partial = b""
        self._checked = float("-inf")
        self._ino: int | None = None
        self._waited: OrderedDict[bytes, None] = OrderedDict()

    @property
    def active(self) -> bool:
        return True  # a key log was given: say so when it lacks a session's keys

    def get(self, client_random: bytes, label: str) -> bytes | None:
        self.refresh()
        secret = self.log.get(client_random, label)
        if secret is not None or client_random in self._waited:
            return secret
        self._waited[client_random] = None
        if len(self._waited) > self.REMEMBERED:
            self._waited.popitem(last=False)
        deadline = self.packet_ts / 1e9 + self.WAIT
        while secret is None and time.time() < deadline:
            time.sleep(self.POLL_EVERY)
            self.refresh(force=True)
            secret = self.log.get(client_random, label)
        return secret

    def refresh(self, force: bool = False) -> None:
        """Read what was appended to the file since the last read."""
        now = time.monotonic()
        if not force and now - self._checked < self.CHECK_EVERY:
            return
        self._checked = now
        try:
            st = os.stat(self.path)
        except OSError:
            return
        if st.st_size < self._offset or (self._ino is not None and st.st_ino != self._ino):
            self._offset, self._partial = 0, b""  # replaced or truncated: read it again
        self._ino = st.st_ino
        if st.st_size == self._offset:
            return
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(st.st_size - self._offset)
        except OSError:
            return
        self._offset += len(data)
        self.reads += 1
        text = self._partial + data
        cut = text.rfind(b"\n") + 1
        self._partial = text[cut:]
        if cut:
            self.log.merge(parse_keylog(text[:cut]))
            secrets = self.log.secrets
            if len(secrets) > self.KEPT:
                for old in list(itertools.islice(secrets, len(secrets) - self.KEPT)):
                    del secrets[old]


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=NAME,
        description="Capture on a network interface and print each TLS session as soon as "
        "its verdict (mutual TLS or not, and why) is known.",
        epilog="Stop with Ctrl-C (or SIGTERM): open sessions are reported, then the totals. "
        "Exit codes: 0 captured, 2 the capture could not start.",
    )
    p.add_argument("-i", "--interface", required=True, metavar="IFACE", help="interface name")
    p.add_argument(
        "--filter",
        default="tcp",
        metavar="BPF",
        help="capture filter in tcpdump syntax, applied in the kernel (default: tcp)",
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--count", type=int, metavar="N", help="stop after N packets")
    p.add_argument(
        "--write", "-w", metavar="FILE.pcapng", help="also save every captured packet as pcapng"
    )
    add_format(
        p,
        ("table", "jsonl"),
        "table (default): one line per session, then totals; jsonl: one JSON object per "
        "session (the statistics go to stderr)",
    )
    add_keylog(
        p,
        "NSS key log (SSLKEYLOGFILE) to decrypt TLS handshakes; re-read as it grows",
        repeat=False,
    )
    p.add_argument(
        "--engine",
        choices=("builtin", "tshark"),
        default="builtin",
        help="builtin (default): tlsinspect's own dissector, memory bounded over hours; "
        "tshark: dumpcap captures and tshark dissects (Wireshark's dissectors, a second "
        "opinion; tshark's memory grows with the connections it has seen)",
    )
    return p


def _endpoint(ip: object, port: object) -> str:
    ip = str(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def table_line(s: dict[str, object]) -> str:
    """One session on one line: time, endpoints, SNI, version, verdict, client, reason."""
    verdict = str(s["verdict"])
    if s.get("basis") not in (None, "observed"):
        verdict += f" ({s['basis']})"
    client_chain: Any = s["client_chain"]
    who = ""
    if client_chain:
        leaf = client_chain[0]
        who = f"  client={leaf.get('subject_cn') or leaf.get('subject') or '?'}"
    return (
        f"{str(s['start_time'])[11:23]}  "
        f"{_endpoint(s['client_ip'], s['client_port'])} -> "
        f"{_endpoint(s['server_ip'], s['server_port'])}  "
        f"sni={s.get('sni') or '-'}  {s.get('tls_version') or '-'}  {verdict}{who}  "
        f"| {s['reason']}"
    )


def _totals(verdicts: Counter[str]) -> str:
    parts = [f"{v} {verdicts[v]}" for v in VERDICT_ORDER if verdicts[v]]
    n = sum(verdicts.values())
    return f"{n} TLS session{'s' if n != 1 else ''}" + (f" ({', '.join(parts)})" if parts else "")


def statistics_lines(
    iface: str,
    stats: CaptureStats,
    analysed: int,
    verdicts: Counter[str],
    seconds: float,
    own: str = "tlsinspect",
) -> list[str]:
    """The end-of-capture report: what was seen, what was lost, how many sessions.

    `own`: the program whose queue drops packets when the analysis falls behind.
    """
    seen = count(analysed, "packet")
    if analysed != stats.captured:  # --count reached, or a second Ctrl-C
        seen += f" analysed of {stats.captured:,}"
    kernel = (
        f"{stats.kernel_drops:,} dropped by the kernel"
        if stats.kernel_drops is not None
        else "kernel drops not reported on this platform"
    )
    lines = [
        f"{iface}: {seen} captured in {seconds:.1f} s, {kernel}, "
        f"{stats.queue_drops:,} dropped by {own} (analysis behind); {_totals(verdicts)}"
    ]
    lost = (stats.kernel_drops or 0) + stats.queue_drops
    if lost:
        lines.append(
            f"warning: {count(lost, 'packet')} {'was' if lost == 1 else 'were'} dropped: sessions may be reported incomplete or "
            "missing (narrow --filter, or give the host more CPU)"
        )
    return lines


class _Stop:
    """Set by SIGINT/SIGTERM, --duration or --count; a second signal restores the default."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.why = ""
        self.on_set: Callable[[], None] | None = None  # called once, maybe in a signal handler
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handler)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            self.restore()  # a second signal: the default action (stop now)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.set(signal.Signals(signum).name)

    def set(self, why: str) -> None:
        if not self.event.is_set():
            self.why = why
            self.event.set()
            if self.on_set is not None:
                self.on_set()


class _Feed:
    """The captured packets as the pipeline's records, until a stop condition; then the ones
    already queued (up to --count). `packets` counts those handed to the analysis."""

    def __init__(
        self,
        source: LiveSource,
        stop: _Stop,
        deadline: float | None,
        count: int | None,
        writer: PcapngWriter | None,
        keys: GrowingKeyLog | None,
    ) -> None:
        self.packets = 0
        self.source, self.stop, self.deadline = source, stop, deadline
        self.count, self.writer, self.keys = count, writer, keys

    def __iter__(self) -> Iterator[tuple[int, int, bytes, int, int]]:
        source, stop, deadline = self.source, self.stop, self.deadline
        count, writer, keys = self.count, self.writer, self.keys
        linktype = source.linktype
        n = 0
        next_flush = time.monotonic() + FLUSH_EVERY
        waiting = True
        while True:
            if waiting:
                if stop.event.is_set():
                    waiting = False
                    source.stop()
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    stop.set("duration")
                    continue
                item = source.get(POLL)
            else:
                item = next(source.drain(), None)
                if item is None:
                    return
            if writer is not None and time.monotonic() >= next_flush:
                writer.flush()
                next_flush = time.monotonic() + FLUSH_EVERY
            if item is None:
                continue
            ts, data = item
            n += 1
            if writer is not None:
                writer.write_packet(ts, data)
            if keys is not None:
                keys.packet_ts = ts
            self.packets += 1
            yield ts, linktype, data, len(data), 0
            if count is not None and n >= count:
                stop.set("count")
                source.stop()
                return


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    if args.count is not None and args.count <= 0:
        return _fail("--count must be at least 1")
    if args.duration is not None and args.duration <= 0:
        return _fail("--duration must be more than 0")
    if args.keylog and not os.path.isfile(args.keylog):
        if not os.path.isdir(os.path.dirname(args.keylog) or "."):
            return _fail(f"key log {args.keylog}: no such file or directory")
        # else it may not exist yet: the client creates it
    stop = _Stop()
    stop.install()
    try:
        if args.engine == "tshark":
            return _capture_tshark(args, stop)
        return _capture(args, stop)
    finally:
        stop.restore()


def _fail(message: str) -> int:
    print(f"{NAME}: {message}", file=sys.stderr)
    return 2


class _Output:
    """Where sessions and statistics go: jsonl puts the statistics on stderr."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.jsonl = args.format == "jsonl"
        self.out: TextIO = sys.stdout
        self.info: TextIO = sys.stderr if self.jsonl else sys.stdout
        self.verdicts: Counter[str] = Counter()

    def header(self, args: argparse.Namespace, how: str) -> None:
        what = f" filter {args.filter!r}" if args.filter else ""
        self.info.write(
            f"{NAME + ': ' if self.jsonl else ''}capturing on {args.interface} ({how})"
            f"{what}; Ctrl-C to stop\n"
        )
        self.info.flush()

    def sessions(self, records: Iterable[SessionRecord], stop: _Stop) -> None:
        """Print each session as it comes, until the records end (or a second Ctrl-C)."""
        try:
            for r in records:
                s = session_dict(r)
                self.verdicts[str(s["verdict"])] += 1
                self.out.write((json.dumps(s) if self.jsonl else table_line(s)) + "\n")
                self.out.flush()
        except BrokenPipeError:
            stop.set("closed output")
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop without waiting for the open sessions

    def statistics(self, lines: list[str]) -> None:
        try:
            for line in lines:
                prefix = f"{NAME}: " if self.jsonl else "-- "
                self.info.write(prefix + line + "\n")
            self.info.flush()
        except BrokenPipeError:
            pass


def _capture(args: argparse.Namespace, stop: _Stop) -> int:
    keys = GrowingKeyLog(args.keylog) if args.keylog else None
    source = LiveSource(args.interface, args.filter)
    try:
        source.start()
    except LiveCaptureError as exc:
        return _fail(str(exc))
    started = time.monotonic()
    start_ns = time.time_ns()
    writer: PcapngWriter | None = None
    if args.write:
        try:
            fh = open(args.write, "wb")  # closed by writer.close()
        except OSError as exc:
            source.stop()
            return _fail(f"--write {args.write}: {exc.strerror or exc}")
        writer = PcapngWriter(
            fh, source.linktype, source.snaplen, if_name=args.interface, bpf=args.filter
        )
    output = _Output(args)
    output.header(args, source.linktype_name)
    deadline = started + args.duration if args.duration else None
    feed = _Feed(source, stop, deadline, args.count, writer, keys)
    try:
        output.sessions(Analyzer(keys).run(feed), stop)
    finally:
        source.stop()
        if writer is not None:
            writer.write_statistics(
                time.time_ns(),
                start_ns=start_ns,
                received=source.stats.kernel_packets,
                kernel_drops=source.stats.kernel_drops,
                own_drops=source.stats.queue_drops,
            )
            writer.close()
    lines = statistics_lines(
        args.interface, source.stats, feed.packets, output.verdicts, time.monotonic() - started
    )
    if writer is not None:
        lines.append(f"{count(writer.packets, 'packet')} written to {args.write}")
    output.statistics(lines)
    return 0


def _capture_tshark(args: argparse.Namespace, stop: _Stop) -> int:
    """`--engine tshark`: dumpcap captures, tshark dissects, the tshark engine decides.

    Every stop condition ends at dumpcap: --count and (through a timer) --duration, a signal
    through `_Stop.on_set`. dumpcap closes its pipe, tshark dissects what is left and ends, the
    packets run out, and the open sessions are logged as at the end of a file.
    """
    source = TsharkLive(
        args.interface, args.filter, keylog=args.keylog, write=args.write, count=args.count
    )
    try:
        source.start()
    except (LiveCaptureError, TsharkError) as exc:
        return _fail(str(exc))
    started = time.monotonic()
    stop.on_set = source.stop
    timer = threading.Timer(args.duration, stop.set, ("duration",)) if args.duration else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    output = _Output(args)
    output.header(args, "dumpcap, dissected by tshark")
    analyzer = TsharkAnalyzer(decrypting=bool(args.keylog))
    failure = ""
    try:
        output.sessions(analyzer.run(source.packets()), stop)
    except TsharkError as exc:
        failure = str(exc)
    finally:
        if timer is not None:
            timer.cancel()
        source.close()
    lines = statistics_lines(
        args.interface,
        source.stats,
        analyzer.packets,
        output.verdicts,
        time.monotonic() - started,
        own="dumpcap",
    )
    if args.write:
        # dumpcap's own count: every packet it captured went through the pipe to the file
        lines.append(f"{count(source.stats.captured, 'packet')} written to {args.write}")
    output.statistics(lines)
    if failure:
        return _fail(failure)
    return 0
