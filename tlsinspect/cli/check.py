"""`tlsinspect check CAPTURE... --policy FILE`: hold recorded traffic to a policy, for CI.

Exit codes: 0 every rule passed (a rule that matched no session is only a warning, unless it
says `require_match = true`), 1 a rule failed, 2 a capture, key log or policy that cannot be used
(one line on stderr naming the file, and the line of the policy).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from .. import read_keylogs
from ..capture.inputs import Input, capture_paths, open_input, plan
from ..engines.builtin import Analyzer, CaptureKeys
from ..errors import TlsInspectError
from ..model import count
from ..policy import (
    Policy,
    PolicyError,
    evaluate,
    json_report,
    junit_xml,
    parse_policy,
    text_report,
    to_json,
)
from ..report.flat import Row, flat_row
from ..x509 import Anchors
from .common import Parser, add_format, add_inputs, add_keylog


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tlsinspect check",
        description="Check the TLS sessions of captures against a policy of mTLS rules.",
        epilog="Exit codes: 0 all rules passed, 1 a rule failed, 2 unusable capture or policy.",
    )
    p.add_argument(
        "captures",
        nargs="+",
        metavar="PATH",
        help="pcap or pcapng files, directories (their capture files) or globs; the files of a "
        "rotated series are read as one capture",
    )
    add_inputs(p)
    p.add_argument("--policy", required=True, metavar="FILE", help="policy file (TOML)")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    add_format(
        p,
        ("text", "json"),
        "text (default): violations for people; json: the results as one object",
    )
    add_keylog(
        p,
        "NSS key log (SSLKEYLOGFILE) to decrypt TLS handshakes; may be repeated",
    )
    return p


def _fail(message: str) -> int:
    print(f"tlsinspect check: {message}", file=sys.stderr)
    return 2


def load_policy(path: str) -> Policy:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise PolicyError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_policy(text, path)


def capture_rows(
    inp: Input, keylogs: list[bytes], anchors: Anchors | None = None
) -> tuple[list[Row], list[str]]:
    """Flat rows of one capture (a file, or a series read as one), in start-time order, and the
    reader's problems."""
    with open_input(inp) as source:
        analyzer = Analyzer(CaptureKeys(keylogs, source.secrets), anchors)
        rows = [flat_row(r) for r in analyzer.run(source)]
        problems = list(source.problems)
        unusable = source.unusable()
    rows.sort(key=lambda s: (str(s["start_time"]), int(s["index"])))  # type: ignore[call-overload]
    if unusable is not None:
        raise TlsInspectError(f"{inp.name}: {unusable}")
    return rows, problems


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    started = time.monotonic()
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        return _fail(str(exc))
    for keylog in args.keylog or ():
        if not os.path.isfile(keylog):
            return _fail(f"{keylog}: no such key log file")
    rows: list[Row] = []
    warnings: list[str] = []
    try:
        files = capture_paths(args.captures, warnings)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    keylogs = read_keylogs(args.keylog)
    inputs = plan(files, args.series, warnings)
    for inp in inputs:
        try:
            found, problems = capture_rows(inp, keylogs)
        except TlsInspectError as exc:
            return _fail(str(exc))
        except OSError as exc:
            return _fail(f"{inp.name}: {exc.strerror or exc}")
        rows += found
        warnings += [f"{inp.name}: {p}" for p in problems]
    results = evaluate(policy, rows)
    failed = any(r.failed for r in results)
    out = sys.stdout
    try:
        if args.format == "json":
            report = json_report(results, len(rows), files, args.policy)
            report["warnings"] = warnings
            out.write(to_json(report))
        else:
            n = len(inputs)  # a series is one capture
            header = (
                f"{args.policy}: {count(len(policy.rules), 'rule')} on "
                f"{count(len(rows), 'TLS session')} of {count(n, 'capture')}"
            )
            out.write(text_report(results, len(rows), header))
        out.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if args.format != "json":
        for w in warnings:
            print(f"tlsinspect check: {w}", file=sys.stderr)
        for r in results:
            if r.status == "no-match":
                print(
                    f"tlsinspect check: warning: rule {r.rule.name!r} matched no session",
                    file=sys.stderr,
                )
    if args.junit:
        suite = os.path.basename(args.policy)
        try:
            with open(args.junit, "w", encoding="utf-8") as f:
                f.write(junit_xml(results, suite, time.monotonic() - started))
        except OSError as exc:
            return _fail(f"--junit {args.junit}: {exc.strerror or exc}")
    return 1 if failed else 0
