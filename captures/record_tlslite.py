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

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record as rec  # noqa: E402
import record_erlang as drv  # noqa: E402  (the driver shared with the Erlang recorder)

RECORDED_BY = "captures/record_tlslite.py"
NODE = HERE / "stacks" / "tlslite" / "tlsnode.py"
COMPRESSIONS = ("zlib", "brotli", "zstd")


def _version(version: str) -> str:
    return "tlsv1.3" if version == rec.TLS13 else "tlsv1.2"


def _extra(s: drv.Session) -> list[str]:
    return [f"compress={s.compress}"] if s.compress else []


def tlslite_server_cmd(s: drv.Session, pki: rec.Pki) -> list[str]:
    cmd = [sys.executable, str(NODE), "server", str(s.port), _version(s.version), s.request]
    cmd += [str(pki.server.chain), str(pki.server.key), str(pki.root)]
    return cmd + (["pha"] if s.later else []) + _extra(s) + list(s.server_args)


def tlslite_client_cmd(s: drv.Session, pki: rec.Pki) -> list[str]:
    identity = pki.client(s.client_id)
    cmd = [sys.executable, str(NODE), "client", str(s.port), _version(s.version)]
    cmd += [str(pki.root), rec.SERVER_NAME]
    cmd += ["-", "-"] if identity is None else [str(identity.chain), str(identity.key)]
    return cmd + _extra(s) + list(s.client_args)


TLSLITE = drv.Node("tlslite", tlslite_server_cmd, tlslite_client_cmd)


_PHA_COMPRESSED = (
    "the client answers the post-handshake CertificateRequest with a CompressedCertificate: "
    "the request offers tlslite-ng's default algorithms"
)


def tlslite_sessions() -> list[drv.Session]:
    """The matrix on ports 9350-9379, post-handshake authentication on 9380-9382 and certificate
    compression on 9383-9385."""
    sessions = drv.matrix("tlslite", 9350)
    port = 9380
    for server, client in (("tlslite", "openssl"), ("tlslite", "gnutls"), ("tlslite", "tlslite")):
        sessions.append(
            drv.Session(
                "post-handshake-mutual",
                port,
                rec.TLS13,
                server,
                client,
                drv.NONE,
                "bob",
                rec.MUTUAL,
                later=drv.POST_HANDSHAKE,
                note=_PHA_COMPRESSED if client == "tlslite" else None,
            )
        )
        port += 1
    # Debian's GnuTLS 3.7.9 is built without certificate compression (gnutls-serv
    # --compress-cert=zlib says "Unknown compression method"): only tlslite-ng on both ends
    for server, client in (("tlslite", "tlslite"),):
        for algorithm in COMPRESSIONS:
            sessions.append(
                drv.Session(
                    "mutual-compressed",
                    port,
                    rec.TLS13,
                    server,
                    client,
                    drv.REQUIRED,
                    "carol",
                    rec.MUTUAL,
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the programs' output")
    args = parser.parse_args(argv)
    needed = ("dumpcap", "tshark", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf")
    missing = [p for p in needed if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")
    try:
        metadata.version("tlslite-ng")
    except metadata.PackageNotFoundError:
        raise SystemExit("tlslite-ng is missing: pip install tlslite-ng brotli zstandard") from None
    if os.geteuid() != 0:
        raise SystemExit("capturing on loopback needs root")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tools = drv.tool_versions({"tlslite": tlslite_version(), "python": sys.version.split()[0]})
    with tempfile.TemporaryDirectory(prefix="tls-tlslite-") as tmp:
        pki = drv.build_pki(Path(tmp) / "pki")
        try:
            count, problems = drv.record(
                "stack_tlslite",
                tlslite_sessions(),
                {"tlslite": TLSLITE},
                out,
                pki,
                tools,
                RECORDED_BY,
                args.verbose,
            )
        except (rec.RecordingError, OSError, subprocess.SubprocessError) as exc:
            print(f"stack_tlslite: {exc}", file=sys.stderr)
            return 1
    size = (out / "stack_tlslite.pcapng").stat().st_size
    print(f"stack_tlslite.pcapng: {count} sessions, {size} bytes")
    for problem in problems:
        print(f"tshark check: {problem}", file=sys.stderr)
    print(f"total {time.monotonic() - started:.1f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
