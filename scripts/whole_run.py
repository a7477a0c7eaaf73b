"""A whole short run, start-up and artifacts included: the PyTorch transfer-learning tutorial's
script against `python -m hymtl.train`, each as its own process, in alternating pairs.

    python scripts/whole_run.py --data ../shared/data/hymenoptera_data --epochs 3 --pairs 3

The tutorial side is the tutorial's train_model as users copy it (ImageFolder, PIL transforms,
batch 4, SGD 0.001/0.9, StepLR(7, 0.1), a deep copy of the best weights), ResNet-18 from random
weights on both sides (nothing is downloaded), with --tutorial-workers DataLoader workers (the
tutorial's 4 by default; 0 is faster on 2 cores, docs/performance.md). hymtl runs its defaults
and writes its whole run dir. The last line is `whole_run_ratio=<median tutorial seconds /
median hymtl seconds>`; the line before it, `outside_epochs_s=`, is the median of hymtl's
wall time less its epochs' (train and val, metrics.csv `seconds`): start-up, data scan,
checkpoint writes, final artifacts and exit.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TUTORIAL = r"""
import copy, sys, time
import torch
from torch import nn
from torchvision import datasets, models, transforms

data, epochs, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
data_transforms = {
    "train": transforms.Compose([transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]),
    "val": transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
        transforms.ToTensor(), normalize]),
}
image_datasets = {x: datasets.ImageFolder(f"{data}/{x}", data_transforms[x])
    for x in ["train", "val"]}
loaders = {x: torch.utils.data.DataLoader(image_datasets[x], batch_size=4, shuffle=True,
    num_workers=workers) for x in ["train", "val"]}
model = models.resnet18(weights=None)
model.fc = nn.Linear(model.fc.in_features, 2)
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
best_wts, best_acc = copy.deepcopy(model.state_dict()), 0.0
for epoch in range(epochs):
    for phase in ["train", "val"]:
        model.train() if phase == "train" else model.eval()
        running_loss, running_corrects = 0.0, 0
        for inputs, labels in loaders[phase]:
            optimizer.zero_grad()
            with torch.set_grad_enabled(phase == "train"):
                outputs = model(inputs)
                _, preds = torch.max(outputs, 1)
                loss = criterion(outputs, labels)
                if phase == "train":
                    loss.backward()
                    optimizer.step()
            running_loss += loss.item() * inputs.size(0)
            running_corrects += torch.sum(preds == labels.data)
        if phase == "train":
            scheduler.step()
        acc = running_corrects.double() / len(image_datasets[phase])
        size = len(image_datasets[phase])
        print(f"epoch {epoch} {phase} loss {running_loss / size:.4f} acc {acc:.4f}")
        if phase == "val" and acc > best_acc:
            best_acc, best_wts = acc, copy.deepcopy(model.state_dict())
model.load_state_dict(best_wts)
print(f"best val acc {best_acc:.4f}")
"""


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"whole_run: {command[:3]} failed:\n{result.stderr[-2000:]}")
    return seconds


def epoch_seconds(metrics_csv: Path) -> float:
    """The time hymtl's epochs took (train and val, as metrics.csv records them)."""
    with open(metrics_csv) as handle:
        return sum(float(row["seconds"]) for row in csv.DictReader(handle))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/hymenoptera_data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--tutorial-workers", type=int, default=4)
    args = parser.parse_args()
    data = Path(args.data).resolve()
    work = Path(tempfile.mkdtemp(prefix="hymtl-whole-run-"))
    tutorial = [sys.executable, "-c", TUTORIAL, str(data), str(args.epochs)]
    tutorial.append(str(args.tutorial_workers))
    seconds: dict[str, list[float]] = {"tutorial": [], "hymtl": []}
    outside: list[float] = []  # hymtl's wall time minus its epochs' (metrics.csv `seconds`)
    for pair in range(args.pairs):
        run_dir = work / f"run{pair}"
        hymtl = [sys.executable, "-m", "hymtl.train", f"data.root={data}", f"epochs={args.epochs}"]
        hymtl += ["model.pretrained=false", f"hydra.run.dir={run_dir}"]
        order = [("tutorial", tutorial), ("hymtl", hymtl)]
        for name, command in order if pair % 2 == 0 else order[::-1]:
            seconds[name].append(timed(command, work))
            line = f"pair {pair + 1}: {name} {seconds[name][-1]:.1f} s"
            if name == "hymtl":
                outside.append(seconds[name][-1] - epoch_seconds(run_dir / "metrics.csv"))
                line += f", {outside[-1]:.1f} s of it outside the epochs"
            print(line, flush=True)
    tutorial_s, hymtl_s = (statistics.median(seconds[name]) for name in ("tutorial", "hymtl"))
    print(
        f"{args.epochs} epochs, ResNet-18, tutorial with {args.tutorial_workers} workers: "
        f"median {tutorial_s:.1f} s against hymtl {hymtl_s:.1f} s"
    )
    print(f"outside_epochs_s={statistics.median(outside):.2f}")
    print(f"whole_run_ratio={tutorial_s / hymtl_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
