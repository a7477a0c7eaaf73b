"""predict and evaluate on hostile input: misspelled arguments, malformed checkpoints, the files
training skips, and names that are not UTF-8. Each refusal is one line, never a traceback.

The checkpoint is built without training (an untrained ResNet-18 saved the way hymtl.train saves
one): these tests check what is read and skipped, not what is predicted."""

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from hymtl import evaluate as evaluate_cli
from hymtl import export as export_cli
from hymtl import predict as predict_cli
from hymtl.inference.loading import load_trained_model
from hymtl.run.artifacts import save_checkpoint
from hymtl.training.models import build_model

from .conftest import write_class_images

CLASSES = ["ants", "bees"]
# The parts of a run's plain config that predict and evaluate read (see hymtl.config.schema).
CONFIG = {
    "model": {"name": "resnet18", "pretrained": False},
    "data": {
        "name": "imagefolder",
        "image_size": 32,
        "resize_size": 36,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "min_colors": 64,
    },
    "precision": "fp32",
    "channels_last": False,
}


@pytest.fixture(scope="module")
def weights():
    torch.manual_seed(0)
    return build_model("resnet18", num_classes=len(CLASSES), pretrained=False).state_dict()


def write_checkpoint(path: Path, weights, config=CONFIG, classes=CLASSES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"model": weights, "config": config, "class_names": classes})
    return path


@pytest.fixture
def checkpoint(tmp_path, weights) -> Path:
    return write_checkpoint(tmp_path / "run" / "best.pt", weights)


def error_line(capsys, program: str) -> str:
    """The one line a refusal prints on stderr (asserting it is one line)."""
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"hymtl-{program}: error: ")
    return line.removeprefix(f"hymtl-{program}: error: ")


