"""Reading the files `hymtl export` writes: a TorchScript archive or an ONNX model, each with
hymtl's metadata (classes, preprocessing) inside it and in a JSON file beside it.

A file that is meant to be an export and cannot be read (truncated, overwritten, a damaged
archive member) is one line naming it and how to make it again, never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import torch

from hymtl.errors import UserError, display_path, one_line

# The name of the metadata inside a TorchScript archive and among an ONNX model's metadata_props.
METADATA = "hymtl.json"
ONNX_EXTRA = "pip install 'hymtl[onnx]' (onnx, onnxruntime, onnxscript)"
# Names a TorchScript export goes by: hymtl's default (model.torchscript.pt), and the suffixes
# people give TorchScript files. Such a file that reads as nothing is a damaged export.
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript", ".ptc")
TORCHSCRIPT_MARK = ".torchscript."
# What predict and evaluate read from the metadata (export_metadata writes them all).
REQUIRED_METADATA = ("format", "classes", "preprocessing", "min_colors", "model")
REQUIRED_PREPROCESSING = ("resize", "center_crop", "mean", "std")
MAX_JSON_BYTES = 1 << 20  # the JSON beside an export is about 1 KiB


@contextlib.contextmanager
def torchscript_without_deprecation_warning():
    """Recent torch marks TorchScript deprecated in favour of torch.export; TorchScript is still
    what C++ libtorch and TorchServe load, so it stays the format, without the warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*", category=FutureWarning)
        yield


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


class OnnxModel:
    """An exported ONNX model run by onnxruntime on the CPU, called like the torch model:
    a batch of images in, a tensor of logits out."""

    def __init__(self, path: Path):
        import onnxruntime  # the optional [onnx] extra: require_onnx has checked it is there

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
    try:
        return model, check_metadata(json.loads(metadata))
    except ValueError as error:  # json's JSONDecodeError is a ValueError too
        raise UserError(
            f"ckpt={display_path(path)}: its hymtl metadata cannot be read ({one_line(error)}); "
            "export it again with hymtl export format=onnx"
        ) from None


def metadata_beside(path: Path) -> dict | None:
    """The metadata `hymtl export` wrote beside a TorchScript file (PATH with .json), or None
    where there is none: no such regular file, not JSON, or not a TorchScript export's."""
    beside = path.with_suffix(".json")
    try:
        if not beside.is_file() or beside.stat().st_size > MAX_JSON_BYTES:
            return None
        found = json.loads(beside.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(found, dict) and found.get("format") == "torchscript" and "classes" in found:
        return found
    return None


def named_like_export(path: Path) -> bool:
    """Whether `path` is meant to be a TorchScript export: its name says so, or the JSON
    `hymtl export` writes is beside it."""
    name = path.name.lower()
    if path.suffix.lower() in TORCHSCRIPT_SUFFIXES or TORCHSCRIPT_MARK in name:
        return True
    return metadata_beside(path) is not None


def damaged_export(path: Path, reason: str) -> UserError:
    """The one line for a TorchScript export that cannot be read: what is wrong, and the
    command that writes it again (from the checkpoint the JSON beside it names, if any)."""
    source = (metadata_beside(path) or {}).get("source_checkpoint")
    source = source if isinstance(source, str) and source else "RUN_DIR/best.pt"
    where = display_path(path)
    return UserError(
        f"ckpt={where} is a damaged TorchScript export ({reason}); export it again: "
        f"hymtl export ckpt={source} out={where} overwrite=true"
    )


def archive_members(path: Path) -> list[str] | None:
    """The member names of the zip archive at `path`, or None for a file that is not one (a
    TorchScript file and a PyTorch checkpoint are both zip archives)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def check_metadata(metadata: object) -> dict:
    """The metadata as a dict holding what predict reads (ValueError otherwise)."""
    if not isinstance(metadata, dict):
        raise ValueError(f"{METADATA} holds a {type(metadata).__name__}, not an object")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    prep = metadata.get("preprocessing")
    if isinstance(prep, dict):
        missing += [f"preprocessing.{key}" for key in REQUIRED_PREPROCESSING if key not in prep]
    elif "preprocessing" not in missing:
        missing.append("preprocessing (an object)")
    classes = metadata.get("classes")
    if missing or not isinstance(classes, list) or len(classes) < 2:
        raise ValueError(f"{METADATA} lacks {', '.join(missing) or 'a list of classes'}")
    return metadata


def read_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, dict]:
    """(model, metadata) of a TorchScript archive holding hymtl's metadata; a damaged one is
    one line (damaged_export): a member whose checksum fails, code or metadata that torch or
    JSON cannot read."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # CRC-32 of every member: catches flipped weight bytes too
        if bad is not None:
            raise damaged_export(path, f"{bad} fails its checksum")
        extra = {METADATA: ""}
        with torchscript_without_deprecation_warning():
            model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        metadata = check_metadata(json.loads(extra[METADATA]))
    except UserError:
        raise
    except Exception as error:  # zipfile, torch.jit and json raise many types for a bad file
        raise damaged_export(path, one_line(error)) from None
    return model, metadata


def read_exported(path: Path) -> tuple[torch.jit.ScriptModule | OnnxModel, dict] | None:
    """(model, metadata) of a file hymtl exported, or None for any other file. ONNX files are
    known by their `.onnx` suffix (a protobuf has no signature to recognize it by), TorchScript
    files by the metadata in their archive. A TorchScript archive without it is refused."""
    if path.suffix == ".onnx":
        return read_onnx(path)
    members = archive_members(path)
    if members is None:
        return None
    if any(name.endswith(f"extra/{METADATA}") for name in members):
        return read_torchscript(path)
    if any(name.endswith("/constants.pkl") for name in members):  # TorchScript, not hymtl's
        raise UserError(
            f"ckpt={display_path(path)} is a TorchScript file without hymtl metadata (classes, "
            "preprocessing); export the run's checkpoint with hymtl export ckpt=RUN_DIR/best.pt"
        )
    return None


def unreadable_export(path: Path) -> UserError | None:
    """For a file torch.load could not read either: the damaged-export line when it is meant
    to be a TorchScript export (named_like_export) and is not even a zip archive (truncated,
    random bytes), else None (the caller's own line)."""
    if archive_members(path) is not None or not named_like_export(path):
        return None
    size = os.stat(path).st_size
    return damaged_export(path, f"not a complete archive, {size} bytes: truncated or overwritten")
