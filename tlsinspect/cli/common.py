"""What every command of the command line does alike: one-line failures, the output file, a
closed pipe, the order of sessions."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from typing import NoReturn, TextIO

from ..engines.lifecycle import DEFAULT_LIMITS, MEMORY_LIMIT_MB, MIN_MEMORY_LIMIT_MB, Limits


class Parser(argparse.ArgumentParser):
    """The parser of every command: a mistyped option is named as such, with the option it
    most likely meant, in one line (exit code 2); abbreviations are not taken, so that an
    option added later cannot change what an old command line means."""

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            unknown = [a for a in message[len(prefix) :].split() if a.startswith("-")]
            if unknown:
                word = unknown[0].split("=", 1)[0]
                options = [o for a in self._actions for o in a.option_strings]
                close = difflib.get_close_matches(word, options, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                message = f"unknown option {word}{hint}"
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def fail(prog: str, message: str) -> int:
    """One line on stderr, and the exit code of an unusable input: 2."""
    print(f"{prog}: {message}", file=sys.stderr)
    return 2


def open_output(path: str | None) -> TextIO:
    """Where a report goes: the file named (the caller closes it), else stdout.

    Raises:
        OSError: the file cannot be written.
    """
    if not path:
        return sys.stdout
    return open(path, "w", encoding="utf-8", newline="")


def silence_pipe() -> None:
    """The reader of stdout went away (`| head`): send the rest nowhere, and exit quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def session_order(s: dict[str, object]) -> tuple[str, int]:
    """The order of sessions in a whole report: by start time, then by the order of logging."""
    return (str(s["start_time"]), int(s["index"]))  # type: ignore[call-overload]


def add_keylog(p: argparse.ArgumentParser, help: str, *, repeat: bool = True) -> None:
    """The `--keylog FILE` option, which every command has (repeatable but in `live`)."""
    p.add_argument("--keylog", action="append" if repeat else "store", metavar="FILE", help=help)


def add_memory_limit(p: argparse.ArgumentParser) -> None:
    """The `--memory-limit MB` option: the peak memory the analysis may take, whatever the
    capture holds; the limits of connections followed and bytes buffered follow from it."""
    p.add_argument(
        "--memory-limit",
        type=_memory_limit,
        default=DEFAULT_LIMITS,
        metavar="MB",
        help=f"peak memory (RSS) the analysis stays under, in MB (default {MEMORY_LIMIT_MB}, "
        f"at least {MIN_MEMORY_LIMIT_MB}): past the connections followed at once or the "
        "handshake bytes buffered it allows, the least promising connections are evicted and "
        "reported as incomplete sessions (anomaly flow_evicted); the table and json formats "
        "also keep every session until the end",
    )


def _memory_limit(text: str) -> Limits:
    try:
        return Limits.for_memory(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            str(exc) if text.strip().isdigit() else f"not a number of MB: {text!r}"
        ) from None


def add_format(p: argparse.ArgumentParser, choices: tuple[str, ...], help: str) -> None:
    """The `--format` option; the first choice is the default."""
    p.add_argument("--format", choices=choices, default=choices[0], help=help)


def add_inputs(p: argparse.ArgumentParser) -> None:
    """`--series` / `--no-series`: how the files of a rotated series are read (capture.inputs)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--series",
        dest="series",
        action="store_const",
        const=True,
        default=None,
        help="read all the files given as one rotated series (one capture cut into files), in "
        "the order of their first packet times; by default files are grouped by their names "
        "(tcpdump -C/-G, dumpcap ring buffers: see the README)",
    )
    group.add_argument(
        "--no-series",
        dest="series",
        action="store_const",
        const=False,
        help="read every file apart, even when their names make a rotated series",
    )
