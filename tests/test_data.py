import logging

import numpy as np
import pytest
from PIL import Image

from hymtl import UserError
from hymtl.data import load_data, open_rgb

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


def _photo(mode_size=(48, 32), seed=0):
    return np.random.default_rng(seed).integers(0, 255, (*mode_size[::-1], 3)).astype(np.uint8)


def _write_odd_file(folder, kind):
    """One unusual file per kind; returns its name."""
    rgb = Image.fromarray(_photo())
    if kind == "zero-byte":
        (folder / "zero.jpg").write_bytes(b"")
        return "zero.jpg"
    if kind == "truncated jpeg":
        rgb.save(folder / "full.tmp.jpg")
        data = (folder / "full.tmp.jpg").read_bytes()
        (folder / "full.tmp.jpg").unlink()
        (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
        return "truncated.jpg"
    if kind == "text named .jpg":
        (folder / "notes.jpg").write_text("not an image")
        return "notes.jpg"
    if kind == "gif placeholder":
        Image.new("P", (60, 60), color=1).save(folder / "imageNotFound.gif")
        return "imageNotFound.gif"
    if kind == "unreadable":
        (folder / "gone.jpg").symlink_to(folder / "does-not-exist.jpg")
        return "gone.jpg"
    if kind == "grayscale":
        rgb.convert("L").save(folder / "grey.png")
        return "grey.png"
    if kind == "cmyk":
        rgb.convert("CMYK").save(folder / "cmyk.jpg")
        return "cmyk.jpg"
    if kind == "rgba":
        rgb.convert("RGBA").save(folder / "rgba.png")
        return "rgba.png"
    if kind == "palette with transparency":
        palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=200)
        palette.info["transparency"] = 0
        palette.save(folder / "palette.png", transparency=0)
        return "palette.png"
    if kind == "16-bit":
        deep = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        Image.fromarray(deep).save(folder / "deep.png")  # mode I;16
        return "deep.png"
    raise ValueError(kind)


UNUSABLE = {
    "zero-byte": "cannot be decoded",
    "truncated jpeg": "cannot be decoded",
    "text named .jpg": "cannot be decoded",
    "gif placeholder": "placeholder",
    "unreadable": "cannot be decoded",
}
USABLE = ["grayscale", "cmyk", "rgba", "palette with transparency", "16-bit"]


@pytest.mark.parametrize("kind", list(UNUSABLE))
def test_unusable_file_is_skipped_and_named(image_root, kind, caplog):
    name = _write_odd_file(image_root / "train" / "ants", kind)
    with caplog.at_level(logging.WARNING, logger="hymtl.data"):
        splits = load_data("imagefolder", str(image_root), image_size=32, resize_size=36)
    reasons = {path.rsplit("/", 1)[-1]: reason for path, reason in splits.skipped}
    assert list(reasons) == [name] and UNUSABLE[kind] in reasons[name]
    assert len(splits.train) == 24
    assert name in caplog.text


@pytest.mark.parametrize("kind", USABLE)
def test_readable_unusual_image_is_used_as_rgb(image_root, kind):
    name = _write_odd_file(image_root / "train" / "ants", kind)
    splits = load_data("imagefolder", str(image_root), image_size=32, resize_size=36)
    assert splits.skipped == []
    index = [i for i, (path, _) in enumerate(splits.train.samples) if path.endswith(name)][0]
    assert splits.train[index][0].shape == (3, 32, 32)
    decoded = open_rgb(splits.train.samples[index][0])
    assert decoded.mode == "RGB" and decoded.size == (48, 32)
    if kind == "16-bit":  # rescaled to 8 bits, not clipped to white
        assert 20 < np.asarray(decoded).mean() < 235


def test_exif_rotation_is_applied(tmp_path):
    image = Image.fromarray(_photo((40, 20)))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert open_rgb(tmp_path / "rotated.jpg").size == (20, 40)


def test_decompression_bomb_guard(image_root, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 40x40 toy images now exceed it
    Image.fromarray(_photo((20, 20))).save(image_root / "train" / "ants" / "small.png")
    with pytest.raises(UserError, match="contain no usable image"):  # all but small.png refused
        load_data("imagefolder", str(image_root))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # 1600 px: warning range, still refused
    from hymtl.data import check_image

    reason, image = check_image(str(image_root / "train" / "ants" / "ants_0.jpg"), 64)
    assert image is None and "decompression-bomb guard" in reason


def test_single_class_is_a_clear_error(tmp_path):
    write_class_images(tmp_path, classes=("ants",), per_class=4)
    with pytest.raises(UserError, match="only the class"):
        load_data("imagefolder", str(tmp_path))


def test_empty_class_folder_is_a_clear_error(image_root):
    (image_root / "train" / "wasps").mkdir()
    (image_root / "val" / "wasps").mkdir()
    with pytest.raises(UserError, match=r"\['wasps'\] contain no usable image"):
        load_data("imagefolder", str(image_root))


def test_nothing_usable_at_all(tmp_path):
    for name in ("ants", "bees"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jpg").write_text("text")
    with pytest.raises(UserError, match="no usable image"):
        load_data("imagefolder", str(tmp_path))
