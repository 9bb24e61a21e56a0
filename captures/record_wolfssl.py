#!/usr/bin/env python3
"""Record mutual-TLS sessions of wolfSSL against OpenSSL, GnuTLS and itself, with ground truth.

A small C program, ``captures/stacks/wolfssl/peer.c``, is compiled with ``gcc`` into a temporary folder and linked
with the system's wolfSSL (Debian ``libwolfssl-dev`` 5.5.4). It is server or client by its
arguments and prints one line per thing it saw (``EVENT ...``). Every scenario of the matrix
runs with the wolfSSL peer as server against ``openssl s_client`` and ``gnutls-cli``, as client
against ``openssl s_server`` and ``gnutls-serv``, and against itself, in TLS 1.3 and TLS 1.2:
mutual, one-way, cert-requested-not-sent, required-without-cert, refused-unknown-ca,
refused-expired, and in TLS 1.3 post-handshake client authentication.

The truth comes from what both programs reported (the server's log of the client certificate it
got, the client's report of the reply it read or of the alert it received), never from the
capture. Afterwards every session is checked against tshark's dissection of the capture (with
the key log): a CertificateRequest must be there iff the server asked, and a client Certificate
with its certificates iff the client sent one.

The machinery, shared with ``record_mbedtls.py``, is ``recording/cpeer.py``: a stack is a
``Stack`` and the recording is ``run(stack, argv)``.

Usage (as root)::

    python3 captures/record_wolfssl.py [--out DIR] [--verbose]
"""

from __future__ import annotations

import re
from pathlib import Path

from recording.cpeer import Stack, run


def _wolfssl_version() -> str:
    header = Path("/usr/include/wolfssl/version.h")
    match = re.search(r'LIBWOLFSSL_VERSION_STRING "([^"]+)"', header.read_text())
    return f"wolfSSL {match.group(1)}" if match else "unknown"


WOLFSSL = Stack("wolfssl", ("-lwolfssl",), range(9500, 9550), _wolfssl_version)


if __name__ == "__main__":
    raise SystemExit(run(WOLFSSL))
