"""The `hymtl` command table: each command's module and its one-line summary (`hymtl --help`,
the `--help` header of predict, evaluate and export). hymtl.__main__ dispatches on it."""

from __future__ import annotations

COMMANDS = {
    "train": ("hymtl.train", "fine-tune a model; Hydra overrides, -m for sweeps"),
    "report": ("hymtl.report", "compare the runs of sweeps: report.md, report.csv, plots"),
    "predict": ("hymtl.predict", "classify new images with a run's checkpoint"),
    "evaluate": ("hymtl.evaluate", "a run's metrics again, on any split"),
    "export": ("hymtl.export", "the model as TorchScript or ONNX, with classes and preprocessing"),
}

# The commands that are Hydra apps: tab completion offers their config keys.
HYDRA_COMMANDS = ("train", "predict", "evaluate", "export")
