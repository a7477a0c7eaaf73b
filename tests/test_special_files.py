"""Special files among the images: FIFOs, devices (directly or through a symlink) and sockets
are skipped with the usual warning, named with what they are, and never opened (opening a FIFO
blocks until a writer comes, in a scan thread that not even Ctrl-C reaches). Every check that
could hang runs in a thread joined with a timeout, and a hung open is released before failing."""

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import hymtl.data
from hymtl import predict as predict_cli
from hymtl.data import check_image, list_class_files, load_data, not_regular_reason, scan_usable
from hymtl.run.artifacts import save_checkpoint
from hymtl.training.models import build_model

from .conftest import write_class_images

TIMEOUT_S = 60


def release(fifos) -> None:
    """Open each FIFO for writing (non-blocking): a reader stuck in open() gets its writer."""
    for fifo in fifos:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def within_timeout(function, fifos=()):
    """function()'s result, or a failed test if it has not returned within TIMEOUT_S."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S)
    if thread.is_alive():
        for _ in range(40):  # each FIFO may be opened again by the next file's reader
            release(fifos)
            thread.join(0.25)
        pytest.fail(f"no answer within {TIMEOUT_S}s: a special file was opened and blocked")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def nobody_reads(fifo: Path) -> bool:
    """Whether no process has `fifo` open for reading (a non-blocking writer gets ENXIO)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as error:
        return error.errno == errno.ENXIO
    return False


@pytest.fixture
def opened(monkeypatch):
    """Every path hymtl.data decodes, in order."""
    paths = []
    real = hymtl.data.open_rgb

    def recording(path):
        paths.append(str(path))
        return real(path)

    for module in (hymtl.data.images, hymtl.data.cache, hymtl.data.datasets):
        monkeypatch.setattr(module, "open_rgb", recording)
    return paths


def test_fifo_in_a_class_folder_is_skipped_without_being_opened(tmp_path, opened):
    write_class_images(tmp_path, per_class=2)
    fifo = tmp_path / "ants" / "stuck.jpg"
    os.mkfifo(fifo)
    classes, files = list_class_files(tmp_path)
    assert str(fifo) in files["ants"]  # listed (so it can be named), but never opened
    usable, skipped = within_timeout(lambda: scan_usable(files, classes, 64, "all"), [fifo])
    assert len(usable) == 4
    assert skipped == [(str(fifo), "not a regular file (a FIFO)")]
    assert str(fifo) not in opened and len(opened) == 4
    assert nobody_reads(fifo)


def test_load_data_warns_once_naming_the_fifo(image_root, caplog):
    fifos = [image_root / "train" / "ants" / "stuck.jpg", image_root / "val" / "bees" / "pipe"]
    for fifo in fifos:
        os.mkfifo(fifo)
    with caplog.at_level(logging.WARNING, logger="hymtl.data"):
        splits = within_timeout(
            lambda: load_data("imagefolder", str(image_root), image_size=32, resize_size=36),
            fifos,
        )
    assert (len(splits.train), len(splits.val)) == (24, 12)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("skipped 2 unusable file(s): ")
    assert "stuck.jpg: not a regular file (a FIFO)" in warning
    assert "pipe: not a regular file (a FIFO)" in warning


@pytest.mark.parametrize(
    "device, kind", [("/dev/null", "a character device"), ("/dev/zero", "a character device")]
)
def test_symlink_to_a_device_is_skipped_and_named(tmp_path, opened, device, kind):
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    link = tmp_path / "linked.jpg"
    link.symlink_to(device)
    reason, image = within_timeout(lambda: check_image(str(link), 64))
    assert image is None
    assert reason == f"not a regular file (a symlink to {kind}, {device})"
    assert opened == []


def test_socket_is_skipped(tmp_path, monkeypatch, opened):
    monkeypatch.chdir(tmp_path)  # a relative name: AF_UNIX paths are limited to ~100 bytes
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind("listening.jpg")
        reason, image = within_timeout(lambda: check_image("listening.jpg", 64))
    finally:
        server.close()
    assert (reason, image) == ("not a regular file (a socket)", None)
    assert opened == []


def test_regular_files_and_broken_symlinks_are_decoded_as_before(tmp_path):
    write_class_images(tmp_path, classes=("ants",), per_class=1)
    image = tmp_path / "ants" / "ants_0.jpg"
    assert not_regular_reason(str(image)) is None
    (tmp_path / "link.jpg").symlink_to(image)
    assert check_image(str(tmp_path / "link.jpg"), 64)[0] is None
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    assert not_regular_reason(str(tmp_path / "gone.jpg")) is None
    reason, _ = check_image(str(tmp_path / "gone.jpg"), 64)
    assert reason.startswith("cannot be decoded (FileNotFoundError")


def test_predict_skips_a_fifo_among_its_inputs(tmp_path, caplog, capsys):
    torch.manual_seed(0)
    weights = build_model("resnet18", num_classes=2, pretrained=False).state_dict()
    config = {
        "model": {"name": "resnet18", "pretrained": False},
        "data": {
            "name": "imagefolder",
            "image_size": 32,
            "resize_size": 36,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "min_colors": 64,
        },
        "precision": "fp32",
        "channels_last": False,
    }
    checkpoint = tmp_path / "run" / "best.pt"
    checkpoint.parent.mkdir()
    save_checkpoint(checkpoint, {"model": weights, "config": config, "class_names": ["a", "b"]})
    inputs = tmp_path / "inputs"
    write_class_images(inputs, classes=("ants",), per_class=2)
    fifo = inputs / "ants" / "camera.jpg"
    os.mkfifo(fifo)
    with caplog.at_level(logging.WARNING):
        code = within_timeout(
            lambda: predict_cli.main([f"ckpt={checkpoint}", f"inputs={inputs}"]), [fifo]
        )
    assert code == 0
    assert capsys.readouterr().out.startswith("2 predictions -> ")
    assert "camera.jpg: not a regular file (a FIFO)" in caplog.text
    assert nobody_reads(fifo)


SLOW_SCAN = """
    import sys, time
    from pathlib import Path
    import hymtl.data

    def slow_check(path, min_colors):  # a slow disk: each file takes a while
        print("scanning", flush=True)
        time.sleep(0.5)
        return "slow", None

    hymtl.data.folders.check_image = slow_check  # what the scan calls
    classes, files = hymtl.data.list_class_files(Path(sys.argv[1]))
    hymtl.data.scan_usable(files, classes, 64, "all")
    print("finished", flush=True)
"""


def test_ctrl_c_during_a_scan_ends_it_promptly(tmp_path):
    """500 files at 0.5 s each take minutes on any machine; Ctrl-C ends the scan in seconds
    (the files not started yet are dropped, only those being read are waited for)."""
    for name in ("ants", "bees"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(250):
            (tmp_path / "data" / name / f"{index}.jpg").write_bytes(b"x")
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SLOW_SCAN), str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite run in the background (`&`, nohup) may start children with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    with process:  # closes the pipes however the test ends (no ResourceWarning later)
        try:
            # The scan's threads print at once: their lines may run together.
            assert "scanning" in process.stdout.readline()
            time.sleep(1)
            sent = time.monotonic()
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert time.monotonic() - sent < 15
    assert "finished" not in stdout
    assert "KeyboardInterrupt" in stderr
    assert process.returncode != 0
