import logging

import numpy as np
import pytest
from PIL import Image

from hymtl import UserError
from hymtl.data import load_data

from .conftest import write_class_images


def test_train_val_layout(image_root):
    splits = load_data("imagefolder", str(image_root), image_size=32, resize_size=36)
    assert splits.classes == ["ants", "bees"]
    assert (len(splits.train), len(splits.val)) == (24, 12)
    image, target = splits.val[0]
    assert tuple(image.shape) == (3, 32, 32) and target == 0
    assert splits.skipped == []


def test_unusable_files_are_skipped_with_one_warning(image_root, caplog):
    ants = image_root / "train" / "ants"
    (ants / "notes.jpg").write_text("this is text, not a JPEG")
    (ants / "empty.jpg").write_bytes(b"")
    Image.new("P", (60, 60), color=3).save(ants / "placeholder.gif")  # one colour: not a photo
    rgba = np.random.default_rng(0).integers(0, 255, (30, 30, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(ants / "rgba.png")  # readable: used, converted to RGB
    with caplog.at_level(logging.WARNING, logger="hymtl.data"):
        splits = load_data("imagefolder", str(image_root), image_size=32, resize_size=36)
    skipped = {path.rsplit("/", 1)[-1]: reason for path, reason in splits.skipped}
    assert set(skipped) == {"notes.jpg", "empty.jpg", "placeholder.gif"}
    assert "cannot be decoded" in skipped["notes.jpg"]
    assert "placeholder" in skipped["placeholder.gif"]
    assert len(splits.train) == 25  # 24 generated + the RGBA png
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "notes.jpg" in warnings[0].getMessage()
    assert all(splits.train[i][0].shape[0] == 3 for i in range(len(splits.train)))


def test_single_folder_is_split_by_val_fraction(tmp_path):
    write_class_images(tmp_path, per_class=10)
    first = load_data("imagefolder", str(tmp_path), val_fraction=0.3, seed=7)
    again = load_data("imagefolder", str(tmp_path), val_fraction=0.3, seed=7)
    other = load_data("imagefolder", str(tmp_path), val_fraction=0.3, seed=8)
    assert (len(first.train), len(first.val)) == (14, 6)
    assert sorted(first.val.targets) == [0, 0, 0, 1, 1, 1]  # stratified
    assert first.val.samples == again.val.samples
    assert first.val.samples != other.val.samples
    assert not {p for p, _ in first.train.samples} & {p for p, _ in first.val.samples}


def test_class_mismatch_is_a_clear_error(image_root):
    write_class_images(image_root / "val", classes=("wasps",), per_class=2)
    with pytest.raises(UserError, match=r"class folders differ: train/ has \['ants', 'bees'\]"):
        load_data("imagefolder", str(image_root))


def test_missing_root_names_the_override(tmp_path):
    with pytest.raises(UserError, match="data.root=.* does not exist.*download_data.py"):
        load_data("hymenoptera", str(tmp_path / "nowhere"))


def test_missing_val_folder(image_root):
    import shutil

    shutil.rmtree(image_root / "val")
    with pytest.raises(UserError, match="has train/ but no val/"):
        load_data("imagefolder", str(image_root))


def test_class_without_usable_images(image_root):
    for path in (image_root / "val" / "bees").iterdir():
        path.write_text("broken")
    with pytest.raises(UserError, match=r"\['bees'\] contain no usable image"):
        load_data("imagefolder", str(image_root))


def test_decoded_cache_gives_the_same_tensors(image_root):
    cached = load_data("imagefolder", str(image_root), image_size=32, resize_size=36)
    plain = load_data(
        "imagefolder", str(image_root), image_size=32, resize_size=36, cache_images=False
    )
    assert len(cached.train.cache.images) == 36 and plain.train.cache is None
    for index in range(len(cached.val)):
        assert (cached.val[index][0] == plain.val[index][0]).all()


def test_cache_respects_its_size_cap(image_root):
    one_image_mb = 40 * 40 * 4 / 2**20
    capped = load_data("imagefolder", str(image_root), cache_max_mb=3.5 * one_image_mb)
    assert len(capped.train.cache.images) == 3
    assert len(capped.train) == 24  # uncached images still load from disk
    assert capped.train[23][0].shape[0] == 3
