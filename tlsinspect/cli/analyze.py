"""The default command: `tlsinspect PATH... [--format ...] [--follow]`, with either engine.

One command whatever the engine: the arguments, the CA bundle, the key logs, the output and the
certificate export are handled here once; the engine only yields the session records (`builtin`:
tlsinspect's own dissector; `tshark`: Wireshark's, through pyshark) and says what it could not
read. Exit codes: 0 success, 2 unusable input (one line on stderr).

The paths are expanded, and rotated series grouped, by `capture.inputs`; `_Runs` reads the
inputs one after the other, a run of the engine each, and the report covers them all (a line
of counts per capture). `--follow` (built-in engine): the last input is read as it grows
(`capture.Follow`), SIGINT/SIGTERM end the reading as they end `tlsinspect live` (its `_Stop`),
and the table prints each session as it is logged (live's `table_line`), then the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import TextIO

from .. import __version__, read_ca_bundle, read_keylogs
from ..capture import CaptureSource, Follow
from ..capture.inputs import Input, capture_paths, merge_series, open_input, plan
from ..capture.tshark import TsharkError, TsharkMissing, find_tshark
from ..engines.builtin import Analyzer, CaptureKeys
from ..engines.lifecycle import Limits
from ..engines.tshark import TsharkRun
from ..errors import MissingPackage, TlsInspectError
from ..model import count
from ..record import SessionRecord
from ..report.export import CertExport, write_and_tell
from ..report.flat import flat_row
from ..report.html import write_html
from ..report.parquet import certificates_path, write_parquet
from ..report.schema import session_dict
from ..report.select import VERDICTS, selection
from ..report.stream import STREAMED_FORMATS, write_streamed
from ..report.summary import SUMMARY_FORMATS, summarize, write_summary
from ..report.table import MIN_WIDTH, WHY_CHOICES, output_width, render
from ..report.zeek import write_zeek
from ..tls.keylog import parse_keylog
from ..x509 import Anchors
from .common import (
    Parser,
    add_format,
    add_inputs,
    add_keylog,
    add_memory_limit,
    fail,
    open_output,
    session_order,
    silence_pipe,
)

PROG = "tlsinspect"
ZEEK_FORMATS = ("zeek", "zeek-json")  # two logs into a directory, not one report
BINARY_FORMATS = ("parquet",)  # written to a file by path, not as text
SUFFIX_FORMATS = {".parquet": "parquet", ".html": "html", ".htm": "html"}  # -o without --format


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tlsinspect",
        description="Tell mutual TLS from one-way TLS in a packet capture, and say why.",
        epilog="commands: `tlsinspect PATH...` (this one) analyses captures; "
        "`tlsinspect check CAPTURE... --policy FILE` checks sessions against mTLS rules; "
        "`tlsinspect compare CAPTURE...` runs both engines and prints where they disagree; "
        "`tlsinspect live -i IFACE` follows an interface. `tlsinspect help COMMAND` (or "
        "`tlsinspect COMMAND --help`) tells more of one. Exit codes: 0 success, 2 unusable input.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "captures",
        nargs="+",
        metavar="PATH",
        help="pcap or pcapng files (may be gzip-compressed), directories (their capture files, "
        "recursively) or globs; the files of a rotated series are read as one capture",
    )
    add_inputs(p)
    p.add_argument(
        "--follow",
        action="store_true",
        help="the (last) capture is still being written (tcpdump -U -w): read it as it grows, "
        "like tail -f, going on to the next file of its series when one appears, and report "
        "sessions as they end; Ctrl-C or SIGTERM ends, with the sessions still open and the "
        "totals",
    )
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
        "--width",
        type=_width,
        metavar="N",
        help="table: fit lines of N characters (default: the terminal's width; 100, or "
        f"$COLUMNS, when the output is no terminal; at least {MIN_WIDTH})",
    )
    p.add_argument(
        "--why",
        choices=WHY_CHOICES,
        default=WHY_CHOICES[0],
        help="table: print why each verdict was reached for the sessions that need it "
        "(needed, the default: failures, requests not answered, undecided verdicts, "
        "anomalies), for all of them, or for none",
    )
    p.add_argument(
        "--engine",
        choices=("builtin", "tshark"),
        default="builtin",
        help="builtin (default): tlsinspect's own dissector; tshark: Wireshark's dissectors "
        "through pyshark (slower, a second opinion; `tlsinspect compare` runs both)",
    )
    add_memory_limit(p)
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


def _width(text: str) -> int:
    if not text.isdigit() or int(text) < MIN_WIDTH:
        raise argparse.ArgumentTypeError(f"expected a number of at least {MIN_WIDTH}")
    return int(text)


def main(argv: Sequence[str]) -> int:
    """Analyse captures and report their TLS sessions."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.format is None:
        suffix = os.path.splitext(args.output or "")[1].lower()
        args.format = SUFFIX_FORMATS.get(suffix, "table")
    try:
        args.selection = selection(args.verdict, args.server, args.port, args.client_identity)
    except ValueError as exc:
        parser.error(str(exc))
    if args.summary and args.format not in SUMMARY_FORMATS:
        parser.error(f"--summary is written as {', '.join(SUMMARY_FORMATS)}, not {args.format}")
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
    notes: list[str] = []
    try:
        files = capture_paths(args.captures, notes)
    except (FileNotFoundError, ValueError) as exc:
        return fail(PROG, str(exc))
    if args.follow and args.engine == "tshark":
        return fail(PROG, "--follow reads with the builtin engine only (tshark reads whole files)")
    inputs = plan(files, args.series, notes)
    if args.engine == "tshark":
        try:
            find_tshark()
        except TsharkMissing as exc:
            return fail(PROG, str(exc))
    stop = None
    if args.follow:
        from .live import _Stop  # SIGINT/SIGTERM end the reading, as they end `live`

        stop = _Stop()
        stop.install()
    follow = Follow(stop.event) if stop is not None else None
    runs = _Runs(args, inputs, keylogs, anchors, follow)
    if runs.failed:  # the first capture cannot be read: nothing is written
        return fail(PROG, runs.failed[0])
    try:
        own = ZEEK_FORMATS + BINARY_FORMATS  # formats that open their own files
        out = sys.stdout if args.format in own else open_output(args.output)
    except OSError as exc:
        runs.close()
        return fail(PROG, f"{args.output}: {exc.strerror or exc}")
    for note in notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    try:
        return _report(args, runs, out)
    finally:
        if stop is not None:
            stop.restore()
        if out is not sys.stdout:
            out.close()


