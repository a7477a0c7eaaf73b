"""The A/B harness of scripts/bench.py and scripts/step_variants.py.

Each side runs in its own spawned process (its own allocator, threads and peak memory), and the
sides take turns: every round asks each side for the same tasks, in alternating order, so
machine noise drifting over time hits all sides alike. What a round measures is timed here, so
every side is timed the same way; comparing rounds side by side (`median_ratio`) cancels most of
the noise that is left.

A side is whatever `build(spec)` returns in the side's process, where `build` is a module-level
function (spawn pickles it by name) and `spec` anything picklable. It needs one method,
`run(task, steps) -> items processed`, and may have:
    info      sent back once, when the side is ready (e.g. the precision it resolved)
    wait()    block until queued device work is done (CUDA), called around the timed run
    peak_mb() the side's peak memory; by default the max RSS of its main process
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

POLL_SECONDS = 1.0  # how often a waiting parent checks that the side it waits on still lives


@dataclass
class Side:
    """How to build one side, in its process."""

    build: Callable[[Any], Any]
    spec: Any = None
    # Set in the side's process from its very start, as `VAR=value python ...` would: switches
    # that libraries read once, when they load (OpenMP's, the allocator's).
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class Timing:
    """One task of one side in one round."""

    rate: float  # items per second
    seconds: float
    peak_mb: float  # the side's peak so far


class SideFailed(RuntimeError):
    """A side raised or died; the message names it."""


def serve(connection, build: Callable[[Any], Any], spec: Any, start_method: str) -> None:
    """A side's process: build the side, then time one task at a time until told to stop."""
    # Spawned, this process would also spawn its DataLoader workers, re-importing torch in each
    # of them every epoch (seconds per epoch); a user's script gets the platform's default (fork
    # on Linux), so the sides do too.
    mp.set_start_method(start_method, force=True)
    try:
        side = build(spec)
        connection.send(("ready", getattr(side, "info", None)))
        while (request := connection.recv()) is not None:
            task, steps = request
            connection.send(("done", time_task(side, task, steps)))
    except Exception as error:
        # The parent names this side with the reason; the full traceback goes to stderr.
        connection.send(("failed", f"{type(error).__name__}: {error}"))
        raise


def time_task(side, task: str, steps: int) -> Timing:
    wait = getattr(side, "wait", lambda: None)
    wait()
    start = time.perf_counter()
    items = side.run(task, steps)
    wait()
    seconds = time.perf_counter() - start
    peak_mb = side.peak_mb() if hasattr(side, "peak_mb") else max_rss_mb()
    return Timing(items / seconds, seconds, peak_mb)


def max_rss_mb() -> float:
    """Peak resident memory of this process (not of its DataLoader workers), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@contextmanager
def environment_set(variables: dict[str, str]) -> Iterator[None]:
    """os.environ with `variables` for the duration: a process started meanwhile inherits them."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


class Sides:
    """The side processes, started and built on entering (`info` holds what each sent when
    ready), stopped on leaving: asked to finish on success, terminated on any error, so that an
    error never leaves a side behind."""

    def __init__(self, sides: dict[str, Side]) -> None:
        self.sides = sides
        self.connections: dict[str, Any] = {}
        self.processes: dict[str, Any] = {}
        self.info: dict[str, Any] = {}

    def __enter__(self) -> Sides:
        context = mp.get_context("spawn")  # a fresh interpreter per side: nothing inherited
        start_method = mp.get_start_method()
        try:
            for name, side in self.sides.items():
                parent_end, child_end = context.Pipe()
                process = context.Process(
                    target=serve,
                    args=(child_end, side.build, side.spec, start_method),
                    name=f"side {name}",
                    daemon=False,  # sides start their own DataLoader workers
                )
                with environment_set(side.environment):
                    process.start()
                child_end.close()  # the side's copy only: a dead side then reads as EOF here
                self.connections[name], self.processes[name] = parent_end, process
            for name in self.sides:
                self.info[name] = self.receive(name)
        except BaseException:
            self.terminate()
            raise
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is not None:
            self.terminate()
            return False
        for connection in self.connections.values():
            connection.send(None)
        for process in self.processes.values():
            process.join()
        return False

    def terminate(self) -> None:
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
        for process in self.processes.values():
            process.join(timeout=10)

    def receive(self, name: str) -> Any:
        """The side's next answer; SideFailed naming it if it raised or died meanwhile."""
        connection, process = self.connections[name], self.processes[name]
        died = f"{name} died (exit code {{}}) before answering; its output is above"
        # Polled, not a plain recv: the side's DataLoader workers hold copies of its end of the
        # pipe, so a side that dies hard need not close it.
        while not connection.poll(POLL_SECONDS):
            if not process.is_alive():
                raise SideFailed(died.format(process.exitcode))
        try:
            status, answer = connection.recv()
        except EOFError:
            process.join(timeout=10)
            raise SideFailed(died.format(process.exitcode)) from None
        if status == "failed":
            raise SideFailed(f"{name} failed: {answer} (its traceback is above)")
        return answer

    def ask(self, name: str, task: str, steps: int) -> Timing:
        self.connections[name].send((task, steps))
        return self.receive(name)

    def take_turns(
        self, tasks: Sequence[tuple[str, int]], rounds: int
    ) -> dict[str, dict[str, list[Timing]]]:
        """`rounds` rounds of every (task, steps) on every side; the sides go in order in even
        rounds and in reverse in odd ones, so that no side always runs first, or always right
        after the same other side. Returns each side's timings per task, one per round."""
        names = list(self.sides)
        timings = {name: {task: [] for task, _ in tasks} for name in names}
        for round_index in range(rounds):
            order = names if round_index % 2 == 0 else names[::-1]
            for task, steps in tasks:
                for name in order:
                    timings[name][task].append(self.ask(name, task, steps))
        return timings


def median_rate(timings: Sequence[Timing]) -> float:
    return statistics.median(timing.rate for timing in timings)


def median_ratio(timings: Sequence[Timing], baseline: Sequence[Timing]) -> float:
    """Median over rounds of rate / the baseline's rate in the same round: noise that slows a
    whole round cancels out of each ratio."""
    return statistics.median(a.rate / b.rate for a, b in zip(timings, baseline, strict=True))
