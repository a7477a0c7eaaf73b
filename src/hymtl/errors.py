"""hymtl's one failure path: how every command says what went wrong, and what it returns.

A user's mistake is a `UserError` whose message says what is wrong and what to do; every
command prints it as one line, `PROGRAM: error: MESSAGE`, and exits with `USAGE`. A run that
failed exits with `FAILED`, Ctrl-C or a stop signal with `INTERRUPTED` (the shell's 128+SIGINT).
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

OK = 0
FAILED = 1  # a run or a sweep job failed
USAGE = 2  # bad input: config, arguments, paths (argparse and Hydra use 2 as well)
INTERRUPTED = 130
STARTUP_INTERRUPTED = "interrupted during start-up, before any training; nothing to resume"


def display_path(path: str | os.PathLike) -> str:
    """`path` as valid UTF-8 text for CSV files, messages and log lines. Linux file names are
    bytes, and Python keeps the ones that are not UTF-8 as lone surrogates, which a UTF-8 writer
    refuses: those bytes appear as `\\xff` escapes instead, and every other name is unchanged."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class UserError(Exception):
    """A problem with the user's input (config, data, weights) that deserves one clear line,
    not a traceback. The message says what is wrong and what to do."""


def one_line(error: BaseException) -> str:
    """An exception as one line, `Type: message`, cut to a length a terminal line can hold."""
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def say(program: str, message: str) -> None:
    """A line for the user on stderr, `PROGRAM: MESSAGE` (printable whatever the file names).
    After SIGHUP the terminal may be gone (EIO): the line is dropped, the exit status stays."""
    try:
        print(f"{program}: {display_path(str(message))}", file=sys.stderr, flush=True)
    except OSError:
        pass


def error(program: str, message: str | BaseException) -> None:
    """The one-line error of every command: `PROGRAM: error: MESSAGE`."""
    say(program, f"error: {message}")


def fail(program: str, message: str | BaseException, status: int = USAGE) -> NoReturn:
    """Print the one-line error and end the process with `status`."""
    error(program, message)
    sys.exit(status)
