#!/usr/bin/env python3
"""Record TLS sessions whose content only a key log makes readable and that arrives in an unusual
form, with their ground truth and key log.

The companion of ``record.py`` (whose PKI, capture and Python ``ssl`` ends, in
``captures/recording/``, it shares) for:

- TLS 1.3 certificate compression (RFC 8879): the server's Certificate, and the client's when
  the CertificateRequest offers it, sent as CompressedCertificate (handshake type 25) with
  zlib, brotli or zstd. The stack is tlslite-ng on both sides (OpenSSL 3.0 has no RFC 8879, and
  Debian's GnuTLS 3.7.9 is built without its compression libraries: ``gnutls-cli
  --compress-cert=zlib`` answers "Unknown compression method");
- TLS 1.2 servers that check the client's chain only after the handshake, once their own
  Finished is sent, and refuse it with an encrypted alert: tlslite-ng's server with a
  ``Checker`` that does not accept the client's certificate (it sends a fatal close_notify), and
  a tlslite-ng server whose application checks the chain against its CA and sends
  ``bad_certificate`` with the library's alert routine. The client is Python ``ssl``.

Every session runs on 127.0.0.1 while ``dumpcap`` records the loopback interface. tlslite-ng
writes no key log: the TLS 1.3 traffic secrets are taken where the library installs them
(``RecordLayer.calcTLS1_3PendingState``) and written as NSS key log lines; the TLS 1.2 client
writes its own (``SSLContext.keylog_filename``). The truth comes from what the stacks reported
(the chains tlslite-ng's server received, the compression calls the senders made, the alert
Python's client read), never from the capture.

Usage (as root)::

    python3 captures/record_compress.py [--out DIR]
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recording import cli, core, keylog, truth
from recording.capture import DUMPCAP_LO, capture
from recording.core import FAILED, HOST, IO_TIMEOUT, MUTUAL, PING, PONG, RecordingError, check
from recording.pki import Identity, Pki, build_pki
from recording.programs import tool_versions
from recording.pyssl import client_context, listener, recv_line
from recording.truth import Where, session_entry, verdict_of

try:
    import tlslite
    from tlslite import HandshakeSettings, TLSConnection, X509CertChain, parsePEMKey
    from tlslite.checker import Checker
    from tlslite.constants import AlertDescription
    from tlslite.errors import TLSAuthenticationError, TLSLocalAlert
    from tlslite.messages import CompressedCertificate
    from tlslite.recordlayer import RecordLayer
except ImportError:  # checked in main()
    tlslite = None

RECORDED_BY = "captures/record_compress.py"
NAME = "compress"
LATE_CHECKER = "checker"  # tlslite-ng's Checker refuses after the handshake
LATE_APP = "application"  # the application checks the chain and sends bad_certificate


@dataclass(frozen=True)
class Tls13Scenario:
    """tlslite-ng client and server, TLS 1.3, with the compression each side may send."""

    port: int
    scenario: str
    expect: str
    server_sends: tuple[str, ...]  # algorithms the server may compress its chain with
    client_sends: tuple[str, ...] = ()  # ... the client (and the server accepts: receive list)
    client_id: str | None = None
    request: bool = False


@dataclass(frozen=True)
class LateScenario:
    """A tlslite-ng TLS 1.2 server that checks the client chain after its Finished; Python
    ``ssl`` client."""

    port: int
    scenario: str
    expect: str
    client_id: str
    refuse: str | None  # LATE_CHECKER, LATE_APP, or None (the check passes)


TLS13_SCENARIOS = (
    Tls13Scenario(9600, "tls13-compressed-zlib-one-way", core.ONE_WAY, ("zlib",)),
    Tls13Scenario(
        9601,
        "tls13-compressed-brotli-mutual",
        MUTUAL,
        ("brotli",),
        ("brotli",),
        "alice",
        request=True,
    ),
    Tls13Scenario(
        9602, "tls13-compressed-zstd-mutual", MUTUAL, ("zstd",), ("zstd",), "bob", request=True
    ),
    # the server sends its chain uncompressed, the client compresses its own with zlib
    Tls13Scenario(
        9603, "tls13-compressed-client-zlib-mutual", MUTUAL, (), ("zlib",), "carol", request=True
    ),
    Tls13Scenario(
        9604,
        "tls13-compressed-cert-requested-not-sent",
        core.NOT_SENT,
        ("zlib",),
        ("zlib",),
        None,
        request=True,
    ),
)
LATE_SCENARIOS = (
    LateScenario(9610, "tls12-late-refusal-checker", FAILED, "alice", LATE_CHECKER),
    LateScenario(9611, "tls12-late-refusal-bad-certificate", FAILED, "mallory", LATE_APP),
    LateScenario(9612, "tls12-late-check-passes", MUTUAL, "bob", None),
)
PORTS = [s.port for s in TLS13_SCENARIOS] + [s.port for s in LATE_SCENARIOS]


# --------------------------------------------------------------------------------------------
# What tlslite-ng did: compression calls and TLS 1.3 secrets, per thread


@dataclass
class Taps:
    compressed: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # thread -> sent
    secrets: dict[int, list[tuple[bytes, bytes]]] = field(default_factory=dict)  # record layer
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        create = CompressedCertificate.create
        pending = RecordLayer.calcTLS1_3PendingState
        taps = self

        # create() is what a sender calls; parse() compresses again what it received
        def _create(msg_self: Any, algo: int, chain: Any, context: bytes = b"") -> Any:
            out = create(msg_self, algo, chain, context)
            with taps.lock:
                who = threading.current_thread().name
                taps.compressed.setdefault(who, []).append(
                    (algo, len(chain.x509List) if chain else 0)
                )
            return out

        def _pending(layer: Any, suite: int, cl: bytes, sr: bytes, impl: Any) -> Any:
            with taps.lock:
                taps.secrets.setdefault(id(layer), []).append((bytes(cl), bytes(sr)))
            return pending(layer, suite, cl, sr, impl)

        CompressedCertificate.create = _create
        RecordLayer.calcTLS1_3PendingState = _pending


ALG_NAMES = {1: "zlib", 2: "brotli", 3: "zstd"}
ALERT_NAMES = {0: "close_notify", 42: "bad_certificate", 48: "unknown_ca"}


def _chain(identity: Identity) -> tuple[Any, Any]:
    chain = X509CertChain()
    chain.parsePemList(identity.chain.read_text())
    return chain, parsePEMKey(identity.key.read_text(), private=True)


def _settings(version: tuple[int, int], send: Sequence[str], receive: Sequence[str]) -> Any:
    s = HandshakeSettings()
    s.minVersion = s.maxVersion = version
    s.certificate_compression_send = list(send)
    s.certificate_compression_receive = list(receive)
    return s


def _cns(chain: Any) -> list[str]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    out = []
    for cert in chain.x509List if chain is not None else []:
        parsed = x509.load_der_x509_certificate(bytes(cert.bytes))
        out.append(parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    return out


def _keylog_tls13(keylog: Path, client_random: bytes, secrets: list[tuple[bytes, bytes]]) -> None:
    """NSS key log lines from the secrets tlslite-ng installed: handshake, then application."""
    (c_hs, s_hs), (c_ap, s_ap) = secrets[0], secrets[1]
    cr = client_random.hex()
    lines = [
        f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {cr} {c_hs.hex()}",
        f"SERVER_HANDSHAKE_TRAFFIC_SECRET {cr} {s_hs.hex()}",
        f"CLIENT_TRAFFIC_SECRET_0 {cr} {c_ap.hex()}",
        f"SERVER_TRAFFIC_SECRET_0 {cr} {s_ap.hex()}",
    ]
    with keylog.open("a", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


@contextmanager
def _serving(port: int, work: Callable[[socket.socket], None]) -> Iterator[list[str]]:
    """``work`` on the one connection to ``port``, in a thread named ``server-PORT`` (the taps
    tell the ends apart by thread), while the block runs; yields the list of errors."""
    errors: list[str] = []
    sock = listener(HOST, port)

    def run() -> None:
        try:
            raw, _ = sock.accept()
            raw.settimeout(IO_TIMEOUT)
            try:
                work(raw)
            finally:
                raw.close()
        except Exception as exc:  # reported by the caller
            errors.append(f"server: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, name=f"server-{port}", daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        thread.join(core.TOOL_TIMEOUT)
        sock.close()


def _catch(fn: Callable[[], None], errors: list[str]) -> None:
    try:
        fn()
    except Exception as exc:
        errors.append(f"client: {type(exc).__name__}: {exc}")


def _tls13_server(sc: Tls13Scenario, pki: Pki, seen: dict[str, Any]) -> Callable[..., None]:
    server_chain, server_key = _chain(pki.server)

    def server(raw: socket.socket) -> None:
        conn = TLSConnection(raw)
        settings = _settings((3, 4), sc.server_sends, sc.client_sends)
        conn.handshakeServer(
            certChain=server_chain, privateKey=server_key, settings=settings, reqCert=sc.request
        )
        seen["client_chain"] = _cns(conn.session.clientCertChain)
        line = conn.read(max=64)
        if line != PING:
            raise RecordingError(f"no ping: {line!r}")
        conn.write(PONG)
        seen["server_done"] = True
        conn.read(max=64)  # the client's close_notify
        conn.close()

    return server


def _tls13_client(
    sc: Tls13Scenario, identity: Identity | None, taps: Taps, result: dict[str, Any]
) -> None:
    raw = socket.create_connection((HOST, sc.port), timeout=IO_TIMEOUT)
    result["port"] = raw.getsockname()[1]
    conn = TLSConnection(raw)
    settings = _settings((3, 4), sc.client_sends, sc.server_sends or ("zlib",))
    if identity is not None:
        chain, key = _chain(identity)
        conn.handshakeClientCert(chain, key, settings=settings, serverName=core.SERVER_NAME)
    else:
        conn.handshakeClientCert(settings=settings, serverName=core.SERVER_NAME)
    result["server_chain"] = _cns(conn.session.serverCertChain)
    result["client_random"] = bytes(conn._clientRandom)
    result["secrets"] = taps.secrets.get(id(conn._recordLayer), [])
    conn.write(PING)
    result["pong"] = conn.read(max=64) == PONG
    conn.close()


def run_tls13(sc: Tls13Scenario, pki: Pki, keylog: Path, taps: Taps) -> dict[str, Any]:
    identity = pki.client(sc.client_id)
    seen: dict[str, Any] = {}
    result: dict[str, Any] = {}
    client_thread = f"client-{sc.port}"
    with _serving(sc.port, _tls13_server(sc, pki, seen)) as errors:
        run = lambda: _catch(lambda: _tls13_client(sc, identity, taps, result), errors)  # noqa: E731
        cthread = threading.Thread(target=run, name=client_thread)
        cthread.start()
        cthread.join(core.TOOL_TIMEOUT)
    if errors or not result.get("pong"):
        raise RecordingError(f"{sc.scenario}: {'; '.join(errors) or 'no pong'}")
    if len(result["secrets"]) < 2:
        raise RecordingError(f"{sc.scenario}: TLS 1.3 secrets not captured")
    _keylog_tls13(keylog, result["client_random"], result["secrets"])
    server_comp = [ALG_NAMES[a] for a, _ in taps.compressed.get(f"server-{sc.port}", [])]
    client_comp = [ALG_NAMES[a] for a, _ in taps.compressed.get(client_thread, [])]
    name = sc.scenario
    check(name, "server compression", server_comp, list(sc.server_sends[:1]))
    check(name, "client compression", client_comp, list(sc.client_sends[:1]) if sc.request else [])
    sent = list(identity.sent) if identity is not None else []
    check(name, "client chain the server received", seen.get("client_chain"), sent)
    check(name, "server chain the client received", result["server_chain"], [*pki.server.sent])
    verdict = verdict_of(requested=sc.request, resumed=False, completed=True, cert_sent=bool(sent))
    check(name, "verdict", verdict, sc.expect)
    where = Where(name, "tlslite-ng/tlslite-ng", sc.port, core.TLS13, result["port"])
    chain = tuple(sent) if sc.request else None
    entry = session_entry(where, verdict, chain, pki.server.sent)
    entry["compressed_certificate"] = {
        "server": server_comp[0] if server_comp else None,
        "client": client_comp[0] if client_comp else None,
    }
    return entry


class _RefuseAll(Checker):  # type: ignore[misc]
    """A Checker pinned to a fingerprint no client has: refuses every chain."""

    def __init__(self) -> None:
        super().__init__(x509Fingerprint="00" * 20)


def _issued_by_root(chain: Any, pki: Pki) -> bool:
    """The application's own check: the chain's last certificate is signed by the root CA."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    root = x509.load_pem_x509_certificate(pki.root.read_bytes())
    last = x509.load_der_x509_certificate(bytes(chain.x509List[-1].bytes))
    try:
        last.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _late_server(sc: LateScenario, pki: Pki, seen: dict[str, Any]) -> Callable[..., None]:
    """A TLS 1.2 server that checks the client's chain after its own Finished: with a
    ``Checker`` that refuses it, or by the application (and refuses with bad_certificate)."""
    server_chain, server_key = _chain(pki.server)

    def server(raw: socket.socket) -> None:
        conn = TLSConnection(raw)
        settings = _settings((3, 3), (), ())
        checker = _RefuseAll() if sc.refuse == LATE_CHECKER else None
        try:
            conn.handshakeServer(
                certChain=server_chain,
                privateKey=server_key,
                settings=settings,
                reqCert=True,
                checker=checker,
            )
        except TLSAuthenticationError as exc:
            seen["refused"] = f"checker: {type(exc).__name__}"
            seen["client_chain"] = _cns(conn.session.clientCertChain)
            return
        seen["client_chain"] = _cns(conn.session.clientCertChain)
        if sc.refuse == LATE_APP and not _issued_by_root(conn.session.clientCertChain, pki):
            try:
                for _ in conn._sendError(AlertDescription.bad_certificate, "chain not trusted"):
                    pass
            except TLSLocalAlert:
                seen["refused"] = "application: bad_certificate"
            return
        if conn.read(max=64) != PING:
            raise RecordingError("no ping")
        conn.write(PONG)
        conn.read(max=64)
        conn.close()

    return server


