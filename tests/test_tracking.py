"""logger=mlflow / tensorboard: real MLflow stores and TensorBoard event files, read back."""

import http.server
import json
import logging
import socket
import subprocess
import sys
import threading

import pytest

import hymtl.train
from hymtl import UserError
from hymtl.config.compose import to_plain_dict
from hymtl.run.artifacts import read_metrics
from hymtl.tracking import open_trackers
from hymtl.tracking.base import flatten
from hymtl.train import RunInterrupted, train

from .conftest import TINY, compose_config, run_cli

mlflow = pytest.importorskip("mlflow", reason="the [track] extra is not installed")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the [track] extra is not installed",
)


def tiny(image_root, store, *extra):
    """Two epochs on the toy images; `store`: an SQLite file, or a tracking server's URL."""
    uri = store if str(store).startswith("http") else f"sqlite:///{store}"
    return TINY + [
        "data=imagefolder",
        f"data.root={image_root}",
        "epochs=2",
        f"logger.tracking_uri={uri}",
        *extra,
    ]


def runs_in(store, experiment="hymtl"):
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])
    return client, runs


def steps(client, run, key):
    return [(point.step, point.value) for point in client.get_metric_history(run.info.run_id, key)]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once the probe closes: nothing listens there


def test_logger_options_compose_alone_and_together():
    assert not any(compose_config().logger[key] for key in ("mlflow", "tensorboard"))
    both = compose_config(["logger=[mlflow,tensorboard]"]).logger
    assert both.mlflow and both.tensorboard and both.tracking_uri == "sqlite:///mlflow.db"
    only_board = compose_config(["logger=tensorboard"]).logger
    assert only_board.tensorboard and not only_board.mlflow


def test_default_logger_imports_no_tracker_library():
    """logger=none (the default) costs nothing: neither library is even imported."""
    code = (
        "import sys; from hymtl.tracking import open_trackers; from tests.conftest import "
        "compose_config; t = open_trackers(compose_config(), None, None); "
        "print(t.active, 'mlflow' in sys.modules, 'torch.utils.tensorboard' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert result.stdout.split() == ["[]", "False", "False"]


def test_only_rank_0_tracks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    store = tmp_path / "mlflow.db"
    cfg = compose_config(["logger=[mlflow,tensorboard]", f"logger.tracking_uri=sqlite:///{store}"])
    assert open_trackers(cfg, tmp_path / "run", None).active == []
    assert not store.exists() and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_runs_mirrored_into_mlflow_and_tensorboard(image_root, tmp_path):
    store = tmp_path / "mlflow.db"
    first_cfg = compose_config(tiny(image_root, store, "logger=[mlflow,tensorboard]"))
    first = train(first_cfg, tmp_path / "first")
    second_cfg = compose_config(tiny(image_root, store, "logger=mlflow", "seed=1"))
    train(second_cfg, tmp_path / "second")

    client, runs = runs_in(store)
    assert [run.data.tags["run_dir"] for run in runs] == [
        str(tmp_path / "first"),
        str(tmp_path / "second"),
    ]
    for run, cfg, run_dir in zip(runs, [first_cfg, second_cfg], ["first", "second"]):
        assert run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in flatten(to_plain_dict(cfg)).items()}
        rows = read_metrics(tmp_path / run_dir / "metrics.csv")
        assert steps(client, run, "val_acc") == [(row["epoch"], row["val_acc"]) for row in rows]
        assert steps(client, run, "train_loss") == [(r["epoch"], r["train_loss"]) for r in rows]
        assert run.data.tags["status"] == "completed"
        assert run.data.tags["seed"] == str(cfg.seed)
        assert run.data.tags["regularizer"] == "none"
        artifacts = sorted(item.path for item in client.list_artifacts(run.info.run_id))
        assert artifacts == sorted(
            ["calibration.png", "confusion_matrix.png", "curves.png", "errors.png"]
            + ["predictions.png", "summary.json", "val_predictions.csv"]
        )
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert runs[0].data.tags["mlflow.source.git.commit"] == summary["provenance"]["git"]["commit"]
    assert runs[0].data.metrics["best_val_acc"] == first["best_val_acc"]
    assert runs[0].data.metrics["best_macro_f1"] == first["best_model"]["macro"]["f1"]
    # The run dir stays whole; the store and its artifacts live beside the database file.
    assert (tmp_path / "mlruns" / runs[0].info.run_id / "artifacts" / "summary.json").is_file()

    board = event_accumulator.EventAccumulator(str(tmp_path / "first" / "tensorboard"))
    board.Reload()
    rows = read_metrics(tmp_path / "first" / "metrics.csv")
    for key in ("train_loss", "val_acc", "lr"):
        logged = [(event.step, event.value) for event in board.Scalars(key)]
        assert logged == [(row["epoch"], pytest.approx(row[key])) for row in rows]
    assert board.Scalars("hparam/best_val_acc")[0].value == pytest.approx(first["best_val_acc"])
    assert sorted(board.Tags()["images"]) == ["confusion_matrix", "curves", "errors", "predictions"]
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = board.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["regularizer.name"].string_value == "none"
    assert hparams["epochs"].number_value == 2
    assert hparams["data.mean"].string_value == "[0.485, 0.456, 0.406]"


