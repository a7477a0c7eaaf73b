"""Export a trained run's model for use without hymtl's training code.

    hymtl export ckpt=RUN_DIR/best.pt [format=torchscript|onnx] [out=FILE]

Writes a TorchScript file (default RUN_DIR/export/model.torchscript.pt) or an ONNX file
(default RUN_DIR/export/model.onnx, dynamic batch axis; needs the `hymtl[onnx]` extra) that
carries, inside it and in a JSON file beside it (the same name, .json), what using it needs: the
class names and the preprocessing (resize, center crop, mean/std). `hymtl predict ckpt=FILE`
accepts either file. An existing file (the model or its JSON) is refused unless overwrite=true;
a run's own files (summary.json, last.pt, ...) always. A Hydra app (hymtl.cli.app) like
predict and evaluate: keys and types in hymtl.config.schema's
ExportConfig; `-m format=torchscript,onnx`
writes both.

Each export is checked against its checkpoint before it is put in place: the checkpoint's model
(fp32, CPU) and the written file predict the run's val images (DATA_ROOT/val from the run's
config, where that folder exists; else a few seeded random tensors), and the JSON beside the file
records how they agree (`verification`). Labels that differ are one warning line.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import sys
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig

from hymtl import UserError, display_path
from hymtl.cli.app import check_outputs, run_command, write_outputs
from hymtl.data import walk_files
from hymtl.errors import one_line
from hymtl.inference.loading import LoadedModel, load_exported_model, load_trained_model

log = logging.getLogger("hymtl.export")
USAGE = "hymtl export ckpt=RUN_DIR/best.pt [format=torchscript|onnx] [out=FILE]"
# The name of the metadata inside a TorchScript archive and among an ONNX model's metadata_props.
METADATA = "hymtl.json"
DEFAULT_FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
ONNX_EXTRA = "pip install 'hymtl[onnx]' (onnx, onnxruntime, onnxscript)"
# What hymtl.data's open_rgb and eval_transform do to a file before the model sees it.
PREPROCESSING_STEPS = (
    "decode the file, apply its EXIF orientation, convert to 8-bit RGB (16-bit and float grey "
    "rescaled to 0..255, palette with transparency via RGBA); resize so the shorter side is "
    "`resize` pixels, keeping the aspect ratio (bilinear, antialiased: torchvision Resize on a "
    "PIL image); center crop `center_crop` x `center_crop`; scale to float [0, 1] (divide by "
    "255), channels first; normalize each channel: (x - mean) / std"
)
RANDOM_INPUTS = 8  # images of the check when the run's val images are not there


@contextlib.contextmanager
def torchscript_without_deprecation_warning():
    """Recent torch marks TorchScript deprecated in favour of torch.export; TorchScript is still
    what C++ libtorch and TorchServe load, so it stays the format, without the warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*", category=FutureWarning)
        yield


def export_metadata(loaded: LoadedModel, checkpoint: str, kind: str) -> dict:
    data = loaded.config["data"]
    return {
        "format": kind,
        "classes": loaded.classes,
        "preprocessing": {
            "resize": data["resize_size"],
            "center_crop": data["image_size"],
            "mean": data["mean"],
            "std": data["std"],
            "input": "RGB float tensor N x 3 x H x W in [0, 1], then normalized by mean/std",
            "steps": PREPROCESSING_STEPS,
        },
        "min_colors": loaded.min_colors,
        "model": loaded.config["model"]["name"],
        "source_checkpoint": display_path(checkpoint),
        "output": "logits, one column per class in `classes` order",
    }


def portable_model(loaded: LoadedModel) -> tuple[torch.nn.Module, int]:
    """The model in fp32 on the CPU, in the usual memory format (the exported file runs
    anywhere), and the side of the square images it takes."""
    model = loaded.model.float().to("cpu").eval()
    return model.to(memory_format=torch.contiguous_format), loaded.config["data"]["image_size"]


