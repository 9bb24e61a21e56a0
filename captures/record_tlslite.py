#!/usr/bin/env python3
"""Record client-authentication sessions of tlslite-ng (pure Python TLS) against ``openssl`` and
GnuTLS and against itself, with their ground truth and key logs.

The tlslite-ng side is ``captures/stacks/tlslite/tlsnode.py``, run once per connection as
server or client in its own Python process; it speaks the line protocol of the Erlang recorder's
escript, whose driver (``record_erlang.py``: sessions, reports, truth, the tshark check) this
script reuses. Besides the matrix of ``record_erlang.py`` (TLS 1.3 and TLS 1.2: mutual, one-way,
requested and not sent, required without a certificate, unknown CA, expired), it records TLS 1.3
post-handshake authentication asked by the tlslite-ng server, and RFC 8879 certificate
compression (zlib, brotli, zstd) between two tlslite-ng ends (``openssl`` 3.0 has no certificate
compression, and Debian's GnuTLS 3.7.9 is built without it).

Key logs: ``openssl -keylogfile`` and GnuTLS's ``SSLKEYLOGFILE``; the tlslite-ng script prints
the secrets it derives (see its docstring), so sessions between two tlslite-ng ends are keyed too.

Usage (as root; ``pip install tlslite-ng brotli zstandard``)::

    python3 captures/record_tlslite.py [--out DIR] [--verbose]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path

from recording import cli, nodes
from recording.cli import Recorded
from recording.core import MUTUAL, POST_HANDSHAKE, SERVER_NAME, TLS13
from recording.pki import Pki, build_pki, with_expired_client

RECORDED_BY = "captures/record_tlslite.py"
NAME = "stack_tlslite"
NODE = cli.CAPTURES / "stacks" / "tlslite" / "tlsnode.py"
PROGRAMS = ("dumpcap", "tshark", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf")
COMPRESSIONS = ("zlib", "brotli", "zstd")


def _extra(s: nodes.Session) -> list[str]:
    return [f"compress={s.compress}"] if s.compress else []


def tlslite_server_cmd(s: nodes.Session, pki: Pki) -> list[str]:
    cmd = [
        sys.executable,
        str(NODE),
        "server",
        str(s.port),
        nodes.node_version(s.version),
        s.request,
    ]
    cmd += [str(pki.server.chain), str(pki.server.key), str(pki.root)]
    return cmd + (["pha"] if s.later else []) + _extra(s) + list(s.server_args)


def tlslite_client_cmd(s: nodes.Session, pki: Pki) -> list[str]:
    identity = pki.client(s.client_id)
    cmd = [sys.executable, str(NODE), "client", str(s.port), nodes.node_version(s.version)]
    cmd += [str(pki.root), SERVER_NAME]
    cmd += ["-", "-"] if identity is None else [str(identity.chain), str(identity.key)]
    return cmd + _extra(s) + list(s.client_args)


TLSLITE = nodes.Node("tlslite", tlslite_server_cmd, tlslite_client_cmd)


_PHA_COMPRESSED = (
    "the client answers the post-handshake CertificateRequest with a CompressedCertificate: "
    "the request offers tlslite-ng's default algorithms"
)


def tlslite_sessions() -> list[nodes.Session]:
    """The matrix on ports 9350-9379, post-handshake authentication on 9380-9382 and certificate
    compression on 9383-9385."""
    sessions = nodes.matrix("tlslite", 9350)
    port = 9380
    for server, client in (("tlslite", "openssl"), ("tlslite", "gnutls"), ("tlslite", "tlslite")):
        sessions.append(
            nodes.Session(
                "post-handshake-mutual",
                port,
                TLS13,
                server,
                client,
                nodes.NONE,
                "bob",
                MUTUAL,
                later=POST_HANDSHAKE,
                note=_PHA_COMPRESSED if client == "tlslite" else None,
            )
        )
        port += 1
    # Debian's GnuTLS 3.7.9 is built without certificate compression (gnutls-serv
    # --compress-cert=zlib says "Unknown compression method"): only tlslite-ng on both ends
    for server, client in (("tlslite", "tlslite"),):
        for algorithm in COMPRESSIONS:
            sessions.append(
                nodes.Session(
                    "mutual-compressed",
                    port,
                    TLS13,
                    server,
                    client,
                    nodes.REQUIRED,
                    "carol",
                    MUTUAL,
                    compress=algorithm,
                )
            )
            port += 1
    return sessions


def tlslite_version() -> str:
    parts = [f"tlslite-ng {metadata.version('tlslite-ng')}"]
    for package in ("brotli", "zstandard", "ecdsa"):
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} missing")
    return ", ".join(parts)


def record(out: Path, work: Path, verbose: bool) -> Iterator[Recorded]:
    extra = {"tlslite": tlslite_version(), "python": sys.version.split()[0]}
    tools = nodes.node_tool_versions(extra)
    pki = with_expired_client(build_pki(work / "pki", None), work / "pki", "erin", "erin")
    programs = {"tlslite": TLSLITE}
    sessions = tlslite_sessions()
    yield from nodes.record(NAME, sessions, programs, out, pki, tools, RECORDED_BY, verbose)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        metadata.version("tlslite-ng")
    except metadata.PackageNotFoundError:
        raise SystemExit("tlslite-ng is missing: pip install tlslite-ng brotli zstandard") from None
    return cli.main(__doc__, "tlslite", PROGRAMS, record, argv)


if __name__ == "__main__":
    raise SystemExit(main())
