"""scripts/hostile.py: it lists its cases, and a few config refusals hold end to end."""

import subprocess
import sys
from pathlib import Path

import pytest

HOSTILE = Path(__file__).resolve().parents[1] / "scripts" / "hostile.py"
CONFIG_REFUSALS = ["config_lr_nan", "schema_added_misspelled_key", "schema_negative_seed"]


def hostile(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HOSTILE), *args], capture_output=True, text=True, timeout=timeout
    )


def test_list_prints_at_least_32_case_names():
    result = hostile("--list", timeout=120)
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert len(names) >= 32
    assert len(set(names)) == len(names)
    assert set(CONFIG_REFUSALS) <= set(names)


@pytest.mark.slow
def test_config_refusals_hold():
    result = hostile("--only", ",".join(CONFIG_REFUSALS))
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line for line in lines if line.startswith("held  ")] == [
        f"held  {name}" for name in CONFIG_REFUSALS
    ]
    assert lines[-1] == f"held: {len(CONFIG_REFUSALS)}/{len(CONFIG_REFUSALS)}"