def read_predictions(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:  # strict: the file must be valid UTF-8
        return list(csv.DictReader(handle))


def placeholder_gif(path: Path) -> None:
    """Like hymenoptera's imageNotFound.gif: decodable, but a handful of colours."""
    Image.new("P", (60, 60), color=1).save(path)


# ---- arguments -----------------------------------------------------------------------------


def test_misspelled_key_is_refused_with_the_near_miss(capsys):
    assert predict_cli.main(["ckpt=x.pt", "inputs=.", "devise=cpu"]) == 2
    assert error_line(capsys, "predict") == (
        "unknown config key devise (did you mean device?); `--cfg job` lists every key"
    )


def test_group_style_argument_after_data_root_is_one_line(capsys):
    assert evaluate_cli.main(["ckpt=x.pt", "data.root=/x", "data=imagefolder"]) == 2
    assert error_line(capsys, "evaluate").startswith(
        "Error merging override data=imagefolder Invalid type assigned: str is not a subclass"
    )


def test_evaluate_without_root_names_data_root(capsys):
    assert evaluate_cli.main(["ckpt=x.pt"]) == 2
    assert error_line(capsys, "evaluate").startswith("missing data.root=; usage: ")


def test_required_keys_given_nothing_are_missing(capsys):
    assert predict_cli.main(["ckpt=", "inputs="]) == 2
    assert error_line(capsys, "predict").startswith("missing ckpt=, inputs=; usage: hymtl predict")


def test_key_with_no_near_miss_points_to_the_key_list(capsys):
    assert predict_cli.main(["ckpt=x.pt", "inputs=.", "colour=red"]) == 2
    assert error_line(capsys, "predict") == (
        "unknown config key colour; `--cfg job` lists every key"
    )


@pytest.mark.parametrize(
    "argument, expected",
    [
        ("batch_size=0", "batch_size=0 must be >= 1"),
        ("batch_size=four", "Value 'four' of type 'str' could not be converted to Integer"),
    ],
)
def test_values_are_typed_and_checked(argument, expected, checkpoint, tmp_path, capsys):
    assert predict_cli.main([f"ckpt={checkpoint}", f"inputs={tmp_path}", argument]) == 2
    assert expected in error_line(capsys, "predict")


# ---- checkpoints ---------------------------------------------------------------------------


def without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


def three_class_weights():
    return build_model("resnet18", num_classes=3, pretrained=False).state_dict()


# name -> (what best.pt holds, or how to make the path; what the one line says)
MALFORMED = {
    "a list": (lambda w: [1, 2, 3], "is not a hymtl checkpoint (best.pt or last.pt of a run): it"),
    "a dict without the keys": (lambda w: {"weights": w}, "no model, config, class_names in it"),
    "config not a dict": (
        lambda w: {"model": w, "config": "resnet18", "class_names": CLASSES},
        "its config is a str, not a dict",
    ),
    "config without model": (
        lambda w: {"model": w, "config": without(CONFIG, "model"), "class_names": CLASSES},
        "its config has no model.name",
    ),
    "config without data": (
        lambda w: {"model": w, "config": without(CONFIG, "data"), "class_names": CLASSES},
        "its config.data lacks one of ['image_size', 'resize_size', 'mean', 'std']",
    ),
    "data sizes not numbers": (
        lambda w: {
            "model": w,
            "config": {**CONFIG, "data": {**CONFIG["data"], "image_size": "big"}},
            "class_names": CLASSES,
        },
        "its config.data sizes, mean or std are not numbers",
    ),
    "class_names with undecodable bytes": (
        lambda w: {"model": w, "config": CONFIG, "class_names": ["ants", "b\udce9es"]},
        "class_names is not a list of two or more class names",
    ),
    "class_names not strings": (
        lambda w: {"model": w, "config": CONFIG, "class_names": [0, 1]},
        "class_names is not a list of two or more class names",
    ),
    "weights of another head": (
        lambda w: {"model": three_class_weights(), "config": CONFIG, "class_names": CLASSES},
        "its weights do not fit model resnet18 with 2 classes (RuntimeError: Error(s) in loading",
    ),
    "weights of another model": (
        lambda w: {"model": {"w": torch.zeros(2)}, "config": CONFIG, "class_names": CLASSES},
        'Missing key(s) in state_dict: "conv1.weight"',
    ),
}


@pytest.mark.parametrize("program", ["predict", "evaluate"])
@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_checkpoint_is_one_line(kind, program, weights, image_root, tmp_path, capsys):
    make, expected = MALFORMED[kind]
    path = tmp_path / "best.pt"
    torch.save(make(weights), path)
    data = f"inputs={image_root}" if program == "predict" else f"data.root={image_root}"
    cli = predict_cli if program == "predict" else evaluate_cli
    assert cli.main([f"ckpt={path}", data]) == 2
    line = error_line(capsys, program)
    assert line.startswith(f"ckpt={path}") and expected in line


class RunsCode:
    def __reduce__(self):  # unpickling would call print(): weights_only must refuse it
        return (print, ("unpickled",))


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("text file", "is not a PyTorch checkpoint (IndexError: pop from empty list)"),
        ("empty file", "is not a PyTorch checkpoint (EOFError)"),
        (
            "pickle that runs code",
            "cannot be loaded safely (UnpicklingError: Weights only load failed.",
        ),
        ("folder", "is a folder; pass the checkpoint file, e.g. ckpt="),
    ],
)
def test_file_that_is_no_checkpoint_is_one_line(kind, expected, tmp_path, capsys):
    path = tmp_path / "best.pt"
    if kind == "text file":
        path.write_text("epoch,loss\n1,0.5\n")
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "pickle that runs code":
        torch.save({"model": RunsCode()}, path)
    else:
        path.mkdir()
    assert predict_cli.main([f"ckpt={path}", f"inputs={tmp_path}"]) == 2
    assert expected in error_line(capsys, "predict")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, weights) -> tuple[Path, Path]:
    """(a checkpoint, the TorchScript file hymtl export made of it, its JSON beside it)."""
    folder = tmp_path_factory.mktemp("exported")
    checkpoint = write_checkpoint(folder / "run" / "best.pt", weights)
    model = folder / "model.torchscript.pt"
    assert export_cli.main([f"ckpt={checkpoint}", f"out={model}"]) == 0
    return checkpoint, model


def flip_bytes_of(member: str, source: Path, path: Path) -> None:
    """A copy of the zip archive `source` whose `member` has 32 bytes flipped (bit rot, a bad
    copy): the archive still opens, the member no longer matches its checksum."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member))
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 :][:4])
    start = info.header_offset + 30 + name_length + extra_length
    data[start : start + 32] = bytes(byte ^ 0x5A for byte in data[start : start + 32])
    path.write_bytes(data)


def rewrite_metadata(source: Path, path: Path, metadata: bytes) -> None:
    """A copy of the TorchScript archive `source` with other bytes as its hymtl.json."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            ours = info.filename.endswith("/hymtl.json")
            new.writestr(info, metadata if ours else old.read(info))


