"""End-to-end runs on tiny generated image folders (CPU, no network)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hymtl.run.artifacts import check_run_dir as hymtl_check_run_dir
from hymtl.run.artifacts import load_checkpoint, read_metrics
from hymtl.train import train

from .conftest import TINY, compose_config

REPO = Path(__file__).resolve().parents[1]


def check_run_dir(run_dir: Path, epochs: int) -> dict:
    assert hymtl_check_run_dir(run_dir, epochs) == []
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_end_to_end_run_learns_and_writes_everything(image_root, tmp_path):
    cfg = compose_config(
        TINY
        + [
            "data=imagefolder",
            f"data.root={image_root}",
            "epochs=8",
            "optimizer.lr=0.01",
            "regularizer=elasticnet",
            "lambda_l1=1e-5",
            "lambda_l2=1e-4",
        ]
    )
    run_dir = tmp_path / "run"
    summary = train(cfg, run_dir)
    check_run_dir(run_dir, epochs=8)
    assert hymtl_check_run_dir(run_dir, epochs=9) == [
        "metrics.csv has epochs [1, 2, 3, 4, 5, 6, 7, 8], expected 1..9",
        "last.pt is not from the last epoch",
    ]
    # Separable toy classes: well above chance (0.5). From scratch, BatchNorm running statistics
    # need ~40 steps before eval-mode predictions stop collapsing onto one class, hence 8 epochs.
    assert summary["best_val_acc"] >= 0.75
    assert summary["classes"] == ["ants", "bees"]
    rows = read_metrics(run_dir / "metrics.csv")
    assert all(r["train_penalty"] > 0 for r in rows)  # penalty logged apart from the data loss

    for name in ("best.pt", "last.pt"):
        checkpoint = load_checkpoint(run_dir / name)  # weights_only=True
        assert set(checkpoint) >= {"model", "epoch", "config", "class_names"}
        assert checkpoint["class_names"] == ["ants", "bees"]
        assert checkpoint["config"]["regularizer"]["name"] == "elasticnet"
    last = load_checkpoint(run_dir / "last.pt")
    assert last["epoch"] == 8 and {"optimizer", "scheduler", "rng"} <= set(last)
    best = load_checkpoint(run_dir / "best.pt")
    assert "optimizer" not in best  # checkpoints=lean: best.pt holds the weights
    assert (run_dir / "best.pt").stat().st_size < 0.6 * (run_dir / "last.pt").stat().st_size
    assert best["epoch"] == summary["best_epoch"]
    assert isinstance(best["model"]["fc.weight"], torch.Tensor)


def run_cli(args, cwd, env_extra=None, timeout=600):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_multirun_over_the_four_regularizers(image_root, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            sys.executable,
            "-m",
            "hymtl.train",
            "-m",
            "regularizer=none,l1,l2,elasticnet",
            "data=imagefolder",
            f"data.root={image_root}",
            "epochs=1",
            f"hydra.sweep.dir={sweep}",
            *TINY,
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    assert len(run_dirs) == 4
    names = []
    for run_dir in run_dirs:
        summary = check_run_dir(run_dir, epochs=1)
        names.append(summary["config"]["regularizer"]["name"])
        if summary["config"]["regularizer"]["name"] == "l1":
            assert summary["config"]["regularizer"]["l1"] == 0.03
    assert sorted(names) == ["elasticnet", "l1", "l2", "none"]


@pytest.mark.slow
def test_cli_bad_input_is_one_line_and_nonzero(tmp_path):
    result = run_cli(
        [
            sys.executable,
            "-m",
            "hymtl.train",
            f"data.root={tmp_path}/missing",
            "model.pretrained=false",
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("hymtl: error:")]
    assert len(errors) == 1 and "data.root=" in errors[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "does not exist" in summary["error"]


@pytest.mark.slow
def test_installed_package_finds_its_configs(tmp_path):
    """A non-editable install (here into a --target dir) must carry conf/ as hymtl.conf."""
    site = tmp_path / "site"
    install = run_cli(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(REPO),
        ],
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert (site / "hymtl" / "conf" / "regularizer" / "elasticnet.yaml").is_file()
    env = {"PYTHONPATH": str(site)}
    where = run_cli([sys.executable, "-c", "import hymtl; print(hymtl.__file__)"], tmp_path, env)
    assert where.stdout.strip().startswith(str(site))
    for command in ([sys.executable, "-m", "hymtl.train"], [str(site / "bin" / "hymtl-train")]):
        shown = run_cli(
            [*command, "--cfg", "job", "regularizer=l1", "lambda_l1=0.05"], tmp_path, env
        )
        assert shown.returncode == 0, shown.stderr[-3000:]
        assert "name: l1" in shown.stdout and "lambda_l1: 0.05" in shown.stdout


@pytest.mark.slow
def test_frozen_backbone_trains_the_head_on_cached_features(image_root, tmp_path):
    cfg = compose_config(
        TINY
        + [
            "data=imagefolder",
            f"data.root={image_root}",
            "epochs=3",
            "optimizer.lr=0.05",
            "model.freeze_backbone=true",
            "regularizer=l1",
            "lambda_l1=1e-4",
        ]
    )
    torch.manual_seed(cfg.seed)
    summary = train(cfg, tmp_path / "run")
    check_run_dir(tmp_path / "run", epochs=3)
    # The penalty covers the trainable head only: with 512·2 + 2 parameters it is tiny.
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert 0 < rows[0]["train_penalty"] < 1e-4 * 2000
    # Backbone untouched, head trained: compare with a fresh model built from the same seed.
    from hymtl.training.models import build_model

    torch.manual_seed(cfg.seed)
    fresh = build_model("resnet18", 2, pretrained=False)
    trained = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert torch.equal(
        trained["layer1.0.conv1.weight"], fresh.state_dict()["layer1.0.conv1.weight"]
    )
    assert not torch.equal(trained["fc.weight"], fresh.state_dict()["fc.weight"])
    assert summary["best_val_acc"] >= 0.75  # colour classes are separable on random features


@pytest.mark.slow
def test_frozen_backbone_without_the_cache_recomputes_it_on_augmented_images(image_root, tmp_path):
    overrides = ["data=imagefolder", f"data.root={image_root}", "epochs=2", "optimizer.lr=0.05"]
    overrides += ["model.freeze_backbone=true", "feature_cache=false"]
    cfg = compose_config(TINY + overrides)
    torch.manual_seed(cfg.seed)
    train(cfg, tmp_path / "run")
    check_run_dir(tmp_path / "run", epochs=2)
    from hymtl.training.models import build_model

    torch.manual_seed(cfg.seed)
    fresh = build_model("resnet18", 2, pretrained=False).state_dict()
    trained = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert torch.equal(trained["layer1.0.conv1.weight"], fresh["layer1.0.conv1.weight"])
    assert not torch.equal(trained["fc.weight"], fresh["fc.weight"])
    # The tutorial's way: the whole model runs in train mode, so BatchNorm statistics move.
    assert not torch.equal(trained["bn1.running_mean"], fresh["bn1.running_mean"])


@pytest.mark.slow
def test_bf16_run_completes_with_float32_checkpoints(image_root, tmp_path):
    cfg = compose_config(
        TINY + ["data=imagefolder", f"data.root={image_root}", "epochs=1", "precision=bf16"]
    )
    summary = train(cfg, tmp_path / "run")
    assert summary["precision"] == "bf16"
    check_run_dir(tmp_path / "run", epochs=1)
    weights = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert weights["fc.weight"].dtype == torch.float32  # autocast: master weights stay fp32


def test_checkpoints_lean_keeps_the_weights_and_full_keeps_every_state():
    from hymtl.training.epoch import LEAN_KEYS, best_checkpoint

    checkpoint = {key: key for key in (*LEAN_KEYS, "optimizer", "scheduler", "rng", "scaler")}
    lean = best_checkpoint(compose_config([]), checkpoint)
    assert set(lean) == set(LEAN_KEYS) and "optimizer" not in lean
    assert best_checkpoint(compose_config(["checkpoints=full"]), checkpoint) == checkpoint
