"""A real `mlflow server`, run from its own environment exactly as docs/tracking.md tells users
to run the UI, receives a hymtl run over HTTP; the run is read back through the REST API."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from hymtl.run.artifacts import read_metrics
from hymtl.train import train

from .conftest import compose_config
from .test_tracking import tiny

mlflow = pytest.importorskip("mlflow", reason="the [track] extra is not installed")

# docs/tracking.md: `python -m venv ~/.venvs/mlflow-ui`, then `pip install mlflow==VERSION`
# there, VERSION being the client's. Built once and kept, so later runs start in seconds.
UI_ENV = Path.home() / ".cache" / f"hymtl-test-mlflow-ui-{mlflow.__version__}"


def mlflow_ui_environment() -> Path:
    command = UI_ENV / "bin" / "mlflow"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(UI_ENV)], check=True)
        install = subprocess.run(
            [str(UI_ENV / "bin" / "pip"), "install", "-q", f"mlflow=={mlflow.__version__}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if install.returncode != 0:
            pytest.skip(f"cannot install mlflow=={mlflow.__version__}: {install.stderr[-300:]}")
    return command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rest(base: str, endpoint: str, body: dict | None = None, **query) -> dict:
    """GET with `query`, or POST `body` as JSON (the endpoints that take one, e.g. runs/search)."""
    url = f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def wait_until_healthy(base: str, server: subprocess.Popen, log: Path, seconds=120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server did not answer on {base} within {seconds} s")


@pytest.mark.slow
def test_a_run_logged_to_a_real_mlflow_server_reads_back_over_rest(image_root, tmp_path):
    command = mlflow_ui_environment()
    port = free_port()
    base, log = f"http://127.0.0.1:{port}", tmp_path / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [str(command), "server", "--host", "127.0.0.1", "--port", str(port)]
            + ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
            + ["--artifacts-destination", str(tmp_path / "server-artifacts")],
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers too are stopped with the process group
        )
    try:
        wait_until_healthy(base, server, log)
        cfg = compose_config(tiny(image_root, base, "logger=mlflow", "logger.experiment_name=srv"))
        summary = train(cfg, tmp_path / "run")

        experiment = rest(base, "experiments/get-by-name", experiment_name="srv")["experiment"]
        (run,) = rest(base, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})[
            "runs"
        ]
        run_id = run["info"]["run_id"]
        assert run["info"]["status"] == "FINISHED"
        params = {param["key"]: param["value"] for param in run["data"]["params"]}
        assert params["epochs"] == "2" and params["logger.tracking_uri"] == base
        metrics = {metric["key"]: metric["value"] for metric in run["data"]["metrics"]}
        assert metrics["best_val_acc"] == summary["best_val_acc"]
        history = rest(base, "metrics/get-history", run_id=run_id, metric_key="val_acc")
        rows = read_metrics(tmp_path / "run" / "metrics.csv")
        logged = [(point["step"], point["value"]) for point in history["metrics"]]
        assert logged == [(row["epoch"], row["val_acc"]) for row in rows]
        listed = rest(base, "artifacts/list", run_id=run_id)["files"]
        assert "summary.json" in {item["path"] for item in listed}
        # Artifacts travelled over HTTP into the server's own artifact store.
        stored = list((tmp_path / "server-artifacts").rglob("summary.json"))
        assert len(stored) == 1
        assert json.loads(stored[0].read_text())["best_val_acc"] == summary["best_val_acc"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
