"""The ${hymtl_...} resolvers conf/ uses: run-dir names, sweep log tags, the λ search's study."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from hymtl.config import help_page
from hymtl.run.files import RESUMED_DIR
from hymtl.training.ranks import hydra_output_dir


# Resolvers used by conf/config.yaml and conf/hparams_search/*.yaml.
def fresh_run_dir(resume: str | None, fresh: str) -> str:
    """Hydra's run dir: the usual timestamped one, or for `resume=RUN_DIR` a sub-folder of the
    resumed run for this invocation's log and .hydra (the run's artifacts stay in RUN_DIR).
    Under torchrun, ranks other than 0 get a folder outside it (training/ranks.py)."""
    run_dir = fresh if not resume else str(Path(resume) / RESUMED_DIR / Path(fresh).name)
    return hydra_output_dir(run_dir)


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
