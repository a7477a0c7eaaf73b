"""augment=reference|none|trivialaugment: what each does to a training image."""

import pytest
import torch

from hymtl.data import eval_transform, train_transform

from .conftest import TINY, compose_config

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture
def image(image_root):
    from hymtl.data import open_rgb

    return open_rgb(next((image_root / "train" / "ants").glob("*.jpg")))


def draws(transform, image, count=4):
    torch.manual_seed(0)
    return [transform(image) for _ in range(count)]


@pytest.mark.parametrize("augment", ["reference", "trivialaugment"])
def test_augmentations_draw_a_different_view_each_time(image, augment):
    views = draws(train_transform(32, MEAN, STD, augment, 36), image)
    assert all(view.shape == (3, 32, 32) and view.dtype == torch.float32 for view in views)
    assert not all(torch.equal(views[0], view) for view in views[1:])


def test_none_prepares_training_images_like_val_images(image):
    views = draws(train_transform(32, MEAN, STD, "none", 36), image)
    expected = eval_transform(36, 32, MEAN, STD)(image)
    assert all(torch.equal(view, expected) for view in views)


def test_the_augment_group_reaches_the_training_split(image_root):
    from hymtl.training.setup import build_parts, setup_runtime

    overrides = ["data=imagefolder", f"data.root={image_root}", "augment=none"]
    cfg = compose_config(TINY + overrides)
    parts = build_parts(cfg, setup_runtime(cfg))
    first, second = parts.splits.train[0][0], parts.splits.train[0][0]
    assert torch.equal(first, second)  # no randomness left in the training transform
