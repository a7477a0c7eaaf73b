"""A quiet, readable console: whose line it is, and no third-party chatter."""

import logging

import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from hymtl.run.callbacks import quiet_third_party_logging
from hymtl.run.resolvers import job_tag

from .conftest import compose_config


def test_sweep_lines_name_their_job_and_single_runs_stay_plain():
    assert job_tag("RunMode.MULTIRUN", 3, "l2", 1) == "[job 3 l2 seed=1] "
    assert job_tag("RunMode.RUN", 0, "none", 0) == ""


def test_the_log_format_carries_the_job_tag():
    from hydra import compose, initialize_config_module

    with initialize_config_module("hymtl.conf", version_base="1.3"):
        cfg = compose("config", overrides=["regularizer=l2"], return_hydra_config=True)
    logging_config = OmegaConf.to_container(cfg.hydra.job_logging, resolve=False)
    fmt = logging_config["formatters"]["simple"]["format"]
    assert fmt.startswith("[%(asctime)s][%(name)s][%(levelname)s] - ")
    assert fmt.endswith("%(message)s") and "hymtl_job_tag" in fmt
    # Resolved as Hydra resolves it for a single run (no job number) and for sweep job 3.
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.RUN
        resolved = cfg.hydra.job_logging.formatters.simple.format
        assert resolved == "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
        cfg.hydra.mode, cfg.hydra.job.num = RunMode.MULTIRUN, 3
        resolved = cfg.hydra.job_logging.formatters.simple.format
        assert resolved.endswith(" - [job 3 l2 seed=0] %(message)s")
    assert compose_config(["regularizer=l2"]).regularizer.name == "l2"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # optuna 2.x on SQLAlchemy 1.4
def test_third_party_setup_chatter_is_silenced():
    optuna_logging = pytest.importorskip("optuna.logging")
    quiet_third_party_logging()
    assert logging.getLogger("alembic").getEffectiveLevel() == logging.WARNING
    optuna_root = logging.getLogger("optuna")
    assert optuna_root.propagate  # through the plain root handler: no ANSI colour codes
    assert not any(type(h) is logging.StreamHandler for h in optuna_root.handlers)
    optuna_logging.enable_default_handler()  # leave the process as other tests expect
    optuna_logging.disable_propagation()
