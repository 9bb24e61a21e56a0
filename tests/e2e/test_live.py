"""`tlsinspect live` on a real interface, with real TLS servers and clients.

Two network namespaces joined by a veth pair (10.77.0.1 for the servers, 10.77.0.2 for the
clients and the capture); where namespaces cannot be made, loopback with a filter on the test's
ports. Python `ssl` servers (one requiring a client certificate, one not, and a TLS 1.2 one
requiring it), clients with and without a certificate and a key log, and `tlsinspect live`
capturing on the clients' end of the veth: the verdicts must stream out while the capture runs,
and the written pcapng must be readable by tshark and give tlsinspect the same verdicts.
All traffic stays inside the namespaces (or on loopback). Needs root (CAP_NET_ADMIN, CAP_NET_RAW).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0,
    reason="live capture needs Linux and root (packet sockets, network namespaces)",
)

SERVER_IP, CLIENT_IP = "10.77.0.1", "10.77.0.2"
ONE_WAY_PORT, MUTUAL_PORT, MUTUAL12_PORT, SILENT_PORT = 8443, 8444, 8445, 8446


# -- network: namespaces joined by a veth, or loopback ------------------------------------------


@dataclass
class Net:
    server_ns: str | None
    client_ns: str | None
    iface: str  # where tlsinspect captures (the clients' end)
    server_ip: str
    bpf: str = "tcp"

    def in_server(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.server_ns, *cmd] if self.server_ns else cmd

    def in_client(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, *cmd] if self.client_ns else cmd


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def net() -> Iterator[Net]:
    tag = f"{os.getpid() % 100000}"
    srv, cli = f"tlsi-s{tag}", f"tlsi-c{tag}"
    veth_s, veth_c = f"tlsis{tag}", f"tlsic{tag}"
    made: list[str] = []
    try:
        ok = shutil.which("ip") is not None
        for ns in (srv, cli):
            if ok and _ip("netns", "add", ns).returncode == 0:
                made.append(ns)
            else:
                ok = False
        steps = [
            ("link", "add", veth_s, "type", "veth", "peer", "name", veth_c),
            ("link", "set", veth_s, "netns", srv),
            ("link", "set", veth_c, "netns", cli),
            ("-n", srv, "addr", "add", f"{SERVER_IP}/24", "dev", veth_s),
            ("-n", cli, "addr", "add", f"{CLIENT_IP}/24", "dev", veth_c),
            ("-n", srv, "link", "set", veth_s, "up"),
            ("-n", cli, "link", "set", veth_c, "up"),
            ("-n", srv, "link", "set", "lo", "up"),
            ("-n", cli, "link", "set", "lo", "up"),
        ]
        for step in steps:
            if not ok:
                break
            ok = _ip(*step).returncode == 0
        if ok:
            yield Net(srv, cli, veth_c, SERVER_IP)
        else:  # no namespaces here: loopback, filtered to the test's ports
            ports = " or ".join(
                f"port {p}" for p in (ONE_WAY_PORT, MUTUAL_PORT, MUTUAL12_PORT, SILENT_PORT)
            )
            yield Net(None, None, "lo", "127.0.0.1", bpf=f"tcp and ({ports})")
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth, and so the pair
            _ip("netns", "del", ns)


# -- PKI, servers and clients --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from certs import Made, make, name
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)

    def live(cn: str, issuer: Made | None = None, **kwargs: Any) -> Made:
        return make(
            cn,
            issuer,
            subject=name(cn, None),
            ca=issuer is None,
            start=now - datetime.timedelta(hours=1),
            not_after=now + datetime.timedelta(days=30),
            serial=x509.random_serial_number(),
            key_ids=False,
            **kwargs,
        )

    ca = live("Live Test Root CA")
    server = live(
        "server.live.test",
        ca,
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
        san=[
            x509.DNSName("server.live.test"),
            x509.IPAddress(ipaddress.ip_address(SERVER_IP)),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ],
    )
    client = live("client-live", ca, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    for stem, made in (("ca", ca), ("server", server), ("client", client)):
        made.save(d / f"{stem}.pem", d / f"{stem}.key")
    return d


SERVER = textwrap.dedent(
    """
    import socket, ssl, sys, threading
    pki, host = sys.argv[1], sys.argv[2]

    def serve(port, mode, tls12):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen(16)
        ctx = None
        if mode != "silent":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(f"{pki}/server.pem", f"{pki}/server.key")
            if tls12:
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            if mode == "mutual":
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(f"{pki}/ca.pem")
        while True:
            conn, _ = ls.accept()
            threading.Thread(target=handle, args=(conn, ctx), daemon=True).start()

    def handle(conn, ctx):
        try:
            if ctx is None:  # a server that never answers the ClientHello
                conn.recv(4096)
                threading.Event().wait(60)
                return
            s = ctx.wrap_socket(conn, server_side=True)
            if s.recv(16) == b"ping\\n":
                s.sendall(b"pong\\n")
            s.close()
        except (OSError, ssl.SSLError):
            conn.close()

    for spec in sys.argv[3:]:
        port, mode, tls12 = spec.split(":")
        threading.Thread(target=serve, args=(int(port), mode, tls12 == "12"), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)

