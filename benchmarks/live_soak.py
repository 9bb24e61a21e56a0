#!/usr/bin/env python3
"""Soak test of `tlsinspect live`: memory over a long capture with steady real TLS traffic.

    python benchmarks/live_soak.py --minutes 60 --rate 20            # the built-in engine
    python benchmarks/live_soak.py --minutes 10 --engine tshark      # dumpcap + tshark
    python benchmarks/live_soak.py --minutes 60 --json soak.json

Needs root (capturing on loopback). Everything stays on 127.0.0.1: a Python `ssl` server with a
port that requires a client certificate (TLS 1.3 and TLS 1.2) and one that does not; client
threads make `--rate` connections per second in all, round-robin over four kinds (mutual TLS
1.3, one-way TLS 1.3, mutual TLS 1.2, one-way TLS 1.2 to the port that wants a certificate, which
refuses it), each sending a request and reading the answer. Every `--hang-every`-th connection
sends its ClientHello to a server that never answers and stays open: tlsinspect must log it as
`incomplete` once it has been idle for 300 s of packet time, not keep it.

`tlsinspect live -i lo --format jsonl` runs meanwhile. Every `--every` seconds the benchmark
prints the connections made, the sessions printed (per verdict), and the resident memory of
tlsinspect (for the tshark engine, of tlsinspect, tshark and dumpcap, each): memory is bounded
when the last samples are no higher than those after the first minutes, while the number of
sessions keeps growing. At the end, SIGINT: the totals line of tlsinspect is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "captures"))
from record import Pki, build_pki  # noqa: E402  (the recorded captures' PKI)

SERVERS = ("mutual", "one-way", "tls12", "silent")  # on --port-base, +1, +2, +3
HOST = "127.0.0.1"


def listen(port: int) -> socket.socket:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((HOST, port))  # a port in use ends the benchmark here
    ls.listen(256)
    ls.settimeout(0.5)
    return ls


def serve(pki: Pki, ls: socket.socket, mode: str, stop: threading.Event) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server.chain, pki.server.key)
    if mode == "tls12":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if mode in ("mutual", "tls12"):
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki.root)
    held: list[socket.socket] = []
    while not stop.is_set():
        try:
            conn, _ = ls.accept()
        except TimeoutError:
            continue
        if mode == "silent":
            held.append(conn)  # never answers; closed at the end
            continue
        threading.Thread(target=answer, args=(ctx, conn), daemon=True).start()
    for c in held:
        c.close()


def answer(ctx: ssl.SSLContext, conn: socket.socket) -> None:
    try:
        conn.settimeout(10)
        s = ctx.wrap_socket(conn, server_side=True)
        s.recv(64)
        s.sendall(b"pong\n")
        s.close()
    except (OSError, ssl.SSLError):
        conn.close()


KINDS = [
    ("mutual 1.3", "mutual", True, None),
    ("one-way 1.3", "one-way", False, None),
    ("mutual 1.2", "tls12", True, ssl.TLSVersion.TLSv1_2),
    ("refused 1.2", "tls12", False, ssl.TLSVersion.TLSv1_2),
]


def connect(
    pki: Pki, ports: dict[str, int], n: int, hang_every: int, hanging: list[socket.socket]
) -> str:
    ctx = ssl.create_default_context(cafile=str(pki.root))
    ctx.check_hostname = False
    if hang_every and n % hang_every == hang_every - 1:
        raw = socket.create_connection((HOST, ports["silent"]), timeout=5)
        s = ctx.wrap_socket(raw, do_handshake_on_connect=False)
        s.setblocking(False)
        try:
            s.do_handshake()  # sends the ClientHello, no answer comes
        except (ssl.SSLWantReadError, OSError):
            pass
        hanging.append(s)
        return "hanging"
    kind, server, cert, version = KINDS[n % len(KINDS)]
    if cert:
        ctx.load_cert_chain(pki.clients["alice"].chain, pki.clients["alice"].key)
    if version:
        ctx.maximum_version = version
    try:
        with socket.create_connection((HOST, ports[server]), timeout=10) as raw:
            with ctx.wrap_socket(raw) as s:
                s.sendall(b"ping\n")
                s.recv(16)
    except (OSError, ssl.SSLError):
        pass  # the refused ones
    return kind


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> dict[str, int]:
    """name -> pid of the processes under `pid` (tshark, dumpcap)."""
    out: dict[str, int] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for k in map(int, kids):
            try:
                name = Path(f"/proc/{k}/comm").read_text().strip()
            except OSError:
                continue
            out[name] = k
            todo.append(k)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=float, default=20, help="connections per second")
    ap.add_argument("--every", type=float, default=60, help="seconds between samples")
    ap.add_argument("--hang-every", type=int, default=50, help="every Nth connection hangs")
    ap.add_argument("--engine", choices=("builtin", "tshark"), default="builtin")
    ap.add_argument("--port-base", type=int, default=18443, help="the servers' first port")
    ap.add_argument("--write", metavar="FILE", help="have tlsinspect live --write the capture")
    ap.add_argument("--sessions", metavar="FILE", help="save the JSON Lines tlsinspect printed")
    ap.add_argument("--json", metavar="FILE", help="write the samples as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("live_soak: capturing needs root", file=sys.stderr)
        return 2

    pki = build_pki(Path(tempfile.mkdtemp(prefix="tlsinspect-soak-")), None)
    stop = threading.Event()
    ports = {mode: args.port_base + i for i, mode in enumerate(SERVERS)}
    for mode, port in ports.items():
        ls = listen(port)
        threading.Thread(target=serve, args=(pki, ls, mode, stop), daemon=True).start()
    bpf = " or ".join(f"port {p}" for p in ports.values())
    live = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tlsinspect",
            "live",
            "-i",
            "lo",
            "--filter",
            f"tcp and ({bpf})",
            "--format",
            "jsonl",
            "--engine",
            args.engine,
            *(["--write", args.write] if args.write else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    verdicts: Counter[str] = Counter()
    errors: list[str] = []
    started = threading.Event()

    saved = open(args.sessions, "w") if args.sessions else None  # noqa: SIM115

    def read_out() -> None:
        assert live.stdout is not None
        for line in live.stdout:
            verdicts[json.loads(line)["verdict"]] += 1
            if saved is not None:
                saved.write(line)

    def read_err() -> None:
        assert live.stderr is not None
        for line in live.stderr:
            errors.append(line.rstrip())
            if "capturing on" in line:
                started.set()

    threading.Thread(target=read_out, daemon=True).start()
    threading.Thread(target=read_err, daemon=True).start()
    if not started.wait(30):
        print("live_soak: tlsinspect live did not start:", *errors, sep="\n", file=sys.stderr)
        live.kill()
        return 1

    made: Counter[str] = Counter()
    hanging: list[socket.socket] = []
    samples: list[dict[str, object]] = []
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    next_sample = t0 + args.every
    n = 0
    print(f"{'minute':>7} {'connections':>11} {'sessions':>9} {'hanging':>8}  RSS MB  verdicts")
    try:  # Ctrl-C ends the traffic early; tlsinspect is still stopped cleanly
        while time.monotonic() < end and live.poll() is None:
            due = t0 + n / args.rate
            if time.monotonic() < due:
                time.sleep(min(due - time.monotonic(), 0.05))
                continue
            made[connect(pki, ports, n, args.hang_every, hanging)] += 1
            n += 1
            # a hanging connection is closed by the client after 10 minutes (a reset or FIN
            # that tlsinspect has long since had no flow for, if it expired the flow at 300 s)
            if len(hanging) > args.rate * 600 / max(args.hang_every, 1):
                hanging.pop(0).close()
            if time.monotonic() >= next_sample:
                next_sample += args.every
                procs = {"tlsinspect": live.pid, **descendants(live.pid)}
                rss = {name: round(rss_kb(pid) / 1024, 1) for name, pid in procs.items()}
                sample = {
                    "minute": round((time.monotonic() - t0) / 60, 2),
                    "connections": n,
                    "sessions": sum(verdicts.values()),
                    "hanging_open": len(hanging),
                    "rss_mb": rss,
                    "verdicts": dict(verdicts),
                }
                samples.append(sample)
                mem = " ".join(f"{k}={v}" for k, v in rss.items())
                print(
                    f"{sample['minute']:>7} {n:>11,} {sample['sessions']:>9,} {len(hanging):>8}  "
                    f"{mem}  {dict(verdicts)}",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted")
    time.sleep(2)
    live.send_signal(signal.SIGINT)
    rc = live.wait(120)
    time.sleep(0.5)
    stop.set()
    for s in hanging:
        s.close()
    if saved is not None:
        saved.close()
    print(f"connections made: {dict(made)}")
    print(f"tlsinspect live exit {rc}: " + " | ".join(e for e in errors if "capturing" not in e))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "engine": args.engine,
                    "rate": args.rate,
                    "made": dict(made),
                    "samples": samples,
                    "stderr": errors,
                },
                indent=2,
            )
        )
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
