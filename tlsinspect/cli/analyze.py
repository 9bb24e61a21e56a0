"""The default command: `tlsinspect CAPTURE [--format ...]`, with either engine.

One command whatever the engine: the arguments, the CA bundle, the key logs, the output and the
certificate export are handled here once; the engine only yields the session records (`builtin`:
tlsinspect's own dissector; `tshark`: Wireshark's, through pyshark) and says what it could not
read. Exit codes: 0 success, 2 unusable input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TextIO

from .. import __version__, read_ca_bundle, read_keylogs
from ..capture import CaptureSource, open_capture
from ..capture.tshark import TsharkError, TsharkMissing, find_tshark
from ..engines.builtin import Analyzer, CaptureKeys
from ..engines.tshark import TsharkRun
from ..errors import MissingPackage, TlsInspectError
from ..model import count
from ..record import SessionRecord
from ..report.export import CertExport, write_and_tell
from ..report.html import write_html
from ..report.parquet import certificates_path, write_parquet
from ..report.schema import session_dict
from ..report.stream import STREAMED_FORMATS, write_streamed
from ..report.table import render
from ..report.zeek import write_zeek
from ..tls.keylog import parse_keylog
from ..x509 import Anchors
from .common import Parser, add_format, add_keylog, fail, open_output, session_order, silence_pipe

PROG = "tlsinspect"
ZEEK_FORMATS = ("zeek", "zeek-json")  # two logs into a directory, not one report
BINARY_FORMATS = ("parquet",)  # written to a file by path, not as text
SUFFIX_FORMATS = {".parquet": "parquet", ".html": "html", ".htm": "html"}  # -o without --format


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tlsinspect",
        description="Tell mutual TLS from one-way TLS in a packet capture, and say why.",
        epilog="commands: `tlsinspect CAPTURE` (this one) analyses a capture; "
        "`tlsinspect check CAPTURE... --policy FILE` checks sessions against mTLS rules; "
        "`tlsinspect compare CAPTURE...` runs both engines and prints where they disagree; "
        "`tlsinspect live -i IFACE` follows an interface. `tlsinspect help COMMAND` (or "
        "`tlsinspect COMMAND --help`) tells more of one. Exit codes: 0 success, 2 unusable input.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    add_keylog(
        p,
        "NSS key log (SSLKEYLOGFILE) to decrypt TLS handshakes; may be repeated. Secrets "
        "embedded in a pcapng file (Decryption Secrets Blocks) are used without this option.",
    )
    add_format(
        p,
        ("table", "json", "jsonl", "csv", "ecs", "zeek", "zeek-json", "parquet", "html"),
        "table (default): for people; json: one array; jsonl: one object per line, "
        "streamed; csv: one row per session, streamed; ecs: one Elastic Common Schema object "
        "per line, streamed; zeek, zeek-json: Zeek's ssl.log and x509.log (TSV or JSON) in the "
        "directory of --output (default: the current directory), streamed; parquet: the "
        "columns of read_capture() into --output, its certificates into X.certs.parquet; html: "
        "one self-contained page to open or attach (without --format, an --output ending in "
        ".parquet or .html picks the format)",
    )
    p.set_defaults(format=None)  # not given: picked by the suffix of --output, else table
    p.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write the report to FILE, not stdout (with --format zeek or zeek-json: the "
        "directory for ssl.log and x509.log)",
    )
    p.add_argument(
        "--engine",
        choices=("builtin", "tshark"),
        default="builtin",
        help="builtin (default): tlsinspect's own dissector; tshark: Wireshark's dissectors "
        "through pyshark (slower, a second opinion; `tlsinspect compare` runs both)",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Analyse one capture and report its TLS sessions."""
    args = _parser().parse_args(argv)
    if args.format is None:
        suffix = os.path.splitext(args.output or "")[1].lower()
        args.format = SUFFIX_FORMATS.get(suffix, "table")
    if args.format in BINARY_FORMATS and not args.output and sys.stdout.isatty():
        return fail(PROG, f"--format {args.format} is binary: give --output FILE (or a pipe)")
    try:
        anchors = read_ca_bundle(args.ca_bundle)
    except OSError as exc:
        return fail(PROG, f"{args.ca_bundle}: {exc.strerror or exc}")
    except ValueError as exc:
        return fail(PROG, f"{args.ca_bundle}: no PEM certificate read: {exc}")
    try:
        keylogs = read_keylogs(args.keylog)
    except OSError as exc:
        return fail(PROG, f"key log {exc.filename}: {exc.strerror}")
    for name, text in zip(args.keylog or (), keylogs, strict=True):
        if not len(parse_keylog(text)):
            return fail(
                PROG,
                f"key log {name}: no key log line in it (expected the NSS key log format: "
                "LABEL <client random> <secret>, as SSLKEYLOGFILE writes it)",
            )
    try:
        source = open_capture(args.capture)
    except TlsInspectError as exc:
        return fail(PROG, str(exc))
    except OSError as exc:
        return fail(PROG, f"{args.capture}: {exc.strerror or exc}")
    if args.engine == "tshark":
        source.close()  # tshark reads the file itself (it reads many formats, and some text)
        try:
            find_tshark()
        except TsharkMissing as exc:
            return fail(PROG, str(exc))
        run: _Run = _TsharkRun(args, anchors)
    else:
        run = _BuiltinRun(args, source, keylogs, anchors)
    try:
        own = ZEEK_FORMATS + BINARY_FORMATS  # formats that open their own files
        out = sys.stdout if args.format in own else open_output(args.output)
    except OSError as exc:
        run.close()
        return fail(PROG, f"{args.output}: {exc.strerror or exc}")
    try:
        return _report(args, run, out)
    finally:
        if out is not sys.stdout:
            out.close()