# name -> (the file's name, how it is damaged, what the line says is wrong)
DAMAGED = {
    "truncated": ("model.torchscript.pt", "half", "not a complete archive, "),
    "random bytes named .ts": ("model.ts", "random", "not a complete archive, 4096 bytes"),
    "a weight flipped": ("model.torchscript.pt", "flip data/0", "data/0 fails its checksum"),
    "its code flipped": ("model.pt", "flip data.pkl", "data.pkl fails its checksum"),
    "metadata not JSON": ("model.torchscript.pt", "metadata", "(JSONDecodeError: "),
    "metadata without classes": ("model.pt", "no classes", "hymtl.json lacks classes"),
}


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_a_damaged_torchscript_export_is_one_line(kind, exported, tmp_path, capsys):
    checkpoint, model = exported
    name, damage, expected = DAMAGED[kind]
    path = tmp_path / name
    if damage == "half":
        path.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    elif damage == "random":
        path.write_bytes(os.urandom(4096))
    elif damage.startswith("flip "):
        flip_bytes_of(damage.removeprefix("flip "), model, path)
    else:
        metadata = json.loads(model.with_suffix(".json").read_text())
        del metadata["classes"]
        text = b"{not json" if damage == "metadata" else json.dumps(metadata).encode()
        rewrite_metadata(model, path, text)
    source = "RUN_DIR/best.pt"
    if damage != "random":  # the JSON beside it names the checkpoint to export again
        shutil.copyfile(model.with_suffix(".json"), path.with_suffix(".json"))
        source = str(checkpoint)
    assert predict_cli.main([f"ckpt={path}", f"inputs={tmp_path}"]) == 2
    line = error_line(capsys, "predict")
    assert line.startswith(f"ckpt={path} is a damaged TorchScript export (")
    assert expected in line
    assert line.endswith(f"; export it again: hymtl export ckpt={source} out={path} overwrite=true")


def test_a_checkpoint_named_like_an_export_is_still_a_checkpoint(checkpoint, tmp_path):
    renamed = tmp_path / "model.torchscript.pt"
    shutil.copyfile(checkpoint, renamed)
    assert load_trained_model(renamed, "cpu").classes == CLASSES


