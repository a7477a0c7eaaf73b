"""Checks on a composed config that the schema's types cannot express, run before any work."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from hymtl import UserError, distributed, help_page
from hymtl.runtime import resolve_device

# `_target_`s are imported and called by hydra.utils.instantiate: only these packages may be named.
ALLOWED_TARGET_PREFIXES = ("hymtl.", "torch.optim.", "torch.nn.", "torchvision.")
TRAIN = "hymtl.conf"  # hymtl.train's configs: conf/ at the repository root, shipped as hymtl.conf


def find_targets(node: Any, path: str = "") -> list[tuple[str, str]]:
    found = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            value = node._get_node(key)
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                found.append((where, str(node[key])))
            else:
                found += find_targets(value, where)
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            found += find_targets(value, f"{path}[{index}]")
    return found


@contextlib.contextmanager
def hydra_search_path(config_module: str | None):
    """Hydra initialized as an app sees its configs: the package of YAML files `config_module`
    (hymtl.train's `hymtl.conf`), or only the ConfigStore (predict, evaluate: None)."""
    from hydra import initialize, initialize_config_module

    if config_module is None:
        with initialize(config_path=None, version_base="1.3"):
            yield
    else:
        with initialize_config_module(config_module, version_base="1.3"):
            yield


def suggest_key(dotted: str, config_name: str = "config", config_module: str | None = TRAIN) -> str:
    """`dotted` with the key of the reference config it was probably meant to be, if any."""
    from hydra import compose

    with hydra_search_path(config_module):
        reference = compose(config_name)
    parent, _, leaf = dotted.rpartition(".")
    node = OmegaConf.select(reference, parent) if parent else reference
    known = [str(key) for key in node.keys()] if isinstance(node, DictConfig) else []
    guess = difflib.get_close_matches(leaf, known, n=1)
    if not guess:
        return dotted
    return f"{dotted} (did you mean {parent + '.' if parent else ''}{guess[0]}?)"


# Hydra flags after which the other arguments are not overrides of one run to compose here.
MULTIRUN = {"-m", "--multirun"}
NOT_ONE_RUN = MULTIRUN | {"--help", "-h", "--hydra-help", "--info"}
NOT_ONE_RUN |= {"-sc", "--shell-completion"}  # `-sc install=bash`: a request, not an override
# Another config than the one composed here: nothing to check it against.
OTHER_CONFIG = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}
OTHER_CONFIG |= {"--experimental-rerun"}
NOT_ONE_RUN |= OTHER_CONFIG
# Hydra flags whose value is the next argument (`--cfg job`): that argument is no override.
VALUE_FLAGS = OTHER_CONFIG | {"--cfg", "-c", "--package", "-p"}


def typed_overrides(argv: list[str]) -> list[str]:
    """The overrides among Hydra's arguments: neither its flags nor a flag's value (`--cfg job`)."""
    overrides, flag_value = [], False
    for arg in argv:
        if flag_value or arg.startswith("-"):
            flag_value = not flag_value and arg in VALUE_FLAGS
            continue
        overrides.append(arg)
    return overrides


def override_problem(
    argv: list[str], config_name: str = "config", config_module: str | None = TRAIN
) -> str | None:
    """One line for what Hydra would refuse while composing a single run (a key the config
    lacks, an option a group lacks, a value of the wrong type) instead of its multi-line
    report; None when the overrides compose. Sweeps (-m) are checked job by job instead."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    flags = {arg.split("=")[0] for arg in argv if arg.startswith("-")}
    if flags & NOT_ONE_RUN:
        return None
    try:
        with hydra_search_path(config_module):
            compose(config_name, overrides=typed_overrides(argv), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        return composition_message(error, config_name, config_module)
    return None


def multirun_problem(
    argv: list[str], config_name: str = "config", config_module: str | None = TRAIN
) -> str | None:
    """override_problem for a sweep (`-m`), before anything launches: the one line for what
    Hydra would refuse composing one of its jobs. Expands nothing: it composes a few jobs that
    between them give every override each value it sweeps over (a `range(...)`: its first, an
    `interval(...)`: its start); None when they compose, or for flags that make no sweep."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    flags = {arg.split("=")[0] for arg in argv if arg.startswith("-")}
    other_mode = sorted(flags & {"--cfg", "-c", "--info", "-sc", "--shell-completion"})
    if flags & MULTIRUN and other_mode:  # Hydra's own refusal of these is a traceback
        return f"{other_mode[0]} and -m (--multirun) do not go together; leave one out"
    if not flags & MULTIRUN or flags & (NOT_ONE_RUN - MULTIRUN):
        return None
    try:
        with hydra_search_path(config_module):
            for overrides in sweep_samples(typed_overrides(argv)):
                compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        return composition_message(error, config_name, config_module)
    return None


