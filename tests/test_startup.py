"""What start-up and exit leave out changes nothing: torchvision without dynamo at import still
answers as before, and a process ending without teardown still writes and reports everything."""

import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision

from hymtl import lazy_dynamo

from .conftest import TINY, run_cli


def run_python(code: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_hymtl_imports_torchvision_without_dynamo_and_dynamo_still_works():
    result = run_python(
        """
        import sys
        import hymtl.train, hymtl.predict
        from hymtl.lazy_dynamo import dynamo_loaded
        print("dynamo at start-up:", dynamo_loaded())
        import torch, torchvision
        roi_align_module = sys.modules["torchvision.ops.roi_align"]
        images = torch.arange(64.0).view(1, 1, 8, 8)
        boxes = torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]])
        print("roi_align:", torchvision.ops.roi_align(images, boxes, 2).flatten().tolist())
        print("lazy answer:", roi_align_module.is_compile_supported("cpu"))
        import torch._dynamo.utils as real
        print("real answer:", real.is_compile_supported("cpu"), type(real).__name__)
        print("compiled:", torch.compile(lambda t: t * 2, backend="eager")(torch.ones(2)).tolist())
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dynamo at start-up: False"
    # Pixel (y, x) holds 8y + x, linear, so each 2x2 bin is 8 * mean(y) + mean(x) over its
    # sample points: y, x in {0.375, 1.125} for the first bin, {1.875, 2.625} for the second.
    assert lines[1] == "roi_align: [6.75, 8.25, 18.75, 20.25]"
    assert lines[2] == "lazy answer: True" and lines[3] == "real answer: True module"
    assert lines[4] == "compiled: [2.0, 2.0]"


OPTIMIZER_STEPS = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 5)), torch.arange(8) % 3).backward()
        optimizer.step()
        scheduler.step()
    optimizer.load_state_dict(optimizer.state_dict())
    print("weights:", [p.double().sum().item() for p in model.parameters()])
    """
)


def test_torch_optim_runs_without_loading_dynamo_and_steps_exactly_as_with_it():
    deferred = run_python(
        "import hymtl\n" + OPTIMIZER_STEPS + "\nfrom hymtl.lazy_dynamo import dynamo_loaded\n"
        'print("dynamo loaded:", dynamo_loaded())'
    )
    real = run_python("import torch._dynamo\n" + OPTIMIZER_STEPS)
    assert deferred.returncode == 0 and real.returncode == 0, deferred.stderr + real.stderr
    weights = deferred.stdout.splitlines()[0]
    assert weights.startswith("weights: [") and weights == real.stdout.splitlines()[0]
    assert deferred.stdout.splitlines()[1] == "dynamo loaded: False"


def test_dynamo_loaded_after_the_optimizer_ran_is_the_whole_real_module():
    """The functions torch.optim wrapped in `disable` while dynamo waited are disabled for real
    once it loads, and importing a submodule first gives one copy of it, not two."""
    result = run_python(
        "import hymtl\n"
        + OPTIMIZER_STEPS
        + textwrap.dedent(
            """
    from hymtl.lazy_dynamo import dynamo_loaded
    state_dict = torch.optim.Optimizer.state_dict.__wrapped__
    print("before:", dynamo_loaded(), state_dict.__dynamo_disable is state_dict)
    import torch._dynamo.config as config
    print("one config:", config is torch._dynamo.config is sys.modules["torch._dynamo.config"])
    print("after:", dynamo_loaded(), type(torch._dynamo).__name__)

    @torch._disable_dynamo
    def kept_out(t):
        return t + 1

    print("called before compiling:", kept_out(torch.zeros(1)).tolist())
    double = torch.compile(lambda t: t * 2, backend="eager", fullgraph=True)
    print("compiled:", double(torch.ones(2)).tolist())
    try:
        torch.compile(lambda t: kept_out(t) * 2, backend="eager", fullgraph=True)(torch.ones(1))
        print("traced into the disabled function")
    except Exception as error:
        print("disabled:", type(error).__name__)
    print("state_dict answered as itself:", hasattr(state_dict, "__dynamo_disable"))
    """
        )
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()[1:]
    assert lines[:5] == [
        "before: False True",
        "one config: True",
        "after: True module",
        "called before compiling: [1.0]",
        "compiled: [2.0, 2.0]",
    ]
    assert lines[5] == "disabled: Unsupported"
    # torch's cache of the stand-in's answer is gone: the next call disables it for real
    assert lines[6] == "state_dict answered as itself: False"


def test_nothing_is_stood_in_when_torchvision_is_already_imported():
    assert "torchvision" in sys.modules and torchvision.__spec__.loader is not None
    lazy_dynamo.install()
    assert not any(isinstance(f, lazy_dynamo.TorchvisionFinder) for f in sys.meta_path)
    assert not isinstance(sys.modules.get(lazy_dynamo.DYNAMO_UTILS), lazy_dynamo.DynamoUtilsStandIn)


def test_a_process_ended_without_teardown_still_writes_and_reports_everything(tmp_path):
    result = run_python(
        f"""
        import atexit, logging, sys, threading, time
        from pathlib import Path
        from hymtl.cli.process_exit import run_as_process

        folder = Path({str(tmp_path)!r})
        handler = logging.FileHandler(folder / "run.log")
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)

        def late_writer():
            time.sleep(0.3)
            (folder / "thread.txt").write_text("joined")

        def entry():
            logging.info("logged before exit")
            atexit.register(lambda: (folder / "atexit.txt").write_text("ran"))
            threading.Thread(target=late_writer).start()
            sys.stdout.write("no newline, still flushed")
            sys.exit(3)

        run_as_process(entry)
        """
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == "no newline, still flushed"
    assert (tmp_path / "thread.txt").read_text() == "joined"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "run.log").read_text() == "logged before exit\n"


def test_worker_pools_left_running_are_stopped_as_at_a_normal_exit(tmp_path):
    """Thread and process pools (joblib's too) stop in threading's exit hooks, before the
    join of the threads they run on: the process ends instead of waiting for them forever."""
    result = run_python(
        """
        import concurrent.futures
        from hymtl.cli.process_exit import run_as_process

        threads = concurrent.futures.ThreadPoolExecutor(2)
        processes = concurrent.futures.ProcessPoolExecutor(1)
        print(threads.submit(pow, 2, 5).result(), processes.submit(pow, 3, 2).result())
        run_as_process(lambda: 0)
        """,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout) == (0, "32 9\n"), result.stderr


def test_exit_with_a_message_prints_it_and_returns_one():
    result = run_python(
        """
        import sys
        from hymtl.cli.process_exit import run_as_process
        run_as_process(lambda: sys.exit("stopped: a reason"))
        """
    )
    assert (result.returncode, result.stderr) == (1, "stopped: a reason\n")


def test_a_run_from_the_command_line_completes_its_run_dir(image_root, tmp_path):
    run_dir = tmp_path / "run"
    args = [f"data.root={image_root}", "epochs=1", f"hydra.run.dir={run_dir}", *TINY]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr
    log = (run_dir / "train.log").read_text()
    assert "epoch 1/1" in log and log.rstrip().splitlines()[-1].endswith(f"run dir {run_dir}")
    assert '"status": "completed"' in (run_dir / "summary.json").read_text()
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1


def test_a_run_imports_only_what_its_config_needs(image_root, tmp_path):
    """A default run on the CPU loads no launcher, sweeper, tracker or exporter, and not
    torch._dynamo either (see lazy_dynamo)."""
    result = run_python(
        f"""
        import sys
        from hydra import compose, initialize_config_module
        import hymtl.train

        overrides = {TINY!r} + ["data.root={image_root}", "epochs=1"]
        with initialize_config_module("hymtl.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        hymtl.train.train(cfg, {str(tmp_path / "run")!r})
        unneeded = ("onnx", "onnxruntime", "onnxscript", "mlflow", "tensorboard", "optuna")
        unneeded += ("submitit", "torch.utils.tensorboard", "torchvision.transforms.v2")
        from hymtl.lazy_dynamo import dynamo_loaded
        print("loaded:", [name for name in unneeded if name in sys.modules], dynamo_loaded())
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "loaded: [] False"


SWALLOWS_CTRL_C = """
import os, signal, time
try:  # as some of torch's imports do: a bare except around an import
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(2)
except BaseException:
    pass
print("imported")
"""


@pytest.mark.parametrize("ignored", [False, True])
def test_ctrl_c_while_a_command_imports_is_one_line_even_if_the_import_swallows_it(
    tmp_path, ignored
):
    (tmp_path / "swallows_ctrl_c.py").write_text(SWALLOWS_CTRL_C)
    result = run_python(
        f"""
        import signal, sys
        sys.path.insert(0, {str(tmp_path)!r})
        # SIG_IGN: as under nohup or in a background job, where it must stay ignored; else
        # Python's own handler, whatever this test process inherited
        signal.signal(signal.SIGINT, signal.SIG_IGN if {ignored} else signal.default_int_handler)
        from hymtl.cli.process_exit import import_command
        import_command("swallows_ctrl_c", "hymtl")
        print("the command ran; SIGINT ignored:", signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
        """
    )
    if ignored:
        assert result.returncode == 0, result.stderr
        assert result.stdout == "imported\nthe command ran; SIGINT ignored: True\n"
    else:
        assert (result.returncode, result.stdout) == (130, ""), result.stderr
        expected = "hymtl: interrupted during start-up, before any training; nothing to resume\n"
        assert result.stderr == expected
