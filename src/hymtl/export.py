"""Export a trained run's model for use without hymtl's training code.

    hymtl export ckpt=RUN_DIR/best.pt [format=torchscript|onnx] [out=FILE]

Writes a TorchScript file (default RUN_DIR/export/model.torchscript.pt) or an ONNX file
(default RUN_DIR/export/model.onnx, dynamic batch axis; needs the `hymtl[onnx]` extra) that
carries, inside it and in a JSON file beside it (the same name, .json), what using it needs: the
class names and the preprocessing (resize, center crop, mean/std). `hymtl predict ckpt=FILE`
accepts either file. An existing file (the model or its JSON) is refused unless overwrite=true;
a run's own files (summary.json, last.pt, ...) always. A Hydra app (hymtl.cli.app) like
predict and evaluate: keys and types in hymtl.config.schema's ExportConfig;
`-m format=torchscript,onnx` writes both.

Each export is checked against its checkpoint before it is put in place: the checkpoint's model
(fp32, CPU) and the written file predict the images the run evaluated (split.csv beside the
checkpoint, roles select and test, under the run's data.root), else DATA_ROOT/val's images,
else a few seeded random tensors (hymtl.inference.verifying); the JSON beside the file records
how they agree (`verification`). Labels that differ are one warning line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import torch
from omegaconf import DictConfig

from hymtl.cli.app import check_outputs, run_command, write_outputs
from hymtl.cli.process_exit import run_as_process
from hymtl.errors import UserError, display_path
from hymtl.inference.exported import require_onnx
from hymtl.inference.exporting import EXPORTERS
from hymtl.inference.loading import load_trained_model
from hymtl.inference.verifying import verify_export

USAGE = "hymtl export ckpt=RUN_DIR/best.pt [format=torchscript|onnx] [out=FILE]"
DEFAULT_FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}


def output_files(cfg: DictConfig) -> tuple[Path, Path]:
    """(the model's file, its JSON beside it), refused in one line before the checkpoint is
    read: a run's own file, the checkpoint itself, an existing file without overwrite=true."""
    kind = cfg.format.value
    ckpt = Path(cfg.ckpt).expanduser()
    out = Path(cfg.out).expanduser() if cfg.out else ckpt.parent / "export" / DEFAULT_FILES[kind]
    if kind == "onnx" and out.suffix != ".onnx":
        raise UserError(f"out={display_path(out)}: an ONNX file's name must end in .onnx")
    metadata_path = out.with_suffix(".json")
    check_outputs([out, metadata_path], cfg.overwrite, out if cfg.out else None, (ckpt,))
    if out.suffix == ".json":
        raise UserError(f"out={display_path(out)}: .json is the name of the metadata beside it")
    return out, metadata_path


def run(cfg: DictConfig) -> None:
    """One export: `cfg.ckpt` as `cfg.format`, into `cfg.out` (UserError: refused)."""
    kind = cfg.format.value
    out, metadata_path = output_files(cfg)
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
    found = {}

    def write_model(path: str) -> None:
        metadata = EXPORTERS[kind](loaded, cfg.ckpt, path)
        # Checked in its temporary file, before it is put in place; recorded in the JSON only.
        found["metadata"] = {**metadata, "verification": verify_export(loaded, cfg.ckpt, path)}

    def write_metadata(path: str) -> None:
        Path(path).write_text(json.dumps(found["metadata"], indent=2) + "\n")

    write_outputs({out: write_model, metadata_path: write_metadata}, cfg.overwrite)
    print(f"{display_path(out)} (metadata: {display_path(metadata_path)})")


def main(argv: list[str] | None = None) -> int:
    """`hymtl export ARGV` (default: the command line); returns the exit status."""
    return run_command("export", run, USAGE, argv)


def cli() -> NoReturn:
    run_as_process(main)  # the whole process: cli.process_exit


if __name__ == "__main__":
    cli()
