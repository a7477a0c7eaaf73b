import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigAttributeError, ValidationError

from hymtl import UserError
from hymtl.run.checks import check_config
from hymtl.training.setup import build

from .conftest import compose_config

GROUP_OPTIONS = {
    "data": ["hymenoptera", "imagefolder"],
    "model": ["resnet18", "resnet50", "mobilenet_v2"],
    "regularizer": ["none", "l1", "l2", "elasticnet", "l2sp"],
    "optimizer": ["sgd", "adamw"],
    "scheduler": ["steplr", "cosine", "none"],
    "augment": ["reference", "none", "trivialaugment"],
    "evaluation": ["reference", "holdout", "kfold"],
    "logger": ["none", "mlflow", "tensorboard", "[mlflow,tensorboard]"],
}


@pytest.mark.parametrize(
    "group,option", [(g, o) for g, options in GROUP_OPTIONS.items() for o in options]
)
def test_every_option_composes_and_checks(group, option):
    overrides = [f"{group}={option}"]
    if option == "imagefolder":
        overrides.append("data.root=/somewhere")
    cfg = compose_config(overrides)
    check_config(cfg)
    if group in ("regularizer", "model"):
        assert cfg[group].name == option


def test_reference_defaults():
    cfg = compose_config()
    assert (cfg.model.name, cfg.model.weights, cfg.model.pretrained) == (
        "resnet18",
        "IMAGENET1K_V1",
        True,
    )
    assert (cfg.optimizer.lr, cfg.optimizer.momentum) == (0.001, 0.9)
    assert (cfg.scheduler.step_size, cfg.scheduler.gamma) == (7, 0.1)
    assert (cfg.epochs, cfg.batch_size, cfg.lambda_l1) == (25, 4, 0.03)


def test_lambda_override_reaches_the_regularizer():
    regularizer = build(compose_config(["regularizer=l1", "lambda_l1=0.05"]).regularizer)
    assert (regularizer.l1, regularizer.l2, regularizer.weight_decay) == (0.05, 0.0, 0.0)
    regularizer = build(compose_config(["regularizer=l2", "lambda_l2=0.002"]).regularizer)
    assert (regularizer.l1, regularizer.l2, regularizer.weight_decay) == (0.0, 0.0, 0.002)
    regularizer = build(
        compose_config(["regularizer=elasticnet", "lambda_l1=0.1", "lambda_l2=0.2"]).regularizer
    )
    assert (regularizer.l1, regularizer.l2, regularizer.weight_decay) == (0.1, 0.2, 0.0)


def test_cosine_follows_epochs():
    assert compose_config(["scheduler=cosine", "epochs=9"]).scheduler.T_max == 9


def test_misspelled_key_fails_at_compose():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(["epoch=3"])
    assert isinstance(info.value.__cause__, ConfigAttributeError)
    with pytest.raises(ConfigCompositionException):
        compose_config(["regularizer.lambda=3"])


def test_wrong_type_fails_at_compose():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(["epochs=many"])
    assert isinstance(info.value.__cause__, ValidationError)
    with pytest.raises(ConfigCompositionException):
        compose_config(["regularizer.penalize=some"])


def test_unknown_group_option_fails():
    with pytest.raises(ConfigCompositionException, match="regularizer/l3"):
        compose_config(["regularizer=l3"])