@pytest.mark.parametrize("key", ["inputs", "ckpt"])
def test_a_fifo_as_inputs_or_ckpt_is_one_line_and_never_opened(key, checkpoint, tmp_path):
    fifo = tmp_path / ("camera.jpg" if key == "inputs" else "model.pt")
    os.mkfifo(fifo)
    given = {"ckpt": checkpoint, "inputs": tmp_path, key: fifo}
    out = tmp_path / "out"
    command = [sys.executable, "-m", "hymtl.predict", *(f"{k}={v}" for k, v in given.items())]
    # Opening the FIFO would block until a writer comes: the timeout fails the test instead.
    result = subprocess.run([*command, f"out={out}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    what_to_do = (
        "give an image file or a folder of images"
        if key == "inputs"
        else ("pass ckpt=RUN_DIR/best.pt")
    )
    assert result.stderr.strip().splitlines() == [
        f"hymtl-predict: error: {key}={fifo} is not a regular file (a FIFO); {what_to_do}"
    ]
    assert not out.exists()


@pytest.mark.parametrize("stored, expected", [(None, 64), (0, 0), (16, 16)])
def test_loaded_model_keeps_the_runs_min_colors(stored, expected, tmp_path, weights):
    data = without(CONFIG["data"], "min_colors")
    if stored is not None:
        data["min_colors"] = stored
    path = write_checkpoint(tmp_path / "best.pt", weights, {**CONFIG, "data": data})
    assert load_trained_model(path, "cpu").min_colors == expected  # absent: the schema default


# ---- predict -------------------------------------------------------------------------------


def hostile_inputs(folder: Path) -> list[str]:
    """4 photos, plus what training would not use: a placeholder GIF, a text file, Jupyter's
    hidden copies and a symlink loop. Returns the photos' paths."""
    write_class_images(folder, per_class=2, seed=4)
    placeholder_gif(folder / "imageNotFound.gif")
    (folder / "notes.jpg").write_text("not an image")
    shutil.copytree(folder / "ants", folder / "ants" / ".ipynb_checkpoints")
    (folder / "bees" / "loop").symlink_to(".")
    return sorted(str(folder / c / f"{c}_{i}.jpg") for c in ("ants", "bees") for i in range(2))


def test_predict_skips_what_training_skips(checkpoint, tmp_path, caplog, capsys):
    photos = hostile_inputs(tmp_path / "inputs")
    with caplog.at_level(logging.WARNING):
        code = predict_cli.main([f"ckpt={checkpoint}", f"inputs={tmp_path / 'inputs'}"])
    assert code == 0
    [out] = (checkpoint.parent / "predict").iterdir()  # RUN_DIR/predict/<time>/
    rows = read_predictions(out / "predictions.csv")
    assert sorted(row["path"] for row in rows) == photos
    assert {row["predicted"] for row in rows} <= set(CLASSES)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("skipped 2 unusable file(s): ")
    assert "imageNotFound.gif: fewer than 64 colours" in warning
    assert "notes.jpg: cannot be decoded" in warning
    assert capsys.readouterr().out.startswith("4 predictions -> ")


def test_predict_with_only_a_placeholder_is_one_line(checkpoint, tmp_path, caplog, capsys):
    placeholder_gif(tmp_path / "imageNotFound.gif")
    code = predict_cli.main([f"ckpt={checkpoint}", f"inputs={tmp_path / 'imageNotFound.gif'}"])
    assert code == 2
    assert error_line(capsys, "predict") == (
        f"no usable image under inputs={tmp_path / 'imageNotFound.gif'}"
    )
    assert "imageNotFound.gif: fewer than 64 colours" in caplog.text


def test_predict_names_that_are_not_utf8(weights, tmp_path, capsys):
    run_dir = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"run\xe9"))  # Latin-1 "runé"
    checkpoint = write_checkpoint(Path(run_dir) / "best.pt", weights)
    inputs = tmp_path / "inputs"
    write_class_images(inputs, classes=("ants",), per_class=2, seed=6)
    shutil.copyfile(inputs / "ants" / "ants_0.jpg", os.path.join(os.fsencode(inputs), b"\xff.jpg"))
    assert predict_cli.main([f"ckpt={checkpoint}", f"inputs={inputs}"]) == 0
    [out] = (checkpoint.parent / "predict").iterdir()
    rows = read_predictions(out / "predictions.csv")
    assert [row["path"] for row in rows] == [
        f"{inputs}/\\xff.jpg",
        f"{inputs}/ants/ants_0.jpg",
        f"{inputs}/ants/ants_1.jpg",
    ]
    assert rows[0]["predicted"] == rows[1]["predicted"]  # the same pixels, the same answer
    assert (out / "predictions.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert f"{tmp_path}/run\\xe9/predict/{out.name}/predictions.csv" in printed
    printed.encode("utf-8")  # a UTF-8 terminal can show it


# ---- where predict writes ------------------------------------------------------------------


def hashes(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) and its SHA-256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def make_run_dir(checkpoint: Path) -> Path:
    """The checkpoint's folder dressed as a finished run: summary.json, last.pt, .hydra/ and
    the run's own predictions.png."""
    run_dir = checkpoint.parent
    (run_dir / "summary.json").write_text('{"status": "completed"}\n')
    shutil.copyfile(checkpoint, run_dir / "last.pt")
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("epochs: 1\n")
    (run_dir / "predictions.png").write_bytes(b"the run's own grid of val images")
    return run_dir


@pytest.mark.parametrize("overwrite", [[], ["overwrite=true"]])
def test_predict_never_writes_into_a_run_dir(overwrite, checkpoint, tmp_path, capsys):
    run_dir = make_run_dir(checkpoint)
    write_class_images(tmp_path / "inputs", per_class=1, seed=4)
    before = hashes(run_dir)
    args = [f"ckpt={checkpoint}", f"inputs={tmp_path / 'inputs'}", f"out={run_dir}", *overwrite]
    assert predict_cli.main(args) == 2
    assert error_line(capsys, "predict") == (
        f"out={run_dir}: {run_dir}/predictions.png belongs to the run in {run_dir}, and no other "
        "command replaces a run's files (not even with overwrite=true); choose another out= "
        f"(without out=, a new folder per call in {run_dir}/predict/)"
    )
    assert hashes(run_dir) == before


def test_two_predict_calls_keep_both_outputs(checkpoint, tmp_path, capsys):
    run_dir = make_run_dir(checkpoint)
    write_class_images(tmp_path / "inputs", per_class=1, seed=4)
    before = hashes(run_dir)
    args = [f"ckpt={checkpoint}", f"inputs={tmp_path / 'inputs'}"]
    assert predict_cli.main(args) == 0
    assert predict_cli.main(args) == 0
    folders = sorted((run_dir / "predict").iterdir())
    assert [bool(re.fullmatch(r"\d{8}-\d{6}-\d{6}", f.name)) for f in folders] == [True, True]
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["predictions.csv", "predictions.png"]
        assert len(read_predictions(folder / "predictions.csv")) == 2
    printed = capsys.readouterr().out.splitlines()
    assert [f"{folder}/predictions.csv" in line for line, folder in zip(printed, folders)] == [
        True,
        True,
    ]
    after = hashes(run_dir)
    assert {name: after[name] for name in before} == before  # only predict/ was added


def test_predict_out_that_holds_predictions_is_kept_unless_overwrite(checkpoint, tmp_path, capsys):
    write_class_images(tmp_path / "inputs", per_class=1, seed=4)
    out = tmp_path / "out"
    args = [f"ckpt={checkpoint}", f"inputs={tmp_path / 'inputs'}", f"out={out}"]
    assert predict_cli.main(args) == 0
    (out / "predictions.csv").write_text("an earlier call's answers\n")
    before = hashes(out)
    capsys.readouterr()
    assert predict_cli.main(args) == 2
    assert error_line(capsys, "predict") == (
        f"out={out}: {out}/predictions.csv exists; choose another out= (without out=, a new "
        f"folder per call in {checkpoint.parent}/predict/), or add overwrite=true to replace it"
    )
    assert hashes(out) == before
    assert predict_cli.main([*args, "overwrite=true"]) == 0
    assert len(read_predictions(out / "predictions.csv")) == 2
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "predictions.png"]


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("a file", "out={out} is a file; give a folder"),
        ("a folder under a file", "out={out}: {parent} is a file, not a folder"),
        ("a folder whose csv name is a folder", "out={out}: {out}/predictions.csv is a folder"),
    ],
)
def test_predict_out_that_cannot_be_written_is_one_line(
    kind, expected, checkpoint, tmp_path, capsys
):
    parent = tmp_path / "notes.txt"
    parent.write_text("not a folder\n")
    if kind == "a file":
        out = parent
    elif kind == "a folder under a file":
        out = parent / "predictions"
    else:
        out = tmp_path / "out"
        (out / "predictions.csv").mkdir(parents=True)
    args = [f"ckpt={checkpoint}", f"inputs={tmp_path}", f"out={out}"]
    assert predict_cli.main(args) == 2
    assert error_line(capsys, "predict").startswith(expected.format(out=out, parent=parent))
    assert parent.read_text() == "not a folder\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_predict_into_a_read_only_folder_is_one_line(checkpoint, tmp_path, capsys):
    write_class_images(tmp_path / "inputs", per_class=1, seed=4)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        args = [f"ckpt={checkpoint}", f"inputs={tmp_path / 'inputs'}", f"out={locked / 'p'}"]
        assert predict_cli.main(args) == 2
    finally:
        locked.chmod(0o755)
    assert error_line(capsys, "predict") == (
        f"out={locked / 'p'}: cannot write in {locked}: permission denied"
    )
    assert list(locked.iterdir()) == []


