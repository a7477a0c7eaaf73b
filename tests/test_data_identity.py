"""A run records what it trained on; a resume or a kept sweep job on other data is refused
(hymtl/data/identity.py), and a run dir never lies inside its data root (or around it)."""

import json
import os
import shutil

import pytest

from hymtl import UserError
from hymtl.data.identity import check_same_data, data_identity, file_signature, image_changes
from hymtl.data.toydata import make_toy_image_folder
from hymtl.run.rundir import data_root_overlap
from hymtl.train import train

from .conftest import TINY, compose_config


def test_a_same_size_edit_changes_the_signature_and_a_fifo_is_never_opened(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x" * 5000)
    before = file_signature(str(image))
    image.write_bytes(b"x" * 4999 + b"y")  # same size, last byte edited
    assert file_signature(str(image)) != before and before.startswith("5000:")
    os.mkfifo(tmp_path / "pipe")
    assert file_signature(str(tmp_path / "pipe")) == "special"  # would block if opened
    assert file_signature(str(tmp_path / "gone.jpg")) == "missing"


def test_image_changes_says_what_was_added_removed_and_changed(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.jpg").write_bytes(name.encode() * 10)
    paths = [str(tmp_path / f"{name}.jpg") for name in ("a", "b", "c")]
    before = data_identity(tmp_path, ["ants"], paths)
    assert image_changes(before, data_identity(tmp_path, ["ants"], paths)) is None
    (tmp_path / "b.jpg").write_bytes(b"B" * 10)
    (tmp_path / "d.jpg").write_bytes(b"d")
    after = data_identity(tmp_path, ["ants"], [paths[1], paths[2], str(tmp_path / "d.jpg")])
    assert (
        image_changes(before, after) == "1 added, 1 removed, 1 changed (e.g. d.jpg, a.jpg, b.jpg)"
    )


def test_other_classes_are_refused_even_when_a_data_change_is_allowed(tmp_path):
    recorded = data_identity(tmp_path, ["ants", "bees"], [])
    renamed = data_identity(tmp_path, ["ants", "wasps"], [])
    with pytest.raises(UserError, match=r"class folders changed.*\['ants', 'wasps'\]"):
        check_same_data(recorded, renamed, "resume=r", allow_change=True, protocol="reference")
    assert check_same_data(None, renamed, "resume=r", False, "reference") is None  # old run


def test_a_changed_test_set_is_refused_under_kfold_even_when_allowed(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"a")
    recorded = data_identity(tmp_path, ["ants"], [])
    grown = data_identity(tmp_path, ["ants"], [str(tmp_path / "a.jpg")])
    with pytest.raises(UserError, match="resume_allow_data_change=true"):
        check_same_data(recorded, grown, "resume=r", False, "reference")
    assert check_same_data(recorded, grown, "resume=r", True, "reference").startswith("1 added")
    with pytest.raises(UserError, match="evaluation=kfold that would move images"):
        check_same_data(recorded, grown, "resume=r", True, "kfold")


def test_run_dir_and_data_root_may_not_contain_each_other(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    assert "is inside data.root" in data_root_overlap(data / "train" / "ants" / "run", data)
    assert "is inside data.root" in data_root_overlap(data, data)
    assert "is inside the run dir" in data_root_overlap(tmp_path, data)
    assert data_root_overlap(tmp_path / "runs" / "a", data) is None
    (tmp_path / "link").symlink_to(data)  # through a symlink it is still inside
    assert "is inside data.root" in data_root_overlap(tmp_path / "link" / "run", data)


@pytest.mark.slow
def test_resume_on_changed_images_is_refused_then_allowed_and_recorded(tmp_path):
    root = make_toy_image_folder(tmp_path / "images")
    run_dir = tmp_path / "run"
    train(compose_config(TINY + ["data=imagefolder", f"data.root={root}", "epochs=1"]), run_dir)
    files_before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    (root / "train" / "ants" / "ants_0.jpg").unlink()
    extend = [f"resume={run_dir}", "epochs=2"]
    with pytest.raises(UserError, match=r"changed since the run started \(1 removed"):
        train(compose_config(extend), None, extend)
    # The refused resume changed nothing in the run dir.
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == files_before
    allowed = [*extend, "resume_allow_data_change=true"]
    summary = train(compose_config(allowed), None, allowed)
    assert summary["status"] == "completed" and summary["n_train"] == 23
    assert summary["data_changes"] == [
        {"after_epoch": 1, "change": "1 removed (e.g. train/ants/ants_0.jpg)"}
    ]
    assert summary["data_identity"]["n_files"] == 35


@pytest.mark.slow
def test_resume_after_a_class_folder_was_renamed_is_refused(tmp_path):
    root = make_toy_image_folder(tmp_path / "images")
    run_dir = tmp_path / "run"
    train(compose_config(TINY + ["data=imagefolder", f"data.root={root}", "epochs=1"]), run_dir)
    for split in ("train", "val"):
        shutil.move(root / split / "bees", root / split / "wasps")
    extend = [f"resume={run_dir}", "epochs=2", "resume_allow_data_change=true"]
    with pytest.raises(UserError, match="class folders changed"):
        train(compose_config(extend), None, extend)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
