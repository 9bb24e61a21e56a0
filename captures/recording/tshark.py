"""The check every stack recorder runs on its recording: tshark's decryption of the capture
with the key log must show what the truth says, per session: a CertificateRequest iff the
server asked, a client Certificate with certificates iff the client sent one, and as many
certificates in each chain as the truth lists."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import TLS13, RecordingError

CERTIFICATE, CERTIFICATE_REQUEST, ENCRYPTED_EXTENSIONS = 11, 13, 8
COMPRESSED_CERTIFICATE = 25  # RFC 8879; tshark 4.0 decompresses only brotli

AGREE, NO_KEY, MISMATCH = "agree", "no key", "mismatch"


@dataclass
class Handshake:
    """The handshake messages of one connection, as tshark decoded them."""

    client_port: int
    server_port: int
    server_types: list[int] = field(default_factory=list)
    client_types: list[int] = field(default_factory=list)
    server_certs: list[int] = field(default_factory=list)
    """The number of certificates of each Certificate message, per side."""
    client_certs: list[int] = field(default_factory=list)
    client_random: str | None = None

    @property
    def decrypted(self) -> bool:
        """The encrypted part of a TLS 1.3 handshake was readable (EncryptedExtensions)."""
        return ENCRYPTED_EXTENSIONS in self.server_types

    @property
    def requested(self) -> bool:
        return CERTIFICATE_REQUEST in self.server_types

    @property
    def client_compressed(self) -> bool:
        return COMPRESSED_CERTIFICATE in self.client_types

    @property
    def client_cert_sent(self) -> bool:
        return self.client_compressed or any(n > 0 for n in self.client_certs)


def _run(pcap: Path, keylog: Path, server_ports: Iterable[int]) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}"]
    for port in sorted(set(server_ports)):
        cmd += ["-d", f"tcp.port=={port},tls"]  # e.g. 9300 is Elasticsearch to Wireshark
    cmd += ["-Y", "tls.handshake", "-T", "fields", "-E", "separator=|", "-E", "aggregator=,"]
    for name in ("tcp.srcport", "tcp.dstport", "tls.handshake.type"):
        cmd += ["-e", name]
    cmd += ["-e", "tls.handshake.certificate_length", "-e", "tls.handshake.random"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RecordingError(f"tshark failed: {done.stderr.strip()}")
    return [(line.split("|") + [""] * 5)[:5] for line in done.stdout.splitlines() if line]


def handshakes(
    pcap: Path, keylog: Path, server_ports: Iterable[int]
) -> dict[tuple[int, int], Handshake]:
    """The connections to ``server_ports`` by (client port, server port)."""
    ports = set(server_ports)
    found: dict[tuple[int, int], Handshake] = {}
    for src, dst, types, lengths, randoms in _run(pcap, keylog, ports):
        from_server = int(src) in ports
        client, server = (int(dst), int(src)) if from_server else (int(src), int(dst))
        hs = found.setdefault((client, server), Handshake(client, server))
        kinds = [int(t) for t in types.split(",") if t]
        (hs.server_types if from_server else hs.client_types).extend(kinds)
        if CERTIFICATE in kinds:
            count = len([n for n in lengths.split(",") if n])
            (hs.server_certs if from_server else hs.client_certs).append(count)
        if not from_server and 1 in kinds and randoms and hs.client_random is None:
            hs.client_random = randoms.split(",")[0].replace(":", "").lower()
    return found


@dataclass(frozen=True)
class Checked:
    scenario: str
    state: str  # AGREE, NO_KEY or MISMATCH
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.scenario}: {self.state}{': ' + self.detail if self.detail else ''}"


def find(entry: dict[str, Any], found: dict[tuple[int, int], Handshake]) -> Handshake | None:
    """The connection of a truth entry: by its ports, or by the server port alone where the
    truth has no client port (one connection per server port)."""
    if entry.get("client_port"):
        return found.get((entry["client_port"], entry["server_port"]))
    on_port = [hs for (_, server), hs in found.items() if server == entry["server_port"]]
    return on_port[0] if len(on_port) == 1 else None


def _differences(entry: dict[str, Any], hs: Handshake) -> list[str]:
    client_chain: Sequence[str] | None = entry["client_chain"]
    server_chain: Sequence[str] | None = entry["server_chain"]
    out = []
    if hs.requested != (client_chain is not None):
        out.append(f"CertificateRequest {hs.requested}, truth {client_chain is not None}")
    if hs.client_cert_sent != bool(client_chain):
        out.append(f"client certificate {hs.client_cert_sent}, truth {bool(client_chain)}")
    if not hs.client_compressed and max(hs.client_certs, default=0) != len(client_chain or ()):
        out.append(f"client certificates {hs.client_certs}, truth {client_chain}")
    if server_chain and COMPRESSED_CERTIFICATE not in hs.server_types:
        if hs.server_certs[:1] != [len(server_chain)]:
            out.append(f"server certificates {hs.server_certs[:1]}, truth {server_chain}")
    return out


def judge(entry: dict[str, Any], hs: Handshake | None) -> Checked:
    name = entry["scenario"]
    if hs is None:
        return Checked(name, MISMATCH, "no handshake in the capture")
    if entry["tls_version"] == TLS13 and not hs.decrypted:
        if entry.get("keyed"):
            return Checked(name, MISMATCH, "keyed, but tshark did not decrypt the handshake")
        return Checked(name, NO_KEY)
    differences = _differences(entry, hs)
    return Checked(name, MISMATCH, "; ".join(differences)) if differences else Checked(name, AGREE)


def check(pcap: Path, keylog: Path, sessions: list[dict[str, Any]]) -> list[Checked]:
    """Every session of a truth against tshark's view of the capture with its key log."""
    found = handshakes(pcap, keylog, (s["server_port"] for s in sessions))
    return [judge(s, find(s, found)) for s in sessions]


def summary(checks: Sequence[Checked]) -> str:
    count = {state: sum(c.state == state for c in checks) for state in (AGREE, MISMATCH, NO_KEY)}
    return (
        f"tshark check: {count[AGREE]} agree, {count[MISMATCH]} mismatches, "
        f"{count[NO_KEY]} without key"
    )
