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
    model.train()
    data_loss_sum = penalty_sum = 0.0
    correct = seen = 0
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=None if progress else True):
        images = to_device(images, device, channels_last)
        targets = targets.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        data_loss = criterion(logits.float(), targets)
        penalty = regularizer.penalty()
        data_loss_value, penalty_value = data_loss.item(), penalty.item()
        if not math.isfinite(data_loss_value + penalty_value):
            # Stop before the step: the weights (and last.pt) stay as they were.
            raise NonFiniteLoss(f"loss became {data_loss_value} (penalty {penalty_value})")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(data_loss + penalty).backward()
        scaler.step(optimizer)
        scaler.update()
        batch = targets.size(0)
        data_loss_sum += data_loss_value * batch
        penalty_sum += penalty_value * batch
        correct += (logits.argmax(1) == targets).sum().item()
        seen += batch
    return {"loss_sum": data_loss_sum, "penalty_sum": penalty_sum, "correct": correct, "seen": seen}


@torch.inference_mode()
def evaluate(model, loader, *, criterion, device, autocast, channels_last, desc="", progress=True):
    model.eval()
    loss_sum = 0.0
    targets_all, preds_all, probs_all, probabilities = [], [], [], []
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=None if progress else True):
        images = to_device(images, device, channels_last)
        targets = targets.to(device, non_blocking=True)
        with autocast():
            logits = model(images).float()
        loss_sum += criterion(logits, targets).item() * targets.size(0)
        softmax = logits.softmax(1)
        probs, preds = softmax.max(1)
        targets_all += targets.tolist()
        preds_all += preds.tolist()
        probs_all += probs.tolist()
        probabilities += softmax.tolist()  # every class's, for calibration (Brier, NLL)
    n = len(targets_all)
    correct = sum(t == p for t, p in zip(targets_all, preds_all))
    return {  # max(n, 1): under torchrun a rank's val shard can be empty
        "loss": loss_sum / max(n, 1),
        "acc": correct / max(n, 1),
        "targets": targets_all,
        "preds": preds_all,
        "probs": probs_all,
        "probabilities": probabilities,
    }
