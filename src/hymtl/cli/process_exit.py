"""How a command's process ends: as `sys.exit` would, minus the interpreter's teardown.

With torch and torchvision imported, Python spends ~0.5 s at exit tearing down modules and
objects that write nothing (0.8 s after a run: docs/performance.md, "Start-up"). Every step of a
normal exit that can write or report still runs, in the same order: non-daemon threads are
joined, exit handlers run (logging's flush and close of train.log, worker-pool shutdowns,
trackers, temporary folders), then stdout and stderr are flushed. Only for a process's own
entry point (`cli()`): code that calls hymtl in-process keeps the normal exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


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
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
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
