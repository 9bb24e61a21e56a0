"""The default command: `tlsinspect CAPTURE [--format ...]`, with either engine.

One command whatever the engine: the arguments, the CA bundle, the key logs, the output and the
certificate export are handled here once; the engine only yields the session records (`builtin`:
tlsinspect's own dissector; `tshark`: Wireshark's, through pyshark) and says what it could not
read. Exit codes: 0 success, 2 unusable input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
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
from ..report.flat import flat_row
from ..report.schema import session_dict
from ..report.select import VERDICTS, Selection, selection
from ..report.stream import STREAMED_FORMATS, write_streamed
from ..report.summary import SUMMARY_FORMATS, summarize, write_summary
from ..report.table import render
from ..report.zeek import write_zeek
from ..tls.keylog import parse_keylog
from ..x509 import Anchors
from .common import Parser, add_format, add_keylog, fail, open_output, session_order, silence_pipe

PROG = "tlsinspect"
ZEEK_FORMATS = ("zeek", "zeek-json")  # two logs into a directory, not one report


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
        ("table", "json", "jsonl", "csv", "ecs", "zeek", "zeek-json"),
        "table (default): for people; json: one array; jsonl: one object per line, "
        "streamed; csv: one row per session, streamed; ecs: one Elastic Common Schema object "
        "per line, streamed; zeek, zeek-json: Zeek's ssl.log and x509.log (TSV or JSON) in the "
        "directory of --output (default: the current directory), streamed",
    )
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
    _add_selection(p)
    return p


def _add_selection(p: argparse.ArgumentParser) -> None:
    """The options that select sessions, as a display filter does (`report.select`)."""
    g = p.add_argument_group(
        "selecting sessions",
        "Keep only some sessions, in every format. Each option may be repeated: the values of "
        "one option are alternatives (ORed), different options must all hold (ANDed). Globs "
        "as in the shell (*, ?, [...]), without case. The table's header then says "
        "'N of M TLS sessions shown'; other formats say it on stderr.",
    )
    g.add_argument(
        "--verdict",
        action="append",
        metavar="V",
        help=f"sessions with this verdict ({', '.join(VERDICTS)}); a comma-separated list too",
    )
    g.add_argument(
        "--server",
        action="append",
        metavar="GLOB",
        help="server address, address:port ([v6]:port), SNI, or a name of the server "
        "certificate (CN, DNS SAN; TLS 1.3 without keys: address and SNI only)",
    )
    g.add_argument(
        "--port",
        action="append",
        metavar="N",
        help="server port, or a range such as 8000-8999; a comma-separated list too",
    )
    g.add_argument(
        "--client-identity",
        action="append",
        metavar="GLOB",
        help="client certificate: its CN, a SAN (spiffe://..., DNS, email), or a prefix of its "
        "SHA-256 fingerprint (8 hex digits or more)",
    )
    p.add_argument(
        "--summary",
        action="store_true",
        help="one row per server (address:port) instead of one per session: the names it "
        "answered for (SNI, certificate CN), sessions per verdict, the client identities and "
        "issuers seen, TLS versions; after the selection; --format table, json, jsonl or csv",
    )


def main(argv: Sequence[str]) -> int:
    """Analyse one capture and report its TLS sessions."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.selection = selection(args.verdict, args.server, args.port, args.client_identity)
    except ValueError as exc:
        parser.error(str(exc))
    if args.summary and args.format not in SUMMARY_FORMATS:
        parser.error(f"--summary is written as {', '.join(SUMMARY_FORMATS)}, not {args.format}")
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
        out = sys.stdout if args.format in ZEEK_FORMATS else open_output(args.output)
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
            shown = _Shown(args.selection, run.records())
            records: Iterable[SessionRecord] = shown
            if exporter is not None:
                records = exporter.tap(records)
            sessions = summary = None
            if args.summary:
                summary = summarize(flat_row(r) for r in records)
            elif args.format in ZEEK_FORMATS:
                write_zeek(records, args.output or ".", use_json=args.format == "zeek-json")
            elif args.format in STREAMED_FORMATS:
                write_streamed(args.format, records, out)
            else:
                sessions = sorted((session_dict(r) for r in records), key=session_order)
        problems = run.problems()
        unusable = run.unusable()
        if unusable is not None:
            return fail(PROG, f"{args.capture}: {unusable}")
        header = run.header(shown.total, shown.kept if args.selection else None)
        if summary is not None:
            write_summary(args.format, summary, out, header, run.notes(problems))
        elif args.format == "json":
            json.dump(sessions, out, indent=2)
            out.write("\n")
        elif args.format == "table":
            out.write(render(sessions or [], header, run.notes(problems)))
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
    if args.selection and args.format != "table":
        print(f"{PROG}: {args.capture}: {_sessions(shown.total, shown.kept)}", file=sys.stderr)
    warning = run.warning()
    if warning:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return 0


class _Shown:
    """The records a selection keeps, counted as they go by: how many there were, how many
    were kept."""

    def __init__(self, sel: Selection, records: Iterable[SessionRecord]) -> None:
        self.sel = sel
        self.records = records
        self.total = 0
        self.kept = 0

    def __iter__(self) -> Iterator[SessionRecord]:
        for r in self.records:
            self.total += 1
            if not self.sel or self.sel.matches(r):
                self.kept += 1
                yield r


def _sessions(total: int, shown: int | None = None) -> str:
    """'13 TLS sessions', or with a selection '3 of 13 TLS sessions shown'."""
    if shown is None:
        return count(total, "TLS session")
    return f"{shown:,} of {count(total, 'TLS session')} shown"


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

    def header(self, sessions: int, shown: int | None = None) -> str:
        """The table's first line; `shown`: how many of the `sessions` a selection kept."""
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

    def header(self, sessions: int, shown: int | None = None) -> str:
        stats, source = self.analyzer.stats, self.source
        header = (
            f"{self.capture}: {source.format}, {count(source.packets, 'packet')} "
            f"({stats.tcp_packets:,} TCP), {count(stats.flows, 'TCP connection')}, "
            f"{_sessions(sessions, shown)}"
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

    def header(self, sessions: int, shown: int | None = None) -> str:
        a = self.run.analyzer
        return (
            f"{self.capture}: tshark engine, {count(a.packets, 'TCP packet')}, "
            f"{count(a.connections, 'TCP connection')}, {_sessions(sessions, shown)}"
        )
