"""hymtl export: a TorchScript or ONNX file that predicts what the checkpoint predicts, and says
how."""

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from hymtl import evaluate as evaluate_cli
from hymtl import export as export_cli
from hymtl import predict as predict_cli
from hymtl.data import open_rgb
from hymtl.inference import verifying
from hymtl.inference.loading import load_trained_model
from hymtl.run.artifacts import save_checkpoint
from hymtl.training.models import build_model

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
        assert a["path"] == b["path"] and a["predicted"] == b["predicted"]
        for name in ("p_ants", "p_bees"):
            assert float(a[name]) == pytest.approx(float(b[name]), abs=1e-4)


def test_onnx_logits_match_the_checkpoints_for_any_batch_size(checkpoint, tmp_path):
    assert export_cli.main([f"ckpt={checkpoint}", "format=onnx"]) == 0
    exported = checkpoint.parent / "export" / "model.onnx"
    import onnx  # the metadata is inside the file too, not only in the JSON beside it

    props = {prop.key: prop.value for prop in onnx.load(exported).metadata_props}
    beside = json.loads(exported.with_suffix(".json").read_text())
    assert beside.pop("verification")["labels_agreeing"] == 8  # the JSON beside only
    assert json.loads(props["hymtl.json"]) == beside

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


def bf16_run(tmp_path, checkpoint, root=None):
    """The checkpoint of a run trained in bf16 (its config says so), with data.root."""
    config = {**CONFIG, "precision": "bf16", "data": {**CONFIG["data"]}}
    if root is not None:
        config["data"]["root"] = str(root)
    saved = torch.load(checkpoint, weights_only=True)
    path = tmp_path / "bf16run" / "best.pt"
    path.parent.mkdir()
    save_checkpoint(path, {**saved, "config": config})
    return path


