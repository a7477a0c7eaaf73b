"""hymtl export: a TorchScript file that predicts what the checkpoint predicts, and says how."""

import csv
import json

import pytest
import torch

from hymtl import export as export_cli
from hymtl import predict as predict_cli
from hymtl.artifacts import save_checkpoint
from hymtl.models import build_model

from .conftest import write_class_images

CONFIG = {
    "model": {"name": "resnet18", "pretrained": False},
    "data": {
        "image_size": 32,
        "resize_size": 36,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "min_colors": 64,
    },
    "precision": "fp32",
    "channels_last": True,
}


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=2, pretrained=False)
    model.eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "run" / "best.pt"
    path.parent.mkdir()
    save_checkpoint(
        path, {"model": model.state_dict(), "config": CONFIG, "class_names": ["ants", "bees"]}
    )
    return path


def predictions(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_exported_model_predicts_what_the_checkpoint_predicts(checkpoint, tmp_path, capsys):
    exported = tmp_path / "model.pt"
    assert export_cli.main([f"ckpt={checkpoint}", f"out={exported}"]) == 0
    metadata = json.loads(exported.with_suffix(".json").read_text())
    assert metadata["classes"] == ["ants", "bees"]
    assert metadata["preprocessing"]["resize"] == 36
    assert metadata["preprocessing"]["center_crop"] == 32
    assert metadata["preprocessing"]["mean"] == CONFIG["data"]["mean"]

    images = tmp_path / "images"
    write_class_images(images, per_class=3, seed=5)
    for ckpt, out in ((checkpoint, "from_ckpt"), (exported, "from_export")):
        args = [f"ckpt={ckpt}", f"inputs={images}", f"out={tmp_path / out}", "device=cpu"]
        assert predict_cli.main(args) == 0
    from_ckpt = predictions(tmp_path / "from_ckpt" / "predictions.csv")
    from_export = predictions(tmp_path / "from_export" / "predictions.csv")
    assert len(from_ckpt) == len(from_export) == 6
    for a, b in zip(from_ckpt, from_export):
        assert a["file"] == b["file"] and a["predicted"] == b["predicted"]
        for name in ("p_ants", "p_bees"):
            assert float(a[name]) == pytest.approx(float(b[name]), abs=1e-4)


def test_an_unknown_format_is_one_line(checkpoint, tmp_path, capsys):
    assert export_cli.main([f"ckpt={checkpoint}", "format=onnx"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "hymtl-export: error: format=onnx is not supported; choose one of torchscript"
    assert not (tmp_path / "run" / "export").exists()