def _report(args: argparse.Namespace, runs: _Runs, out: TextIO) -> int:
    exporter = CertExport() if args.export_certs else None
    try:
        records: Iterable[SessionRecord] = runs.records()
        if exporter is not None:
            records = exporter.tap(records)
        sessions = summary = None
        if args.summary:
            summary = summarize(flat_row(r) for r in records)
        elif args.format in ZEEK_FORMATS:
            write_zeek(records, args.output or ".", use_json=args.format == "zeek-json")
        elif args.format in STREAMED_FORMATS:
            write_streamed(args.format, records, out)
        elif args.format == "parquet":
            path = args.output or out.buffer
            certs = certificates_path(args.output) if args.output else None
            write_parquet(records, path, None, certs)
        elif args.format == "html":
            write_html(records, out, [inp.name for inp in runs.inputs], runs.notes)
        elif args.follow and args.format == "table":
            _follow_table(runs, records, out)
        else:
            found = [(runs.position, session_dict(r)) for r in records]
            found.sort(key=lambda ps: (ps[0], *session_order(ps[1])))
            sessions = [s for _, s in found]
        if all(run.unusable() is not None for run, _n in runs.done):
            # no capture holds a packet: one line each, and no report
            for run, _n in runs.done:
                fail(PROG, f"{run.name}: {run.unusable()}")
            for failure in runs.failed:
                fail(PROG, failure)
            return 2
        if summary is not None:
            write_summary(args.format, summary, out, runs.header(), runs.notes())
        elif args.format == "json":
            json.dump(sessions, out, indent=2)
            out.write("\n")
        elif args.format == "table" and not args.follow:
            width = output_width(out, args.width)
            out.write(
                render(sessions or [], runs.header(), runs.notes(), width=width, why=args.why)
            )
        out.flush()
    except TsharkError as exc:
        return fail(PROG, f"{runs.name}: {exc}")
    except MissingPackage as exc:
        return fail(PROG, str(exc))
    except BrokenPipeError:
        silence_pipe()
        return 0
    except KeyboardInterrupt:  # a second Ctrl-C while following: stop at once
        return 130
    except OSError as exc:  # a Zeek log that cannot be written
        return fail(PROG, f"{exc.filename or args.output}: {exc.strerror or exc}")
    if exporter is not None and write_and_tell(exporter, args.export_certs, PROG):
        return 2
    code = 0
    for run, _n in runs.done:
        unusable = run.unusable()
        if unusable is not None:
            code = fail(PROG, f"{run.name}: {unusable}")
            continue
        for p in run.problems() if args.format != "table" else ():
            print(f"{PROG}: {run.name}: {p}", file=sys.stderr)
        warning = run.warning()
        if warning:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if args.selection and args.format != "table":
        for (run, n), kept in zip(runs.done, runs.kept, strict=True):
            print(f"{PROG}: {run.name}: {_sessions(n, kept)}", file=sys.stderr)
    for failure in runs.failed:
        code = fail(PROG, failure)
    return code


def _follow_table(runs: _Runs, records: Iterable[SessionRecord], out: TextIO) -> None:
    """The table of a followed capture: each session on one line as it is logged (as `live`
    prints them), then the capture lines and the totals."""
    from .live import _totals as totals_line
    from .live import table_line

    verdicts: Counter[str] = Counter()
    out.write(f"following {runs.inputs[-1].name} as it grows; Ctrl-C to stop\n")
    out.flush()
    for r in records:
        s = session_dict(r)
        verdicts[str(s["verdict"])] += 1
        out.write(table_line(s) + "\n")
        out.flush()
    lines = [runs.header(), *(f"  - {n}" for n in runs.notes()), totals_line(verdicts)]
    out.write("\n" + "\n".join(lines) + "\n")


