"""How a command's process ends: as `sys.exit` would, minus the interpreter's teardown.

With torch and torchvision imported, Python spends ~0.5 s at exit tearing down modules and
objects that write nothing (0.8 s after a run: docs/performance.md, "Start-up"). Every step of
a normal exit that can write or report still runs, in the same order: threading's exit hooks
(worker pools stop) and the join of non-daemon threads, then the exit handlers (logging's
flush and close of train.log, trackers, temporary folders), then the flush of stdout and
stderr. Only for a process's own entry point (`cli()`): code that calls hymtl in-process
keeps the normal exit.
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from hymtl import errors


def exit_status(code: object) -> int:
    """The status `sys.exit(code)` ends a process with; a message is printed, as Python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def exit_process(code: object = 0) -> NoReturn:
    status = exit_status(code)
    # What the interpreter's own exit does first: threading's exit hooks (which stop worker
    # pools' manager threads: joblib's loky), then a join of every non-daemon thread.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or terminal: nothing more can be said
            pass
    os._exit(status)


def run_as_process(entry: Callable[[], int | None]) -> NoReturn:
    """Run a command's entry point, then end the process with the status it returned or
    exited with. An exception other than SystemExit (a bug) propagates: the traceback and the
    normal exit are what it needs."""
    try:
        status = entry()
    except SystemExit as stop:
        exit_process(stop.code)
    exit_process(status)


def import_command(module: str, program: str):
    """A command's module, imported. Its imports (torch's among them) take a second or more,
    and some of torch's swallow a KeyboardInterrupt: Ctrl-C meanwhile ends the process on the
    spot with one line and INTERRUPTED, instead of a traceback of the import or a run that
    starts anyway. Nothing exists yet that could be lost. A SIGINT that was ignored when the
    process started (nohup, a background job) stays ignored."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return importlib.import_module(module)

    def stop(signum, frame) -> None:
        errors.say(program, errors.STARTUP_INTERRUPTED)
        os._exit(errors.INTERRUPTED)

    signal.signal(signal.SIGINT, stop)
    try:
        return importlib.import_module(module)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
