"""Recording loopback traffic with ``dumpcap`` or ``tcpdump``, and watching the sockets of the
sessions through /proc (probing would put extra connections into the capture)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import TOOL_TIMEOUT, RecordingError

CAPTURE_START_TIMEOUT = 10.0
CAPTURE_WARMUP = 0.5
CAPTURE_SETTLE = 0.5


def _tcp_states(port: int) -> list[str]:
    """States (hex, as in /proc/net/tcp) of the sockets with ``port`` at either end."""
    states: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(FileNotFoundError), open(table, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                ends = (fields[1], fields[2])
                if any(int(end.rsplit(":", 1)[1], 16) == port for end in ends):
                    states.append(fields[3])
    return states


def listening(port: int) -> bool:
    return "0A" in _tcp_states(port)


def connections_closed(port: int) -> bool:
    """True when no connection to ``port`` is still open (only LISTEN, TIME_WAIT or CLOSE)."""
    return all(state in ("0A", "06", "07") for state in _tcp_states(port))


def wait_until(ready: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + TOOL_TIMEOUT
    while not listening(port):
        if proc is not None and proc.poll() is not None:
            raise RecordingError(f"server for port {port} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RecordingError(f"nothing listens on port {port}")
        time.sleep(0.02)


def ensure_free(port: int) -> None:
    if listening(port):
        raise RecordingError(f"port {port} is already in use")


class Drain:
    """Collect a pipe's bytes in a background thread."""

    def __init__(self, stream: Any) -> None:
        self.data = bytearray()
        self._stream = stream
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for chunk in iter(lambda: self._stream.read1(4096), b""):
            with self._lock:
                self.data.extend(chunk)

    def text(self) -> str:
        with self._lock:
            return self.data.decode(errors="replace")

    def join(self) -> str:
        self._thread.join(TOOL_TIMEOUT)
        return self.text()


@dataclass(frozen=True)
class CaptureTool:
    program: str
    interface: str
    ready: str

    @property
    def description(self) -> str:
        """What the truth's ``captured_with`` says."""
        return f"{self.program} -i {self.interface}"

    def command(self, path: Path, bpf: str) -> list[str]:
        if self.program == "dumpcap":
            return ["dumpcap", "-q", "-i", self.interface, "-f", bpf, "-w", str(path)]
        return [
            "tcpdump",
            "-n",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
            "-i",
            self.interface,
            "-w",
            str(path),
            bpf,
        ]


DUMPCAP_LO = CaptureTool("dumpcap", "lo", "Capturing on")
TCPDUMP_LO = CaptureTool("tcpdump", "lo", "listening on")
TCPDUMP_ANY = CaptureTool("tcpdump", "any", "listening on")


def start_tool(
    command: list[str], program: str, ready: str
) -> tuple[subprocess.Popen[bytes], Drain]:
    """Start a capture tool and wait until it says it captures (``ready`` on its stderr)."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    err = Drain(proc.stderr)
    deadline = time.monotonic() + CAPTURE_START_TIMEOUT
    while ready not in err.text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RecordingError(f"{program} did not start: {err.join().strip()}")
        time.sleep(0.02)
    time.sleep(CAPTURE_WARMUP)
    return proc, err


def stop_tool(proc: subprocess.Popen[bytes], err: Drain) -> str:
    """Stop a capture tool as Ctrl-C does (it writes out what it holds); return its stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return err.join()


@contextmanager
def capture(tool: CaptureTool, path: Path, ports: Sequence[int]) -> Iterator[None]:
    """Record loopback TCP traffic on ``ports`` into ``path`` while the block runs."""
    bpf = "tcp and (" + " or ".join(f"port {p}" for p in sorted(set(ports))) + ")"
    path.unlink(missing_ok=True)
    proc, err = start_tool(tool.command(path, bpf), tool.program, tool.ready)
    try:
        yield
        time.sleep(CAPTURE_SETTLE)
    finally:
        log = stop_tool(proc, err)
    if proc.returncode != 0 or not path.exists():
        raise RecordingError(f"{tool.program} failed ({proc.returncode}): {log.strip()}")