def _late_client(
    sc: LateScenario, pki: Pki, identity: Identity, keylog: Path, errors: list[str]
) -> tuple[dict[str, Any], list[int]]:
    """Python ``ssl``: ping, pong, close_notify; what it got and the fatal alerts its stack
    read."""
    ctx = client_context(pki, core.TLS12, identity, keylog)
    result: dict[str, Any] = {}
    alerts_read: list[tuple[int, int]] = []  # (level, description) as the client's stack read

    def on_message(_c: Any, direction: str, _v: Any, ctype: Any, _m: Any, data: bytes) -> None:
        if ctype == ssl._TLSContentType.ALERT and direction == "read" and len(data) == 2:
            alerts_read.append((data[0], data[1]))

    ctx._msg_callback = on_message
    try:
        raw = socket.create_connection((HOST, sc.port), timeout=IO_TIMEOUT)
        result["port"] = raw.getsockname()[1]
        with ctx.wrap_socket(raw, server_hostname=core.SERVER_NAME) as tls:
            try:
                tls.sendall(PING)
                result["pong"] = recv_line(tls) == PONG
                tls.unwrap()
            except (ssl.SSLError, OSError) as exc:
                result["error"] = f"{exc.reason if isinstance(exc, ssl.SSLError) else exc}"
    except OSError as exc:
        errors.append(f"client: {exc}")
    return result, [d for level, d in alerts_read if level == 2]


