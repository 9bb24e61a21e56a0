"""`tlsinspect compare CAPTURE...`: run both engines on a capture and print where they disagree.

The built-in dissector and tshark's (`--engine tshark`) feed the same session logic, so a
difference comes from how each read the wire: TCP reassembly, record and message parsing,
decryption. Sessions are paired by their two endpoints (and, for a reused address pair, in order
of start), and these facts are compared: the client's endpoint (who is the client), the
negotiated version, the verdict, the SNI, whether the server asked for a client certificate,
and the SHA-256 fingerprints of both chains.

A session only one engine reports, and in which neither saw a handshake message (the capture
joined the connection after its handshake: a verdict of `incomplete` with nothing else known),
is a *note*, not a disagreement: the engines recognise such a connection differently (tshark by
its port, tlsinspect by two consecutive record headers), and the mTLS facts compared are all
unknown either way. Notes are printed, with that explanation.

Every disagreement comes with what may explain it: segments tshark says were not captured on
that connection, the anomalies tlsinspect recorded (missing bytes, malformed messages, key
problems), a decryption only one engine made.

Exit codes: 0 the engines agree (notes allowed), 1 at least one disagreement, 2 a capture or key
log that cannot be used, or no tshark (the message says how to install it).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import sessions as builtin_sessions
from ..capture.tshark import TsharkError, TsharkMissing, find_tshark
from ..engines.tshark import TsharkRun
from ..errors import TlsInspectError
from ..report.schema import session_dict
from .common import Parser, add_format, add_keylog, session_order

Session = dict[str, object]

COMPARED = (
    "client",
    "tls_version",
    "verdict",
    "sni",
    "cert_requested",
    "client_chain",
    "server_chain",
)


@dataclass(slots=True)
class Difference:
    """One session on which the engines differ, or which only one of them reports."""

    client: str
    server: str
    start_time: str
    fields: dict[str, tuple[object, object]]  # name -> (builtin value, tshark value)
    why: list[str] = field(default_factory=list)
    note: bool = False  # a legitimate difference (explained), not a disagreement
    only: str | None = None  # "builtin" or "tshark": the one engine that reports the session

    def to_dict(self) -> dict[str, object]:
        return {
            "client": self.client,
            "server": self.server,
            "start_time": self.start_time,
            "kind": "note" if self.note else "disagreement",
            "only": self.only,
            "fields": {k: {"builtin": a, "tshark": b} for k, a, b in self._rows()},
            "why": self.why,
        }

    def _rows(self) -> list[tuple[str, object, object]]:
        return [(k, a, b) for k, (a, b) in self.fields.items()]


@dataclass(slots=True)
class CaptureComparison:
    path: str
    builtin: int
    tshark: int
    differences: list[Difference]
    seconds: tuple[float, float]
    decode_as: list[int]
    problems: list[str] = field(default_factory=list)  # what tshark could not read (a cut)

    @property
    def matched(self) -> int:
        """Sessions both engines report (paired, then compared)."""
        return self.builtin - sum(d.only == "builtin" for d in self.differences)

    @property
    def disagreements(self) -> list[Difference]:
        return [d for d in self.differences if not d.note]

    @property
    def notes(self) -> list[Difference]:
        return [d for d in self.differences if d.note]


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tlsinspect compare",
        description="Run tlsinspect's dissector and tshark's on captures and print every TLS "
        "session where they disagree (version, verdict, SNI, certificate fingerprints).",
        epilog="Exit codes: 0 no disagreement, 1 a disagreement, 2 unusable capture or no tshark.",
    )
    p.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap or pcapng files")
    add_keylog(
        p,
        "NSS key log (SSLKEYLOGFILE) given to both engines; may be repeated",
    )
    add_format(
        p,
        ("text", "json"),
        "text (default): one block per difference; json: everything as one object",
    )
    return p


def _ip(text: object) -> str:
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        return str(text)


def _endpoint(ip: object, port: object) -> str:
    ip = _ip(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _facts(s: Session) -> dict[str, object]:
    return {
        "client": _endpoint(s["client_ip"], s["client_port"]),
        "tls_version": s["tls_version"],
        "verdict": s["verdict"],
        "sni": s["sni"],
        "cert_requested": s["cert_requested"],
        "client_chain": [c["sha256"] for c in s["client_chain"]],  # type: ignore[attr-defined]
        "server_chain": [c["sha256"] for c in s["server_chain"]],  # type: ignore[attr-defined]
    }


def _pair_key(s: Session) -> frozenset[str]:
    return frozenset(
        (_endpoint(s["client_ip"], s["client_port"]), _endpoint(s["server_ip"], s["server_port"]))
    )


def _nothing_known(s: Session) -> bool:
    """Neither hello seen: the connection was joined after its handshake."""
    return (
        s["verdict"] == "incomplete"
        and s["tls_version"] is None
        and s["client_version"] is None
        and not s["server_chain"]
        and not s["client_chain"]
    )


def _why(a: Session | None, b: Session | None, lost: bool) -> list[str]:
    """What may explain a difference: what each engine noticed about the connection."""
    why = []
    if lost:
        why.append(
            "tshark reports segments that were not captured on this connection: where a hole "
            "cuts a record, tshark stops dissecting that direction at the hole, tlsinspect marks "
            "the bytes missing"
        )
    if a is not None and a["anomalies"]:
        why.append("tlsinspect's anomalies: " + "; ".join(map(str, a["anomalies"])))  # type: ignore[call-overload]
    if (
        a is not None
        and b is not None
        and (a["basis"] == "decrypted") != (b["basis"] == "decrypted")
    ):
        who = "tlsinspect" if a["basis"] == "decrypted" else "tshark"
        why.append(f"only {who} decrypted the handshake with the key log")
    if a is not None and b is not None and a["roles_from"] != b["roles_from"]:
        why.append(
            f"client and server told apart by {a['roles_from']} (tlsinspect) and "
            f"{b['roles_from']} (tshark)"
        )
    return why


def _only_one(s: Session, engine: str, lost: bool) -> Difference:
    facts = _facts(s)
    fields: dict[str, tuple[object, object]] = {
        k: ((v, None) if engine == "builtin" else (None, v)) for k, v in facts.items()
    }
    client = _endpoint(s["client_ip"], s["client_port"])
    server = _endpoint(s["server_ip"], s["server_port"])
    if _nothing_known(s):
        port = s["server_port"]
        if engine == "builtin":
            how = (
                "tlsinspect recognised TLS from two consecutive record headers; tshark, "
                f"without a hello to find it by, does not dissect port {port} as TLS"
            )
        else:
            how = (
                f"tshark dissects port {port} as TLS; tlsinspect recognises a connection joined "
                "after its handshake only from two consecutive TLS record headers, and this "
                "one does not show them"
            )
        name = "tlsinspect" if engine == "builtin" else "tshark"
        why = [
            f"only {name} reports it: the capture joined the connection after its handshake "
            f"(no hello, only encrypted records), so no mTLS fact is known either way; {how}"
        ]
        return Difference(client, server, str(s["start_time"]), fields, why, True, engine)
    why = [f"only {'tlsinspect' if engine == 'builtin' else 'tshark'} reports this session"]
    why += _why(s if engine == "builtin" else None, s if engine == "tshark" else None, lost)
    return Difference(client, server, str(s["start_time"]), fields, why, False, engine)


def compare_sessions(
    builtin: list[Session], tshark: list[Session], lost_starts: set[str] | None = None
) -> list[Difference]:
    """The differences between two engines' sessions of one capture.

    `lost_starts`: start times of the tshark sessions on connections where tshark saw holes.
    """
    lost_starts = lost_starts or set()
    by_pair: dict[frozenset[str], tuple[list[Session], list[Session]]] = defaultdict(
        lambda: ([], [])
    )
    for s in builtin:
        by_pair[_pair_key(s)][0].append(s)
    for s in tshark:
        by_pair[_pair_key(s)][1].append(s)
    out = []
    for pair in sorted(by_pair, key=lambda p: sorted(p)):
        ours, theirs = by_pair[pair]
        ours.sort(key=lambda s: str(s["start_time"]))
        theirs.sort(key=lambda s: str(s["start_time"]))
        for i in range(max(len(ours), len(theirs))):
            a = ours[i] if i < len(ours) else None
            b = theirs[i] if i < len(theirs) else None
            lost = b is not None and str(b["start_time"]) in lost_starts
            if a is None:
                assert b is not None
                out.append(_only_one(b, "tshark", lost))
                continue
            if b is None:
                out.append(_only_one(a, "builtin", lost))
                continue
            fa, fb = _facts(a), _facts(b)
            fields = {k: (fa[k], fb[k]) for k in COMPARED if fa[k] != fb[k]}
            if fields:
                why = _why(a, b, lost)
                # RFC 8879: tshark 4.0 decompresses brotli certificates only, and the tshark
                # engine reads chains from Certificate (11) messages, never from type 25
                compressed = any(
                    str(h).endswith(":compressed_certificate")
                    for h in a["handshake"]  # type: ignore[attr-defined]
                )
                if compressed:
                    why.append(
                        "tlsinspect decompressed a CompressedCertificate (RFC 8879); the tshark "
                        "engine reads no chain from it"
                    )
                out.append(
                    Difference(
                        _endpoint(a["client_ip"], a["client_port"]),
                        _endpoint(a["server_ip"], a["server_port"]),
                        str(a["start_time"]),
                        fields,
                        why,
                        note=compressed,
                    )
                )
    out.sort(key=lambda d: d.start_time)
    return out


def compare_capture(path: str, keylogs: list[str] | None) -> CaptureComparison:
    """Run both engines on one capture.

    Raises:
        TlsInspectError, OSError: the built-in engine cannot read the capture.
        TsharkMissing, TsharkError: tshark is missing or failed.
    """
    started = time.monotonic()
    ours = builtin_sessions(path, keylog=keylogs)  # type: ignore[arg-type]
    middle = time.monotonic()
    run = TsharkRun(path, keylogs)
    theirs = sorted((session_dict(r) for r in run.records()), key=session_order)
    done = time.monotonic()
    lost = {
        str(s["start_time"])
        for s in theirs
        if int(s["index"]) in run.analyzer.lost_streams  # type: ignore[call-overload]
    }
    return CaptureComparison(
        path,
        len(ours),
        len(theirs),
        compare_sessions(ours, theirs, lost),
        (middle - started, done - middle),
        run.decode_as,
        run.problems,
    )


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v)[:16] + "..." for v in value) + "]" if value else "[]"
    return "-" if value is None else str(value)


def text_report(c: CaptureComparison) -> str:
    lines = [
        f"{c.path}: {c.builtin} TLS session{'s' if c.builtin != 1 else ''} by tlsinspect "
        f"({c.seconds[0]:.2f} s), {c.tshark} by tshark ({c.seconds[1]:.2f} s), {c.matched} by "
        "both; "
        f"{len(c.disagreements)} disagreement{'s' if len(c.disagreements) != 1 else ''}, "
        f"{len(c.notes)} note{'s' if len(c.notes) != 1 else ''}"
    ]
    if c.decode_as:
        lines.append(f"  tshark told to dissect TLS on ports {', '.join(map(str, c.decode_as))}")
    lines.extend(f"  {p}" for p in c.problems)
    for d in c.differences:
        head = "note" if d.note else "DISAGREE"
        lines.append(f"  {head} {d.client} -> {d.server} at {d.start_time}")
        if not d.note:
            width = max(len(k) for k in d.fields)
            for k, (a, b) in d.fields.items():
                lines.append(f"      {k:<{width}}  tlsinspect {_show(a)}  |  tshark {_show(b)}")
        for w in d.why:
            lines.append(f"      why: {w}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    for k in args.keylog or ():
        if not os.path.isfile(k):
            return _fail(f"key log {k}: no such file")
    try:
        find_tshark()
    except TsharkMissing as exc:
        return _fail(str(exc))
    results = []
    try:
        for path in args.captures:
            try:
                c = compare_capture(path, args.keylog)
            except (OSError, TsharkError) as exc:  # first: a TsharkError is a TlsInspectError
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                return _fail(f"{path}: {why}")
            except TlsInspectError as exc:
                return _fail(str(exc))
            results.append(c)
            if args.format == "text":
                sys.stdout.write(text_report(c))
                sys.stdout.flush()
        if args.format == "json":
            sys.stdout.write(json.dumps(json_report(results), indent=2) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 1 if any(c.disagreements for c in results) else 0


def _fail(message: str) -> int:
    print(f"tlsinspect compare: {message}", file=sys.stderr)
    return 2


def json_report(results: list[CaptureComparison]) -> dict[str, object]:
    """Everything `--format json` prints: per capture, the counts, disagreements and notes."""
    return {
        "captures": [
            {
                "file": c.path,
                "sessions": {"builtin": c.builtin, "tshark": c.tshark, "both": c.matched},
                "seconds": {"builtin": round(c.seconds[0], 3), "tshark": round(c.seconds[1], 3)},
                "decode_as": c.decode_as,
                "problems": c.problems,
                "disagreements": [d.to_dict() for d in c.disagreements],
                "notes": [d.to_dict() for d in c.notes],
            }
            for c in results
        ],
        "disagreements": sum(len(c.disagreements) for c in results),
    }