CLIENT = textwrap.dedent(
    """
    import json, socket, ssl, sys, time
    pki, host, port, cert, keylog = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    ctx = ssl.create_default_context(cafile=f"{pki}/ca.pem")
    if cert == "yes":
        ctx.load_cert_chain(f"{pki}/client.pem", f"{pki}/client.key")
    if keylog != "-":
        ctx.keylog_filename = keylog
    source = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    raw = socket.create_connection((host, port), timeout=10, source_address=("", source))
    if port == int(sys.argv[6]):  # the silent server: send a ClientHello, wait for nothing
        s = ctx.wrap_socket(raw, server_hostname="server.live.test", do_handshake_on_connect=False)
        s.settimeout(1)
        try:
            s.do_handshake()
        except (OSError, ssl.SSLError):
            pass
        print(json.dumps({"port": port}), flush=True)
        time.sleep(30)
        sys.exit(0)
    s = ctx.wrap_socket(raw, server_hostname="server.live.test")
    done = time.time()
    s.sendall(b"ping\\n")
    answer = s.recv(16)
    s.close()
    print(json.dumps({"port": port, "handshake_done": done, "answer": answer.decode()}), flush=True)
    """
)


@dataclass
class Live:
    proc: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)  # (arrival time, stdout line)
    err: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)

    def wait_lines(self, n: int, timeout: float) -> list[dict]:
        end = time.time() + timeout
        while len(self.lines) < n and time.time() < end and self.proc.poll() is None:
            time.sleep(0.05)
        return [json.loads(line) for _, line in self.lines]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        time.sleep(0.2)  # let the reader threads take the last lines
        return rc


