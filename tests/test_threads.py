"""threads=auto: the thread count follows the cores other processes leave free."""

import json
import subprocess
import sys
import time

import pytest

from hymtl.train import train
from hymtl.training.threads import CpuReading, free_threads, others_busy, read_cpu

from .conftest import compose_config


def test_others_busy_is_the_machine_minus_this_process():
    # 2 CPUs for 1 s: 1.5 core-seconds busy, 0.5 of them this process's
    start = CpuReading(busy=10.0, total=100.0, own=3.0, cpus=2)
    end = CpuReading(busy=11.5, total=102.0, own=3.5, cpus=2)
    assert others_busy(start, end) == pytest.approx(1.0)
    assert others_busy(end, end) == 0.0


@pytest.mark.parametrize(
    ("busy", "cores", "threads"),
    [(0.0, 2, 2), (0.4, 2, 2), (1.0, 2, 1), (2.0, 2, 1), (3.0, 2, 1), (1.2, 8, 7), (0.0, 1, 1)],
)
def test_free_threads_leave_the_busy_cores_alone_and_keep_one(busy, cores, threads):
    assert free_threads(busy, cores) == threads


@pytest.mark.skipif(read_cpu() is None, reason="no /proc/stat here")
def test_a_busy_process_is_seen_as_others_load():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        start = read_cpu()
        time.sleep(0.5)
        busy = others_busy(start, read_cpu())
    finally:
        spinner.kill()
        spinner.wait()
    assert busy > 0.7  # the spinner's core (and whatever else runs here)


def test_threads_auto_records_its_choices_and_bad_values_are_refused(image_root, tmp_path):
    tiny = ["data=imagefolder", f"data.root={image_root}", "epochs=2", "model.pretrained=false"]
    tiny += ["data.image_size=32", "data.resize_size=36", "precision=fp32", "threads=auto"]
    summary = train(compose_config(tiny), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    if read_cpu() is not None and saved.get("threads_auto"):
        first = saved["threads_auto"][0]
        assert first["epoch"] == 0 and 1 <= first["threads"]
        assert saved["threads"] == saved["threads_auto"][-1]["threads"]
    assert summary["status"] == "completed"
    from hymtl import UserError

    for bad in ("0", "many", "-2"):
        with pytest.raises(UserError, match=f"threads={bad} must be auto, a number >= 1"):
            train(compose_config(tiny[:-1] + [f"threads={bad}"]), tmp_path / f"bad{bad}")
