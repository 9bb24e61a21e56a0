#!/usr/bin/env python3
"""Record mutual-TLS sessions of Mbed TLS 2.28 against OpenSSL, GnuTLS and itself, with ground
truth and a key log.

The companion of ``record_wolfssl.py``, whose matrix, programs driver, judging and tshark check
(``recording/cpeer.py``) it shares. A small C program, ``captures/stacks/mbedtls/peer.c``, is
compiled with ``gcc`` into a temporary folder and linked with the system's Mbed TLS (Debian
``libmbedtls-dev`` 2.28).
Mbed TLS 2.28 has no TLS 1.3, so only the TLS 1.2 half of the matrix is recorded: mutual,
one-way, cert-requested-not-sent, required-without-cert, refused-unknown-ca and refused-expired,
each with the Mbed TLS peer as server against ``openssl s_client`` and ``gnutls-cli``, as client
against ``openssl s_server`` and ``gnutls-serv``, and against itself. The program writes the key
log itself (CLIENT_RANDOM lines from ``mbedtls_ssl_conf_export_keys_ext_cb``), as do the
OpenSSL and GnuTLS peers.

Usage (as root)::

    python3 captures/record_mbedtls.py [--out DIR] [--verbose]
"""

from __future__ import annotations

import re
from pathlib import Path

from recording.core import TLS12
from recording.cpeer import Stack, run


def _mbedtls_version() -> str:
    header = Path("/usr/include/mbedtls/version.h")
    match = re.search(r'MBEDTLS_VERSION_STRING_FULL\s+"([^"]+)"', header.read_text())
    return match.group(1) if match else "unknown"


MBEDTLS = Stack(
    "mbedtls",
    ("-lmbedtls", "-lmbedx509", "-lmbedcrypto"),
    range(9550, 9600),
    _mbedtls_version,
    versions=(TLS12,),  # no TLS 1.3 in 2.28
    pha=False,
    tls12_ec_server=False,
)


if __name__ == "__main__":
    raise SystemExit(run(MBEDTLS))
