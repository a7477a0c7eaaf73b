"""`hymtl COMMAND ...` and `python -m hymtl COMMAND ...`: one entry point for every command.

Each command keeps its own arguments (train, predict, evaluate, export: Hydra overrides, -m
sweeps, --help; report: SWEEP_DIR... [--out DIR]) and is the same as `python -m hymtl.COMMAND`.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("hymtl.train", "fine-tune a model; Hydra overrides, -m for sweeps"),
    "report": ("hymtl.report", "compare the runs of sweeps: report.md, report.csv, plots"),
    "predict": ("hymtl.predict", "classify new images with a run's checkpoint"),
    "evaluate": ("hymtl.evaluate", "a run's metrics again, on any split"),
    "export": ("hymtl.export", "the model as TorchScript or ONNX, with classes and preprocessing"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hymtl COMMAND [ARGS...]   (hymtl COMMAND --help for its arguments)", ""]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(usage(), file=sys.stderr)
        sys.exit(2)
    if argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"hymtl: error: unknown command {command!r}\n{usage()}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[command][0])
    # Each command reads sys.argv as if it had been run on its own (Hydra does too).
    sys.argv = [f"hymtl {command}", *rest]
    module.cli()


if __name__ == "__main__":
    main()
