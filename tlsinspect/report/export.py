"""`--export-certs DIR`: every distinct certificate of a capture as `<sha256>.pem`, with an index.

`CertExport.tap(records)` passes the session records through unchanged while it notes each
certificate and where it was used; `write(directory)` then writes the PEM files and the index
(`index.json`, and `index.csv` with one row per use). Certificates are kept once, by SHA-256,
so the memory held is that of the distinct certificates plus one small tuple per use.
"""

from __future__ import annotations

import base64
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..model import count, iso_time
from ..record import SessionRecord
from ..x509 import cert_info

INDEX_COLUMNS = (
    "sha256",
    "file",
    "subject",
    "issuer",
    "serial",
    "not_after",
    "session",
    "role",
    "depth",
    "start_time",
    "client",
    "server",
    "sni",
)


def pem(der: bytes) -> str:
    """DER certificate bytes as PEM text (RFC 7468: base64 in lines of 64)."""
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _endpoint(addr: tuple[str, int]) -> str:
    ip, port = addr
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class CertExport:
    """Collects the certificates of the sessions that pass through `tap`."""

    def __init__(self) -> None:
        self.ders: dict[str, bytes] = {}  # sha256 -> DER, in order of first use
        self.uses: dict[str, list[dict[str, object]]] = {}

    def add(self, r: SessionRecord) -> None:
        f = r.facts
        ch = f.client_hello
        for role, ders in (("client", f.client_certs), ("server", f.server_certs)):
            for depth, der in enumerate(ders or ()):
                digest = cert_info(der).sha256
                self.ders.setdefault(digest, der)
                self.uses.setdefault(digest, []).append(
                    {
                        "session": r.index,
                        "role": role,
                        "depth": depth,
                        "start_time": iso_time(f.start_ts),
                        "client": _endpoint(r.client),
                        "server": _endpoint(r.server),
                        "sni": ch.server_name if ch is not None else None,
                    }
                )

    def tap(self, records: Iterable[SessionRecord]) -> Iterator[SessionRecord]:
        for r in records:
            self.add(r)
            yield r

    def write(self, directory: str | Path) -> int:
        """Write the PEM files and the index into `directory` (created if needed); return the
        number of certificates. Raises OSError."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        index: list[dict[str, object]] = []
        rows: list[list[object]] = []
        for digest, der in self.ders.items():
            info = cert_info(der)
            name = f"{digest}.pem"
            (out / name).write_text(pem(der), encoding="ascii")
            index.append(
                {
                    "sha256": digest,
                    "file": name,
                    "subject": info.subject,
                    "issuer": info.issuer,
                    "subject_cn": info.subject_cn,
                    "serial": info.serial,
                    "not_before": info.not_before.isoformat() if info.not_before else None,
                    "not_after": info.not_after.isoformat() if info.not_after else None,
                    "error": info.error,
                    "used_by": self.uses[digest],
                }
            )
            for use in self.uses[digest]:
                row = {**index[-1], **use}
                rows.append(["" if row.get(c) is None else row.get(c) for c in INDEX_COLUMNS])
        (out / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        with open(out / "index.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(INDEX_COLUMNS)
            w.writerows(rows)
        return len(index)


def write_and_tell(exporter: CertExport, directory: str | Path, prog: str) -> int:
    """Write the export, tell on stderr where it went; the exit code (2 when it cannot)."""
    try:
        n = exporter.write(directory)
    except OSError as exc:
        print(f"{prog}: {directory}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{prog}: {count(n, 'certificate')} written to {directory}", file=sys.stderr)
    return 0
