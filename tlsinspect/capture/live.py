"""Capture packets on a network interface with scapy: the I/O edge of `tlsinspect live`.

The only module that imports scapy (lazily, in `LiveSource.start`). It opens a Linux packet
socket on one interface with scapy's `L2ListenSocket` (both directions; on a loopback interface
`L2Socket`, which drops the outgoing copy of each packet so none is seen twice), attaches the
BPF filter in the kernel, and runs scapy's `AsyncSniffer` on it in a thread. The socket hands
packets over undissected (scapy's Raw layer), with the kernel's timestamp; each goes into a
bounded queue as `(ts_ns, data)`. When the queue is full (the analysis fell behind) the packet is
dropped and counted, so memory stays bounded however long the capture runs.

Records come out as the file readers' tuples, `(ts_ns, linktype, data, orig_len, 0)`, with the
interface's link type: the same pipeline runs on them.

What this module must not do: look inside packets, or print (errors are `LiveCaptureError`s
with one sentence; the command prints them).
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import LiveCaptureError

__all__ = ["CaptureStats", "LiveCaptureError", "LiveSource", "SNAPLEN"]

SNAPLEN = 262144  # bytes asked of each recv(): more than any GSO/GRO super-packet
QUEUE_SIZE = 1 << 16  # packets waiting for the analysis at most
SOCKET_BUFFER = 8 << 20  # SO_RCVBUF asked for the packet socket

SOL_PACKET = 263
PACKET_STATISTICS = 6
_TPACKET_STATS = struct.Struct("II")  # struct tpacket_stats: tp_packets, tp_drops

# ARPHRD_* of the interface (what the packet socket delivers) -> LINKTYPE_* of the capture
_LINKTYPES = {
    1: 1,  # ARPHRD_ETHER: Ethernet
    772: 1,  # ARPHRD_LOOPBACK: Linux gives loopback frames an all-zero Ethernet header
    65534: 101,  # ARPHRD_NONE (tun, WireGuard): raw IP
    768: 101,  # ARPHRD_TUNNEL (IPIP)
    776: 101,  # ARPHRD_SIT (6in4)
    778: 101,  # ARPHRD_IPGRE
    823: 101,  # ARPHRD_TUNNEL6 (IPv6 in IPv6)
}


@dataclass(slots=True)
class CaptureStats:
    """What the capture saw and lost."""

    captured: int = 0  # packets taken off the socket
    queue_drops: int = 0  # dropped because the analysis fell behind (queue full)
    kernel_packets: int | None = None  # packets that passed the filter (PACKET_STATISTICS)
    kernel_drops: int | None = None  # of those, dropped by the kernel (socket buffer full)


class LiveSource:
    """Packets of one interface, captured by scapy in a thread.

    src = LiveSource("eth0", "tcp port 443")
    src.start()                      # LiveCaptureError: no such interface, permission...
    for ts_ns, data in src.drain(): ...   # or src.get(timeout)
    src.stop()                       # then src.stats
    """

    def __init__(self, iface: str, bpf: str | None = "tcp", queue_size: int = QUEUE_SIZE) -> None:
        self.iface = iface
        self.bpf = bpf or None
        self.linktype = 1
        self.snaplen = SNAPLEN
        self.stats = CaptureStats()
        self._queue: queue.Queue[tuple[int, bytes]] = queue.Queue(maxsize=queue_size)
        self._sock: Any = None
        self._sniffer: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Open the socket, attach the filter and start capturing.

        Raises:
            LiveCaptureError: unknown interface, no permission, bad filter, unknown link type.
        """
        try:
            socket.if_nametoindex(self.iface)
        except OSError:
            raise LiveCaptureError(f"{self.iface}: no such network interface") from None
        sock = self._open()
        hatype = sock.ins.getsockname()[3]
        if hatype not in _LINKTYPES:
            sock.close()
            raise LiveCaptureError(
                f"{self.iface}: link type ARPHRD {hatype} is not supported for live capture"
            )
        self.linktype = _LINKTYPES[hatype]
        self._sock = sock
        # Reading the counters resets them: what the kernel dropped while scapy set the socket
        # up (its buffer is 0 bytes until the filter is attached) is not this capture's loss.
        self._kernel_stats(sock)
        self.stats.kernel_packets = self.stats.kernel_drops = None

        from scapy.sendrecv import AsyncSniffer

        self._sniffer = AsyncSniffer(opened_socket=sock, prn=self._put, store=False)
        self._sniffer.start()

    def _open(self) -> Any:
        try:
            from scapy.arch.linux import L2ListenSocket, L2Socket
            from scapy.config import conf
            from scapy.error import Scapy_Exception
        except ImportError as exc:  # scapy missing, or not Linux
            raise LiveCaptureError(
                f"live capture needs scapy on Linux (pip install 'tlsinspect[live]'): {exc}"
            ) from None
        loopback = _is_loopback(self.iface)
        base = L2Socket if loopback else L2ListenSocket
        snaplen = self.snaplen

        class _RawSocket(base):  # type: ignore[valid-type,misc]
            """Hands packets over undissected, and reads whole GSO super-packets."""

            def recv(self, x: int = snaplen, **kwargs: Any) -> Any:
                return super().recv(snaplen, **kwargs)

        conf.bufsize = SOCKET_BUFFER
        # scapy warns that it has no dissector for a loopback socket's link type: no matter,
        # the packets are read raw
        log = logging.getLogger("scapy.runtime")
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            sock = _RawSocket(iface=self.iface, filter=self.bpf, promisc=False)
        except PermissionError:
            raise LiveCaptureError(
                f"{self.iface}: permission denied: capturing needs root or the CAP_NET_RAW "
                "capability"
            ) from None
        except Scapy_Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else "invalid"
            raise LiveCaptureError(f"capture filter {self.bpf!r}: {text}") from None
        except OSError as exc:
            raise LiveCaptureError(f"{self.iface}: {exc.strerror or exc}") from None
        finally:
            log.setLevel(level)
        sock.LL = conf.raw_layer  # no dissection: the pipeline reads the bytes
        return sock

    def _put(self, pkt: Any) -> None:
        # the sniffer thread: timestamps are the kernel's (SO_TIMESTAMPNS), as a float
        data = bytes(pkt.load) if hasattr(pkt, "load") else bytes(pkt)
        ts = int(round(float(pkt.time) * 1_000_000)) * 1000
        self.stats.captured += 1
        try:
            self._queue.put_nowait((ts, data))
        except queue.Full:
            self.stats.queue_drops += 1

    def get(self, timeout: float) -> tuple[int, bytes] | None:
        """The next packet, or None when none came within `timeout` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> Iterator[tuple[int, bytes]]:
        """The packets already captured, without waiting."""
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return

    @property
    def linktype_name(self) -> str:
        return {1: "Ethernet", 101: "raw IP"}.get(self.linktype, f"link type {self.linktype}")

    @property
    def running(self) -> bool:
        return self._sniffer is not None and bool(getattr(self._sniffer, "running", False))

    def stop(self) -> None:
        """Stop capturing, read the kernel's counters and close the socket (idempotent)."""
        with self._lock:
            sniffer, self._sniffer = self._sniffer, None
            sock, self._sock = self._sock, None
        if sniffer is not None:
            try:
                sniffer.stop(join=True)
            except Exception:  # scapy raises if the thread already ended on its own
                pass
        if sock is not None:
            self._kernel_stats(sock)
            sock.close()

    def _kernel_stats(self, sock: Any) -> None:
        try:
            raw = sock.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
        except OSError:
            return  # not reported on this platform
        packets, drops = _TPACKET_STATS.unpack(raw)
        # the kernel resets these counters on each read: this is the only one
        self.stats.kernel_packets = packets
        self.stats.kernel_drops = drops


def _is_loopback(iface: str) -> bool:
    try:
        with open(f"/sys/class/net/{iface}/type") as f:
            return int(f.read().strip()) == 772
    except (OSError, ValueError):
        return iface == "lo"
