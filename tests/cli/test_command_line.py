"""The command line as a new user meets it: --version, help, mistyped options."""

from __future__ import annotations

import pytest
from helpers import OWN, run_cli

import tlsinspect
from tlsinspect.cli import SUBCOMMANDS
from tlsinspect.model import count

DEMO = OWN / "demo.pcapng"


def test_version_is_the_package_version():
    r = run_cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"tlsinspect {tlsinspect.__version__}"


def test_help_names_every_subcommand_and_help_itself():
    r = run_cli("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for name in SUBCOMMANDS:
        assert f"`tlsinspect {name}" in text
    assert "`tlsinspect help COMMAND`" in text


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_command_is_that_commands_help(name):
    r = run_cli("help", name)
    assert r.returncode == 0
    assert r.stdout.startswith(f"usage: tlsinspect {name} ")
    assert r.stdout == run_cli(name, "--help").stdout


def test_help_alone_is_the_main_help():
    r = run_cli("help")
    assert r.returncode == 0 and r.stdout == run_cli("--help").stdout


def test_help_of_an_unknown_command_is_one_line_and_exit_2():
    r = run_cli("help", "chek")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "tlsinspect: no command 'chek'; the commands are " + ", ".join(SUBCOMMANDS)
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--formt", "json", DEMO],
            "tlsinspect: unknown option --formt (did you mean --format?); see tlsinspect --help",
        ),
        (
            [DEMO, "--form=json"],
            "tlsinspect: unknown option --form (did you mean --format?); see tlsinspect --help",
        ),
        (
            [DEMO, "--zzz"],
            "tlsinspect: unknown option --zzz; see tlsinspect --help",
        ),
        (
            ["check", DEMO, "--policy", "p.toml", "--juint", "x.xml"],
            "tlsinspect check: unknown option --juint (did you mean --junit?); "
            "see tlsinspect check --help",
        ),
    ],
)
def test_a_mistyped_option_is_named_in_one_line_with_exit_2(args, line):
    r = run_cli(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [line]


def test_an_abbreviated_option_is_not_taken_for_the_whole_one():
    # --form would be --format under argparse's default; an option added later could change it
    r = run_cli(DEMO, "--form", "json")
    assert r.returncode == 2 and "unknown option --form" in r.stderr


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0 rules"), (1, "1 rule"), (2, "2 rules"), (1234, "1,234 rules")]
)
def test_counts_agree_with_their_noun(n, text):
    assert count(n, "rule") == text
