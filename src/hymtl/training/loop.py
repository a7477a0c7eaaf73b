"""One epoch of training and one pass of evaluation, shared by hymtl.train and hymtl.evaluate."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from hymtl import UserError
from hymtl.training.runtime import to_device


class NonFiniteLoss(UserError):
    pass


def train_one_epoch(
    model,
    loader,
    *,
    criterion,
    regularizer,
    optimizer,
    scaler,
    device,
    autocast,
    channels_last,
    desc="",
    progress=True,
):
    """One pass over `loader`. The sums stay on the device until the epoch ends: no step waits
    for the GPU. A non-finite loss is found then, and the epoch's weights are not saved."""
    model.train()
    sums = torch.zeros(3, device=device)  # data loss, penalty, correct images
    seen = 0
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=None if progress else True):
        images = to_device(images, device, channels_last)
        targets = targets.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        data_loss = criterion(logits.float(), targets)
        penalty = regularizer.penalty()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(data_loss + penalty).backward()
        scaler.step(optimizer)
        scaler.update()
        batch = targets.size(0)
        correct = (logits.argmax(1) == targets).sum()
        sums += torch.stack([data_loss.detach() * batch, penalty.detach() * batch, correct.float()])
        seen += batch
    data_loss_sum, penalty_sum, correct = sums.tolist()
    if not math.isfinite(data_loss_sum + penalty_sum):
        raise NonFiniteLoss(
            f"loss became {data_loss_sum / max(seen, 1)} (penalty {penalty_sum / max(seen, 1)})"
        )
    return {
        "loss_sum": data_loss_sum,
        "penalty_sum": penalty_sum,
        "correct": int(correct),
        "seen": seen,
    }


@torch.inference_mode()
def evaluate(model, loader, *, criterion, device, autocast, channels_last, desc="", progress=True):
    """Loss, accuracy and every prediction over `loader`, read from the device once at the end."""
    model.eval()
    logits_all, targets_all = [], []
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=None if progress else True):
        images = to_device(images, device, channels_last)
        with autocast():
            logits_all.append(model(images).float())
        targets_all.append(targets.to(device, non_blocking=True))
    if not logits_all:  # under torchrun a rank's val shard can be empty
        return {
            "loss": 0.0,
            "acc": 0.0,
            "targets": [],
            "preds": [],
            "probs": [],
            "probabilities": [],
        }
    logits, targets = torch.cat(logits_all), torch.cat(targets_all)
    # Summed per batch as before, so the loss is the mean of the per-batch means weighted by size.
    loss_sum = sum(
        criterion(part, target) * len(target) for part, target in zip(logits_all, targets_all)
    )
    softmax = logits.softmax(1)
    probs, preds = softmax.max(1)
    n = len(targets)
    return {
        "loss": float(loss_sum) / n,
        "acc": int((preds == targets).sum()) / n,
        "targets": targets.tolist(),
        "preds": preds.tolist(),
        "probs": probs.tolist(),
        "probabilities": softmax.tolist(),  # every class's, for calibration (Brier, NLL)
    }
