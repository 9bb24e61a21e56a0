"""Subcommands of the command line other than the default analysis (`tlsinspect CAPTURE`).

Each module here has `main(argv: list[str]) -> int` and is imported only when its subcommand
is used; `tlsinspect.cli.SUBCOMMANDS` names them.
"""
