"""threads=auto: as many torch threads as there are cores the rest of the machine leaves free.

A parallel region waits for its slowest thread, so a process with one thread per core on a
machine where something else is busy loses far more than its share: on 2 cores with one other
busy process, an epoch took 18.0 s with 2 threads and 10.4 s with 1 (docs/performance.md). The
load of everything else is read from /proc/stat (all time the CPUs were busy) minus this
process's own CPU time: first over the run's set-up (data scan, model; at least
MIN_PROBE_SECONDS), then over each epoch (the two readings bracket it, so nothing waits), and
the count is set again for the next epoch when the free cores changed. Where the load cannot be
read (no /proc/stat, or a container that sees more CPUs than it may use), auto leaves torch's
default."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hymtl.data.cache import usable_cores

log = logging.getLogger("hymtl.train")

MIN_PROBE_SECONDS = 0.1


@dataclass
class CpuReading:
    """The machine's busy and total CPU time, and this process's own CPU time, in seconds."""

    busy: float
    total: float
    own: float
    cpus: int


def read_cpu() -> CpuReading | None:
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    values = [int(value) for value in lines[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    times = os.times()
    return CpuReading(
        (sum(values[:8]) - idle) / ticks, sum(values[:8]) / ticks, times[0] + times[1], cpus
    )


def others_busy(start: CpuReading, end: CpuReading) -> float:
    """Cores kept busy by everything but this process between two readings."""
    elapsed = (end.total - start.total) / max(end.cpus, 1)
    if elapsed <= 0:
        return 0.0
    machine = (end.busy - start.busy) / elapsed
    return max(0.0, machine - (end.own - start.own) / elapsed)


def free_threads(busy: float, cores: int) -> int:
    return max(1, min(cores, round(cores - busy)))


@dataclass
class AutoThreads:
    """The thread count threads=auto keeps, and each choice it made (for summary.json)."""

    cores: int
    reading: CpuReading | None = None
    choices: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls) -> AutoThreads | None:
        """The first reading, at the start of set-up (settle() chooses at its end); None where
        the load cannot be read here."""
        cores, first = usable_cores(), read_cpu()
        if first is None or first.cpus != cores:
            log.info("threads=auto: the machine's load cannot be read here; torch's default")
            return None
        return cls(cores, first)

    def settle(self) -> None:
        """Set the threads from the load since start(), before the first epoch."""
        if self.choices:
            return
        seconds = (read_cpu().total - self.reading.total) / self.cores
        if seconds < MIN_PROBE_SECONDS:
            time.sleep(MIN_PROBE_SECONDS - seconds)
        self.choose(others_busy(self.reading, read_cpu()), epoch=0)

    def choose(self, busy: float, epoch: int) -> None:
        threads = free_threads(busy, self.cores)
        if not self.choices or threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            when = "at start-up" if epoch == 0 else f"after epoch {epoch}"
            log.info(
                "threads=auto: %d of %d cores (others kept %.1f busy %s)",
                threads,
                self.cores,
                busy,
                when,
            )
            self.choices.append({"epoch": epoch, "threads": threads, "others_busy": round(busy, 2)})
        self.reading = read_cpu()

    def probe(self, seconds: float = 2 * MIN_PROBE_SECONDS) -> None:
        """Choose again from the load over the next `seconds`, this process idle meanwhile
        (scripts/bench.py, whose sides are set up side by side, then take turns)."""
        start = read_cpu()
        time.sleep(seconds)
        self.choose(others_busy(start, read_cpu()), epoch=0)

    def after_epoch(self, epoch: int) -> None:
        """Set the next epoch's threads from the load during this one."""
        end = read_cpu()
        if self.reading is not None and end is not None:
            self.choose(others_busy(self.reading, end), epoch)
