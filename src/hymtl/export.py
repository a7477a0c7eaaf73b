"""Export a trained run's model for use without hymtl's training code.

    python -m hymtl.export ckpt=RUN_DIR/best.pt [format=torchscript] [out=FILE]

Writes a TorchScript file (default RUN_DIR/export/model.torchscript.pt) that carries, inside
it and in a JSON file beside it, what using it needs: the class names and the preprocessing
(resize, center crop, mean/std). `hymtl predict ckpt=FILE` accepts the exported file too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings
from pathlib import Path

import torch

from hymtl import UserError, display_path
from hymtl.inference import LoadedModel, load_trained_model, parse_key_values

log = logging.getLogger("hymtl.export")
USAGE = "python -m hymtl.export ckpt=RUN_DIR/best.pt [format=torchscript] [out=FILE]"
METADATA = "hymtl.json"  # the name of the metadata inside a TorchScript archive
FORMATS = ("torchscript",)


@contextlib.contextmanager
def torchscript_without_deprecation_warning():
    """Recent torch marks TorchScript deprecated in favour of torch.export; TorchScript is still
    what C++ libtorch and TorchServe load, so it stays the format, without the warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*", category=FutureWarning)
        yield


def export_metadata(loaded: LoadedModel, checkpoint: str) -> dict:
    data = loaded.config["data"]
    return {
        "format": "torchscript",
        "classes": loaded.classes,
        "preprocessing": {
            "resize": data["resize_size"],
            "center_crop": data["image_size"],
            "mean": data["mean"],
            "std": data["std"],
            "input": "RGB float tensor N x 3 x H x W in [0, 1], then normalized by mean/std",
        },
        "min_colors": loaded.min_colors,
        "model": loaded.config["model"]["name"],
        "source_checkpoint": display_path(checkpoint),
        "output": "logits, one column per class in `classes` order",
    }


def export_torchscript(loaded: LoadedModel, checkpoint: str, out: Path) -> dict:
    """Trace the model in fp32 on the CPU (the exported file runs anywhere TorchScript does)."""
    model = loaded.model.float().to("cpu").eval()
    model = model.to(memory_format=torch.contiguous_format)
    size = loaded.config["data"]["image_size"]
    metadata = export_metadata(loaded, checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), torchscript_without_deprecation_warning():
        traced = torch.jit.trace(model, torch.zeros(1, 3, size, size))
        torch.jit.save(traced, str(out), _extra_files={METADATA: json.dumps(metadata)})
    out.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def read_exported(path: Path) -> tuple[torch.jit.ScriptModule, dict] | None:
    """(model, metadata) of a file hymtl exported, or None for any other file."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        if not any(name.endswith(f"extra/{METADATA}") for name in archive.namelist()):
            return None
    extra = {METADATA: ""}
    with torchscript_without_deprecation_warning():
        model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return model, json.loads(extra[METADATA])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = parse_key_values(
            sys.argv[1:] if argv is None else argv, ("ckpt",), ("format", "out"), USAGE
        )
        kind = args.get("format", "torchscript")
        if kind not in FORMATS:
            raise UserError(f"format={kind} is not supported; choose one of {', '.join(FORMATS)}")
        loaded = load_trained_model(args["ckpt"], "cpu")
        default = Path(args["ckpt"]).expanduser().parent / "export" / "model.torchscript.pt"
        out = Path(args.get("out") or default)
        export_torchscript(loaded, args["ckpt"], out)
    except UserError as error:
        print(f"hymtl-export: error: {error}", file=sys.stderr)
        return 2
    print(f"{display_path(out)} (metadata: {display_path(out.with_suffix('.json'))})")
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
