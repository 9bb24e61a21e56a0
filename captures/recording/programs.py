"""Running the programs of a session: a server until its port is free again, a client, their
logs, their environment, and the versions of the tools for the truth."""

from __future__ import annotations

import os
import platform
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from .capture import Drain, connections_closed, ensure_free, wait_listening, wait_until
from .core import TOOL_TIMEOUT, RecordingError


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def clean_env(keylog: Path | None = None) -> dict[str, str]:
    """This environment without ``SSLKEYLOGFILE``, or with it set to ``keylog``."""
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if keylog is not None:
        env["SSLKEYLOGFILE"] = str(keylog)
    return env


@dataclass
class Run:
    """What a program that has ended printed."""

    returncode: int | None
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_program(cmd: Sequence[str], env: dict[str, str], timeout: float) -> Run:
    """Run a program that needs no input to its end."""
    done = subprocess.run(
        list(cmd), stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=timeout
    )
    out, err = (b.decode(errors="replace") for b in (done.stdout, done.stderr))
    return Run(done.returncode, out, err)


class Program:
    """A program with its output collected (stderr with stdout when ``merge``) and, when
    ``stdin``, its input on a pipe."""

    def __init__(
        self,
        cmd: Sequence[str],
        env: dict[str, str] | None = None,
        *,
        stdin: bool = True,
        merge: bool = True,
    ) -> None:
        self.cmd = list(cmd)
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            env=env,
        )
        self.out = Drain(self.proc.stdout)
        self.err = None if merge else Drain(self.proc.stderr)

    def send(self, data: bytes, strict: bool = False) -> None:
        """Write to the program's stdin; once it has ended that is an error only if
        ``strict`` (else the judging tells what its end means)."""
        if self.proc.stdin is None:
            raise RecordingError(f"{self.cmd[0]} has no input")
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            if strict:
                raise RecordingError(f"{self.cmd[0]} exited early") from exc

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            with suppress(BrokenPipeError):
                self.proc.stdin.close()

    def has(self, data: bytes) -> bool:
        return data in bytes(self.out.data)

    def text(self) -> str:
        return self.out.text()

    def lines(self, line: bytes) -> int:
        """How many times ``line`` (ending with a newline) stands on a line of its own."""
        text, want = self.text(), line.decode()
        return text.count("\n" + want) + (1 if text.startswith(want) else 0)

    def ended(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> str:
        """Stop the program (if it still runs) and return its output."""
        stop(self.proc)
        return self.out.join()

    def finish(self) -> Run:
        """Stop the program (if it still runs) and return what it printed."""
        out = self.stop()
        return Run(self.proc.returncode, out, self.err.join() if self.err is not None else "")


@contextmanager
def serving(
    cmd: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    *,
    stdin: bool = False,
    merge: bool = True,
) -> Iterator[Program]:
    """A server program on a free ``port``, once it listens; stopped after the block."""
    ensure_free(port)
    server = Program(cmd, env, stdin=stdin, merge=merge)
    try:
        wait_listening(port, server.proc)
        yield server
    finally:
        server.stop()


def wind_down(server: Program, port: int, exits: bool, timeout: float = 2.0) -> None:
    """Wait for the session's connection to close and, if the server ``exits`` by itself after
    one connection, for the server to end."""
    wait_until(lambda: connections_closed(port), timeout)
    if exits:
        wait_until(server.ended, timeout)


def run_checked(cmd: Sequence[str], timeout: float = 60) -> str:
    """Run a program that prepares a recording (a compiler, a key tool) to its end; its
    stdout, or an error with its output."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RecordingError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}".strip())
    return done.stdout


def version_of(cmd: list[str], line: int = 0) -> str:
    """Line ``line`` of what ``cmd`` prints (stdout, else stderr)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[line].strip() if len(lines) > line else "unknown"


def tool_versions() -> dict[str, str]:
    return {
        "openssl": version_of(["openssl", "version"]),
        "gnutls": version_of(["gnutls-cli", "--version"]),
        "python_ssl": ssl.OPENSSL_VERSION,
        "python": platform.python_version(),
        "dumpcap": version_of(["dumpcap", "--version"]),
        "tcpdump": version_of(["tcpdump", "--version"]),
    }