ENGINES = ["builtin", "tshark"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each live test runs with both engines: tlsinspect's own, and dumpcap + tshark."""
    if request.param == "tshark" and not (shutil.which("tshark") and shutil.which("dumpcap")):
        pytest.skip("tshark and dumpcap are not installed")
    return str(request.param)


def start_live(net: Net, engine: str, *args: str) -> Live:
    cmd = net.in_client(
        [
            sys.executable,
            "-m",
            "tlsinspect",
            "live",
            "-i",
            net.iface,
            "--filter",
            net.bpf,
            "--engine",
            engine,
            *args,
        ]
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    live = Live(proc)

    def read_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "capturing on" in line:  # the table format's header
                live.started.set()
            else:
                live.lines.append((time.time(), line))

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            live.err.append(line)
            if "capturing on" in line:
                live.started.set()

    threading.Thread(target=read_out, daemon=True).start()
    threading.Thread(target=read_err, daemon=True).start()
    if not live.started.wait(20):
        proc.kill()
        pytest.fail(f"tlsinspect live did not start: {''.join(live.err)}")
    return live


@pytest.fixture
def servers(net: Net, pki: Path, tmp_path: Path) -> Iterator[Net]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    specs = [
        f"{ONE_WAY_PORT}:one-way:13",
        f"{MUTUAL_PORT}:mutual:13",
        f"{MUTUAL12_PORT}:mutual:12",
        f"{SILENT_PORT}:silent:13",
    ]
    proc = subprocess.Popen(
        net.in_server([sys.executable, str(script), str(pki), net.server_ip, *specs]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield net
    finally:
        proc.kill()
        proc.wait()


def client(
    net: Net,
    pki: Path,
    tmp_path: Path,
    port: int,
    cert: bool,
    keylog: Path | None,
    source_port: int = 0,
) -> dict:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    r = subprocess.run(
        net.in_client(
            [
                sys.executable,
                str(script),
                str(pki),
                net.server_ip,
                str(port),
                "yes" if cert else "no",
                str(keylog) if keylog else "-",
                str(SILENT_PORT),
                str(source_port),
            ]
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- the tests -----------------------------------------------------------------------------------


def test_verdicts_stream_out_and_the_written_capture_agrees(servers, pki, tmp_path, tshark, engine):
    out = tmp_path / "out.pcapng"
    keylog = tmp_path / "keys.log"  # does not exist yet: the first client creates it
    live = start_live(
        servers,
        engine,
        "--format",
        "jsonl",
        "--write",
        str(out),
        "--duration",
        "60",
        "--keylog",
        str(keylog),
    )
    done = {
        "one-way 1.3": client(servers, pki, tmp_path, ONE_WAY_PORT, False, keylog),
        "mutual 1.3": client(servers, pki, tmp_path, MUTUAL_PORT, True, keylog),
        "mutual 1.2": client(servers, pki, tmp_path, MUTUAL12_PORT, True, None),
    }
    assert all(d["answer"] == "pong\n" for d in done.values())
    sessions = live.wait_lines(3, timeout=15)
    assert live.proc.poll() is None, "the sessions must come out while the capture runs"
    by_port = {s["server_port"]: s for s in sessions}
    assert set(by_port) == {ONE_WAY_PORT, MUTUAL_PORT, MUTUAL12_PORT}, sessions
    one_way, mutual, mutual12 = by_port[ONE_WAY_PORT], by_port[MUTUAL_PORT], by_port[MUTUAL12_PORT]
    assert (one_way["verdict"], one_way["tls_version"]) == ("one-way", "TLS 1.3")
    assert (mutual["verdict"], mutual["tls_version"]) == ("mutual", "TLS 1.3")
    assert (mutual12["verdict"], mutual12["tls_version"]) == ("mutual", "TLS 1.2")
    # the key log was written by the clients while tlsinspect ran: read as it grew
    assert one_way["basis"] == "decrypted" and mutual["basis"] == "decrypted"
    assert mutual["client_chain"][0]["subject_cn"] == "client-live"
    assert mutual12["client_chain"][0]["subject_cn"] == "client-live"
    assert mutual12["basis"] == "observed"
    names = {ONE_WAY_PORT: "one-way 1.3", MUTUAL_PORT: "mutual 1.3", MUTUAL12_PORT: "mutual 1.2"}
    latency = {}
    for arrival, line in live.lines:
        port = json.loads(line)["server_port"]
        latency[port] = arrival - done[names[port]]["handshake_done"]
    assert all(lat < 5 for lat in latency.values()), latency
    print(f"handshake -> printed line: { ({p: round(v, 3) for p, v in latency.items()}) } s")

    assert live.stop(signal.SIGINT) == 0
    err = "".join(live.err)
    assert "3 TLS sessions (mutual 2, one-way 1)" in err, err
    assert "dropped by the kernel" in err and "packets written to" in err

    # the written capture: valid for tshark, and the same verdicts from tlsinspect
    r = subprocess.run(
        [
            tshark,
            "-r",
            str(out),
            "-Y",
            "tls.handshake.type == 1",
            "-T",
            "fields",
            "-e",
            "tcp.dstport",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert sorted(map(int, r.stdout.split())) == [ONE_WAY_PORT, MUTUAL_PORT, MUTUAL12_PORT]
    again = subprocess.run(
        [sys.executable, "-m", "tlsinspect", "--format", "json", "--keylog", str(keylog), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    reread = {s["server_port"]: s for s in json.loads(again.stdout)}
    for port, s in by_port.items():
        for k in ("verdict", "basis", "tls_version", "sni", "client_chain", "server_chain"):
            assert reread[port][k] == s[k], (port, k)


def test_sigint_mid_handshake_reports_the_open_session(servers, pki, tmp_path, tshark, engine):
    out = tmp_path / "cut.pcapng"
    live = start_live(servers, engine, "--write", str(out), "--duration", "60")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    hanging = subprocess.Popen(
        servers.in_client(
            [
                sys.executable,
                str(script),
                str(pki),
                servers.server_ip,
                str(SILENT_PORT),
                "no",
                "-",
                str(SILENT_PORT),
            ]
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hanging.stdout is not None
        assert json.loads(hanging.stdout.readline())["port"] == SILENT_PORT  # ClientHello sent
        time.sleep(0.5)
        assert live.lines[:1] == [] or "incomplete" not in live.lines[-1][1]
        assert live.stop(signal.SIGINT) == 0
    finally:
        hanging.kill()
        hanging.wait()
    text = "".join(line for _, line in live.lines)
    # table format: the open session flushed as incomplete, then the totals
    line = next(ln for ln in text.splitlines() if f":{SILENT_PORT}" in ln)
    assert " incomplete " in line and "no ServerHello" in line
    assert "1 TLS session (incomplete 1)" in text
    assert "packets written to" in text
    r = subprocess.run([tshark, "-r", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Client Hello" in r.stdout, r.stderr


def test_sigterm_and_duration_and_count_end_the_capture(servers, pki, tmp_path, engine):
    live = start_live(servers, engine, "--format", "jsonl", "--duration", "60")
    assert live.stop(signal.SIGTERM) == 0
    assert "0 TLS sessions" in "".join(live.err)

    t0 = time.monotonic()
    live = start_live(servers, engine, "--format", "jsonl", "--duration", "1")
    assert live.proc.wait(timeout=20) == 0
    assert time.monotonic() - t0 < 15

    live = start_live(servers, engine, "--format", "jsonl", "--count", "3", "--duration", "60")
    client(servers, pki, tmp_path, ONE_WAY_PORT, False, None)
    assert live.proc.wait(timeout=20) == 0
    time.sleep(0.2)
    assert "3 packets analysed of " in "".join(live.err) or "3 packets captured" in "".join(
        live.err
    )


def test_a_client_port_registered_to_another_protocol(servers, pki, tmp_path, engine):
    # 44322 is registered to pmproxy: tshark would dissect the ClientHello as that protocol,
    # and a live capture cannot scan ahead for ports to decode as TLS
    live = start_live(servers, engine, "--format", "jsonl", "--duration", "60")
    done = client(servers, pki, tmp_path, MUTUAL_PORT, True, None, source_port=44322)
    assert done["answer"] == "pong\n"
    sessions = live.wait_lines(1, timeout=15)
    assert live.stop(signal.SIGINT) == 0
    assert [(s["client_port"], s["verdict"]) for s in sessions] == [(44322, "mutual")]


def run_live(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "tlsinspect", "live", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unknown_interface_is_one_line_and_exit_2(engine):
    r = run_live("-i", "nosuch-if0", "--duration", "1", "--engine", engine)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "tlsinspect live: nosuch-if0: no such network interface"
    ]


def test_bad_filter_is_one_line_and_exit_2(engine):
    r = run_live("-i", "lo", "--filter", "tcp port", "--duration", "1", "--engine", engine)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlsinspect live: capture filter 'tcp port'")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_permission_denied_is_one_line_and_exit_2(engine):
    # root without CAP_NET_RAW cannot open a packet socket
    r = run_live(
        "-i",
        "lo",
        "--duration",
        "1",
        "--engine",
        engine,
        prefix=["setpriv", "--bounding-set", "-net_raw", "--"],
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [
        "tlsinspect live: lo: permission denied: capturing needs root or the CAP_NET_RAW capability"
    ]
