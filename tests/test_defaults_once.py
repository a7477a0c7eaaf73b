"""Each default is written once: in hymtl/config/schema.py or in a YAML file under conf/, never
both. The root config's values live in conf/config.yaml (its schema has types only); a group's
shared defaults live in its dataclass and an option's YAML writes only what it sets itself."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from hymtl.config import help_page, schema

from .conftest import compose_config

CONF = Path(str(help_page.conf_dir()))  # conf/, as `hymtl train --help` reads it
MISSING = "???"
schema.register_configs()  # the schema/ groups the options' defaults lists name


def yaml_files() -> list[Path]:
    """Every config file of conf/ but Hydra's own settings (hydra/help, hydra/launcher)."""
    return [
        path for path in sorted(CONF.rglob("*.yaml")) if path.relative_to(CONF).parts[0] != "hydra"
    ]


def field_type(cls: type, key: str):
    return typing.get_type_hints(cls).get(key)


def package_of(path: Path) -> str:
    """Where the file's keys land: its `# @package` line, else its folder (Hydra's default)."""
    for line in path.read_text().splitlines():
        if line.startswith("# @package "):
            package = line.removeprefix("# @package ").strip()
            return "" if package == "_global_" else package
    return ".".join(path.relative_to(CONF).parent.parts)


def schema_of(path: Path) -> type:
    """The dataclass that types a file: the schema its defaults list names, else the type of
    the root config's field at the file's package."""
    body = yaml.safe_load(path.read_text()) or {}
    for entry in body.get("defaults") or []:
        if entry == "base_config":
            return schema.Config
        if isinstance(entry, str) and entry.startswith("/schema/"):
            stored = ConfigStore.instance().load(entry[1:].split("@")[0] + ".yaml")
            return OmegaConf.get_type(stored.node)
    cls = schema.Config
    for part in filter(None, package_of(path).split(".")):
        cls = field_type(cls, part)
        assert dataclasses.is_dataclass(cls), f"{path.relative_to(CONF)}: no schema types it"
    return cls


def values(path: Path) -> dict:
    body = yaml.safe_load(path.read_text()) or {}
    return {key: value for key, value in body.items() if key not in ("defaults", "hydra")}


def schema_defaults(cls: type) -> dict:
    """Each field's default as the YAML would write it; MISSING where the schema has none."""
    return OmegaConf.to_container(OmegaConf.structured(cls), resolve=False, enum_to_str=True)


def same(written, default) -> bool:
    """The YAML's value is the schema's (enums compared by name, as the YAML writes them)."""
    numbers = (int, float)
    if isinstance(written, bool) or isinstance(default, bool):
        return type(written) is type(default) and written == default
    if isinstance(written, numbers) and isinstance(default, numbers):
        return written == default  # 0 repeats 0.0
    return type(written) is type(default) and written == default


def repeated(written: dict, cls: type, where: str = "") -> list[str]:
    """Keys of `written` whose value is the schema's default for them, written a second time."""
    defaults = schema_defaults(cls)
    found = []
    for key, value in written.items():
        if key not in defaults:
            continue  # not a key of this schema: the schema refuses it at compose time
        kind = field_type(cls, key)
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            found += repeated(value, kind, f"{where}{key}.")
        elif defaults[key] != MISSING and same(value, defaults[key]):
            found.append(f"{where}{key}: {value!r}")
    return found


def test_the_files_are_all_typed_and_walked():
    typed = {path.relative_to(CONF).as_posix(): schema_of(path) for path in yaml_files()}
    assert typed["config.yaml"] is schema.Config
    assert typed["optimizer/sgd.yaml"] is schema.SGDConfig
    assert typed["scheduler/none.yaml"] is schema.ConstantLRConfig
    assert typed["logger/mlflow.yaml"] is schema.LoggerConfig
    assert typed["augment/none.yaml"] is schema.AugmentConfig
    assert typed["experiment/cv_study.yaml"] is schema.Config
    # The walk finds a duplicate where there is one, nested ones included.
    assert repeated({"lr": 0.001, "nesterov": True}, schema.SGDConfig) == ["lr: 0.001"]
    assert repeated({"penalize": "all", "l1": 0}, schema.RegularizerConfig) == [
        "penalize: 'all'",
        "l1: 0",
    ]
    logger = {"logger": {"log_checkpoints": False}, "epochs": 25}
    assert repeated(logger, schema.Config) == ["logger.log_checkpoints: False"]
    assert repeated({"T_max": "${epochs}"}, schema.CosineConfig) == ["T_max: '${epochs}'"]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda path: path.relative_to(CONF).as_posix())
def test_no_yaml_file_repeats_a_schema_default(path):
    found = repeated(values(path), schema_of(path))
    assert not found, (
        f"conf/{path.relative_to(CONF).as_posix()} repeats the default of "
        f"hymtl/config/schema.py {schema_of(path).__name__}: {', '.join(found)}; "
        "write each value once (drop it here, or make the schema's MISSING)"
    )


def leaves(node: dict, prefix: str = "") -> dict:
    """{"loss.label_smoothing": 0.0, ...}: nested keys dotted, lists kept whole."""
    found = {}
    for key, value in node.items():
        if isinstance(value, dict):
            found |= leaves(value, f"{prefix}{key}.")
        else:
            found[f"{prefix}{key}"] = value
    return found


def test_no_schema_default_is_replaced_by_every_option():
    """A default that every option of its group (or the one root config) sets itself is
    never used: a dead second copy. Its home is the YAML, and the schema's field MISSING."""
    chosen = [group for group, option in help_page.default_choices().items() if option]
    files = [CONF / help_page.ROOT_CONFIG]
    files += [path for group in chosen for path in sorted((CONF / group).glob("*.yaml"))]
    by_schema: dict[type, list[Path]] = {}
    for path in files:
        by_schema.setdefault(schema_of(path), []).append(path)
    dead = []
    for cls, paths in by_schema.items():
        defaults = leaves(schema_defaults(cls))
        for key, default in defaults.items():
            if default != MISSING and all(key in leaves(values(path)) for path in paths):
                dead.append(f"{cls.__name__}.{key} (every one of {len(paths)} file(s) sets it)")
    assert not dead, f"schema defaults no option uses: {', '.join(dead)}"


def test_help_lists_every_top_level_key_with_its_value():
    """`hymtl train --help` shows conf/config.yaml's keys: every key of the root config that no
    group option sets must be there, grid_images included, with the value a run gets."""
    groups = set(help_page.default_choices())
    composed = OmegaConf.to_container(compose_config(), resolve=True, enum_to_str=True)
    expected = leaves({key: value for key, value in composed.items() if key not in groups})
    shown = leaves(yaml.safe_load(help_page.keys_text().replace("$$", "$")))
    assert shown == expected
    assert "grid_images" in shown
