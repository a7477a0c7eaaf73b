"""Checkpoints written while the next epoch trains are the epoch's own, land in order, and a
write that fails ends the run with its reason, as a write in the loop did."""

import json

import pytest
import torch

import hymtl.run.checkpoint_writer as writer_module
from hymtl.run.checkpoint_writer import CheckpointWriter, snapshot
from hymtl.run.rundir import is_locked
from hymtl.train import train

from .conftest import TINY, compose_config


def test_what_is_written_is_the_state_at_hand_over(tmp_path):
    weights = {"w": torch.zeros(1000)}
    writer = CheckpointWriter()
    writer.write(
        [
            (tmp_path / "best.pt", {"model": weights}),
            (tmp_path / "last.pt", {"model": weights, "epoch": 1}),
        ]
    )
    weights["w"].add_(1.0)  # the next epoch's steps, while the write may still run
    writer.wait()
    for name in ("best.pt", "last.pt"):
        saved = torch.load(tmp_path / name, weights_only=True)
        assert saved["model"]["w"].sum().item() == 0.0
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


def test_a_snapshot_keeps_state_dicts_whole_and_copies_each_tensor_once(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    weights = model.state_dict()
    files = [(tmp_path / "best.pt", {"model": weights}), (tmp_path / "last.pt", {"model": weights})]
    [(_, best), (_, last)] = snapshot(files)
    copied = best["model"]
    assert type(copied) is type(weights) and copied._metadata == weights._metadata
    assert last["model"]["0.weight"] is copied["0.weight"]  # one copy for both files
    for name, tensor in weights.items():
        assert copied[name] is not tensor and torch.equal(copied[name], tensor)
        assert copied[name].device.type == "cpu"
        assert copied[name].data_ptr() != tensor.data_ptr()


def test_each_hand_over_waits_for_the_one_before(tmp_path, monkeypatch):
    order = []
    real_save = writer_module.save_checkpoint

    def record(path, checkpoint):
        order.append((path.name, checkpoint["epoch"]))
        real_save(path, checkpoint)

    monkeypatch.setattr(writer_module, "save_checkpoint", record)
    writer = CheckpointWriter()
    for epoch in (1, 2, 3):
        files = [(tmp_path / "best.pt", {"epoch": epoch})] if epoch != 2 else []
        writer.write([*files, (tmp_path / "last.pt", {"epoch": epoch})])
    writer.wait()
    assert order == [("best.pt", 1), ("last.pt", 1), ("last.pt", 2), ("best.pt", 3), ("last.pt", 3)]


def test_a_failed_write_is_raised_by_the_next_wait_once(tmp_path):
    writer = CheckpointWriter()
    writer.write([(tmp_path / "missing" / "last.pt", {"epoch": 1})])
    with pytest.raises(FileNotFoundError):
        writer.wait()
    writer.wait()  # raised once; the writer goes on


@pytest.mark.slow
@pytest.mark.parametrize("failing_epoch", [2, 3])
def test_a_run_whose_checkpoint_cannot_be_written_fails_with_the_reason(
    image_root, tmp_path, monkeypatch, failing_epoch
):
    """Epoch 2's files fail while epoch 3 trains; the last epoch's while the run draws its
    pictures: either way the run is `failed`, never `completed`, and last.pt is whole."""
    real_save = writer_module.save_checkpoint

    def disk_full(path, checkpoint):
        if checkpoint["epoch"] == failing_epoch:
            raise OSError(28, "No space left on device")
        real_save(path, checkpoint)

    monkeypatch.setattr(writer_module, "save_checkpoint", disk_full)
    run_dir = tmp_path / "run"
    cfg = compose_config(TINY + ["data=imagefolder", f"data.root={image_root}", "epochs=3"])
    with pytest.raises(OSError, match="No space left"):
        train(cfg, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left on device" in summary["error"]
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == failing_epoch - 1
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + failing_epoch  # epoch 3's row waits for epoch 2's files
    assert not is_locked(run_dir) and not list(run_dir.glob(".*.tmp"))
