"""What `hymtl train --help` lists, read from conf/ itself so the page never drifts from it:
the config groups with their options and default, and the root config's top-level keys with
their defaults and comments. conf/hydra/help/hymtl.yaml places them with the resolvers
${hymtl_help_groups:} and ${hymtl_help_keys:} (Hydra's own $APP_CONFIG_GROUPS would list the
schema/ groups of hymtl.config.schema too, which are not options anyone picks)."""

from __future__ import annotations

import functools
import re
from importlib.resources import files

import yaml

ROOT_CONFIG = "config.yaml"


def conf_dir():
    return files("hymtl.conf")


def default_choices() -> dict[str, str | None]:
    """group -> the option the root config's defaults list picks (None: none unless chosen)."""
    defaults = yaml.safe_load(conf_dir().joinpath(ROOT_CONFIG).read_text())["defaults"]
    return {
        key: value
        for entry in defaults
        if isinstance(entry, dict)
        for key, value in entry.items()
        if not key.startswith("override ")
    }


def yaml_file(path) -> bool:
    return path.is_file() and path.name.endswith(".yaml")


def group_options() -> dict[str, list[str]]:
    """group -> its options (conf/GROUP/OPTION.yaml), in the defaults list's order, then the
    other folders alphabetically; Hydra's own hydra/ settings are left to --hydra-help."""
    found = {
        folder.name: sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if yaml_file(f))
        for folder in conf_dir().iterdir()
        if folder.is_dir() and folder.name != "hydra"
    }
    found = {group: options for group, options in found.items() if options}  # not __pycache__
    order = [group for group in default_choices() if group in found]
    return {group: found[group] for group in order + sorted(set(found) - set(order))}


def escape_for_template(text: str) -> str:
    # Hydra fills the page with string.Template, for which `$` starts a placeholder.
    return text.replace("$", "$$")


# The two texts are the values of resolvers that OmegaConf evaluates on every compose (merging
# hydra.help onto its schema), three times in a run: conf/ is read once per process.
@functools.cache
def groups_text() -> str:
    """`  regularizer: elasticnet, l1, l2, none   (default: none)`, one line per group."""
    defaults = default_choices()
    options = group_options()
    width = max(len(f"{group}: {', '.join(names)}") for group, names in options.items())
    lines = []
    for group, names in options.items():
        choice = defaults.get(group)
        note = f"default: {choice}" if choice else "optional"
        lines.append(f"  {f'{group}: ' + ', '.join(names):<{width}}   ({note})")
    return escape_for_template("\n".join(lines))


@functools.cache
def keys_text() -> str:
    """The root config's top-level keys as conf/config.yaml writes them, comments included:
    from the first key after the defaults list up to Hydra's own `hydra:` section."""
    lines = conf_dir().joinpath(ROOT_CONFIG).read_text().splitlines()
    top_level = [i for i, line in enumerate(lines) if re.match(r"[A-Za-z_]\w*:", line)]
    start = next(i for i in top_level if not lines[i].startswith("defaults:"))
    end = next((i for i in top_level if lines[i].startswith("hydra:")), len(lines))
    keys = [f"  {line}" for line in lines[start:end] if line.strip()]
    return escape_for_template("\n".join(keys))
