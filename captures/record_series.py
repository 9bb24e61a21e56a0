#!/usr/bin/env python3
"""Record a rotated capture: one capture cut into files by the capture tool, with a TLS
connection that crosses the file boundaries, and a truth file saying what was sent.

    python captures/record_series.py --out DIR [--tool dumpcap|tcpdump] [--size N] [--bytes N]
                                     [--prefix NAME]

On 127.0.0.1, Python's `ssl` (OpenSSL) runs two servers of the test PKI (recording/pki.py): one
that requires a client certificate, one that asks for none. While the capture tool records:

1. connection A, TLS 1.2, client-alice's certificate (mutual): the handshake, then `--bytes` of
   application data in 8 KiB writes, so that the tool rotates its file several times while the
   connection is open;
2. halfway through A's data, connection B, TLS 1.2 without client certificate (one-way), which
   therefore starts in a later file than A;
3. the rest of A's data, then both ends close A.

`--tool dumpcap` writes a ring of files of `--size` kB (`dumpcap -b filesize:N`): the files
`PREFIX_NNNNN_YYYYmmddHHMMSS.pcapng`. `--tool tcpdump` writes `tcpdump -C N` files of N million
bytes (1 is its smallest): `PREFIX.pcap`, `PREFIX.pcap1`, ... `--tool tcpdump-time` writes
`tcpdump -G N` files of N seconds, `PREFIX-YYYYmmdd-HHMMSS.pcap` (with `--seconds`, so that A
lasts long enough). The truth (`PREFIX.truth.json`) lists each connection with its client port
and its verdict.

captures/series/ holds `--tool dumpcap --size 40 --bytes 100000 --prefix ring`; the tests
record `--tool tcpdump --size 1` in a temporary directory (tests/e2e/test_series.py).
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

from recording.capture import CAPTURE_SETTLE, start_tool, stop_tool
from recording.core import HOST, PING, PONG, SERVER_NAME, TLS12, RecordingError
from recording.pki import Pki, build_pki
from recording.pyssl import client_context, server_context

WRITE = 8192  # bytes per application write
PAUSE = 0.002  # seconds between writes, so the capture tool keeps up


def _serve(listener: socket.socket, ctx: ssl.SSLContext, stop: threading.Event) -> None:
    """Accept connections; answer each once, then read it to its end (the client closes)."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        threading.Thread(target=_drain, args=(conn, ctx), daemon=True).start()


def _drain(conn: socket.socket, ctx: ssl.SSLContext) -> None:
    conn.settimeout(10)
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(PONG)  # the server's first record is data: the client was accepted
            while tls.recv(65536):
                pass
            tls.unwrap()
    except (OSError, ssl.SSLError):
        pass


def _listener() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, 0))
    s.listen()
    return s


def _tool_command(tool: str, out: Path, prefix: str, size: int, ports: list[int]) -> list[str]:
    bpf = "tcp and (" + " or ".join(f"port {p}" for p in ports) + ")"
    if tool == "dumpcap":
        path = out / f"{prefix}.pcapng"
        return ["dumpcap", "-q", "-i", "lo", "-f", bpf, "-b", f"filesize:{size}", "-w", str(path)]
    base = ["tcpdump", "-n", "-U", "-Z", "root", "-i", "lo"]
    if tool == "tcpdump-time":  # a new file every `size` seconds, named by its start time
        return [*base, "-G", str(size), "-w", str(out / f"{prefix}-%Y%m%d-%H%M%S.pcap"), bpf]
    return [*base, "-C", str(size), "-w", str(out / f"{prefix}.pcap"), bpf]


def record(
    out: Path, tool: str, size: int, total: int, prefix: str, seconds: float = 0.0
) -> dict[str, object]:
    """Record the connections into rotated files under `out`; return the truth. `seconds`:
    spread connection A's data over that long (for files rotated by time)."""
    pause = max(PAUSE, seconds / max(total // WRITE, 1))
    with tempfile.TemporaryDirectory(prefix="series-pki-") as work:  # the private keys
        return _record(out, tool, size, total, prefix, pause, build_pki(Path(work), None))


def _record(
    out: Path, tool: str, size: int, total: int, prefix: str, pause: float, pki: Pki
) -> dict[str, object]:
    mutual_srv = server_context(pki, TLS12, ssl.CERT_REQUIRED)
    oneway_srv = server_context(pki, TLS12, ssl.CERT_NONE)
    listeners = [_listener(), _listener()]
    ports = [ls.getsockname()[1] for ls in listeners]
    stop = threading.Event()
    for ls, ctx in zip(listeners, (mutual_srv, oneway_srv), strict=True):
        threading.Thread(target=_serve, args=(ls, ctx, stop), daemon=True).start()
    out.mkdir(parents=True, exist_ok=True)
    ready = "Capturing on" if tool == "dumpcap" else "listening on"
    proc, err = start_tool(_tool_command(tool, out, prefix, size, ports), tool, ready)
    sessions = []
    try:
        a_ctx = client_context(pki, TLS12, pki.clients["alice"])
        b_ctx = client_context(pki, TLS12, None)
        raw_a = socket.create_connection((HOST, ports[0]))
        sessions.append({"name": "A", "client_port": raw_a.getsockname()[1], "verdict": "mutual"})
        with a_ctx.wrap_socket(raw_a, server_hostname=SERVER_NAME) as a:
            a.recv(len(PONG))
            data = bytes(range(256)) * (WRITE // 256)
            sent = 0
            while sent < total:
                a.sendall(data)
                sent += len(data)
                time.sleep(pause)
                if sent >= total // 2 and len(sessions) == 1:
                    raw_b = socket.create_connection((HOST, ports[1]))
                    port_b = raw_b.getsockname()[1]
                    sessions.append({"name": "B", "client_port": port_b, "verdict": "one-way"})
                    with b_ctx.wrap_socket(raw_b, server_hostname=SERVER_NAME) as b:
                        b.recv(len(PONG))
                        b.sendall(PING)
                        b.unwrap()
            a.unwrap()
        time.sleep(CAPTURE_SETTLE)
    finally:
        stop_tool(proc, err)
        stop.set()
        for ls in listeners:
            ls.close()
    files = sorted(
        p.name for p in out.iterdir() if p.name.startswith(prefix) and "truth" not in p.name
    )
    if len(files) < 2:
        raise RecordingError(f"{tool} wrote {len(files)} file(s): the data did not rotate it")
    truth = {
        "recorded_with": f"{tool.split('-')[0]} -i lo "
        + {"dumpcap": "-b filesize:", "tcpdump": "-C ", "tcpdump-time": "-G "}[tool]
        + str(size),
        "server_ports": {"mutual": ports[0], "one-way": ports[1]},
        "application_bytes": total,
        "files": files,
        "sessions": sessions,
    }
    (out / f"{prefix}.truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--tool", choices=("dumpcap", "tcpdump", "tcpdump-time"), default="dumpcap")
    p.add_argument(
        "--size",
        type=int,
        default=40,
        help="dumpcap: kB per file; tcpdump: MB per file; tcpdump-time: seconds per file",
    )
    p.add_argument("--seconds", type=float, default=0.0, help="spread A's data over this long")
    p.add_argument("--bytes", type=int, default=100_000, help="application data of connection A")
    p.add_argument("--prefix", default="ring")
    args = p.parse_args()
    try:
        truth = record(args.out, args.tool, args.size, args.bytes, args.prefix, args.seconds)
    except RecordingError as exc:
        print(f"record_series: {exc}", file=sys.stderr)
        return 1
    print(f"{len(truth['files'])} files in {args.out}: {', '.join(truth['files'])}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
