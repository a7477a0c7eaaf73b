"""Recompute a trained run's metrics on a split, from its checkpoint alone.

    python -m hymtl.evaluate ckpt=RUN_DIR/best.pt data.root=/path/to/images [split=val] [out=DIR]

Uses the run's own evaluation transform, precision and class names; the split's class folders
must match the checkpoint's classes. Prints accuracy and macro F1 and writes OUT/evaluation.json
(the same metrics as summary.json's best_model; OUT defaults to RUN_DIR/evaluate).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from torch import nn

from hymtl import UserError
from hymtl.artifacts import classification_metrics, write_json
from hymtl.data import ImageListDataset, list_class_files, make_loader, scan_usable
from hymtl.inference import load_trained_model, parse_key_values
from hymtl.loop import evaluate

log = logging.getLogger("hymtl.evaluate")
USAGE = "python -m hymtl.evaluate ckpt=RUN_DIR/best.pt data.root=/path [split=val] [out=DIR]"


def evaluate_checkpoint(checkpoint: str, root: str, split: str = "val", device: str = "auto"):
    loaded = load_trained_model(checkpoint, device)
    folder = Path(root).expanduser() / split
    if not folder.is_dir():
        folder = Path(root).expanduser()  # a plain folder of class folders
    classes, files = list_class_files(folder)
    if classes != loaded.classes:
        raise UserError(
            f"{folder} has classes {classes}, the checkpoint was trained on {loaded.classes}"
        )
    min_colors = loaded.config["data"].get("min_colors", 0)
    samples, skipped = scan_usable(files, classes, min_colors, split)
    if skipped:
        log.warning(
            "skipped %d unusable file(s): %s", len(skipped), "; ".join(p for p, _ in skipped)
        )
    if not samples:
        raise UserError(f"no usable image in {folder}")
    dataset = ImageListDataset(samples, classes, loaded.transform)
    loader = make_loader(dataset, 32, 0, False, 0, loaded.device.type == "cuda")
    result = evaluate(
        loaded.model, loader, nn.CrossEntropyLoss(), loaded.device, loaded.autocast,
        loaded.channels_last, f"evaluating {split}",
    )  # fmt: skip
    metrics = classification_metrics(result["targets"], result["preds"], classes)
    return {"checkpoint": str(checkpoint), "folder": str(folder), "loss": result["loss"], **metrics}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = parse_key_values(sys.argv[1:] if argv is None else argv, ("ckpt", "data"), USAGE)
        root = (args.get("data") or {}).get("root")
        if not root:
            raise UserError(f"missing data.root=; usage: {USAGE}")
        report = evaluate_checkpoint(args["ckpt"], root, args.get("split", "val"),
                                     args.get("device", "auto"))  # fmt: skip
    except UserError as error:
        print(f"hymtl-evaluate: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.get("out") or Path(args["ckpt"]).expanduser().parent / "evaluate")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "evaluation.json", report)
    print(
        f"{report['folder']}: {report['n']} images, accuracy {report['accuracy']:.4f}, "
        f"macro F1 {report['macro']['f1']:.4f} -> {out / 'evaluation.json'}"
    )
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