class _Runs:
    """The inputs of the command, read one after the other, each by a run of the engine; the
    first input is opened at once (a capture that cannot be read is then said before any
    output), the others when their turn comes. `failed`: the sentences of inputs that could
    not be opened; `done`: the runs read, with their session counts."""

    def __init__(
        self,
        args: argparse.Namespace,
        inputs: list[Input],
        keylogs: list[bytes],
        anchors: Anchors | None,
        follow: Follow | None,
    ) -> None:
        self.args = args
        self.inputs = inputs
        self.keylogs = keylogs
        self.anchors = anchors
        self.follow = follow
        self.failed: list[str] = []
        self.done: list[tuple[_Run, int]] = []
        self.kept: list[int] = []  # of each run done, the sessions the selection kept
        self.position = 0  # the input being read
        self.name = inputs[0].name
        self._first = self._open(0)

    def _open(self, i: int) -> _Run | None:
        inp = self.inputs[i]
        follow = self.follow if i == len(self.inputs) - 1 else None  # the last one is followed
        try:
            source = open_input(inp, follow)
            if self.args.engine == "tshark":
                source.close()  # tshark reads the file itself (it reads many formats)
                return _TsharkRun(inp, self.args.keylog, self.anchors, self.args.memory_limit)
        except TlsInspectError as exc:
            self.failed.append(str(exc))
            return None
        except OSError as exc:
            self.failed.append(f"{inp.name}: {exc.strerror or exc}")
            return None
        return _BuiltinRun(self.args, inp.name, source, self.keylogs, self.anchors)

    def records(self) -> Iterator[SessionRecord]:
        for i, inp in enumerate(self.inputs):
            run = self._first if i == 0 else self._open(i)
            if run is None:
                continue
            self.position, self.name = i, inp.name
            n = kept = 0
            sel = self.args.selection
            with run:
                for r in run.records():
                    n += 1
                    if not sel or sel.matches(r):
                        kept += 1
                        yield r
            self.done.append((run, n))
            self.kept.append(kept)

    def close(self) -> None:
        if self._first is not None:
            self._first.close()

    def header(self) -> str:
        """A line per capture read: what it held."""
        sel = self.args.selection
        return "\n".join(
            run.header(n, kept if sel else None)
            for (run, n), kept in zip(self.done, self.kept, strict=True)
            if run.unusable() is None
        )

    def notes(self) -> list[str]:
        """The problems of every capture (named when there are several) and what else the
        engine says."""
        many = len(self.done) > 1
        return [
            f"{run.name}: {p}" if many else p
            for run, _n in self.done
            if run.unusable() is None
            for p in run.notes(run.problems())
        ]


def _sessions(total: int, shown: int | None = None) -> str:
    """'13 TLS sessions', or with a selection '3 of 13 TLS sessions shown'."""
    if shown is None:
        return count(total, "TLS session")
    return f"{shown:,} of {count(total, 'TLS session')} shown"


class _Run:
    """One engine's run over the capture, as the command sees it."""

    name: str  # the capture, as reports name it

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
        name: str,
        source: CaptureSource,
        keylogs: list[bytes],
        anchors: Anchors | None,
    ) -> None:
        self.name = name
        self.source = source
        self.keyed = bool(keylogs)
        self.analyzer = Analyzer(CaptureKeys(keylogs, source.secrets), anchors, args.memory_limit)
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
            f"{self.name}: {source.format}, {count(source.packets, 'packet')} "
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
                f"{self.name} (no client random of theirs is in it)"
            )
        return None


class _TsharkRun(_Run):
    """tshark on a capture; a series is first merged into one file (tshark reads one), and its
    sessions are then given the file of the series where they started."""

    def __init__(
        self,
        inp: Input,
        keylog: list[str] | None,
        anchors: Anchors | None,
        memory_limit: Limits,
    ) -> None:
        self.name = inp.name
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        path, file_of = inp.paths[0], None
        if len(inp.paths) > 1:
            self._tmp = tempfile.TemporaryDirectory(prefix="tlsinspect-series-")
            merged = merge_series(inp, self._tmp.name)
            if merged is None:
                raise TsharkError(f"{inp.name}: mergecap could not merge the series for tshark")
            path, file_of = merged
        self.run = TsharkRun(path, keylog, anchors, memory_limit)
        if file_of is not None:
            self.run.analyzer.logbook.file_of = file_of

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def records(self) -> Iterator[SessionRecord]:
        return self.run.records()

    def problems(self) -> list[str]:
        return self.run.problems

    def header(self, sessions: int, shown: int | None = None) -> str:
        a = self.run.analyzer
        return (
            f"{self.name}: tshark engine, {count(a.packets, 'TCP packet')}, "
            f"{count(a.connections, 'TCP connection')}, {_sessions(sessions, shown)}"
        )
