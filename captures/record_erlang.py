#!/usr/bin/env python3
"""Record client-authentication sessions of Erlang/OTP ``ssl`` against ``openssl`` and GnuTLS and
against itself, with their ground truth and key logs.

The Erlang side is
``captures/stacks/erlang/tlsnode.escript``, run by ``escript`` once per connection as server or
client; it reports each event on a line of its own (see the escript's header). The other side is
``openssl s_server``/``s_client`` or ``gnutls-serv``/``gnutls-cli``, or the escript again. The
scenario matrix runs each pairing in TLS 1.3 and TLS 1.2: mutual, one-way, certificate requested
and not sent, required without a certificate, a client certificate from an unknown CA and an
expired one.

The truth comes from what both programs reported (the server: whether and which client
certificate it got, or the error it stopped with; the client: whether the server's answer
arrived, or the alert it received), never from the capture. The recorder stops when a session
does not turn out as its scenario says. Afterwards each session is checked against ``tshark``'s
decryption of the capture with the key log: a CertificateRequest iff requested, a client
Certificate with its certificates iff sent.

The driver (``Session``, ``run_session``, ``record``) is ``recording/nodes.py``, shared with
``record_tlslite.py``.

Usage (as root)::

    python3 captures/record_erlang.py [--out DIR] [--verbose]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from recording import cli
from recording.cli import Recorded
from recording.core import FAILED, NOT_SENT, SERVER_NAME, TLS13
from recording.nodes import REQUIRED, Node, Session, matrix, node_tool_versions, node_version
from recording.nodes import record as record_nodes
from recording.pki import Pki, build_pki, with_expired_client
from recording.programs import version_of

RECORDED_BY = "captures/record_erlang.py"
NAME = "stack_erlang"
ESCRIPT = cli.CAPTURES / "stacks" / "erlang" / "tlsnode.escript"
PROGRAMS = ("dumpcap", "tshark", "openssl", "gnutls-serv", "gnutls-cli", "stdbuf", "escript")


def erlang_server_cmd(s: Session, pki: Pki) -> list[str]:
    server = pki.server
    cmd = ["escript", str(ESCRIPT), "server", str(s.port), node_version(s.version), s.request]
    return cmd + [str(server.chain), str(server.key), str(pki.root), *s.server_args]


def erlang_client_cmd(s: Session, pki: Pki) -> list[str]:
    identity = pki.client(s.client_id)
    cmd = ["escript", str(ESCRIPT), "client", str(s.port), node_version(s.version)]
    cmd += [str(pki.root), SERVER_NAME]
    if identity is None:
        return [*cmd, "-", "-"]
    return [*cmd, str(identity.chain), str(identity.key)]


ERLANG = Node("erlang", erlang_server_cmd, erlang_client_cmd)


# The Erlang client offers its certificate in TLS 1.3 only when its chain leads to one of the
# server's certificate_authorities (s_server and gnutls-serv list the root CA): it answers with
# an empty Certificate when it holds client-mallory of the rogue CA.
_EMPTY = (
    "the Erlang TLS 1.3 client sends an empty Certificate: its chain does not lead to a CA "
    "in the server's certificate_authorities"
)
ERLANG_OVERRIDES: dict[tuple[str, str, str], tuple[str, str]] = {
    (f"{server}/erlang", TLS13, "refused-unknown-ca"): (NOT_SENT, _EMPTY)
    for server in ("openssl", "gnutls", "erlang")
}


def erlang_sessions() -> list[Session]:
    """The matrix on ports 9300-9329, and the TLS 1.3 unknown-CA refusal once more with servers
    that name no CA in their CertificateRequest, so that the Erlang client sends client-mallory
    (gnutls-serv has no such option)."""

    def no_ca_names(port: int, server: str, option: str) -> Session:
        name, args = "refused-unknown-ca-no-ca-names", (option,)
        return Session(
            name, port, TLS13, server, "erlang", REQUIRED, "mallory", FAILED, server_args=args
        )

    return [
        *matrix("erlang", 9300, ERLANG_OVERRIDES),
        no_ca_names(9330, "openssl", "-no_ca_names"),
        no_ca_names(9331, "erlang", "no_ca_names"),
    ]


def erlang_version() -> str:
    version = (
        "application:load(ssl), {ok, V} = application:get_key(ssl, vsn), "
        'io:format("OTP ~s, ssl ~s", [erlang:system_info(otp_release), V]), halt().'
    )
    return version_of(["erl", "-noshell", "-eval", version])


def record(out: Path, work: Path, verbose: bool) -> Iterator[Recorded]:
    tools = node_tool_versions({"erlang": erlang_version()})
    pki = with_expired_client(build_pki(work / "pki", None), work / "pki", "erin", "erin")
    nodes = {"erlang": ERLANG}
    yield from record_nodes(NAME, erlang_sessions(), nodes, out, pki, tools, RECORDED_BY, verbose)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(__doc__, "erlang", PROGRAMS, record, argv)


if __name__ == "__main__":
    raise SystemExit(main())