def export_torchscript(loaded: LoadedModel, checkpoint: str, out: Path | str) -> dict:
    """The model into the file `out` (only that file: run() writes the JSON beside it)."""
    model, size = portable_model(loaded)
    metadata = export_metadata(loaded, checkpoint, "torchscript")
    buffer = io.BytesIO()  # torch.jit.save aborts the process on a full disk; Python raises
    with torch.no_grad(), torchscript_without_deprecation_warning():
        traced = torch.jit.trace(model, torch.zeros(1, 3, size, size))
        torch.jit.save(traced, buffer, _extra_files={METADATA: json.dumps(metadata)})
    Path(out).write_bytes(buffer.getbuffer())
    return metadata


def require_onnx(what: str) -> None:
    """One line naming the extra when the ONNX packages are missing (or fail to import)."""
    needed = ("onnx", "onnxruntime", "onnxscript") if what == "format=onnx" else ("onnxruntime",)
    missing = []
    for name in needed:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)}: {ONNX_EXTRA}")


@contextlib.contextmanager
def exporter_logs_quiet():
    """The ONNX exporter's optimizer logs each pass at INFO ("Removed 170 unused nodes"): not
    news for someone exporting a model. Warnings still show."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(loaded: LoadedModel, checkpoint: str, out: Path | str) -> dict:
    """torch.export-based ONNX (the legacy TorchScript-based exporter is deprecated), one
    self-contained file, any batch size (only that file: run() writes the JSON beside it)."""
    require_onnx("format=onnx")
    model, size = portable_model(loaded)
    metadata = export_metadata(loaded, checkpoint, "onnx")
    with torch.no_grad(), exporter_logs_quiet():
        program = torch.onnx.export(
            model,
            (torch.zeros(2, 3, size, size),),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    program.model.metadata_props[METADATA] = json.dumps(metadata)
    program.save(str(out), external_data=False)  # weights inside: one file to hand on
    return metadata


class OnnxModel:
    """An exported ONNX model run by onnxruntime on the CPU, called like the torch model:
    a batch of images in, a tensor of logits out."""

    def __init__(self, path: Path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.detach().float().cpu().contiguous().numpy()
        [logits] = self.session.run(None, {self.input_name: batch})
        return torch.from_numpy(logits)


def read_onnx(path: Path) -> tuple[OnnxModel, dict]:
    """(model, metadata) of an ONNX file hymtl exported; any other .onnx file is refused."""
    require_onnx(f"ckpt={display_path(path)}")
    try:
        model = OnnxModel(path)
    except Exception as error:  # onnxruntime raises its own types for files it cannot read
        where = f"ckpt={display_path(path)}"
        raise UserError(f"{where} is not a readable ONNX model ({one_line(error)})") from None
    metadata = model.session.get_modelmeta().custom_metadata_map.get(METADATA)
    if metadata is None:
        raise UserError(
            f"ckpt={display_path(path)} has no hymtl metadata (classes, preprocessing); "
            "export it with hymtl export format=onnx"
        )
    return model, json.loads(metadata)


def read_exported(path: Path) -> tuple[torch.jit.ScriptModule | OnnxModel, dict] | None:
    """(model, metadata) of a file hymtl exported, or None for any other file. ONNX files are
    known by their `.onnx` suffix (a protobuf has no signature to recognize it by)."""
    import zipfile

    if path.suffix == ".onnx":
        return read_onnx(path)
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        if not any(name.endswith(f"extra/{METADATA}") for name in archive.namelist()):
            return None
    extra = {METADATA: ""}
    with torchscript_without_deprecation_warning():
        model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return model, json.loads(extra[METADATA])


def val_images(loaded: LoadedModel) -> tuple[list[Path], str]:
    """The run's val images (DATA_ROOT/val of the checkpoint's config) and where they are, or
    ([], "") when that folder is not here."""
    root = loaded.config["data"].get("root")
    if not isinstance(root, str) or not root:
        return [], ""
    folder = Path(root).expanduser() / "val"
    if not folder.is_dir():
        return [], ""
    return [Path(file) for file in walk_files(folder)], display_path(folder)


@torch.inference_mode()
def verify_export(loaded: LoadedModel, checkpoint: str, path: Path | str) -> dict:
    """How the exported file at `path` agrees with the checkpoint's model (fp32, CPU): on the
    run's val images where they are, else on seeded random tensors. Labels that differ are one
    warning line (not an error: the file is still written)."""
    from hymtl.predict import predict  # here: predict imports matplotlib (its grid)

    exported = load_exported_model(Path(path), "cpu")
    files, where = val_images(loaded)
    rows_a, rows_b = [], []
    if files:
        rows_a, _ = predict(loaded, files)
        rows_b, _ = predict(exported, files)
    if rows_a:
        names = [f"p_{name}" for name in loaded.classes]
        probs_a = torch.tensor([[row[name] for name in names] for row in rows_a])
        probs_b = torch.tensor([[row[name] for name in names] for row in rows_b])
        inputs = f"{len(rows_a)} val images in {where}"
    else:
        size = loaded.config["data"]["image_size"]
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(RANDOM_INPUTS, 3, size, size, generator=generator)
        probs_a = loaded.model(images).float().softmax(1)
        probs_b = exported.model(images).float().softmax(1)
        inputs = (
            f"{RANDOM_INPUTS} random normal tensors (seed 0): the run's val images are not here"
        )
    labels_a, labels_b = probs_a.argmax(1), probs_b.argmax(1)
    n, agreeing = len(labels_a), int((labels_a == labels_b).sum())
    result = {
        "inputs": inputs,
        "precision": "fp32",
        "n": n,
        "labels_agreeing": agreeing,
        "max_abs_probability_difference": float((probs_a - probs_b).abs().max()),
    }
    if agreeing != n:
        log.warning(
            "%d of %d predicted labels differ between %s and its export in fp32 (max |difference "
            "in probability| %.2g)",
            n - agreeing,
            n,
            display_path(checkpoint),
            result["max_abs_probability_difference"],
        )
    return result


def run(cfg: DictConfig) -> None:
    """One export: `cfg.ckpt` as `cfg.format`, into `cfg.out` (UserError: refused)."""
    kind = cfg.format.value
    ckpt = Path(cfg.ckpt).expanduser()
    out = Path(cfg.out).expanduser() if cfg.out else ckpt.parent / "export" / DEFAULT_FILES[kind]
    if kind == "onnx" and out.suffix != ".onnx":
        raise UserError(f"out={display_path(out)}: an ONNX file's name must end in .onnx")
    metadata_path = out.with_suffix(".json")
    check_outputs([out, metadata_path], cfg.overwrite, out if cfg.out else None, (ckpt,))
    if out.suffix == ".json":
        raise UserError(f"out={display_path(out)}: .json is the name of the metadata beside it")
    if kind == "onnx":
        require_onnx("format=onnx")  # before the checkpoint is read
    loaded = load_trained_model(cfg.ckpt, "cpu", "fp32")
    if not isinstance(loaded.model, torch.nn.Module) or isinstance(
        loaded.model, torch.jit.ScriptModule
    ):
        raise UserError(
            f"ckpt={display_path(cfg.ckpt)} is a model hymtl export wrote; export the run's "
            "checkpoint (RUN_DIR/best.pt) instead"
        )
    exporter = export_onnx if kind == "onnx" else export_torchscript
    found = {}

    def write_model(path: str) -> None:
        metadata = exporter(loaded, cfg.ckpt, path)
        # Checked in its temporary file, before it is put in place; recorded in the JSON only.
        found["metadata"] = {**metadata, "verification": verify_export(loaded, cfg.ckpt, path)}

    def write_metadata(path: str) -> None:
        Path(path).write_text(json.dumps(found["metadata"], indent=2) + "\n")

    write_outputs({out: write_model, metadata_path: write_metadata}, cfg.overwrite)
    print(f"{display_path(out)} (metadata: {display_path(metadata_path)})")


def main(argv: list[str] | None = None) -> int:
    """`hymtl export ARGV` (default: the command line); returns the exit status."""
    return run_command("export", run, USAGE, argv)


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
