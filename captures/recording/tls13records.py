"""The TLS 1.3 record layer of one recorded connection, decrypted with the key log: what each
record holds, its content length and its padding (``record_java.py --records``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256, SHA384
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from .core import ALERTS
from .programs import run_checked

HS_NAMES = {
    1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 5: "EndOfEarlyData",
    8: "EncryptedExtensions", 11: "Certificate", 13: "CertificateRequest",
    15: "CertificateVerify", 20: "Finished", 24: "KeyUpdate",
}  # fmt: skip
CT_NAMES = {20: "CCS", 21: "Alert", 22: "Handshake", 23: "AppData"}
SUITES = {
    0x1301: (AESGCM, 16, SHA256),
    0x1302: (AESGCM, 32, SHA384),
    0x1303: (ChaCha20Poly1305, 32, SHA256),
}
HANDSHAKE_SECRET = {
    True: "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    False: "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
}
TRAFFIC_SECRET = {True: "SERVER_TRAFFIC_SECRET_0", False: "CLIENT_TRAFFIC_SECRET_0"}

Record = tuple[int, bytes, bytes]
"""Offset in its direction's stream, header, body."""


def _expand_label(secret: bytes, label: bytes, length: int, algo: Any) -> bytes:
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(algo(), length, info).derive(secret)


def _secrets(path: Path) -> dict[tuple[str, str], bytes]:
    keys: dict[tuple[str, str], bytes] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) == 3:
            keys[(parts[0], parts[1].lower())] = bytes.fromhex(parts[2])
    return keys


def _streams(pcap: Path, server_ports: Iterable[int]) -> dict[int, list[tuple[bool, bytes]]]:
    """Per client port the TCP payloads in capture order, (from_server, bytes)."""
    ports = set(server_ports)
    cmd = ["tshark", "-r", str(pcap), "-Y", "tcp.len > 0 && !tcp.analysis.retransmission"]
    cmd += ["-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.payload"]
    out: dict[int, list[tuple[bool, bytes]]] = {}
    for line in run_checked(cmd, timeout=120).splitlines():
        src, dst, payload = line.split("\t")
        from_server = int(src) in ports
        client = int(dst) if from_server else int(src)
        out.setdefault(client, []).append((from_server, bytes.fromhex(payload.replace(":", ""))))
    return out


def _split(buf: bytes) -> list[Record]:
    records = []
    i = 0
    while i + 5 <= len(buf):
        length = int.from_bytes(buf[i + 3 : i + 5], "big")
        records.append((i, buf[i : i + 5], buf[i + 5 : i + 5 + length]))
        i += 5 + length
    return records


def _wire_order(
    chunks: list[tuple[bool, bytes]], records: dict[bool, list[Record]]
) -> list[tuple[bool, int]]:
    """The records on the wire: by first appearance of their bytes in capture order."""
    order: list[tuple[bool, int]] = []
    offsets = {True: 0, False: 0}
    for side, chunk in chunks:
        offsets[side] += len(chunk)
        for n, (start, _h, _b) in enumerate(records[side]):
            if start < offsets[side] and (side, n) not in order:
                order.append((side, n))
    return order


def _messages(content: bytes) -> list[str]:
    msgs, j = [], 0
    while j + 4 <= len(content):
        msgs.append(HS_NAMES.get(content[j], str(content[j])))
        j += 4 + int.from_bytes(content[j + 1 : j + 4], "big")
    return msgs


class _Decrypter:
    """The keys of both directions, following the handshake to the traffic secrets."""

    def __init__(self, keys: dict[tuple[str, str], bytes], client_random: str, suite: int):
        self.keys, self.client_random, self.suite = keys, client_random, suite
        self.stage = dict(HANDSHAKE_SECRET)
        self.seq = {True: 0, False: 0}

    def decrypt(self, side: bool, header: bytes, body: bytes) -> bytes | None:
        secret = self.keys.get((self.stage[side], self.client_random))
        if header[0] != 23 or secret is None or self.suite not in SUITES:
            return None
        cls, klen, algo = SUITES[self.suite]
        key = _expand_label(secret, b"key", klen, algo)
        iv = _expand_label(secret, b"iv", 12, algo)
        nonce = bytes(a ^ b for a, b in zip(iv, self.seq[side].to_bytes(12, "big"), strict=True))
        try:
            plain = cls(key).decrypt(nonce, body, header)
        except Exception:  # noqa: BLE001  (wrong key: leave the record undecrypted)
            return None
        self.seq[side] += 1
        return plain

    def finished(self, side: bool) -> None:
        self.stage[side] = TRAFFIC_SECRET[side]
        self.seq[side] = 0


def _row(side: bool, header: bytes, body: bytes, keys: _Decrypter) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sender": "server" if side else "client",
        "length": len(body),
        "outer": CT_NAMES.get(header[0], str(header[0])),
    }
    plain = keys.decrypt(side, header, body)
    if plain is None:
        return row
    stripped = plain.rstrip(b"\x00")
    inner, content = stripped[-1], stripped[:-1]
    row.update(inner=CT_NAMES.get(inner, str(inner)), content=len(content))
    row["padding"] = len(plain) - len(stripped)
    if inner == 22:
        row["messages"] = _messages(content)
        if "Finished" in row["messages"]:
            keys.finished(side)
    elif inner == 21:
        row["alert"] = ALERTS.get(content[1], str(content[1]))
    return row


def record_layer(
    pcap: Path, keylog: Path, client_port: int, server_ports: Iterable[int]
) -> list[dict[str, Any]]:
    """Each record of one connection after the ServerHello: sender, outer type and length and,
    where the key log has the secrets, the inner type, the messages, content length and padding
    (zeros between the content type byte and the tag)."""
    chunks = _streams(pcap, server_ports).get(client_port, [])
    records = {side: _split(b"".join(c for s, c in chunks if s == side)) for side in (True, False)}
    hello = records[False][0][2] if records[False] else b""
    server_hello = records[True][0][2] if records[True] else b""
    suite = int.from_bytes(server_hello[39 + server_hello[38] : 41 + server_hello[38]], "big")
    keys = _Decrypter(_secrets(keylog), hello[6:38].hex(), suite)
    rows = []
    for side, n in _wire_order(chunks, records):
        if n == 0:
            continue  # ClientHello / ServerHello
        _start, header, body = records[side][n]
        rows.append(_row(side, header, body, keys))
    return rows
