"""images_on_device: the batches held and augmented on the device are the DataLoader's batches
(same order, same crops and flips, resampled by torch instead of PIL), on the CPU here."""

import json

import pytest
import torch
from torchvision import transforms
from torchvision.transforms import v2

from hymtl import UserError
from hymtl.data import load_data, make_loader
from hymtl.data.on_device import DeviceEvalBatches, DeviceTrainBatches, center_resized
from hymtl.train import train

from .conftest import TINY, compose_config
from .test_reliability import assert_same_run

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def splits_of(root, size=32):
    return load_data("imagefolder", str(root), image_size=size, resize_size=size + 4)


def device_batches(splits, seed, drop_last=False, augment="reference"):
    return DeviceTrainBatches(
        splits.train,
        batch_size=4,
        seed=seed,
        device=torch.device("cpu"),
        channels_last=False,
        drop_last=drop_last,
        image_size=32,
        resize_size=36,
        mean=MEAN,
        std=STD,
        augment=augment,
    )


@pytest.mark.parametrize("drop_last", [False, True])
def test_device_batches_are_the_dataloaders_batches(image_root, drop_last):
    """Same seed: the same images in the same order with the same crop boxes and flips over two
    epochs; the pixels differ only by the resampling (PIL's against torch's antialiased
    bilinear), under 2 grey levels on average."""
    splits = splits_of(image_root)
    loader = make_loader(splits.train, 4, 0, True, 7, False, drop_last=drop_last)
    batches = device_batches(splits, seed=7, drop_last=drop_last)
    assert len(batches) == len(loader)
    torch.manual_seed(3)
    expected = [(images, targets) for _ in range(2) for images, targets in loader]
    torch.manual_seed(3)
    got = [(images, targets) for _ in range(2) for images, targets in batches]
    assert len(got) == len(expected) == 2 * len(loader)
    grey_level = 1 / (255 * min(STD))  # one grey level, in normalized units, at its largest
    for (images, targets), (want_images, want_targets) in zip(got, expected):
        assert torch.equal(targets, want_targets)
        assert images.shape == want_images.shape
        assert (images - want_images).abs().mean() < 2 * grey_level
    # Nothing forgives a wrong crop: shifted images differ by far more than that.
    shifted = (got[0][0] - expected[1][0]).abs().mean()
    assert shifted > 10 * grey_level


def test_crop_draws_follow_torchvisions_distribution(image_root):
    """The crop boxes come from torchvision's own get_params: over many draws the area share
    and aspect ratio stay in RandomResizedCrop's ranges and fill them (not one fixed crop)."""
    splits = splits_of(image_root)
    batches = device_batches(splits, seed=0)
    image = batches.images[0]
    torch.manual_seed(0)
    get_params = transforms.RandomResizedCrop.get_params
    boxes = torch.tensor(
        [get_params(image, batches.crop.scale, batches.crop.ratio) for _ in range(400)],
        dtype=torch.float32,
    )
    heights, widths = boxes[:, 2], boxes[:, 3]
    area = heights * widths / (image.shape[1] * image.shape[2])
    assert area.min() >= 0.08 - 0.02 and area.max() <= 1.0
    assert area.std() > 0.1  # spread over the scale range


def test_eval_batches_are_the_eval_transform_exactly(image_root):
    splits = splits_of(image_root)
    held = DeviceEvalBatches(
        splits.val, batch_size=4, device=torch.device("cpu"), channels_last=True
    )
    loader = make_loader(splits.val, 4, 0, False, 0, False)
    torch.manual_seed(3)
    want = list(loader)
    after_loader = torch.random.get_rng_state()
    torch.manual_seed(3)
    got = list(held)
    # The DataLoader's one draw from torch's generator too: the training crops read it next.
    assert torch.equal(torch.random.get_rng_state(), after_loader)
    for (images, targets), (want_images, want_targets) in zip(got, want, strict=True):
        assert torch.equal(images, want_images) and torch.equal(targets, want_targets)
        assert images.is_contiguous(memory_format=torch.channels_last)


def test_center_resized_matches_resize_then_center_crop():
    image = torch.randint(0, 256, (3, 50, 80), dtype=torch.uint8)
    want = v2.CenterCrop(32)(v2.Resize(36, antialias=True)(image)).float()
    got = center_resized(image, 36, 32)[0]
    assert got.shape == want.shape
    assert (got - want).abs().mean() < 1.0


@pytest.mark.slow
def test_a_run_on_device_learns_and_resumes_exactly(image_root, tmp_path, monkeypatch):
    """images_on_device=true on the CPU: above chance on separable toy classes, and an
    interrupted run resumed equals an unbroken one (the loader's generator is in last.pt)."""
    import hymtl.train

    overrides = TINY + [
        f"data.root={image_root}",
        "data=imagefolder",
        "epochs=8",  # BatchNorm's running statistics need ~40 steps (test_train.py)
        "deterministic=true",
        "optimizer.lr=0.01",
        "images_on_device=true",
    ]
    reference = tmp_path / "reference"
    summary = train(compose_config(overrides), reference)
    assert summary["best_val_acc"] >= 0.75
    real_evaluate, calls = hymtl.train.evaluate, []

    def evaluate_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    run_dir = tmp_path / "interrupted"
    monkeypatch.setattr(hymtl.train, "evaluate", evaluate_then_interrupt)
    with pytest.raises(hymtl.train.RunInterrupted):
        train(compose_config(overrides), run_dir)
    monkeypatch.setattr(hymtl.train, "evaluate", real_evaluate)
    train(compose_config([f"resume={run_dir}"]), None)
    assert_same_run(run_dir, reference)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_images_on_device_refuses_what_it_cannot_do(image_root, tmp_path):
    cfg = compose_config(
        TINY + [f"data.root={image_root}", "images_on_device=true", "augment=trivialaugment"]
    )
    with pytest.raises(UserError, match="images_on_device=true does augment=reference/none only"):
        train(cfg, tmp_path / "run")
    with pytest.raises(UserError, match="images_on_device=maybe must be auto, true or false"):
        train(
            compose_config(TINY + [f"data.root={image_root}", "images_on_device=maybe"]),
            tmp_path / "run2",
        )
