"""Command line: `tlsinspect CAPTURE [--format ...]`, and subcommands (`tlsinspect check ...`).

Exit codes: 0 success, 1 a subcommand's check failed, 2 unusable input (one line on stderr).
`tlsinspect help [COMMAND]` prints a command's --help; `tlsinspect --version` the version.

Each command is a module here with `main(argv) -> int`, imported only when it is used:
`analyze` (the default command, with either engine), `check`, `compare`, `live`; `common` holds
what they do alike.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# subcommand -> module under tlsinspect.cli with main(argv) -> int
SUBCOMMANDS: dict[str, str] = {"check": "check", "live": "live", "compare": "compare"}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["help"]:
        # `tlsinspect help [COMMAND]`: that command's --help
        topic = args_list[1:2]
        if topic and topic[0] not in SUBCOMMANDS:
            known = ", ".join(SUBCOMMANDS)
            print(f"tlsinspect: no command {topic[0]!r}; the commands are {known}", file=sys.stderr)
            return 2
        args_list = [*topic, "--help"]
    if args_list and args_list[0] in SUBCOMMANDS:
        module = importlib.import_module(f"tlsinspect.cli.{SUBCOMMANDS[args_list[0]]}")
        return int(module.main(args_list[1:]))
    from .analyze import main as analyze

    return analyze(args_list)


if __name__ == "__main__":
    raise SystemExit(main())