def sweep_samples(overrides: list[str]) -> list[list[str]]:
    """The overrides of as few of a sweep's jobs as give each override every value it takes
    (job i: value i of each, wrapping around); call within hydra_search_path (for `glob(...)`)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader()
    columns = []
    for override in OverridesParser.create(config_loader=loader).parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_choice_sweep():
            values = [f"{key}={value}" for value in override.sweep_string_iterator()]
        elif override.is_range_sweep():  # numbers of one type: the first says it
            first = itertools.islice(override.sweep_string_iterator(), 1)
            values = [f"{key}={value}" for value in first]
        elif override.is_interval_sweep():  # Optuna's: any value of it; the start
            values = [f"{key}={override.value().start}"]
        else:
            values = [override.input_line]
        if values:  # an empty range or glob sweeps over nothing
            columns.append(values)
    jobs = max((len(values) for values in columns), default=1)
    return [[values[i % len(values)] for values in columns] for i in range(jobs)]


def quoted_after(text: str, prefix: str) -> str | None:
    return text.split(prefix, 1)[1].split("'", 1)[0] if prefix in text else None


def composition_message(
    error: Exception, config_name: str = "config", config_module: str | None = TRAIN
) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if error.__cause__ is not None:
        lines += [line.strip() for line in str(error.__cause__).splitlines() if line.strip()][:1]
    lines = [line for line in lines if "HYDRA_FULL_ERROR" not in line]
    text = " ".join(lines)
    ambiguous = quoted_after(text, "Ambiguous value for argument '")
    if ambiguous and "=" in ambiguous:
        return comma_message(ambiguous)
    unknown = quoted_after(text, "Could not override '")
    if unknown:
        key = suggest_key(unknown, config_name, config_module)
        return f"unknown config key {key}; `--cfg job` lists every key"
    # "find": one option chosen (Hydra lists the others); "load": one of a list, e.g. logger=[...]
    missing = quoted_after(text, "Could not find '") or quoted_after(text, "Could not load '")
    if missing and "/" in missing:
        group, _, option = missing.rpartition("/")
        header = f"Available options in '{group}':"
        listed = lines[lines.index(header) + 1 :] if header in lines else []
        options = list(itertools.takewhile(lambda line: line.isidentifier(), listed))
        options = options or packaged_options(group)
        return f"{group}={option} is not an option; {group} options: {', '.join(options)}"
    return text


def comma_message(argument: str) -> str:
    """One line for `key=a,b` outside a sweep, with the argument to type for one value with a
    comma in it (a path): quoted for Hydra, then for the shell."""
    import shlex

    from hymtl.command_app import hydra_quoted

    key, _, value = argument.partition("=")
    quoted = f"{key}={hydra_quoted(value)}"
    typed = f'"{quoted}"' if not set('"$`\\!') & set(quoted) else shlex.quote(quoted)
    return (
        f"{argument}: a comma separates values, to sweep over (add -m) or of a list "
        f"({key}=[a,b]); for one value with a comma in it, type {typed}"
    )


def packaged_options(group: str) -> list[str]:
    """The options of one of hymtl's own config groups: conf/GROUP/*.yaml."""
    from importlib.resources import files

    folder = files("hymtl.conf").joinpath(group)
    if not folder.is_dir():
        return []
    return sorted(
        item.name.removesuffix(".yaml") for item in folder.iterdir() if item.name.endswith(".yaml")
    )


