"""torchrun: two CPU processes (gloo) train one run, and match a single process."""

import csv
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from hymtl.training.distributed import Ranks, gather_evaluation, val_shard

from .conftest import TINY, make_toy_image_folder


def test_val_shards_cover_the_val_set_once_and_gather_back_in_order():
    dataset = list(range(7))
    shards = [list(val_shard(dataset, Ranks(rank, 3))) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert val_shard(dataset, Ranks()) is dataset  # single process: untouched


def test_gather_evaluation_is_a_no_op_in_one_process():
    shard = {"loss": 0.5, "acc": 1.0, "targets": [1], "preds": [1], "probs": [0.9]}
    assert gather_evaluation(shard, Ranks()) is shard


def run_training(args, cwd, launcher):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OMP_NUM_THREADS", None)
    command = [*launcher, "-m", "hymtl.train", *args, *TINY]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def only_run_dir(outputs):
    run_dirs = [p.parent for p in outputs.glob("*/*/summary.json")]
    assert len(run_dirs) == 1, run_dirs  # one run dir, rank 0's: rank 1 wrote none
    return run_dirs[0]


@pytest.mark.slow
def test_torchrun_gloo_two_processes_match_one_process(tmp_path):
    # 48 training images: 6 steps an epoch at the global batch of 8. From scratch, BatchNorm's
    # running statistics need ~40 steps before eval-mode predictions settle.
    image_root = make_toy_image_folder(tmp_path / "images", train_per_class=24)
    # A placeholder every process skips: the warning must still be printed once.
    Image.new("RGB", (40, 40), "gray").save(image_root / "train" / "ants" / "placeholder.gif")
    common = ["data=imagefolder", f"data.root={image_root}", "epochs=10", "optimizer.lr=0.01"]
    # Two processes with 4 images per step each = one process with 8 images per step.
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun.append("--nproc_per_node=2")
    (tmp_path / "ddp").mkdir()
    ddp = run_training([*common, "batch_size=4"], tmp_path / "ddp", torchrun)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    console = ddp.stdout + ddp.stderr
    assert console.count("2 processes x batch 4 = global batch 8") == 1
    assert console.count("skipped 1 unusable file(s)") == 1
    (tmp_path / "single").mkdir()
    single = run_training([*common, "batch_size=8"], tmp_path / "single", [sys.executable])
    assert single.returncode == 0, single.stderr[-3000:]

    ddp_dir = only_run_dir(tmp_path / "ddp" / "outputs")
    single_dir = only_run_dir(tmp_path / "single" / "outputs")
    ddp_summary = json.loads((ddp_dir / "summary.json").read_text())
    single_summary = json.loads((single_dir / "summary.json").read_text())
    assert ddp_summary["status"] == "completed" and ddp_summary["world_size"] == 2
    assert ddp_summary["threads"] == max(1, (os.cpu_count() or 1) // 2)
    # The gathered evaluation covers every val image exactly once.
    with open(ddp_dir / "val_predictions.csv", newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    assert len(paths) == len(set(paths)) == 12
    ddp_rows, single_rows = read_rows(ddp_dir), read_rows(single_dir)
    assert [row["epoch"] for row in ddp_rows] == list(range(1, 11))  # written once, by rank 0
    # Same recipe, same global batch: both learn the separable toy classes. BatchNorm sees
    # 4 images per process instead of 8 and the shuffles differ, hence tolerances.
    for summary in (ddp_summary, single_summary):
        assert summary["best_val_acc"] >= 0.9
    assert ddp_rows[-1]["val_acc"] == pytest.approx(single_rows[-1]["val_acc"], abs=0.1)
    assert ddp_rows[-1]["val_loss"] == pytest.approx(single_rows[-1]["val_loss"], abs=0.15)
    assert ddp_rows[-1]["train_loss"] == pytest.approx(single_rows[-1]["train_loss"], abs=0.15)


def read_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
