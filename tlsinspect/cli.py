"""Command line: `tlsinspect CAPTURE [--format ...]`, and subcommands (`tlsinspect check ...`).

Exit codes: 0 success, 1 a subcommand's check failed, 2 unusable input (one line on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from .capture import open_capture
from .errors import TlsInspectError
from .pipeline import Analyzer
from .report.schema import session_dict
from .report.table import render

# subcommand -> module under tlsinspect.commands with main(argv) -> int
SUBCOMMANDS: dict[str, str] = {}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlsinspect",
        description="Tell mutual TLS from one-way TLS in a packet capture, and say why.",
    )
    p.add_argument("capture", help="pcap or pcapng file (may be gzip-compressed)")
    p.add_argument(
        "--format",
        choices=("table", "json", "jsonl"),
        default="table",
        help="table (default): for people; json: one array; jsonl: one object per line, streamed",
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
        source = open_capture(args.capture)
    except TlsInspectError as exc:
        print(f"tlsinspect: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tlsinspect: {args.capture}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    analyzer = Analyzer()
    try:
        with source:
            records = analyzer.run(source)
            if args.format == "jsonl":
                for r in records:
                    out.write(json.dumps(session_dict(r)) + "\n")
                sessions = None
            else:
                sessions = sorted((session_dict(r) for r in records), key=_order)
            problems = list(source.problems)
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
                f"{args.capture}: {source.format}, {packets:,} packets, "
                f"{stats.tcp_packets:,} TCP, {stats.flows:,} TCP connections, "
                f"{len(sessions or ()):,} TLS sessions"
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
    for p in problems if args.format != "table" else ():
        print(f"tlsinspect: {args.capture}: {p}", file=sys.stderr)
    return 0


def _order(s: dict[str, object]) -> tuple[str, int]:
    return (str(s["start_time"]), int(s["index"]))  # type: ignore[call-overload]


def _silence_pipe() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    raise SystemExit(main())
