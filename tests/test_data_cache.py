import threading

import pytest
import torch
from torch.utils.data import DistributedSampler

from hymtl import data
from hymtl.data import (
    DecodeAhead,
    DecodedCache,
    ImageListDataset,
    KeptEvalBatches,
    load_data,
    make_loader,
    resolve_cache_mb,
)

ONE_IMAGE_MB = 40 * 40 * 4 / 2**20  # conftest's images: 40x40 RGB, which PIL keeps at 4 B/px


@pytest.mark.parametrize(
    "available_mb,expected_mb",
    [
        (10240, (10240 - 2048) / 2),  # half of what is left after the model's 2 GiB
        (1024, 0),  # less free than the model needs: cache nothing, decode ahead instead
        (None, 4096),  # free memory unknown: the old fixed limit
    ],
)
def test_auto_cache_limit_follows_available_memory(monkeypatch, available_mb, expected_mb):
    monkeypatch.setattr(data.cache, "available_memory_mb", lambda: available_mb)
    assert resolve_cache_mb("auto") == expected_mb
    assert resolve_cache_mb(300) == 300.0  # a number is taken as given


def test_available_memory_is_read_from_the_kernel():
    available = data.available_memory_mb()
    with open("/proc/meminfo") as meminfo:
        total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    assert 0 < available <= total_kb / 1024


def batches(loader, epochs):
    torch.manual_seed(0)  # the augmentation's draws come from torch's global generator
    return [batch for _ in range(epochs) for batch in loader]


def test_partial_cache_gives_the_batches_of_a_full_cache(image_root, monkeypatch):
    full = load_data("imagefolder", str(image_root), image_size=32, resize_size=36)
    partial = load_data(
        "imagefolder",
        str(image_root),
        image_size=32,
        resize_size=36,
        cache_max_mb=3.5 * ONE_IMAGE_MB,
    )
    assert len(full.train.cache.images) == 36 and len(partial.train.cache.images) == 3
    decoders = []
    decode = data.open_rgb
    for module in (data.cache, data.datasets):  # every decode after the scan
        monkeypatch.setattr(
            module,
            "open_rgb",
            lambda path: decoders.append(threading.current_thread().name) or decode(path),
        )
    loaders = {
        name: make_loader(splits.train, 4, 0, True, seed=5, pin_memory=False)
        for name, splits in (("full", full), ("partial", partial))
    }
    assert not isinstance(loaders["full"].sampler, DecodeAhead)
    assert isinstance(loaders["partial"].sampler, DecodeAhead)
    expected, got = batches(loaders["full"], 2), batches(loaders["partial"], 2)
    assert len(got) == 2 * 24 // 4
    for (want_images, want_targets), (images, targets) in zip(expected, got):
        assert torch.equal(images, want_images) and torch.equal(targets, want_targets)
    # The loaders' generators (saved in checkpoints) advanced alike.
    assert torch.equal(
        loaders["full"].generator.get_state(), loaders["partial"].generator.get_state()
    )
    # Each epoch, the 21 uncached training images were decoded once, all in decode-ahead threads.
    assert len(decoders) == 2 * 21
    assert all(name.startswith("decode-ahead") for name in decoders)
    assert partial.train.decoding == {}


def test_epoch_cut_short_leaves_nothing_decoding(image_root):
    partial = load_data("imagefolder", str(image_root), cache_max_mb=0)
    loader = make_loader(partial.val, 4, 0, False, seed=0, pin_memory=False)
    epoch = iter(loader)
    next(epoch)
    assert len(partial.val.decoding) == 8  # the next two batches, started
    del epoch
    assert partial.val.decoding == {}


def test_decode_ahead_passes_set_epoch_to_a_distributed_sampler(image_root):
    splits = load_data("imagefolder", str(image_root), cache_max_mb=0)
    plain = DistributedSampler(splits.train, num_replicas=2, rank=1, seed=3)
    wrapped = DecodeAhead(DistributedSampler(splits.train, 2, 1, seed=3), splits.train, ahead=4)
    plain.set_epoch(2)
    wrapped.set_epoch(2)
    assert list(wrapped) == list(plain) and len(wrapped) == 12
    assert list(wrapped) != list(DistributedSampler(splits.train, 2, 1, seed=3))  # epoch 0


@pytest.mark.slow
def test_a_run_that_caches_nothing_is_the_run_that_caches_everything(image_root, tmp_path):
    from hymtl.train import train

    from .conftest import compose_config
    from .test_reliability import SHORT, assert_same_run

    for name, limit in (("everything", "auto"), ("nothing", 0)):
        cfg = compose_config(SHORT + [f"data.root={image_root}", f"data.cache_max_mb={limit}"])
        train(cfg, tmp_path / name)
    assert_same_run(tmp_path / "nothing", tmp_path / "everything")


def test_kept_eval_batches_are_the_loaders_and_transform_each_image_once(image_root, monkeypatch):
    """The val pass without workers: the DataLoader's batches, bit for bit, every epoch, and its
    draw from torch's generator (the augmentation's), with each image transformed once however
    many epochs read it (and a pass cut short resumes)."""
    splits = load_data("imagefolder", str(image_root), image_size=32, resize_size=36)
    val, calls = splits.val, []
    counted = ImageListDataset(
        val.samples, val.classes, lambda image: calls.append(1) or val.transform(image), val.cache
    )
    expected = list(make_loader(val, 5, 0, False, seed=5, pin_memory=False))
    kept = KeptEvalBatches(counted, 5)
    assert len(kept) == len(expected) >= 2 and len(val) % 5  # a ragged last batch too
    next(iter(kept))  # an epoch cut short after its first batch
    for _ in range(3):
        torch.manual_seed(1)
        list(make_loader(val, 5, 0, False, seed=5, pin_memory=False))
        after_loader = torch.random.get_rng_state()
        torch.manual_seed(1)
        passed = list(kept)
        assert torch.equal(torch.random.get_rng_state(), after_loader)  # the same draws
        assert len(passed) == len(expected)
        for (images, targets), (loader_images, loader_targets) in zip(passed, expected):
            assert torch.equal(images, loader_images) and torch.equal(targets, loader_targets)
    assert len(calls) == len(val)


def test_kept_pixels_count_against_the_cache_limit():
    cache = DecodedCache(max_mb=1)
    assert cache.reserve(2**20 - 10) and cache.bytes == 2**20 - 10
    assert not cache.reserve(11) and cache.bytes == 2**20 - 10  # refused: nothing counted
    assert cache.reserve(10)
