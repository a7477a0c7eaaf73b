"""hymtl export: a TorchScript or ONNX file that predicts what the checkpoint predicts, and says
how."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from hymtl import export as export_cli
from hymtl import predict as predict_cli
from hymtl.artifacts import save_checkpoint
from hymtl.data import open_rgb
from hymtl.inference import load_trained_model
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


@pytest.mark.parametrize("kind, name", [("torchscript", "model.pt"), ("onnx", "model.onnx")])
def test_exported_model_predicts_what_the_checkpoint_predicts(
    kind, name, checkpoint, tmp_path, capsys
):
    exported = tmp_path / name
    assert export_cli.main([f"ckpt={checkpoint}", f"format={kind}", f"out={exported}"]) == 0
    metadata = json.loads(exported.with_suffix(".json").read_text())
    assert metadata["format"] == kind
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


def test_onnx_logits_match_the_checkpoints_for_any_batch_size(checkpoint, tmp_path):
    assert export_cli.main([f"ckpt={checkpoint}", "format=onnx"]) == 0
    exported = checkpoint.parent / "export" / "model.onnx"
    import onnx  # the metadata is inside the file too, not only in the JSON beside it

    props = {prop.key: prop.value for prop in onnx.load(exported).metadata_props}
    assert json.loads(props["hymtl.json"]) == json.loads(exported.with_suffix(".json").read_text())

    write_class_images(tmp_path / "images", per_class=3, seed=7)
    original = load_trained_model(checkpoint, "cpu")
    from_onnx = load_trained_model(exported, "cuda")  # ONNX runs on the CPU regardless
    assert from_onnx.device.type == "cpu" and from_onnx.classes == ["ants", "bees"]
    files = sorted((tmp_path / "images").rglob("*.jpg"))
    images = torch.stack([original.transform(open_rgb(file)) for file in files])
    with torch.no_grad():
        expected = original.model(images.contiguous(memory_format=torch.channels_last))
    for batch in (images[:1], images[1:4], images):  # the batch axis is dynamic
        start = 0 if len(batch) != 3 else 1
        logits = from_onnx.model(batch)
        assert logits.shape == (len(batch), 2)
        torch.testing.assert_close(logits, expected[start : start + len(batch)], atol=1e-4, rtol=0)


def test_onnx_without_the_extra_is_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now fails
    assert export_cli.main([f"ckpt={checkpoint}", "format=onnx"]) == 2
    assert capsys.readouterr().err.strip() == (
        "hymtl-export: error: format=onnx needs onnxscript: "
        "pip install 'hymtl[onnx]' (onnx, onnxruntime, onnxscript)"
    )
    assert not (tmp_path / "run" / "export").exists()


def test_an_unknown_format_is_one_line(checkpoint, tmp_path, capsys):
    assert export_cli.main([f"ckpt={checkpoint}", "format=tflite"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        "hymtl-export: error: Error merging override format=tflite Invalid value 'tflite', "
        "expected one of [torchscript, onnx]"
    )
    assert not (tmp_path / "run" / "export").exists()


def test_an_onnx_file_hymtl_did_not_write_is_one_line(tmp_path, capsys):
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("epoch,loss\n1,0.5\n")
    assert predict_cli.main([f"ckpt={not_onnx}", f"inputs={tmp_path}"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"hymtl-predict: error: ckpt={not_onnx} is not a readable ONNX model (")


def test_export_to_onnx_then_predict_from_the_command_line(checkpoint, tmp_path):
    def hymtl(*args):
        command = [sys.executable, "-m", "hymtl", *args]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)

    images = tmp_path / "images"
    write_class_images(images, per_class=2, seed=8)
    exported = hymtl("export", f"ckpt={checkpoint}", "format=onnx")
    assert exported.returncode == 0, exported.stderr
    onnx_file = checkpoint.parent / "export" / "model.onnx"
    assert exported.stdout == f"{onnx_file} (metadata: {onnx_file.with_suffix('.json')})\n"
    assert exported.stderr == ""  # none of the exporter's INFO lines about its passes
    from_onnx = hymtl("predict", f"ckpt={onnx_file}", f"inputs={images}", "out=from_onnx")
    assert from_onnx.returncode == 0, from_onnx.stderr
    from_ckpt = tmp_path / "from_ckpt"
    assert predict_cli.main([f"ckpt={checkpoint}", f"inputs={images}", f"out={from_ckpt}"]) == 0
    rows = predictions(tmp_path / "from_onnx" / "predictions.csv")  # out= relative to the cwd
    expected = predictions(from_ckpt / "predictions.csv")
    assert [row["predicted"] for row in rows] == [row["predicted"] for row in expected]
    assert len(rows) == 4
    for a, b in zip(rows, expected):
        assert float(a["p_bees"]) == pytest.approx(float(b["p_bees"]), abs=1e-4)
