"""Which images train, which choose the epoch, which are the test set (conf/evaluation/).

    reference  train = train/            select = val/ (also what is reported)      no test set
    holdout    train, select = a stratified split of train/ by select_fraction   test = val/
    kfold      all usable images pooled; test = fold `fold` of `folds` (stratified);
               train, select = a stratified split of the other folds by select_fraction

For one folder of class folders (no train/ and val/), `holdout` first splits the folder by
data.val_fraction into (train/, val/) as the reference does, but with split_seed.

Every split here depends only on the images (their paths, sorted) and `split_seed`, never on
the training seed or the regularizer: runs that differ only in those see the same folds, so
they compare pair by pair.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from hymtl import UserError, display_path

Samples = list[tuple[str, int]]

ROLES = ("train", "select", "test")


@dataclass
class Partition:
    train: Samples
    select: Samples  # chooses the epoch (and early stopping); the loop calls it "val"
    test: Samples | None  # None for the reference protocol: nothing is held out


def stratified_split(samples: Samples, fraction: float, seed: int, what: str) -> tuple:
    """(rest, held) with `fraction` of the samples held, the classes in proportion."""
    try:
        from sklearn.model_selection import train_test_split  # only a split imports sklearn

        return train_test_split(
            samples,
            test_size=fraction,
            random_state=seed,
            stratify=[target for _, target in samples],
        )
    except ValueError as error:
        raise UserError(f"cannot split {len(samples)} images {what}: {error}") from None


def kfold_split(samples: Samples, folds: int, fold: int, seed: int) -> tuple[Samples, Samples]:
    """(the other folds, fold `fold`) of a stratified, seeded k-fold split."""
    counts: dict[int, int] = {}
    for _, target in samples:
        counts[target] = counts.get(target, 0) + 1
    if min(counts.values()) < folds:
        raise UserError(
            f"evaluation.folds={folds} needs at least {folds} usable images in every class "
            f"(the smallest class has {min(counts.values())}); lower evaluation.folds="
        )
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    targets = [target for _, target in samples]
    rest_index, test_index = list(splitter.split(samples, targets))[fold]
    return [samples[i] for i in rest_index], [samples[i] for i in test_index]


def partition(train: Samples, val: Samples, evaluation: dict | None) -> Partition:
    """Split the usable images as the protocol says (module docstring). `train`/`val` are the
    train/ and val/ folders' images (for one folder: its reference split)."""
    protocol = (evaluation or {}).get("protocol", "reference")
    if protocol == "reference":
        return Partition(train, val, None)
    fraction, seed = evaluation["select_fraction"], evaluation["split_seed"]
    if protocol == "holdout":
        fit, test = train, val
    else:
        # Sorted by path, so the folds depend on which images there are, not on scan order.
        pooled = sorted(train + val)
        fit, test = kfold_split(pooled, evaluation["folds"], evaluation["fold"], seed)
    fit_part, select = stratified_split(
        sorted(fit), fraction, seed, f"for evaluation.select_fraction={fraction}"
    )
    return Partition(fit_part, select, test)


def relative_path(path: str, root: str) -> str:
    """An image's path as split.csv and the hashes write it: relative to data.root, text."""
    return display_path(os.path.relpath(path, root))


def samples_sha256(samples: Samples, root: str) -> str:
    """SHA-256 over the sorted (relative path, class index) pairs: the same images with the
    same labels give the same hash on any machine, whatever folder data.root is."""
    digest = hashlib.sha256()
    for line in sorted(f"{relative_path(path, root)}\0{target}\n" for path, target in samples):
        digest.update(line.encode())
    return digest.hexdigest()


def split_rows(splits) -> list[tuple[str, str, str]]:
    """(path, label, role) for every image the run uses: split.csv's rows."""
    roles = [("train", splits.train), ("select", splits.val), ("test", splits.test)]
    return [
        (relative_path(path, splits.root), splits.classes[target], role)
        for role, dataset in roles
        if dataset is not None
        for path, target in dataset.samples
    ]


def evaluation_block(evaluation: dict, splits) -> dict:
    """summary.json's `evaluation`: the protocol, its keys, the split sizes and the hashes that
    tell whether two runs were tested on the same images (hymtl report never pools others)."""
    protocol = evaluation["protocol"]
    test = splits.test.samples
    pool = splits.train.samples + splits.val.samples + test
    return {
        "protocol": protocol,
        "fold": evaluation["fold"] if protocol == "kfold" else None,
        "folds": evaluation["folds"] if protocol == "kfold" else None,
        "split_seed": evaluation["split_seed"],
        "select_fraction": evaluation["select_fraction"],
        "n_train": len(splits.train),
        "n_select": len(splits.val),
        "n_test": len(test),
        "test_sha256": samples_sha256(test, splits.root),
        "pool_sha256": samples_sha256(pool, splits.root),
        "selection": "the epoch is chosen on the select images (split.csv role=select); `test` "
        "holds the selected weights on the test images, evaluated once",
    }