def test_predict_in_fp32_is_what_its_export_predicts_label_for_label(checkpoint, tmp_path, capsys):
    """A run trained in bf16: predict's default (fp32) gives its TorchScript export's labels,
    and says which precision it used; precision=auto is the run's own (bf16)."""
    ckpt = bf16_run(tmp_path, checkpoint)
    exported = tmp_path / "model.pt"
    assert export_cli.main([f"ckpt={ckpt}", f"out={exported}"]) == 0
    images = tmp_path / "images"
    write_class_images(images, per_class=10, seed=11)
    capsys.readouterr()
    for model, out in ((ckpt, "from_ckpt"), (exported, "from_export")):
        args = [f"ckpt={model}", f"inputs={images}", f"out={tmp_path / out}", "device=cpu"]
        assert predict_cli.main(args) == 0
        assert capsys.readouterr().out.rstrip().endswith("(precision fp32)")
    from_ckpt = predictions(tmp_path / "from_ckpt" / "predictions.csv")
    from_export = predictions(tmp_path / "from_export" / "predictions.csv")
    assert len(from_ckpt) == 20
    assert [(r["path"], r["predicted"]) for r in from_ckpt] == [
        (r["path"], r["predicted"]) for r in from_export
    ]
    for a, b in zip(from_ckpt, from_export):
        assert (
            list(a)[:-1] == list(b)[:-1] == ["path", "predicted", "probability", "p_ants", "p_bees"]
        )
        assert (a["model"], b["model"]) == (str(ckpt.resolve()), str(exported.resolve()))
        assert float(a["p_ants"]) == pytest.approx(float(b["p_ants"]), abs=1e-5)
    args = [f"ckpt={ckpt}", f"inputs={images}", f"out={tmp_path / 'auto'}", "device=cpu"]
    assert predict_cli.main([*args, "precision=auto"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("(precision bf16)")
    assert predict_cli.main([f"ckpt={exported}", f"inputs={images}", "precision=bf16"]) == 2
    assert "runs in fp32; use precision=fp32" in capsys.readouterr().err


def test_export_checks_itself_on_the_runs_val_images(checkpoint, tmp_path, capsys):
    root = tmp_path / "data"
    write_class_images(root / "val", per_class=4, seed=12)
    ckpt = bf16_run(tmp_path, checkpoint, root)
    exported = tmp_path / "model.pt"
    assert export_cli.main([f"ckpt={ckpt}", f"out={exported}"]) == 0
    assert "differ" not in capsys.readouterr().err
    metadata = json.loads(exported.with_suffix(".json").read_text())
    check = metadata["verification"]
    assert check["inputs"] == f"8 val images in {root / 'val'}"
    assert check["precision"] == "fp32"
    assert check["n"] == check["labels_agreeing"] == 8
    assert 0 <= check["max_abs_probability_difference"] < 1e-4
    steps = metadata["preprocessing"]["steps"]
    for words in (
        "EXIF orientation",
        "RGB",
        "shorter side",
        "bilinear, antialiased",
        "center crop",
    ):
        assert words in steps
    assert "(x - mean) / std" in steps and "[0, 1]" in steps


def test_export_checks_itself_on_random_tensors_without_the_val_images(
    checkpoint, tmp_path, capsys
):
    ckpt = bf16_run(tmp_path, checkpoint, tmp_path / "gone")  # data.root is not here
    exported = tmp_path / "model.pt"
    assert export_cli.main([f"ckpt={ckpt}", f"out={exported}"]) == 0
    check = json.loads(exported.with_suffix(".json").read_text())["verification"]
    assert check["inputs"].startswith("8 random normal tensors (seed 0)")
    assert check["n"] == check["labels_agreeing"] == 8


def write_split_csv(run_dir, root, roles):
    """RUN_DIR/split.csv as training writes it: each image under `root` (sorted), its class
    folder as label, and the next role of `roles`."""
    files = sorted(path.relative_to(root) for path in root.rglob("*.jpg"))
    with open(run_dir / "split.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "role"])
        writer.writerows([str(f), f.parts[0], role] for f, role in zip(files, roles * len(files)))
    return run_dir / "split.csv"


def test_export_checks_itself_on_the_images_the_run_evaluated(checkpoint, tmp_path):
    root = tmp_path / "data"  # one folder of class folders: no DATA_ROOT/val to fall back on
    write_class_images(root, per_class=5, seed=14)
    ckpt = bf16_run(tmp_path, checkpoint, root)
    split = write_split_csv(ckpt.parent, root, ["train", "select", "train", "test", "train"])
    (root / "ants" / "ants_1.jpg").unlink()  # a select image gone since: not checked
    exported = tmp_path / "model.pt"
    assert export_cli.main([f"ckpt={ckpt}", f"out={exported}"]) == 0
    check = json.loads(exported.with_suffix(".json").read_text())["verification"]
    assert check["inputs"] == (
        f"3 images the run evaluated, listed in {split} (roles select, test) under {root}"
    )
    assert check["n"] == check["labels_agreeing"] == 3


def test_a_split_csv_of_other_classes_is_not_the_runs(checkpoint, tmp_path):
    root = tmp_path / "data"
    write_class_images(root / "val", per_class=2, seed=15)
    write_class_images(root / "train", classes=("wasps", "flies"), per_class=2, seed=16)
    ckpt = bf16_run(tmp_path, checkpoint, root)
    write_split_csv(ckpt.parent, root / "train", ["select"])
    exported = tmp_path / "model.pt"
    assert export_cli.main([f"ckpt={ckpt}", f"out={exported}"]) == 0
    check = json.loads(exported.with_suffix(".json").read_text())["verification"]
    assert check["inputs"] == f"4 val images in {root / 'val'}"  # as without split.csv


def test_labels_that_differ_are_one_warning_line(checkpoint, tmp_path, monkeypatch, caplog):
    real = verifying.load_exported_model

    def swapped(path, device):  # an export whose classes come out in the wrong order
        loaded = real(path, device)
        model = loaded.model
        loaded.model = lambda images: model(images).flip(1)
        return loaded

    monkeypatch.setattr(verifying, "load_exported_model", swapped)
    exported = tmp_path / "model.pt"
    with caplog.at_level("WARNING", logger="hymtl.export"):
        assert export_cli.main([f"ckpt={checkpoint}", f"out={exported}"]) == 0
    [record] = [r for r in caplog.records if r.name == "hymtl.export"]
    check = json.loads(exported.with_suffix(".json").read_text())["verification"]
    assert check["labels_agreeing"] < check["n"] == 8
    assert record.getMessage().startswith(
        f"{8 - check['labels_agreeing']} of 8 predicted labels differ between {checkpoint} and "
        "its export in fp32"
    )


def test_evaluate_reports_its_precision(checkpoint, tmp_path):
    root = tmp_path / "data"
    write_class_images(root / "val", per_class=3, seed=13)
    ckpt = bf16_run(tmp_path, checkpoint)
    for extra, expected in (
        ([], "fp32"),
        (["precision=auto"], "bf16"),
        (["precision=fp32"], "fp32"),
    ):
        out = tmp_path / f"eval-{expected}-{len(extra)}"
        args = [f"ckpt={ckpt}", f"data.root={root}", f"out={out}", "device=cpu", *extra]
        assert evaluate_cli.main(args) == 0
        [report] = out.glob("evaluation-val-*.json")
        assert json.loads(report.read_text())["precision"] == expected


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


# ---- where export writes -------------------------------------------------------------------


def hashes(folder):
    """Every file under `folder` (hidden ones too) and its SHA-256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def error_line(capsys):
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("hymtl-export: error: ")
    return line.removeprefix("hymtl-export: error: ")


@pytest.fixture
def run_dir(checkpoint):
    """The checkpoint's folder dressed as a finished run."""
    run_dir = checkpoint.parent
    (run_dir / "summary.json").write_text('{"status": "completed"}\n')
    shutil.copyfile(checkpoint, run_dir / "last.pt")
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("epochs: 1\n")
    return run_dir


RUN_OWNED = "belongs to the run in {run}, and no other command replaces a run's files (not even "
RUN_OWNED += "with overwrite=true); choose another out="


@pytest.mark.parametrize("overwrite", [[], ["overwrite=true"]])
@pytest.mark.parametrize(
    "out, expected",
    [
        ("summary.json", "{run}/summary.json " + RUN_OWNED),
        ("last.pt", "{run}/last.pt " + RUN_OWNED),
        ("best.pt", "{run}/best.pt " + RUN_OWNED),  # the checkpoint being read, too
        ("summary.pt", "out={run}/summary.pt: {run}/summary.json " + RUN_OWNED),  # JSON beside
        (".hydra", "{run}/.hydra " + RUN_OWNED),
        ("predictions.png", "{run}/predictions.png " + RUN_OWNED),  # though the run has none yet
    ],
)
def test_export_never_writes_a_runs_files(out, expected, overwrite, run_dir, capsys):
    before = hashes(run_dir)
    assert export_cli.main([f"ckpt={run_dir / 'best.pt'}", f"out={run_dir / out}", *overwrite]) == 2
    assert error_line(capsys) == expected.format(run=run_dir)
    assert hashes(run_dir) == before


def test_an_existing_export_is_kept_unless_overwrite(run_dir, capsys):
    ckpt = run_dir / "best.pt"
    assert export_cli.main([f"ckpt={ckpt}"]) == 0
    exported = run_dir / "export" / "model.torchscript.pt"
    assert sorted(p.name for p in exported.parent.iterdir()) == [
        "model.torchscript.json",
        "model.torchscript.pt",
    ]
    exported.write_bytes(b"a model exported earlier, handed on since")
    before = hashes(run_dir)
    capsys.readouterr()
    assert export_cli.main([f"ckpt={ckpt}"]) == 2
    assert error_line(capsys) == (
        f"{exported} exists; choose another out=, or add overwrite=true to replace it"
    )
    assert hashes(run_dir) == before
    exported.unlink()  # the model alone is gone: its JSON is still there, and kept
    assert export_cli.main([f"ckpt={ckpt}", f"out={exported}"]) == 2
    assert error_line(capsys) == (
        f"out={exported}: {exported.with_suffix('.json')} exists; choose another out=, or add "
        "overwrite=true to replace it"
    )
    assert export_cli.main([f"ckpt={ckpt}", "overwrite=true"]) == 0
    assert load_trained_model(exported, "cpu").classes == ["ants", "bees"]
    assert sorted(p.name for p in exported.parent.iterdir()) == [  # no temporary file left
        "model.torchscript.json",
        "model.torchscript.pt",
    ]


def test_export_onto_the_checkpoint_it_reads_is_refused(tmp_path, checkpoint, capsys):
    own = tmp_path / "mine.pt"  # a checkpoint outside any run: no run's names to protect
    shutil.copyfile(checkpoint, own)
    before = own.read_bytes()
    assert export_cli.main([f"ckpt={own}", f"out={own}", "overwrite=true"]) == 2
    assert error_line(capsys) == f"{own} is the checkpoint being read; choose another out="
    assert own.read_bytes() == before


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("a folder", "{out} is a folder, not a file; choose another out="),
        ("under a file", "out={out}: {tmp}/notes.txt is a file, not a folder"),
        ("a .json name", "out={out}: .json is the name of the metadata beside it"),
        ("an exported model", "ckpt={ckpt} is a model hymtl export wrote; export the run's"),
    ],
)
def test_an_out_that_cannot_be_written_is_one_line(kind, expected, checkpoint, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a folder\n")
    ckpt = checkpoint
    if kind == "a folder":
        out = tmp_path / "folder"
        out.mkdir()
    elif kind == "under a file":
        out = tmp_path / "notes.txt" / "model.pt"
    elif kind == "a .json name":
        out = tmp_path / "model.json"
    else:
        ckpt = tmp_path / "exported.pt"
        assert export_cli.main([f"ckpt={checkpoint}", f"out={ckpt}"]) == 0
        capsys.readouterr()
        out = tmp_path / "again.pt"
    assert export_cli.main([f"ckpt={ckpt}", f"out={out}", "overwrite=true"]) == 2
    assert error_line(capsys).startswith(expected.format(out=out, tmp=tmp_path, ckpt=ckpt))
    assert (tmp_path / "notes.txt").read_text() == "not a folder\n"
    assert not out.with_suffix(".pt").exists() and not out.with_suffix(".json").is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_export_into_a_read_only_folder_is_one_line(checkpoint, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert export_cli.main([f"ckpt={checkpoint}", f"out={locked / 'model.pt'}"]) == 2
    finally:
        locked.chmod(0o755)
    assert error_line(capsys) == f"out={locked / 'model.pt'}: cannot write in {locked}: " + (
        "permission denied"
    )
    assert list(locked.iterdir()) == []