def unknown_keys(node: DictConfig, path: str = "") -> list[str]:
    """Keys the schema does not know, with the known key they were probably meant to be.
    Hydra's `+key=value` adds a key even to a typed node; nothing would ever read it."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return []
    known = [field.name for field in dataclasses.fields(schema)]
    found = []
    for key in node.keys():
        where = f"{path}{key}"
        if key not in known:
            guess = difflib.get_close_matches(str(key), known, n=1)
            found.append(f"{where}" + (f" (did you mean {path}{guess[0]}?)" if guess else ""))
        elif isinstance(node._get_node(key), DictConfig):
            found += unknown_keys(node[key], f"{where}.")
    return found


def non_finite_values(node: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            found += non_finite_values(node[key], f"{path}{key}.")
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            found += non_finite_values(value, f"{path}{index}.")
    elif isinstance(node, float) and not math.isfinite(node):
        found.append(f"{path.rstrip('.')}={node}")
    return found


def check_config(cfg: DictConfig) -> None:
    """Raise UserError with one line for values that cannot work."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        needs_root = "data.root" in missing
        hint = ": data=imagefolder needs data.root=/path/to/images" if needs_root else ""
        raise UserError(f"missing value for {', '.join(missing)}{hint}")
    unknown = unknown_keys(cfg)
    if unknown:
        raise UserError(
            f"unknown config key(s): {', '.join(unknown)}; "
            "`python -m hymtl.train --cfg job` lists every key"
        )
    non_finite = non_finite_values(cfg)
    if non_finite:
        raise UserError(f"{', '.join(non_finite)}: every number in the config must be finite")
    for where, target in find_targets(cfg):
        if not target.startswith(ALLOWED_TARGET_PREFIXES):
            raise UserError(
                f"{where}={target} is not allowed: targets must start with one of "
                f"{', '.join(ALLOWED_TARGET_PREFIXES)}"
            )
    problems = []
    if cfg.epochs < 1:
        problems.append(f"epochs={cfg.epochs} must be >= 1")
    if cfg.batch_size < 1:
        problems.append(f"batch_size={cfg.batch_size} must be >= 1")
    if cfg.num_workers is not None and cfg.num_workers < 0:
        problems.append(f"num_workers={cfg.num_workers} must be >= 0")
    if cfg.threads is not None and cfg.threads < 1:
        problems.append(f"threads={cfg.threads} must be >= 1 (or null for the default)")
    if not 0 <= cfg.seed < 2**32:
        problems.append(f"seed={cfg.seed} must be in [0, 2**32)")
    if cfg.grid_images < 1:
        problems.append(f"grid_images={cfg.grid_images} must be >= 1")
    for key in ("image_size", "resize_size"):
        if cfg.data[key] < 1:
            problems.append(f"data.{key}={cfg.data[key]} must be >= 1")
    if cfg.data.min_colors < 0:
        problems.append(f"data.min_colors={cfg.data.min_colors} must be >= 0")
    cache_mb = cfg.data.cache_max_mb
    is_number = isinstance(cache_mb, (int, float)) and not isinstance(cache_mb, bool)
    if not (cache_mb == "auto" or (is_number and cache_mb >= 0)):
        problems.append(f"data.cache_max_mb={cache_mb} must be a number of MiB >= 0, or auto")
    if not 0 < cfg.data.val_fraction < 1:
        problems.append(f"data.val_fraction={cfg.data.val_fraction} must be between 0 and 1")
    if not 0 <= cfg.loss.label_smoothing < 1:
        problems.append(f"loss.label_smoothing={cfg.loss.label_smoothing} must be in [0, 1)")
    if cfg.early_stopping.patience is not None and cfg.early_stopping.patience < 1:
        problems.append(f"early_stopping.patience={cfg.early_stopping.patience} must be >= 1")
    problems += evaluation_problems(cfg.evaluation)
    if cfg.resume and cfg.overwrite:
        problems.append("resume= continues a run and overwrite=true replaces one; choose one")
    for key in ("lambda_l1", "lambda_l2"):
        if cfg[key] < 0:
            problems.append(f"{key}={cfg[key]} must be >= 0")
    for key in ("l1", "l2", "weight_decay", "alpha", "beta"):
        if cfg.regularizer[key] < 0:
            problems.append(f"regularizer.{key}={cfg.regularizer[key]} must be >= 0")
    for key in ("momentum", "eps"):
        if key in cfg.optimizer and cfg.optimizer[key] < 0:
            problems.append(f"optimizer.{key}={cfg.optimizer[key]} must be >= 0")
    if "lr" in cfg.optimizer and cfg.optimizer.lr <= 0:
        problems.append(f"optimizer.lr={cfg.optimizer.lr} must be > 0")
    if problems:
        raise UserError("; ".join(problems))
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.precision.value == "fp16":
        raise UserError(
            "precision=fp16 on a CPU has no fast kernels (one ResNet-18 step takes minutes); "
            "use precision=auto or bf16 (or fp32)"
        )


