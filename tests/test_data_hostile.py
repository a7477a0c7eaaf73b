"""Image folders as people really have them: symlinks (loops included), Jupyter's hidden
checkpoint folders, and file names that are not UTF-8. Each image counts once, no phantom class,
and every name reaches CSVs and log lines as readable UTF-8."""

import csv
import logging
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from hymtl import UserError
from hymtl.data import display_path, load_data, walk_files
from hymtl.run.artifacts import write_val_predictions

from .conftest import write_class_images

NOT_UTF8 = b"bad\xff.jpg"  # a byte that never occurs in UTF-8; Linux allows it in names


def load(root):
    return load_data("imagefolder", str(root), image_size=32, resize_size=36)


def copy_to_bytes_name(source: Path, folder: Path | bytes, name: bytes) -> str:
    """Copy `source` to folder/name (raw bytes) and return the path as Python lists it."""
    target = os.path.join(os.fsencode(folder), name)
    shutil.copyfile(source, target)
    return os.fsdecode(target)


def test_display_path_escapes_only_bytes_that_are_not_utf8():
    assert display_path(os.fsdecode(b"/d/" + NOT_UTF8)) == "/d/bad\\xff.jpg"
    assert display_path("/d/fourmi_été.jpg") == "/d/fourmi_été.jpg"
    assert display_path(Path("/d/back\\slash.jpg")) == "/d/back\\slash.jpg"


def test_symlink_loop_in_a_class_folder_is_not_expanded(image_root):
    (image_root / "train" / "ants" / "loop").symlink_to(".")  # ln -s . train/ants/loop
    splits = load(image_root)
    assert (len(splits.train), len(splits.val)) == (24, 12)
    assert splits.skipped == []


def test_link_up_to_the_split_folder_adds_nothing(image_root):
    (image_root / "train" / "ants" / "up").symlink_to("..")  # would reach train/bees again
    splits = load(image_root)
    assert len(splits.train) == 24
    assert splits.train.targets.count(0) == 12 and splits.train.targets.count(1) == 12


def test_link_into_another_class_adds_nothing(image_root):
    (image_root / "train" / "bees" / "extra").symlink_to(image_root / "train" / "ants")
    splits = load(image_root)
    assert splits.train.targets.count(0) == 12 and splits.train.targets.count(1) == 12


def test_linked_folder_outside_is_followed_once(image_root, tmp_path):
    write_class_images(tmp_path / "more", classes=("ants",), per_class=3, seed=5)
    outside = tmp_path / "more" / "ants"
    (image_root / "train" / "ants" / "more").symlink_to(outside)
    (image_root / "train" / "ants" / "same_again").symlink_to(outside)
    splits = load(image_root)
    assert len(splits.train) == 27  # 24 + 3, not 24 + 6
    linked = sorted(os.path.basename(p) for p, _ in splits.train.samples if "/more/" in p)
    assert linked == ["ants_0.jpg", "ants_1.jpg", "ants_2.jpg"]


def test_linked_file_outside_counts_once(image_root, tmp_path):
    write_class_images(tmp_path / "elsewhere", classes=("ants",), per_class=1, seed=5)
    (image_root / "train" / "ants" / "linked.jpg").symlink_to(
        tmp_path / "elsewhere" / "ants" / "ants_0.jpg"
    )
    assert len(load(image_root).train) == 25


def test_class_folder_linked_to_another_class_is_refused(image_root):
    for split in ("train", "val"):
        (image_root / split / "wasps").symlink_to(image_root / split / "ants")
    with pytest.raises(UserError, match="'ants' and 'wasps' .* are the same folder"):
        load(image_root)


def test_hidden_folders_are_neither_classes_nor_images(image_root):
    for split in ("train", "val"):
        hidden = image_root / split / ".ipynb_checkpoints"
        write_class_images(hidden, classes=("ants",), per_class=2, seed=9)
    in_class = image_root / "train" / "ants" / ".ipynb_checkpoints"
    shutil.copytree(image_root / "train" / "ants", in_class)  # Jupyter's copies of each image
    (image_root / "train" / "bees" / ".hidden.jpg").write_bytes(
        (image_root / "train" / "bees" / "bees_0.jpg").read_bytes()
    )
    splits = load(image_root)
    assert splits.classes == ["ants", "bees"]
    assert (len(splits.train), len(splits.val)) == (24, 12)
    assert not [p for p, _ in splits.train.samples if "/." in p]


def test_walk_files_lists_each_real_folder_once(tmp_path):
    for name in ("a.jpg", "sub/b.jpg", ".hidden/c.jpg", "sub/.d.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub" / "back").symlink_to("..")
    (tmp_path / "twin").symlink_to("sub")
    (tmp_path / "gone.jpg").symlink_to("missing.jpg")  # broken: listed, the image check names it
    files = [os.path.relpath(f, tmp_path) for f in walk_files(tmp_path)]
    assert files == ["a.jpg", "gone.jpg", "sub/b.jpg"]


def test_file_name_that_is_not_utf8_is_used_and_written_readably(image_root, tmp_path, caplog):
    ants = image_root / "val" / "ants"
    weird = copy_to_bytes_name(ants / "ants_0.jpg", ants, NOT_UTF8)
    broken = os.path.join(os.fsencode(image_root / "train" / "bees"), b"broken\xfe.jpg")
    with open(broken, "wb") as handle:
        handle.write(b"not an image")
    with caplog.at_level(logging.WARNING, logger="hymtl.data"):
        splits = load(image_root)
    assert (len(splits.train), len(splits.val)) == (24, 13)
    assert weird in [path for path, _ in splits.val.samples]
    assert splits.val[[p for p, _ in splits.val.samples].index(weird)][0].shape == (3, 32, 32)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "broken\\xfe.jpg: cannot be decoded" in warning
    warning.encode("utf-8")  # a UTF-8 log file or terminal can take it

    n = len(splits.val)
    result = {"targets": splits.val.targets, "preds": [0] * n, "probs": [0.5] * n}
    write_val_predictions(
        tmp_path / "val_predictions.csv", splits.val.samples, splits.classes, result
    )
    with open(tmp_path / "val_predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 13
    [row] = [row for row in rows if row["path"].endswith("bad\\xff.jpg")]
    assert row["path"] == display_path(weird)
    assert (row["true"], row["predicted"], row["correct"]) == ("ants", "ants", "1")


def test_class_folder_name_that_is_not_utf8_is_refused(image_root):
    for split in ("train", "val"):
        bad_class = os.path.join(os.fsencode(image_root / split), b"w\xe4sps")  # Latin-1 "wäsps"
        os.mkdir(bad_class)
        copy_to_bytes_name(image_root / split / "ants" / "ants_0.jpg", bad_class, b"w.jpg")
    with pytest.raises(UserError, match=r"name\(s\) w\\xe4sps in .* not valid UTF-8; rename"):
        load(image_root)


def test_placeholder_named_with_bad_bytes_is_named_in_the_warning(image_root, caplog):
    placeholder = os.path.join(os.fsencode(image_root / "train" / "ants"), b"\xff.gif")
    Image.new("P", (60, 60), color=1).save(os.fsdecode(placeholder), format="GIF")
    with caplog.at_level(logging.WARNING, logger="hymtl.data"):
        splits = load(image_root)
    assert [display_path(p) for p, _ in splits.skipped] == [
        display_path(image_root / "train" / "ants") + "/\\xff.gif"
    ]
    assert "\\xff.gif: fewer than 64 colours" in caplog.text
