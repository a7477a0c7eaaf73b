"""An epoch's checkpoints written while the next epoch trains.

Writing best.pt and last.pt takes ~0.3 s per ResNet-18 epoch on 2 cores, all of it in torch's
serialisation and the file writes, which release the GIL (docs/performance.md, "Start-up").
The training loop hands them over and goes on; one thread writes them, each as atomic_write
does (a kill mid-write leaves the previous file whole). What is written is a copy made at the
hand-over, so the next epoch's steps cannot change a checkpoint mid-write.

Nothing reads a checkpoint while a write is pending: every hand-over first waits for the one
before (files land in epoch order, one copy held at a time), and the run waits before it reads
them (the test evaluation, the summary) and before it lets go of its run dir, however it ends.
A write that failed is raised by the next wait, as it would have been raised in the loop.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import torch

from hymtl.run.artifacts import save_checkpoint


def tensors_in(value):
    """Every tensor in a checkpoint's dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)


def snapshot(files: list[tuple[Path, dict]]) -> list[tuple[Path, dict]]:
    """A copy that training cannot change: every tensor copied to the CPU (a GPU keeps no
    second copy of the model; checkpoints load onto the CPU anyway), each once however often it
    appears (best.pt and last.pt share the weights); the rest deep-copied as it is (a state
    dict stays an OrderedDict with its `_metadata`)."""
    memo = {id(t): t.detach().to("cpu", copy=True) for t in tensors_in([c for _, c in files])}
    return copy.deepcopy(files, memo)


class CheckpointWriter:
    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def write(self, files: list[tuple[Path, dict]]) -> None:
        """Write each (path, checkpoint) in order, in the background. The checkpoints are copied
        first (snapshot)."""
        self.wait()
        self.thread = threading.Thread(
            target=self.write_all, args=(snapshot(files),), name="hymtl-checkpoints"
        )
        self.thread.start()

    def write_all(self, files: list[tuple[Path, dict]]) -> None:
        try:
            for path, checkpoint in files:
                save_checkpoint(path, checkpoint)
        except BaseException as error:  # raised in the training thread, by wait()
            self.error = error

    def wait(self) -> None:
        """Until every checkpoint handed over is on disk; a write that failed is raised here."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error
