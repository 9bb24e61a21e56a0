"""Live capture through Wireshark's programs: dumpcap captures, tshark dissects (the tshark
engine of `tlsinspect live`). The only other module that starts tshark is `capture.tshark`, whose
packet conversion this one shares.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import LiveCaptureError, TsharkMissing, require
from .live import CaptureStats
from .tshark import PREFS, TsharkPacket, _convert, find_tshark

__all__ = ["TsharkLive", "parse_dumpcap_statistics"]


class TsharkLive:
    """The TCP packets of one interface as tshark dissects them, while the capture runs.

    live = TsharkLive("eth0", "tcp port 443", keylog="keys.log", write="out.pcapng")
    live.start()                       # LiveCaptureError: no such interface, permission...
    for pkt in live.packets(): ...     # TsharkPackets until the capture is stopped
    live.stop()                        # from a signal handler or another thread
    live.stats                         # CaptureStats, from dumpcap's last words

    `dumpcap -i IFACE -f BPF -w -` captures (pcapng on a pipe) and `tshark -r -` dissects what
    comes out of the pipe, through pyshark (JSON with raw bytes, a line-buffered stream: a
    packet is dissected about 0.2 s after it was captured, dumpcap's flush interval). Reading
    a pipe rather than capturing with `tshark -i`, tshark keeps no temporary capture file, which
    would grow on disk as long as the capture runs. `--write` copies the pipe to the file on the
    way (a thread): the file is dumpcap's own pcapng, its statistics block included.

    Both programs run in their own session, so the terminal's Ctrl-C reaches tlsinspect alone:
    `stop()` asks dumpcap to stop (SIGINT, as Wireshark does), dumpcap writes its last packets
    and statistics and closes the pipe, tshark dissects what is left and ends, and `packets()`
    ends after the last one. Nothing captured is lost on the way out.

    `count` is dumpcap's own autostop condition (`-c`); any other end (a duration, a signal)
    is the caller's `stop()`. TLS is found on any port by its heuristic dissector, tried before
    the port-registered ones (no port list is scanned ahead, as a file allows). tshark keeps its state for every connection for as long as it runs: over
    hours its memory grows, where the built-in engine's does not.
    """

    START_TIMEOUT = 15.0  # seconds for dumpcap to open the interface

    def __init__(
        self,
        iface: str,
        bpf: str | None = "tcp",
        *,
        keylog: str | None = None,
        write: str | None = None,
        count: int | None = None,
        tshark: str | None = None,
    ) -> None:
        self.iface = iface
        self.bpf = bpf or None
        self.keylog = keylog
        self.write = write
        self.count = count
        self.tshark = tshark
        self.stats = CaptureStats()
        self._dumpcap: Any = None  # subprocess.Popen
        self._errors: list[str] = []
        self._opened = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cap: Any = None
        self._read_fd: int | None = None

    def start(self) -> None:
        """Start dumpcap, wait until it captures, then start tshark on its output.

        Raises:
            TsharkMissing: no tshark.
            LiveCaptureError: dumpcap could not capture (one sentence), or --write cannot be
                opened.
        """
        tshark = self.tshark or find_tshark()
        dumpcap = shutil.which("dumpcap") or os.path.join(os.path.dirname(tshark), "dumpcap")
        if not os.path.exists(dumpcap):
            raise TsharkMissing()
        out = None
        if self.write:
            try:
                out = open(self.write, "wb")  # closed by the copying thread
            except OSError as exc:
                raise LiveCaptureError(f"--write {self.write}: {exc.strerror or exc}") from None
        cmd = [dumpcap, "-i", self.iface, "-w", "-"]
        if self.bpf:
            cmd += ["-f", self.bpf]
        if self.count:
            cmd += ["-c", str(self.count)]
        self._dumpcap = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._spawn(self._read_errors)
        # "File: -" comes once the interface is open; an error ends dumpcap instead
        deadline = time.monotonic() + self.START_TIMEOUT
        while not self._opened.wait(0.05):
            late = time.monotonic() > deadline
            if late:
                self._dumpcap.kill()
            if self._dumpcap.poll() is not None or late:
                self._dumpcap.wait()
                for t in self._threads:
                    t.join(1)
                if out is not None:
                    out.close()
                if late:
                    raise LiveCaptureError(
                        f"dumpcap did not start capturing on {self.iface} within "
                        f"{self.START_TIMEOUT:.0f} s"
                    )
                raise LiveCaptureError(self._failure())
        pipe = self._dumpcap.stdout
        if out is not None:
            read_fd, write_fd = os.pipe()
            self._spawn(self._copy, pipe, out, write_fd)
        else:
            read_fd = os.dup(pipe.fileno())
            pipe.close()
        # No scan ahead for ports to decode as TLS, as a file allows: try the heuristic
        # dissectors (TLS's among them) before the one a port is registered to, or a client
        # port that happens to be registered (44322, pmproxy) would hide the ClientHello.
        prefs = {**PREFS, "tcp.try_heuristic_first": "TRUE"}
        if self.keylog:
            prefs["tls.keylog_file"] = os.path.abspath(self.keylog)
        self._cap = _detached_pipe_capture(
            read_fd,
            display_filter="tcp",
            include_raw=True,
            tshark_path=tshark,
            override_prefs=prefs,
        )

    def packets(self) -> Iterator[TsharkPacket]:
        """Every TCP packet, as tshark dissects it, until dumpcap stopped and tshark ended."""
        cap, self._cap = self._cap, None
        if cap is None:
            return
        try:
            yield from _convert(cap)  # closes cap
        except KeyboardInterrupt:
            # a second Ctrl-C broke into pyshark's event loop: the reads it had pending end
            # with exceptions nobody collects, which asyncio would print at exit
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            raise
        finally:
            self.close()

    def stop(self) -> None:
        """Ask dumpcap to stop (safe in a signal handler); the packets captured still come."""
        proc = self._dumpcap
        if proc is not None and proc.returncode is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Stop everything that still runs, and read dumpcap's statistics (idempotent)."""
        self.stop()
        proc = self._dumpcap
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self._threads:
            t.join(5)
        self._threads.clear()
        if self._cap is not None:
            cap, self._cap = self._cap, None
            try:
                cap.close()
            except Exception:  # pyshark raises on a tshark it had to kill: nothing to add
                pass
        parse_dumpcap_statistics(self._errors, self.stats)

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _read_errors(self) -> None:
        for raw in self._dumpcap.stderr:
            for line in raw.decode("utf-8", "replace").replace("\r", "\n").splitlines():
                line = line.strip()
                if line.startswith("File:"):
                    self._opened.set()
                elif line:
                    self._errors.append(line)
                    del self._errors[:-40]

    def _copy(self, pipe: Any, out: Any, write_fd: int) -> None:
        """--write: dumpcap's output into the file and on to tshark, as it comes."""
        src = pipe.fileno()
        to_tshark: int | None = write_fd
        try:
            while chunk := os.read(src, 1 << 16):
                out.write(chunk)
                out.flush()
                view = memoryview(chunk)
                while to_tshark is not None and view:
                    try:
                        view = view[os.write(to_tshark, view) :]
                    except OSError:  # tshark ended: the file still gets everything
                        os.close(to_tshark)
                        to_tshark = None
        finally:
            out.close()
            pipe.close()
            if to_tshark is not None:
                os.close(to_tshark)

    def _failure(self) -> str:
        text = " ".join(self._errors)
        if "no device named" in text or "No such device" in text:
            return f"{self.iface}: no such network interface"
        if "permission to capture" in text or "Operation not permitted" in text:
            return (
                f"{self.iface}: permission denied: capturing needs root or the CAP_NET_RAW "
                "capability"
            )
        if "Invalid capture filter" in text:
            why = re.search(r"\(([^()]*)\)", text)
            return f"capture filter {self.bpf!r}: {why.group(1) if why else 'invalid'}"
        said = [e.removeprefix("dumpcap: ") for e in self._errors if e.startswith("dumpcap:")]
        return f"dumpcap failed on {self.iface}: {said[-1] if said else 'no reason given'}"


_DUMPCAP_STATS = re.compile(
    r"Packets received/dropped on interface .*: (\d+)/(\d+) "
    r"\(pcap:(\d+)/dumpcap:(\d+)/flushed:(\d+)/ps_ifdrop:(\d+)\)"
)
_DUMPCAP_CAPTURED = re.compile(r"Packets captured: (\d+)")


def parse_dumpcap_statistics(lines: Iterable[str], stats: CaptureStats) -> None:
    """Fill `stats` from what dumpcap prints when it stops:

        Packets captured: 8
        Packets received/dropped on interface 'eth0': 8/0 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0) (100.0%)

    The kernel's drops are libpcap's and the interface's (pcap, ps_ifdrop); dumpcap's own
    (dumpcap, flushed) are counted as the capture program's, like tlsinspect's queue drops.
    """
    for line in lines:
        if m := _DUMPCAP_CAPTURED.search(line):
            stats.captured = int(m.group(1))
        elif m := _DUMPCAP_STATS.search(line):
            received, _, pcap, own, flushed, ifdrop = map(int, m.groups())
            stats.kernel_packets = received
            stats.kernel_drops = pcap + ifdrop
            stats.queue_drops = own + flushed


def _detached_pipe_capture(fd: int, **kwargs: Any) -> Any:
    """pyshark's PipeCapture (`tshark -r -` on `fd`), with tshark in a session of its own.

    The one departure from pyshark: it starts tshark in the terminal's process group, where a
    Ctrl-C would kill it before it dissected the packets still in the pipe. The command line is
    pyshark's own.
    """
    import asyncio

    require("pyshark", "the tshark engine of tlsinspect live")
    from pyshark.capture.pipe_capture import PipeCapture
    from pyshark.tshark.tshark import tshark_supports_duplicate_keys

    class _Detached(PipeCapture):
        async def _get_tshark_process(self, packet_count: int | None = None) -> Any:
            params = [self._get_tshark_path(), "-l", "-n", "-T", "json"]
            params += self.get_parameters(packet_count=packet_count)
            if tshark_supports_duplicate_keys(self._get_tshark_version()):
                params.append("--no-duplicate-keys")
            proc = await asyncio.create_subprocess_exec(
                *params,
                stdin=self._pipe,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self._create_stderr_handling_task(proc.stderr)
            self._created_new_process(params, proc)
            return proc

    return _Detached(fd, use_json=True, **kwargs)
