"""Command line: `tlsinspect CAPTURE [--format ...]`, and subcommands (`tlsinspect check ...`).

Exit codes: 0 success, 1 a subcommand's check failed, 2 unusable input (one line on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Iterator, Sequence

from . import read_ca_bundle, read_keylogs
from .capture import open_capture
from .errors import TlsInspectError
from .pipeline import Analyzer, CaptureKeys, SessionRecord
from .report.export import CertExport, write_and_tell
from .report.schema import session_dict
from .report.stream import STREAMED_FORMATS, write_streamed
from .report.table import count, render
from .tls.keylog import parse_keylog

# subcommand -> module under tlsinspect.commands with main(argv) -> int
SUBCOMMANDS: dict[str, str] = {"check": "check", "live": "live", "compare": "compare"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlsinspect",
        description="Tell mutual TLS from one-way TLS in a packet capture, and say why.",
    )
    p.add_argument("capture", help="pcap or pcapng file (may be gzip-compressed)")
    p.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="PEM file of trusted CA certificates (one or many): validate both chains of every "
        "session against them at the time of the capture (check `ca_bundle`)",
    )
    p.add_argument(
        "--export-certs",
        metavar="DIR",
        help="write every distinct certificate to DIR as <sha256>.pem, with index.json and "
        "index.csv saying which sessions used it",
    )
    p.add_argument(
        "--keylog",
        action="append",
        metavar="FILE",
        help="NSS key log (SSLKEYLOGFILE) to decrypt TLS handshakes; may be repeated. Secrets "
        "embedded in a pcapng file (Decryption Secrets Blocks) are used without this option.",
    )
    p.add_argument(
        "--format",
        choices=("table", "json", "jsonl", "csv"),
        default="table",
        help="table (default): for people; json: one array; jsonl: one object per line, "
        "streamed; csv: one row per session, streamed",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE, not stdout")
    p.add_argument(
        "--engine",
        choices=("builtin", "tshark"),
        default="builtin",
        help="builtin (default): tlsinspect's own dissector; tshark: Wireshark's dissectors "
        "through pyshark (slower, a second opinion; `tlsinspect compare` runs both)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in SUBCOMMANDS:
        module = importlib.import_module(f"tlsinspect.commands.{SUBCOMMANDS[args_list[0]]}")
        return int(module.main(args_list[1:]))
    return analyze_main(args_list)


def analyze_main(argv: Sequence[str]) -> int:
    """The default command: analyse one capture and report its TLS sessions."""
    args = _parser().parse_args(argv)
    try:
        anchors = read_ca_bundle(args.ca_bundle)
    except OSError as exc:
        return _fail(f"{args.ca_bundle}: {exc.strerror or exc}")
    except ValueError as exc:
        return _fail(f"{args.ca_bundle}: no PEM certificate read: {exc}")
    try:
        keylogs = read_keylogs(args.keylog)
    except OSError as exc:
        return _fail(f"key log {exc.filename}: {exc.strerror}")
    for name, text in zip(args.keylog or (), keylogs, strict=True):
        if not len(parse_keylog(text)):
            return _fail(
                f"key log {name}: no key log line in it (expected the NSS key log format: "
                "LABEL <client random> <secret>, as SSLKEYLOGFILE writes it)"
            )
    exporter = CertExport() if args.export_certs else None
    if args.engine == "tshark":
        from .commands.tshark_engine import analyze_main as tshark_main

        return tshark_main(args, anchors, exporter)
    try:
        source = open_capture(args.capture)
    except TlsInspectError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.capture}: {exc.strerror or exc}")
    out = sys.stdout
    if args.output:
        try:
            out = open(args.output, "w", encoding="utf-8", newline="")  # closed at exit
        except OSError as exc:
            source.close()
            return _fail(f"{args.output}: {exc.strerror or exc}")
    analyzer = Analyzer(CaptureKeys(keylogs, source.secrets))
    tally = _Decrypted()
    try:
        with source:
            records = tally.count(analyzer.run(source))
            if exporter is not None:
                records = exporter.tap(records)
            if args.format in STREAMED_FORMATS:
                write_streamed(args.format, records, out, lambda r: session_dict(r, anchors))
                sessions = None
            else:
                sessions = sorted((session_dict(r, anchors) for r in records), key=_order)
            problems = list(source.problems) + analyzer.stats.problems
            packets = source.packets
    except BrokenPipeError:
        _silence_pipe()
        return 0
    stats = analyzer.stats
    if not packets and problems:
        print(
            f"tlsinspect: {args.capture}: no packet could be read: {problems[0]}", file=sys.stderr
        )
        return 2
    try:
        if args.format == "json":
            json.dump(sessions, out, indent=2)
            out.write("\n")
        elif args.format == "table":
            header = (
                f"{args.capture}: {source.format}, {count(packets, 'packet')} "
                f"({stats.tcp_packets:,} TCP), {count(stats.flows, 'TCP connection')}, "
                f"{count(len(sessions or ()), 'TLS session')}"
            )
            if keylogs or source.secrets:
                header += f"; {tally.decrypted:,} of {tally.keyable:,} decrypted with the key log"
            if stats.fragments:
                header += (
                    f"; {count(stats.fragments, 'IP fragment')} reassembled into "
                    f"{count(stats.reassembled, 'datagram')}"
                )
            if stats.truncated:
                problems.append(
                    f"{stats.truncated:,} packets were cut short by the capture's snaplen"
                )
            out.write(render(sessions or [], header, problems))
        out.flush()
    except BrokenPipeError:
        _silence_pipe()
        return 0
    if out is not sys.stdout:
        out.close()
    if exporter is not None and write_and_tell(exporter, args.export_certs, "tlsinspect"):
        return 2
    for p in problems if args.format != "table" else ():
        print(f"tlsinspect: {args.capture}: {p}", file=sys.stderr)
    if keylogs and tally.keyable and not tally.decrypted:
        print(
            f"tlsinspect: warning: the key log decrypts none of the {tally.keyable:,} encrypted "
            f"handshakes of {args.capture} (no client random of theirs is in it)",
            file=sys.stderr,
        )
    return 0


class _Decrypted:
    """Counts, as the sessions pass, those a key log could decrypt and those it did."""

    def __init__(self) -> None:
        self.keyable = 0  # a ServerHello was seen: its later records are encrypted
        self.decrypted = 0

    def count(self, records: Iterator[SessionRecord]) -> Iterator[SessionRecord]:
        for r in records:
            sh = r.facts.server_hello
            if sh is not None and (r.facts.tls13 or "client" in r.facts.ccs):
                self.keyable += 1
                self.decrypted += r.facts.decrypted
            yield r


def _fail(message: str) -> int:
    """One line on stderr, and the exit code of an unusable input: 2."""
    print(f"tlsinspect: {message}", file=sys.stderr)
    return 2


def _order(s: dict[str, object]) -> tuple[str, int]:
    return (str(s["start_time"]), int(s["index"]))  # type: ignore[call-overload]


def _silence_pipe() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    raise SystemExit(main())
