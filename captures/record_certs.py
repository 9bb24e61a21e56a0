#!/usr/bin/env python3
"""Record real TLS sessions whose certificates are wrong in known ways, with their ground truth.

The companion of ``record.py`` for tlsinspect's certificate checks. It makes its own test PKI with
``cryptography`` (a root, a client and a server intermediate, a rogue root, and leaves that are
expired, lack the clientAuth EKU, carry a 1024-bit RSA key signed with SHA-1, ...), then runs one
TLS 1.2 connection per scenario between Python ``ssl`` or ``openssl s_server``/``s_client`` on
127.0.0.1 while ``dumpcap`` records the loopback interface. TLS 1.2 keeps the certificates in
plaintext, so every check can be compared with what the script built.

The truth (``certs.truth.json``) has the fields ``record.py`` writes (verdict, alert, chains as
sent) and, per session, which checks must fail or warn on each chain (``checks``), whether each
chain is trusted by the bundle ``certs-pki/certs-test-root-ca.pem`` (``ca_bundle``), and what the
TLS stacks said (``observed``). All of it comes from how the certificates were made and what the
stacks reported, never from the capture. The public certificates go to ``certs-pki/``.

Usage (as root)::

    python3 captures/record_certs.py [--out DIR] [--verbose]
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from recording import cli, pki, truth
from recording.capture import DUMPCAP_LO, capture, listening
from recording.core import FAILED, HOST, MUTUAL, ONE_WAY, TLS12, TOOL_TIMEOUT, RecordingError, check
from recording.pki import CLIENT_AUTH, SERVER_AUTH, Issued
from recording.programs import clean_env, tool_versions
from recording.pyssl import Side, python_client, python_server, served
from recording.tools import ToolScenario, received_alert, run_tool_pair

RECORDED_BY = "captures/record_certs.py"
CAPTURE = "certs.pcapng"
TRUTH = "certs.truth.json"
PKI_DIR = "certs-pki"
BUNDLE = "certs-test-root-ca.pem"  # the CA bundle the truth's `ca_bundle` refers to
ORG = "Example Cert Checks"
SERVER_NAME = "certs.example.test"
REQ, OPT, NONE = ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL, ssl.CERT_NONE
PROGRAMS = ("dumpcap", "openssl")


# --------------------------------------------------------------------------------------------
# PKI


def _issue(
    cn: str,
    issuer: Issued | None,
    *,
    key: str = "ec",
    org: str = ORG,
    valid: tuple[int, int] = (-1, 3650),
    **options: Any,
) -> Issued:
    """A certificate for ``cn`` of ``org`` issued by ``issuer`` (self-signed when None), valid
    from ``valid[0]`` to ``valid[1]`` days from now; ``options`` as ``pki.issue`` takes them."""
    subject = pki.name("US" if org == ORG else "ZZ", org, cn)
    days = (datetime.timedelta(days=valid[0]), datetime.timedelta(days=valid[1]))
    return pki.issue(subject, key, issuer, valid=days, **options)


CLIENT = CLIENT_AUTH
SERVER = SERVER_AUTH


def _spiffe(name: str) -> x509.UniformResourceIdentifier:
    return pki.spiffe(name, "certs.example.test")


def build_pki() -> dict[str, Issued]:
    """Every certificate of the scenarios, by short name."""
    root = _issue("Certs Test Root CA", None, key="rsa", ca=True)
    client_ca = _issue("Certs Client Intermediate CA", root, ca=True, path_length=0)
    server_ca = _issue("Certs Server Intermediate CA", root, key="rsa", ca=True, path_length=0)
    rogue = _issue("Rogue CA", None, org="Rogue Certificates Ltd", ca=True)
    localhost = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    return {
        "root": root,
        "client-ca": client_ca,
        "server-ca": server_ca,
        "rogue-ca": rogue,
        "client-good": _issue(
            "client-good",
            client_ca,
            usage=[CLIENT],
            san=[_spiffe("good"), x509.RFC822Name("good@certs.example.test")],
        ),
        "client-expired": _issue(
            "client-expired", client_ca, usage=[CLIENT], san=[_spiffe("expired")], valid=(-400, -30)
        ),
        "client-serverauth": _issue(
            "client-serverauth", client_ca, usage=[SERVER], san=[_spiffe("serverauth")]
        ),
        "client-rogue": _issue(
            "client-rogue",
            rogue,
            org="Rogue Certificates Ltd",
            usage=[CLIENT],
            san=[_spiffe("rogue")],
        ),
        # RSA-1024, signed by the root with sha1WithRSAEncryption
        "client-weak": _issue(
            "client-weak", root, key="rsa1024", usage=[CLIENT], san=[_spiffe("weak")], sha1=True
        ),
        # 397 days: within the CA/Browser Forum's 398
        "server-good": _issue(
            SERVER_NAME,
            server_ca,
            key="rsa",
            usage=[SERVER],
            san=[x509.DNSName(SERVER_NAME), x509.DNSName("*.svc.example.test"), localhost],
            valid=(-1, 396),
        ),
        "server-expired": _issue(
            "expired.example.test",
            server_ca,
            key="rsa",
            usage=[SERVER],
            san=[x509.DNSName(SERVER_NAME)],
            valid=(-390, -2),
        ),
        "server-long": _issue(
            "legacy.example.test",
            root,
            key="rsa",
            usage=[SERVER],
            san=[x509.DNSName("legacy.example.test")],
            valid=(-1, 3650),
        ),
    }


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Scenario:
    """One connection, how both ends are set up, and what the script expects of it."""

    name: str
    port: int
    stack: str  # "python" (Python ssl both ends) or "openssl" (s_server / s_client)
    request: ssl.VerifyMode  # what the server asks of the client
    # certificates the client sends, leaf first; None: none. OpenSSL completes a chain given
    # without extra certificates from the sender's trust store (the root here), so a chain that
    # must go out alone is one whose issuer the sender does not have.
    client: tuple[str, ...] | None
    server: tuple[str, ...]  # certificates the server sends, leaf first
    trust: tuple[str, ...] = ("root",)  # the server's trust store (s_server lists these CAs)
    sni: str | None = SERVER_NAME
    check_hostname: bool = True
    seclevel0: bool = False  # both ends at OpenSSL security level 0 (RSA-1024, SHA-1)
    verify_errors_fatal: bool = True  # s_server: -Verify/-verify_return_error, else -verify
    expect: str = MUTUAL
    alert: tuple[str, str] | None = None  # (sender, description)
    # checks that must fail / warn without a CA bundle, per chain
    fail: dict[str, tuple[str, ...]] = field(default_factory=dict)
    warn: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # trusted by the bundle of the root alone, per chain sent
    trusted: dict[str, bool] = field(default_factory=dict)
    note: str = ""


GOOD_CLIENT = ("client-good", "client-ca")
GOOD_SERVER = ("server-good", "server-ca")

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "certs-mutual-all-checks-pass",
        8521,
        "python",
        REQ,
        GOOD_CLIENT,
        GOOD_SERVER,
        trusted={"client": True, "server": True},
        note="both chains are right: every check passes",
    ),
    Scenario(
        "certs-unknown-ca-refused",
        8522,
        "openssl",
        REQ,
        ("client-rogue", "rogue-ca"),
        GOOD_SERVER,
        expect=FAILED,
        alert=("server", "unknown_ca"),
        fail={"client": ("ca_listed",)},
        trusted={"client": False, "server": True},
        note="s_server lists 'Certs Test Root CA' in its CertificateRequest; the client's chain "
        "ends at the self-signed 'Rogue CA'",
    ),
    Scenario(
        "certs-expired-client-refused",
        8523,
        "python",
        REQ,
        ("client-expired", "client-ca"),
        GOOD_SERVER,
        expect=FAILED,
        alert=("server", "certificate_expired"),
        fail={"client": ("validity",)},
        trusted={"client": False, "server": True},
        note="the client leaf expired 30 days before the capture; the verifying server refuses it",
    ),
    Scenario(
        "certs-expired-client-accepted",
        8524,
        "openssl",
        OPT,
        ("client-expired", "client-ca"),
        GOOD_SERVER,
        verify_errors_fatal=False,
        fail={"client": ("validity",)},
        trusted={"client": False, "server": True},
        note="s_server -verify without -verify_return_error logs the expiry and goes on",
    ),
    Scenario(
        "certs-client-without-clientauth-eku",
        8525,
        "python",
        REQ,
        ("client-serverauth", "client-ca"),
        GOOD_SERVER,
        expect=FAILED,
        alert=("server", "unsupported_certificate"),
        fail={"client": ("purpose",)},
        trusted={"client": False, "server": True},
        note="the client leaf's extended key usage is serverAuth only",
    ),
    Scenario(
        "certs-server-name-mismatch",
        8526,
        "python",
        NONE,
        None,
        GOOD_SERVER,
        sni="other.example.net",
        check_hostname=False,
        expect=ONE_WAY,
        fail={"server": ("name",)},
        trusted={"server": False},
        note="the client asks for other.example.net and does not check the name",
    ),
    Scenario(
        "certs-server-wildcard-name",
        8527,
        "python",
        NONE,
        None,
        GOOD_SERVER,
        sni="api.svc.example.test",
        expect=ONE_WAY,
        trusted={"server": True},
        note="the SNI matches the DNS SAN *.svc.example.test; the client checks it too",
    ),
    Scenario(
        "certs-chain-wrong-order",
        8528,
        "python",
        REQ,
        ("client-good", "root", "client-ca"),
        GOOD_SERVER,
        warn={"client": ("order",)},
        trusted={"client": True, "server": True},
        note="the client sends the root before the intermediate (OpenSSL always sends the leaf "
        "first); the server builds the path anyway",
    ),
    Scenario(
        "certs-missing-intermediate-refused",
        8529,
        "openssl",
        REQ,
        ("client-good",),
        GOOD_SERVER,
        expect=FAILED,
        alert=("server", "unknown_ca"),
        fail={"client": ("ca_listed",)},
        trusted={"client": False, "server": True},
        note="the client sends its leaf alone; the server trusts the root only",
    ),
    Scenario(
        "certs-missing-intermediate-accepted",
        8530,
        "openssl",
        REQ,
        ("client-good",),
        GOOD_SERVER,
        trust=("root", "client-ca"),
        trusted={"client": False, "server": True},
        note="the client sends its leaf alone; the server has the intermediate in its store "
        "(and lists it), the root-only bundle does not",
    ),
    Scenario(
        "certs-weak-rsa1024-sha1",
        8531,
        "python",
        REQ,
        ("client-weak", "root"),
        ("server-long", "root"),
        sni="legacy.example.test",
        seclevel0=True,
        warn={"client": ("key_strength", "signature_hash"), "server": ("lifetime",)},
        trusted={"client": True, "server": True},
        note="client leaf: RSA-1024 signed with SHA-1 by the root, accepted at @SECLEVEL=0; "
        "server leaf valid for 3651 days",
    ),
    Scenario(
        "certs-expired-server-refused",
        8532,
        "python",
        NONE,
        None,
        ("server-expired", "server-ca"),
        expect=FAILED,
        alert=("client", "certificate_expired"),
        fail={"server": ("validity",)},
        trusted={"server": False},
        note="the server leaf expired 2 days before the capture; the client refuses it",
    ),
    Scenario(
        "certs-no-sni-ip-san",
        8533,
        "python",
        NONE,
        None,
        GOOD_SERVER,
        sni=None,
        expect=ONE_WAY,
        trusted={"server": True},
        note="the client connects to 127.0.0.1 and sends no SNI; it checks the IP SAN",
    ),
)


# --------------------------------------------------------------------------------------------
# Running the scenarios


class Files:
    """The PKI on disk: certificates, keys, and the chain files each scenario sends."""

    def __init__(self, work: Path, certs: dict[str, Issued]) -> None:
        self.work = work
        self.certs = certs
        for short, c in certs.items():
            (work / f"{short}.pem").write_bytes(c.pem())
            (work / f"{short}.key").write_bytes(pki.key_pem(c.key))

    def bundle(self, names: Sequence[str], tag: str) -> Path:
        path = self.work / f"{tag}.pem"
        path.write_bytes(b"".join(self.certs[n].pem() for n in names))
        return path

    def cert(self, name: str) -> Path:
        return self.work / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.work / f"{name}.key"

    def cns(self, names: Sequence[str] | None) -> list[str] | None:
        return None if names is None else [self.certs[n].cn for n in names]


def _context(server: bool, sc: Scenario, files: Files) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if sc.seclevel0:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # before loading: the level judges the keys
    chain = sc.server if server else sc.client
    if chain:
        ctx.load_cert_chain(files.bundle(chain, f"{sc.port}-{server}"), files.key(chain[0]))
    if server:
        ctx.verify_mode = sc.request
        if sc.request != NONE:
            ctx.load_verify_locations(files.bundle(sc.trust, f"{sc.port}-trust"))
    else:
        ctx.check_hostname = sc.check_hostname
        ctx.load_verify_locations(files.cert("root"))
    return ctx


@dataclass
class Outcome:
    """What the stacks reported about one connection."""

    completed: bool
    alert: tuple[str, str] | None
    client_port: int | None
    observed: dict[str, Any]


def _run_python(sc: Scenario, files: Files) -> Outcome:
    server = Side()
    with served(HOST, sc.port, python_server, [_context(True, sc, files)], [server]):
        client = python_client(HOST, sc.port, _context(False, sc, files), sc.sni, None)
        if not server.done.wait(TOOL_TIMEOUT):
            raise RecordingError(f"{sc.name}: the server did not finish")
    alert = None
    if client.alert:  # the client received it: the server sent it
        alert = ("server", client.alert)
    elif server.alert:
        alert = ("client", server.alert)
    return Outcome(
        completed=client.exchanged and server.exchanged,
        alert=alert,
        client_port=client.port,
        observed={
            "client_error": client.error,
            "server_error": server.error,
            "client_certificate_seen_by_server": server.peer_cn,
        },
    )


_VERIFY_ERROR = re.compile(r"verify error:num=(\d+):([^\n]+)")


def _run_openssl(sc: Scenario, files: Files, verbose: bool) -> Outcome:
    server_cmd = [
        "openssl", "s_server", "-accept", f"127.0.0.1:{sc.port}", "-naccept", "1", "-rev",
        "-tls1_2", "-cert", str(files.cert(sc.server[0])), "-key", str(files.key(sc.server[0])),
        "-CAfile", str(files.bundle(sc.trust, f"{sc.port}-trust")),
    ]  # fmt: skip
    if sc.server[1:]:
        server_cmd += ["-cert_chain", str(files.bundle(sc.server[1:], f"{sc.port}-server-extra"))]
    if sc.verify_errors_fatal:
        server_cmd += ["-Verify" if sc.request == REQ else "-verify", "4", "-verify_return_error"]
    else:
        server_cmd += ["-verify", "4"]
    client_cmd = [
        "openssl", "s_client", "-connect", f"127.0.0.1:{sc.port}", "-tls1_2",
        "-CAfile", str(files.cert("root")), "-verify_return_error", "-quiet", "-no_ign_eof",
    ]  # fmt: skip
    if sc.sni:
        client_cmd += ["-servername", sc.sni]
    if sc.client:
        client_cmd += ["-cert", str(files.cert(sc.client[0])), "-key", str(files.key(sc.client[0]))]
        if sc.client[1:]:
            extra = files.bundle(sc.client[1:], f"{sc.port}-client-extra")
            client_cmd += ["-cert_chain", str(extra)]
    tool = ToolScenario(sc.name, sc.port, TLS12, "openssl/openssl", sc.request, None, "")
    server, client = run_tool_pair(tool, server_cmd, client_cmd, clean_env())
    if verbose:
        print(f"=== {sc.name}\n--- server\n{server.text}\n--- client\n{client.text}")
    received = received_alert("openssl", client.text)
    errors = [f"{num}: {text.strip()}" for num, text in _VERIFY_ERROR.findall(server.text)]
    return Outcome(
        completed=b"gnip\n" in client.out.encode(),
        alert=("server", received) if received else None,
        client_port=None,
        observed={"server_verify_errors": errors},
    )


def run(sc: Scenario, files: Files, verbose: bool) -> dict[str, Any]:
    """Run one scenario, check it behaved as expected, and return its truth entry."""
    if sc.stack == "python":
        out = _run_python(sc, files)
    else:
        out = _run_openssl(sc, files, verbose)
    requested = sc.request != NONE
    verdict = truth.verdict_of(
        requested=requested, resumed=False, completed=out.completed, cert_sent=bool(sc.client)
    )
    what = f"{out.observed}"
    check(sc.name, f"verdict ({what})", verdict, sc.expect)
    check(sc.name, f"alert ({what})", out.alert, sc.alert)
    if sc.stack == "python" and out.completed and requested:
        seen = out.observed["client_certificate_seen_by_server"]
        check(sc.name, "client certificate seen by server", seen, files.certs[sc.client[0]].cn)
    if not sc.verify_errors_fatal and not out.observed["server_verify_errors"]:
        raise RecordingError(f"{sc.name}: s_server reported no verify error")
    chains = {"client": sc.client if requested else None, "server": sc.server}
    return {
        "scenario": sc.name,
        "stack": "python-ssl/python-ssl" if sc.stack == "python" else "openssl/openssl",
        "client_ip": HOST,
        "client_port": out.client_port,
        "server_ip": HOST,
        "server_port": sc.port,
        "tls_version": TLS12,
        "sni": sc.sni,
        "verdict": verdict,
        "resumed_from_mutual": None,
        "alert": None
        if out.alert is None
        else {"sender": out.alert[0], "description": out.alert[1]},
        "client_chain": files.cns(chains["client"]),
        "server_chain": files.cns(sc.server),
        "starttls": None,
        "checks": {
            role: {"fail": list(sc.fail.get(role, ())), "warn": list(sc.warn.get(role, ()))}
            for role, sent in chains.items()
            if sent
        },
        "ca_bundle": {role: sc.trusted[role] for role, sent in chains.items() if sent},
        "server_trusts": files.cns(sc.trust) if requested else None,
        "observed": out.observed,
        "note": sc.note,
    }


def _export(out: Path, files: Files) -> None:
    """The public certificates, by CN, into ``certs-pki/`` (emptied first)."""
    pki_dir = out / PKI_DIR
    if pki_dir.exists():
        shutil.rmtree(pki_dir)
    pki_dir.mkdir(parents=True)
    for c in files.certs.values():
        (pki_dir / f"{c.cn.lower().replace(' ', '-')}.pem").write_bytes(c.pem())


def record(out: Path, work: Path, verbose: bool) -> Iterator[cli.Recorded]:
    files = Files(work, build_pki())
    _export(out, files)
    sessions: list[dict[str, Any]] = []
    with capture(DUMPCAP_LO, out / CAPTURE, [sc.port for sc in SCENARIOS]):
        for sc in SCENARIOS:
            sessions.append(run(sc, files, verbose))
            time.sleep(0.05)  # keeps the sessions' start times apart
    truth.write(
        out / TRUTH,
        capture=CAPTURE,
        keylog=None,
        recorded_by=RECORDED_BY,
        tools=tool_versions(),
        sessions=sessions,
        ca_bundle=f"{PKI_DIR}/{BUNDLE}",
    )
    truth.publish(out / CAPTURE)
    yield cli.Recorded(out / CAPTURE, len(sessions))


def _check_ports() -> None:
    for sc in SCENARIOS:
        if listening(sc.port):
            raise SystemExit(f"port {sc.port} is in use")
    with socket.socket() as probe:  # IPv4 loopback must be there
        probe.bind((HOST, 0))


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parser(__doc__, verbose="print the openssl tools' output").parse_args(argv)
    cli.require(PROGRAMS)
    _check_ports()
    return cli.run("certs", args.out, lambda out, work: record(out, work, args.verbose))


if __name__ == "__main__":
    raise SystemExit(main())