def run_late(sc: LateScenario, pki: Pki, keylog: Path) -> dict[str, Any]:
    identity = pki.client(sc.client_id)
    assert identity is not None
    seen: dict[str, Any] = {}
    with _serving(sc.port, _late_server(sc, pki, seen)) as errors:
        result, fatal = _late_client(sc, pki, identity, keylog, errors)
    name = sc.scenario
    if errors:
        raise RecordingError(f"{name}: {'; '.join(errors)}")
    check(name, "client chain the server received", seen.get("client_chain"), [*identity.sent])
    refused = "refused" in seen
    check(name, "server refused after the handshake", refused, sc.refuse is not None)
    completed = bool(result.get("pong"))
    check(name, "completed", completed, sc.refuse is None)
    alert = ALERT_NAMES.get(fatal[0]) if fatal else None
    if refused:
        # tlslite-ng's Checker refuses with a fatal close_notify; the application's own check
        # with bad_certificate
        want = "close_notify" if sc.refuse == LATE_CHECKER else "bad_certificate"
        check(name, "fatal alert the client read", alert, want)
    else:
        check(name, "fatal alerts the client read", fatal, [])
    verdict = FAILED if refused else MUTUAL
    check(name, "verdict", verdict, sc.expect)
    where = Where(name, "python-ssl/tlslite-ng", sc.port, core.TLS12, result["port"])
    chain = identity.sent
    entry = session_entry(where, verdict, chain, pki.server.sent, alert=alert)
    # the refusal travels encrypted after the server's Finished: without the key log the
    # capture shows a completed mutual handshake and an unreadable alert record
    entry["late_refusal"] = refused
    return entry