@pytest.mark.parametrize(
    "override,message",
    [
        ("lambda_l1=-1", "lambda_l1=-1.0 must be >= 0"),
        ("optimizer.lr=0", "optimizer.lr=0.0 must be > 0"),
        ("epochs=0", "epochs=0 must be >= 1"),
        ("batch_size=0", "batch_size=0 must be >= 1"),
        ("model._target_=os.system", "model._target_=os.system is not allowed"),
        ("device=tpu", "device=tpu is not a device"),
    ],
)
def test_bad_values_are_one_clear_line(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")) as info:
        check_config(compose_config([override]))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["+epoch=3"], "unknown config key(s): epoch (did you mean epochs?)"),
        (["+optimizer.lrr=0.1"], "optimizer.lrr (did you mean optimizer.lr?)"),
        (["+data.rooot=/x"], "data.rooot (did you mean data.root?)"),
        (["+foo.bar=1"], "unknown config key(s): foo;"),
        (["optimizer.lr=nan"], "optimizer.lr=nan: every number in the config must be finite"),
        (["lambda_l1=inf"], "lambda_l1=inf: every number"),
        (["optimizer.momentum=-inf"], "optimizer.momentum=-inf: every number"),
        (["seed=-1"], "seed=-1 must be in [0, 2**32)"),
        (["seed=4294967296"], "seed=4294967296 must be in [0, 2**32)"),
        (["threads=-1"], "threads=-1 must be auto, a number >= 1"),
        (["threads=0"], "threads=0 must be auto, a number >= 1"),
        (["num_workers=-2"], "num_workers=-2 must be >= 0"),
        (["optimizer.momentum=-0.5"], "optimizer.momentum=-0.5 must be >= 0"),
        (["data.val_fraction=1.5"], "data.val_fraction=1.5 must be between 0 and 1"),
        (["data.image_size=0"], "data.image_size=0 must be >= 1"),
        (["device=cpu", "precision=fp16"], "precision=fp16 on a CPU has no fast kernels"),
        (["data=imagefolder"], "missing value for data.root: data=imagefolder needs data.root="),
        (["resume=/x", "overwrite=true"], "choose one"),
        (["loss.label_smoothing=1.5"], "loss.label_smoothing=1.5 must be in [0, 1)"),
        (["early_stopping.patience=0"], "early_stopping.patience=0 must be >= 1"),
        (["data.cache_max_mb=-1"], "data.cache_max_mb=-1 must be a number of MiB >= 0, or auto"),
        (["data.cache_max_mb=lots"], "data.cache_max_mb=lots must be a number of MiB >= 0"),
        (["data.cache_max_mb=true"], "data.cache_max_mb=True must be a number of MiB >= 0"),
        (["grid_images=0"], "grid_images=0 must be >= 1"),
        (["data.resize_size=0"], "data.resize_size=0 must be >= 1"),
        (["data.min_colors=-1"], "data.min_colors=-1 must be >= 0"),
        (["regularizer=l2sp", "regularizer.alpha=-0.1"], "regularizer.alpha=-0.1 must be >= 0"),
        (["optimizer=adamw", "optimizer.eps=-1"], "optimizer.eps=-1.0 must be >= 0"),
        (["evaluation=holdout", "evaluation.select_fraction=0"], "select_fraction=0.0 must be"),
        (["evaluation=kfold", "evaluation.folds=1"], "evaluation.folds=1 must be >= 2"),
        (["evaluation=kfold", "evaluation.fold=5"], "evaluation.fold=5 must be in 0..4"),
        # Every problem in one line, in the order the checks run.
        (
            ["epochs=0", "data.min_colors=-1", "lambda_l2=-1"],
            "epochs=0 must be >= 1; data.min_colors=-1 must be >= 0; lambda_l2=-1.0 must be >= 0",
        ),
    ],
)
def test_values_that_cannot_work_are_refused_by_name(overrides, message):
    with pytest.raises(UserError) as info:
        check_config(compose_config(overrides))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "key", ["grid_images", "model.weights", "model.freeze_backbone", "loss.label_smoothing"]
)
def test_a_key_newer_than_a_run_resumes_with_todays_default(tmp_path, key):
    """A key's value lives in conf/ (MISSING in the schema: grid_images, model.weights) or in
    the schema (model.freeze_backbone); either way a run recorded before the key existed
    resumes with the value a new run gets today."""
    from omegaconf import OmegaConf

    from hymtl.config.compose import to_plain_dict
    from hymtl.run.resume import resumed_config

    composed = compose_config()
    older = to_plain_dict(composed)
    parent, _, leaf = key.rpartition(".")
    del (older[parent] if parent else older)[leaf]
    resumed = resumed_config({"config": older, "epoch": 1}, tmp_path, [], composed)
    assert not OmegaConf.missing_keys(resumed)
    assert OmegaConf.select(resumed, key) == OmegaConf.select(composed, key)
    check_config(resumed)


def test_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available"):
        check_config(compose_config(["device=cuda"]))


def test_regularization_study_experiment():
    from hydra import compose, initialize_config_module

    with initialize_config_module("hymtl.conf", version_base="1.3"):
        cfg = compose(
            "config", overrides=["experiment=regularization_study"], return_hydra_config=True
        )
    assert cfg.hydra.sweeper.params == {"regularizer": "none,l1,l2,elasticnet", "seed": "0,1,2"}
    assert (cfg.epochs, cfg.lambda_l1, cfg.model.name) == (25, 0.03, "resnet18")


def test_auto_settings_resolve_per_device(monkeypatch):
    import torch

    from hymtl.training.runtime import resolve_num_workers, resolve_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_num_workers(None, cpu) == 0 and resolve_num_workers(3, cpu) == 3
    assert 1 <= resolve_num_workers(None, cuda) <= 8
    assert resolve_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr("hymtl.training.runtime.cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr("hymtl.training.runtime.cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda: False)
    assert resolve_precision("auto", cuda) == "fp16"
    assert resolve_precision("auto", cuda, batch_size=4) == "fp32"  # autocast's casts cost more
    assert resolve_precision("auto", cuda, batch_size=64) == "fp16"
    assert resolve_precision("auto", cpu, batch_size=4) == "fp32"


TRAINING_STEP_FAULTS = """
import resource, torch, torchvision
from hymtl.training.runtime import reuse_freed_memory

model = torchvision.models.resnet18(num_classes=2)
images = torch.randn(2, 3, 128, 128)

def faults():  # minor page faults of 3 forward+backward passes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model(images).sum().backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()  # the first pass touches fresh memory either way
default = faults()
applied = reuse_freed_memory()
faults()
print(applied, default, faults())
"""


def test_reuse_freed_memory_stops_refaulting_every_step():
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    # A fresh process: the setting is process-wide and one-way, and other tests apply it.
    out = subprocess.run(
        [sys.executable, "-c", TRAINING_STEP_FAULTS], capture_output=True, text=True, check=True
    ).stdout.split()
    applied, default, tuned = out[0] == "True", int(out[1]), int(out[2])
    assert applied
    # By default glibc unmaps large activations on free and faults them in again next pass
    # (~40k faults here); reused, the passes after the first fault (almost) nothing.
    assert default > 5000
    assert tuned < default / 20


@pytest.mark.parametrize("value", ["auto", 0, 512, 1536.5])
def test_cache_limit_is_a_number_or_auto(value):
    cfg = compose_config([f"data.cache_max_mb={value}"])
    check_config(cfg)
    assert cfg.data.cache_max_mb == value


def test_knobs_away_from_the_reference_recipe_are_named_at_start_up():
    from hymtl.training.setup import recipe_changes

    assert recipe_changes(compose_config([])) == []
    changed = compose_config(
        [
            "loss.label_smoothing=0.1",
            "loss.class_weights=balanced",
            "augment=none",
            "early_stopping.patience=3",
        ]
    )
    assert recipe_changes(changed) == [
        "loss.label_smoothing=0.1",
        "loss.class_weights=balanced",
        "augment=none",
        "early_stopping.patience=3 (val_acc)",
    ]