def _report(args: argparse.Namespace, run: _Run, out: TextIO) -> int:
    exporter = CertExport() if args.export_certs else None
    try:
        with run:
            records: Iterable[SessionRecord] = run.records()
            if exporter is not None:
                records = exporter.tap(records)
            sessions = None
            if args.format in ZEEK_FORMATS:
                write_zeek(records, args.output or ".", use_json=args.format == "zeek-json")
            elif args.format in STREAMED_FORMATS:
                write_streamed(args.format, records, out)
            elif args.format == "parquet":
                path = args.output or out.buffer
                certs = certificates_path(args.output) if args.output else None
                write_parquet(records, path, args.capture, certs)
            elif args.format == "html":
                write_html(records, out, [args.capture], run.problems)
            else:
                sessions = sorted((session_dict(r) for r in records), key=session_order)
        problems = run.problems()
        unusable = run.unusable()
        if unusable is not None:
            return fail(PROG, f"{args.capture}: {unusable}")
        if args.format == "json":
            json.dump(sessions, out, indent=2)
            out.write("\n")
        elif args.format == "table":
            out.write(render(sessions or [], run.header(len(sessions or ())), run.notes(problems)))
        out.flush()
    except TsharkError as exc:
        return fail(PROG, f"{args.capture}: {exc}")
    except MissingPackage as exc:
        return fail(PROG, str(exc))
    except BrokenPipeError:
        silence_pipe()
        return 0
    except OSError as exc:  # a Zeek log that cannot be written
        return fail(PROG, f"{exc.filename or args.output}: {exc.strerror or exc}")
    if exporter is not None and write_and_tell(exporter, args.export_certs, PROG):
        return 2
    for p in problems if args.format != "table" else ():
        print(f"{PROG}: {args.capture}: {p}", file=sys.stderr)
    warning = run.warning()
    if warning:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return 0


class _Run:
    """One engine's run over the capture, as the command sees it."""

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def records(self) -> Iterator[SessionRecord]:
        raise NotImplementedError

    def problems(self) -> list[str]:
        """What could not be read, for the report (complete once the records ran out)."""
        raise NotImplementedError

    def unusable(self) -> str | None:
        """Why the capture cannot be used at all (no packet could be read), else None."""
        return None

    def header(self, sessions: int) -> str:
        raise NotImplementedError

    def notes(self, problems: list[str]) -> list[str]:
        """The lines under the table: the problems, and what else the engine has to say."""
        return problems

    def warning(self) -> str | None:
        return None


class _BuiltinRun(_Run):
    def __init__(
        self,
        args: argparse.Namespace,
        source: CaptureSource,
        keylogs: list[bytes],
        anchors: Anchors | None,
    ) -> None:
        self.capture = args.capture
        self.source = source
        self.keyed = bool(keylogs)
        self.analyzer = Analyzer(CaptureKeys(keylogs, source.secrets), anchors)
        self.keyable = 0  # sessions whose later records were encrypted (a ServerHello was seen)
        self.decrypted = 0  # those the key log decrypted

    def close(self) -> None:
        self.source.close()

    def records(self) -> Iterator[SessionRecord]:
        for r in self.analyzer.run(self.source):
            f = r.facts
            if f.server_hello is not None and (f.tls13 or "client" in f.ccs):
                self.keyable += 1
                self.decrypted += f.decrypted
            yield r

    def problems(self) -> list[str]:
        return list(self.source.problems) + self.analyzer.stats.problems

    def unusable(self) -> str | None:
        return self.source.unusable()

    def header(self, sessions: int) -> str:
        stats, source = self.analyzer.stats, self.source
        header = (
            f"{self.capture}: {source.format}, {count(source.packets, 'packet')} "
            f"({stats.tcp_packets:,} TCP), {count(stats.flows, 'TCP connection')}, "
            f"{count(sessions, 'TLS session')}"
        )
        if self.keyed or source.secrets:
            header += f"; {self.decrypted:,} of {self.keyable:,} decrypted with the key log"
        if stats.fragments:
            header += (
                f"; {count(stats.fragments, 'IP fragment')} reassembled into "
                f"{count(stats.reassembled, 'datagram')}"
            )
        return header

    def notes(self, problems: list[str]) -> list[str]:
        truncated = self.analyzer.stats.truncated
        if truncated:
            return [
                *problems,
                f"{count(truncated, 'packet')} {'was' if truncated == 1 else 'were'} cut short by the capture's snaplen",
            ]
        return problems

    def warning(self) -> str | None:
        if self.keyed and self.keyable and not self.decrypted:
            return (
                f"the key log decrypts none of the {self.keyable:,} encrypted handshakes of "
                f"{self.capture} (no client random of theirs is in it)"
            )
        return None


class _TsharkRun(_Run):
    def __init__(self, args: argparse.Namespace, anchors: Anchors | None) -> None:
        self.capture = args.capture
        self.run = TsharkRun(args.capture, args.keylog, anchors)

    def records(self) -> Iterator[SessionRecord]:
        return self.run.records()

    def problems(self) -> list[str]:
        return self.run.problems

    def header(self, sessions: int) -> str:
        a = self.run.analyzer
        return (
            f"{self.capture}: tshark engine, {count(a.packets, 'TCP packet')}, "
            f"{count(a.connections, 'TCP connection')}, {count(sessions, 'TLS session')}"
        )