@pytest.mark.slow
def test_a_failing_run_is_failed_in_mlflow_with_its_reason(image_root, tmp_path):
    store = tmp_path / "mlflow.db"
    with pytest.raises(UserError, match="batch_size=1000 is larger"):
        cfg = compose_config(tiny(image_root, store, "logger=mlflow", "batch_size=1000"))
        train(cfg, tmp_path / "run")
    _, (run,) = runs_in(store)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert (run.info.status, run.data.tags["status"]) == ("FAILED", "failed")
    assert run.data.tags["error"] == summary["error"]


@pytest.mark.slow
def test_interrupted_then_resumed_run_continues_the_same_mlflow_run(
    image_root, tmp_path, monkeypatch
):
    store, run_dir = tmp_path / "mlflow.db", tmp_path / "run"
    real_evaluate, calls = hymtl.train.evaluate, []

    def evaluate_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C during epoch 2's evaluation
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(hymtl.train, "evaluate", evaluate_then_interrupt)
    with pytest.raises(RunInterrupted):
        train(compose_config(tiny(image_root, store, "logger=mlflow")), run_dir)
    monkeypatch.setattr(hymtl.train, "evaluate", real_evaluate)
    client, (killed,) = runs_in(store)
    assert (killed.info.status, killed.data.tags["status"]) == ("KILLED", "interrupted")

    # Trackers may be switched on resume (they change nothing the run computes).
    resume = [f"resume={run_dir}", "logger.log_checkpoints=true"]
    train(compose_config(resume), None, resume)
    client, (run,) = runs_in(store)
    assert run.info.run_id == killed.info.run_id
    assert (run.info.status, run.data.tags["status"]) == ("FINISHED", "completed")
    rows = read_metrics(run_dir / "metrics.csv")
    assert steps(client, run, "val_acc") == [(row["epoch"], row["val_acc"]) for row in rows]
    assert [row["epoch"] for row in rows] == [1, 2]
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"best.pt", "last.pt", "summary.json"} <= artifacts


@pytest.mark.slow
def test_a_server_that_is_down_costs_one_warning_and_nothing_else(image_root, tmp_path, caplog):
    uri = f"http://127.0.0.1:{closed_port()}"
    cfg = compose_config(tiny(image_root, uri, "logger=mlflow"))
    with caplog.at_level(logging.WARNING):
        summary = train(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"tracking server {uri} is unreachable" in warnings[0]
    assert [row["epoch"] for row in read_metrics(tmp_path / "run" / "metrics.csv")] == [1, 2]


def test_a_missing_tracking_extra_is_one_line_naming_it(image_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` sees without it
    cfg = compose_config(tiny(image_root, tmp_path / "mlflow.db", "logger=mlflow"))
    expected = "logger=mlflow needs the tracking extra: pip install 'hymtl[track]'"
    with pytest.raises(UserError) as error:
        train(cfg, tmp_path / "run")
    assert str(error.value) == expected
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["error"] == expected


@pytest.mark.slow
def test_a_sweep_is_one_mlflow_experiment_with_a_run_per_job(image_root, tmp_path):
    sweep, store = tmp_path / "sweep", tmp_path / "mlflow.db"
    overrides = tiny(image_root, store, "logger=[mlflow,tensorboard]", "epochs=1")
    result = run_cli(["-m", *overrides, "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    client, runs = runs_in(store, experiment=str(sweep))  # no experiment=: the sweep dir names it
    assert sorted((r.data.tags["job"], r.data.tags["seed"]) for r in runs) == [
        ("0", "0"),
        ("1", "1"),
    ]
    assert {run.data.tags["sweep_dir"] for run in runs} == {str(sweep)}
    # One TensorBoard log dir per job inside the sweep dir: `tensorboard --logdir SWEEP` shows all.
    board = event_accumulator.EventAccumulator(str(sweep / "1" / "tensorboard"))
    board.Reload()
    assert [event.step for event in board.Scalars("val_acc")] == [1]


class Refusing(http.server.BaseHTTPRequestHandler):
    """A tracking server that turns every request away, as one without our credentials does."""

    def refuse(self):
        self.send_response(403)
        self.end_headers()

    do_GET = do_POST = refuse

    def log_message(self, *args):
        pass


def test_a_server_that_refuses_costs_one_warning_and_no_tracker(tmp_path, caplog):
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        cfg = compose_config(["logger=mlflow", f"logger.tracking_uri={uri}"])
        with caplog.at_level(logging.WARNING):
            trackers = open_trackers(cfg, tmp_path / "run", None)
        server.shutdown()
    assert trackers.active == []
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith("mlflow is off for this run (") and "403" in warning


@pytest.mark.slow
def test_report_over_the_working_directory_skips_mlflow_copies(image_root, tmp_path):
    """`./mlruns/` holds copies of summary.json: `hymtl report .` must count each run once."""
    from hymtl.report import find_run_dirs

    store = tmp_path / "mlflow.db"
    train(compose_config(tiny(image_root, store, "logger=mlflow", "epochs=1")), tmp_path / "run")
    assert len(list((tmp_path / "mlruns").rglob("summary.json"))) == 1
    assert find_run_dirs(tmp_path) == [tmp_path / "run"]


def test_an_unknown_logger_is_one_line_listing_the_options_alone_or_in_a_list():
    from hymtl.config.compose import override_problem

    expected = "logger=foo is not an option; logger options: mlflow, none, tensorboard"
    assert override_problem(["logger=foo"]) == expected
    assert override_problem(["logger=[mlflow,foo]"]) == expected