# ---- evaluate ------------------------------------------------------------------------------


def test_evaluate_keeps_every_report(checkpoint, image_root, tmp_path, caplog, capsys):
    placeholder_gif(image_root / "val" / "ants" / "imageNotFound.gif")
    shutil.copytree(image_root / "val" / "bees", image_root / "val" / ".ipynb_checkpoints")
    args = [f"ckpt={checkpoint}", f"data.root={image_root}", f"out={tmp_path / 'out'}"]
    with caplog.at_level(logging.WARNING):
        assert evaluate_cli.main(args) == 0
        assert evaluate_cli.main(args + ["split=train"]) == 0
        assert evaluate_cli.main(args) == 0
    reports = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(reports) == 3
    splits = [re.fullmatch(r"evaluation-(\w+)-\d{8}-\d{6}-\d{6}\.json", n)[1] for n in reports]
    assert splits == ["train", "val", "val"]  # named by split and time, to the microsecond
    counts = [json.loads((tmp_path / "out" / name).read_text())["n"] for name in reports]
    assert counts == [24, 12, 12]  # the GIF and the hidden folder are left out
    printed = capsys.readouterr().out.strip().splitlines()
    assert sorted(line.rsplit("/", 1)[-1] for line in printed) == reports
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "imageNotFound.gif: fewer than 64 colours" in warnings[0]


def test_evaluate_out_that_is_a_file_is_one_line_before_any_work(checkpoint, image_root, tmp_path):
    taken = tmp_path / "report.json"
    taken.write_text("mine")
    args = [f"ckpt={checkpoint}", f"data.root={image_root}", f"out={taken}"]
    assert evaluate_cli.main(args) == 2
    assert taken.read_text() == "mine"
