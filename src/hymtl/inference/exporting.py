"""Writing a trained model as a TorchScript or ONNX file that carries what using it needs:
the class names and the preprocessing (hymtl.inference.exported reads them back)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import torch

from hymtl.errors import display_path
from hymtl.inference.exported import (
    METADATA,
    require_onnx,
    torchscript_without_deprecation_warning,
)
from hymtl.inference.loading import LoadedModel

# What hymtl.data's open_rgb and eval_transform do to a file before the model sees it.
PREPROCESSING_STEPS = (
    "decode the file, apply its EXIF orientation, convert to 8-bit RGB (16-bit and float grey "
    "rescaled to 0..255, palette with transparency via RGBA); resize so the shorter side is "
    "`resize` pixels, keeping the aspect ratio (bilinear, antialiased: torchvision Resize on a "
    "PIL image); center crop `center_crop` x `center_crop`; scale to float [0, 1] (divide by "
    "255), channels first; normalize each channel: (x - mean) / std"
)


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
    """The model into the file `out` (only that file: the command writes the JSON beside it)."""
    model, size = portable_model(loaded)
    metadata = export_metadata(loaded, checkpoint, "torchscript")
    buffer = io.BytesIO()  # torch.jit.save aborts the process on a full disk; Python raises
    with torch.no_grad(), torchscript_without_deprecation_warning():
        traced = torch.jit.trace(model, torch.zeros(1, 3, size, size))
        torch.jit.save(traced, buffer, _extra_files={METADATA: json.dumps(metadata)})
    Path(out).write_bytes(buffer.getbuffer())
    return metadata


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
    self-contained file, any batch size (only that file: the command writes the JSON beside
    it)."""
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


EXPORTERS = {"torchscript": export_torchscript, "onnx": export_onnx}