def evaluation_problems(evaluation: DictConfig) -> list[str]:
    problems = []
    if not 0 < evaluation.select_fraction < 1:
        fraction = evaluation.select_fraction
        problems.append(f"evaluation.select_fraction={fraction} must be between 0 and 1")
    if not 0 <= evaluation.split_seed < 2**32:
        problems.append(f"evaluation.split_seed={evaluation.split_seed} must be in [0, 2**32)")
    if evaluation.protocol.value == "kfold":
        if evaluation.folds < 2:
            problems.append(f"evaluation.folds={evaluation.folds} must be >= 2")
        elif not 0 <= evaluation.fold < evaluation.folds:
            problems.append(
                f"evaluation.fold={evaluation.fold} must be in 0..{evaluation.folds - 1} "
                f"(evaluation.folds={evaluation.folds})"
            )
    return problems


def to_plain_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain Python types (safe for JSON and weights_only checkpoints)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


# Resolvers used by conf/config.yaml and conf/hparams_search/*.yaml.
def fresh_run_dir(resume: str | None, fresh: str) -> str:
    """Hydra's run dir: the usual timestamped one, or for `resume=RUN_DIR` a sub-folder of the
    resumed run for this invocation's log and .hydra (the run's artifacts stay in RUN_DIR).
    Under torchrun, ranks other than 0 get a folder outside it (distributed.hydra_output_dir)."""
    run_dir = fresh if not resume else str(Path(resume) / "resumed" / Path(fresh).name)
    return distributed.hydra_output_dir(run_dir)


def sqlite_url(path: str) -> str:
    """An Optuna storage URL for `path`, creating its folder: the study is opened before Hydra
    makes the sweep dir, and SQLite cannot create folders."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def data_listing_sha256(root: str) -> str:
    """SHA-256 over every non-hidden file's path (relative to `root`) and size: cheap (no file
    is opened), and it changes when an image is added, removed, renamed or resized."""
    digest = hashlib.sha256()
    root_path = Path(root).expanduser()
    for folder, dirnames, filenames in os.walk(root_path, followlinks=True):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(folder, name)
            try:
                size = path.stat().st_size
            except OSError:
                size = -1
            relative = os.fsencode(path.relative_to(root_path))
            digest.update(relative + b"\0" + str(size).encode() + b"\n")
    return digest.hexdigest()


def search_key(root: Any, model: Any, epochs: Any, evaluation: Any) -> str:
    """The λ search's study key (conf/hparams_search/): a short hash of what makes trials
    comparable: the data (its folder and a listing fingerprint), the model and its weights,
    the epochs and the evaluation protocol with its folds. The same command on other data or
    another model gets a study of its own instead of adding to this one."""

    def plain(value):
        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
        return getattr(value, "value", value)

    identity = {
        "data_root": os.path.realpath(Path(str(root)).expanduser()),
        "data_listing": data_listing_sha256(str(root)),
        "model": plain(model),
        "epochs": plain(epochs),
        "evaluation": plain(evaluation),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def job_tag(mode: Any, number: Any, regularizer: str, seed: Any) -> str:
    """The prefix of every log line of a sweep job (`[job 3 l2 seed=1] `): with the joblib
    launcher several jobs print at once, and their lines must say whose they are."""
    return f"[job {number} {regularizer} seed={seed}] " if str(mode).endswith("MULTIRUN") else ""


def register_resolvers() -> None:
    """The ${hymtl_...} resolvers conf/ uses; hymtl.train registers them before composing."""
    OmegaConf.register_new_resolver("hymtl_run_dir", fresh_run_dir, replace=True)
    OmegaConf.register_new_resolver("hymtl_job_tag", job_tag, replace=True)
    OmegaConf.register_new_resolver("hymtl_sqlite", sqlite_url, replace=True)
    OmegaConf.register_new_resolver("hymtl_search_key", search_key, replace=True)
    OmegaConf.register_new_resolver("hymtl_help_groups", help_page.groups_text, replace=True)
    OmegaConf.register_new_resolver("hymtl_help_keys", help_page.keys_text, replace=True)