def record(out: Path, pki: Pki) -> int:
    keylog_path = keylog.fresh(out / f"{NAME}.keylog")
    taps = Taps()
    taps.install()
    sessions: list[dict[str, Any]] = []
    with capture(DUMPCAP_LO, out / f"{NAME}.pcapng", PORTS):
        for sc in TLS13_SCENARIOS:
            sessions.append(run_tls13(sc, pki, keylog_path, taps))
        for late in LATE_SCENARIOS:
            sessions.append(run_late(late, pki, keylog_path))
    tools = tool_versions()
    tools["tlslite_ng"] = tlslite.__version__
    truth.write_recording(out, NAME, RECORDED_BY, tools, sessions)
    return len(sessions)


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parser(__doc__, verbose=None).parse_args(argv)
    if tlslite is None:
        raise SystemExit(
            "needs tlslite-ng, brotli and zstandard: pip install tlslite-ng brotli zstandard"
        )
    cli.require(("dumpcap",))

    def record_all(out: Path, work: Path) -> Iterator[cli.Recorded]:
        pki = build_pki(work / "pki", None)
        yield cli.Recorded(out / f"{NAME}.pcapng", record(out, pki))

    return cli.run(NAME, args.out, record_all)


if __name__ == "__main__":
    raise SystemExit(main())
