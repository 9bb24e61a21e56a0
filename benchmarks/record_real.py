#!/usr/bin/env python3
"""Record the two benchmark captures of real OpenSSL traffic on loopback (as root).

    python benchmarks/record_real.py                 # both, into benchmarks/real-*.pcap
    python benchmarks/record_real.py --only handshakes

Both captures are Python ``ssl`` (OpenSSL) servers and clients on 127.0.0.1, recorded by
``tcpdump -i lo`` with a 64 MiB kernel buffer. Every client socket asks for a 1448-byte MSS
(``TCP_MAXSEG`` before ``connect``), so that segments have the size they have on Ethernet rather
than the 64 KiB of loopback; the machine's own loopback is left as it is.

- ``real-bulk.pcap``: 400 sessions (TLS 1.3 and 1.2, mutual and one-way, in turn), each a request
  answered by about 640 KB of application data: about 256 MB.
- ``real-handshakes.pcap``: 3,000 short sessions over four servers (TLS 1.3 mutual, TLS 1.3
  one-way, TLS 1.2 mutual, TLS 1.2 one-way; clients alice, bob and carol), each a request and
  an answer of 8 KB: the handshakes dominate.

Four clients run at once, so the sessions interleave as on a busy server. The PKI is the one of
``captures/record.py`` (``recording.pki``), made afresh in a temporary directory.
A ``.meta.json`` next to each capture says what was recorded; tcpdump's count of packets the
kernel dropped is checked to be 0.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "captures"))

from recording.core import TLS12, TLS13  # noqa: E402
from recording.pki import Pki, build_pki  # noqa: E402
from recording.pyssl import client_context, server_context  # noqa: E402

MSS = 1448
#: The clients' receive buffer: loopback offloads segmentation, so without a small window the
#: capture would hold 64 KiB segments; with it most carry one or two MSS, as on a real link.
RCVBUF = 4096
CLIENTS = 4
HOST = "127.0.0.1"
SERVER_NAME = "server.example.test"


@dataclass(frozen=True)
class Server:
    port: int
    version: str  # TLS12 / TLS13 of recording.core
    mutual: bool


@dataclass(frozen=True)
class Spec:
    name: str
    sessions: int
    answer: int  # bytes of application data the server sends per session
    servers: tuple[Server, ...]

    @property
    def path(self) -> Path:
        return HERE / f"real-{self.name}.pcap"


SERVERS = (
    Server(8471, TLS13, True),
    Server(8472, TLS13, False),
    Server(8473, TLS12, True),
    Server(8474, TLS12, False),
)
SPECS = {
    "bulk": Spec("bulk", 400, 640_000, SERVERS),
    "handshakes": Spec("handshakes", 3000, 8_000, SERVERS),
}
CLIENT_NAMES = ("alice", "bob", "carol")


def _serve(
    listener: socket.socket, ctx: ssl.SSLContext, answer: int, stop: threading.Event
) -> None:
    """Accept until ``stop``; each connection on its own thread: handshake, read, answer."""
    chunk = b"x" * 16384

    def one(sock: socket.socket) -> None:
        with sock, suppress(OSError, ssl.SSLError):
            tls = ctx.wrap_socket(sock, server_side=True)
            tls.recv(1024)
            left = answer
            while left > 0:
                left -= tls.send(chunk[: min(left, len(chunk))])
            tls.unwrap()

    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            continue
        threading.Thread(target=one, args=(sock,), daemon=True).start()


def _client(port: int, ctx: ssl.SSLContext, answer: int) -> bool:
    """One session: connect with a 1448-byte MSS, request, read the whole answer, close."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.settimeout(30)
    sock.connect((HOST, port))
    with ctx.wrap_socket(sock, server_hostname=SERVER_NAME) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: server.example.test\r\n\r\n")
        got = 0
        while got < answer:
            data = tls.recv(65536)
            if not data:
                break
            got += len(data)
        with suppress(OSError, ssl.SSLError):
            tls.unwrap()
    return got == answer


def record(spec: Spec, pki: Pki) -> dict[str, object]:
    stop = threading.Event()
    threads = []
    listeners = []
    for server in spec.servers:
        verify = ssl.CERT_REQUIRED if server.mutual else ssl.CERT_NONE
        ctx = server_context(pki, server.version, verify)
        listener = socket.create_server((HOST, server.port), backlog=64)
        listeners.append(listener)
        t = threading.Thread(target=_serve, args=(listener, ctx, spec.answer, stop), daemon=True)
        t.start()
        threads.append(t)
    contexts = {
        (s.port, who): client_context(pki, s.version, pki.client(who) if s.mutual else None)
        for s in spec.servers
        for who in CLIENT_NAMES
    }
    bpf = "tcp and (" + " or ".join(f"port {s.port}" for s in spec.servers) + ")"
    spec.path.unlink(missing_ok=True)
    dump = subprocess.Popen(
        ["tcpdump", "-n", "-B", "65536", "-Z", "root", "-i", "lo", "-w", str(spec.path), bpf],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # tcpdump prints "listening on" before the filter is in place
    t0 = time.monotonic()
    jobs = []
    for i in range(spec.sessions):
        server = spec.servers[i % len(spec.servers)]
        who = CLIENT_NAMES[(i // len(spec.servers)) % len(CLIENT_NAMES)]
        jobs.append((server.port, contexts[(server.port, who)], spec.answer))
    with ThreadPoolExecutor(CLIENTS) as pool:
        done = list(pool.map(lambda job: _client(*job), jobs))
    took = time.monotonic() - t0
    time.sleep(1.0)
    dump.send_signal(signal.SIGINT)
    _, log = dump.communicate(timeout=60)
    stop.set()
    for t in threads:
        t.join()
    for listener in listeners:
        listener.close()
    dropped = re.search(r"(\d+) packets? dropped by kernel", log)
    captured = re.search(r"(\d+) packets? captured", log)
    meta: dict[str, object] = {
        "file": spec.path.name,
        "recorded_by": "benchmarks/record_real.py",
        "sessions": spec.sessions,
        "sessions_completed": sum(done),
        "answer_bytes": spec.answer,
        "servers": [vars(s) for s in spec.servers],
        "packets": int(captured.group(1)) if captured else None,
        "dropped_by_kernel": int(dropped.group(1)) if dropped else None,
        "bytes": spec.path.stat().st_size,
        "seconds": round(took, 1),
        "openssl": ssl.OPENSSL_VERSION,
    }
    spec.path.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if meta["dropped_by_kernel"] != 0 or sum(done) != spec.sessions:
        raise SystemExit(f"{spec.name}: incomplete recording: {meta}")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SPECS), action="append")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        pki = build_pki(Path(tmp), None)
        for name in args.only or sorted(SPECS):
            meta = record(SPECS[name], pki)
            print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
