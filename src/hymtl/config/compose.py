"""Composing a config from the command line: which overrides Hydra can read, how a failure
to compose reads as one line, did-you-mean keys, quoting of values Hydra cannot parse."""

from __future__ import annotations

import contextlib
import difflib
import itertools
import os
import re
import shlex
from importlib.resources import files
from typing import Any

from hydra import compose, initialize, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

# `_target_`s are imported and called by hydra.utils.instantiate: only these packages may be named.
ALLOWED_TARGET_PREFIXES = ("hymtl.", "torch.optim.", "torch.nn.", "torchvision.")
TRAIN = "hymtl.conf"  # hymtl.train's configs: conf/ at the repository root, shipped as hymtl.conf


def find_targets(node: Any, path: str = "") -> list[tuple[str, str]]:
    found = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            value = node._get_node(key)
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                found.append((where, str(node[key])))
            else:
                found += find_targets(value, where)
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            found += find_targets(value, f"{path}[{index}]")
    return found


@contextlib.contextmanager
def hydra_search_path(config_module: str | None):
    """Hydra initialized as an app sees its configs: the package of YAML files `config_module`
    (hymtl.train's `hymtl.conf`), or only the ConfigStore (predict, evaluate: None)."""

    if config_module is None:
        with initialize(config_path=None, version_base="1.3"):
            yield
    else:
        with initialize_config_module(config_module, version_base="1.3"):
            yield


def suggest_key(dotted: str, config_name: str = "config", config_module: str | None = TRAIN) -> str:
    """`dotted` with the key of the reference config it was probably meant to be, if any."""

    with hydra_search_path(config_module):
        reference = compose(config_name)
    parent, _, leaf = dotted.rpartition(".")
    node = OmegaConf.select(reference, parent) if parent else reference
    known = [str(key) for key in node.keys()] if isinstance(node, DictConfig) else []
    guess = difflib.get_close_matches(leaf, known, n=1)
    if not guess:
        return dotted
    return f"{dotted} (did you mean {parent + '.' if parent else ''}{guess[0]}?)"


# Hydra flags after which the other arguments are not overrides of one run to compose here.
MULTIRUN = {"-m", "--multirun"}
NOT_ONE_RUN = MULTIRUN | {"--help", "-h", "--hydra-help", "--info"}
NOT_ONE_RUN |= {"-sc", "--shell-completion"}  # `-sc install=bash`: a request, not an override
# Another config than the one composed here: nothing to check it against.
OTHER_CONFIG = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}
OTHER_CONFIG |= {"--experimental-rerun"}
NOT_ONE_RUN |= OTHER_CONFIG
# Hydra flags whose value is the next argument (`--cfg job`): that argument is no override.
VALUE_FLAGS = OTHER_CONFIG | {"--cfg", "-c", "--package", "-p"}


def typed_overrides(argv: list[str]) -> list[str]:
    """The overrides among Hydra's arguments: neither its flags nor a flag's value (`--cfg job`)."""
    overrides, flag_value = [], False
    for arg in argv:
        if flag_value or arg.startswith("-"):
            flag_value = not flag_value and arg in VALUE_FLAGS
            continue
        overrides.append(arg)
    return overrides


def override_problem(
    argv: list[str], config_name: str = "config", config_module: str | None = TRAIN
) -> str | None:
    """One line for what Hydra would refuse while composing a single run (a key the config
    lacks, an option a group lacks, a value of the wrong type) instead of its multi-line
    report; None when the overrides compose. Sweeps (-m) are checked job by job instead."""

    flags = {arg.split("=")[0] for arg in argv if arg.startswith("-")}
    if flags & NOT_ONE_RUN:
        return None
    try:
        with hydra_search_path(config_module):
            compose(config_name, overrides=typed_overrides(argv), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        return composition_message(error, config_name, config_module)
    return None


# Hydra's documented switch: with it set, run_and_report raises what failed instead of printing it.
FULL_ERROR = "HYDRA_FULL_ERROR"


class RefusedComposition(Exception):
    """Hydra could not compose the run's config: one line (composition_message)."""


class CheckedComposing:
    """Around hymtl.train's @hydra.main: what Hydra would refuse to compose (a key the config
    lacks, an option a group lacks, a value of the wrong type) is RefusedComposition with one
    line, instead of Hydra's multi-line report, before anything is created. A sweep is checked
    on entry, before anything launches (multirun_problem). A single run is checked by Hydra's
    own compose, not one more (each is ~0.1 s of start-up): HYDRA_FULL_ERROR is set while Hydra
    composes, so it raises the error, and unset again by composed(), which RunStartGuard calls
    first thing once the config exists, so that the run itself reports as it always did.
    --help, --info, -sc and another config than hymtl's are left to Hydra."""

    active: CheckedComposing | None = None  # the one in progress, for composed()

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        flags = {arg.split("=")[0] for arg in argv if arg.startswith("-")}
        self.one_run = not flags & NOT_ONE_RUN
        self.saved: str | None = None

    def __enter__(self) -> CheckedComposing:
        problem = multirun_problem(self.argv)
        if problem:
            raise RefusedComposition(problem)
        if self.one_run:
            self.saved = os.environ.get(FULL_ERROR)
            os.environ[FULL_ERROR] = "1"
            CheckedComposing.active = self
        return self

    def restore(self) -> None:
        if CheckedComposing.active is self:
            CheckedComposing.active = None
            if self.saved is None:
                os.environ.pop(FULL_ERROR, None)
            else:
                os.environ[FULL_ERROR] = self.saved

    def __exit__(self, kind, error, traceback) -> None:
        composing = CheckedComposing.active is self
        self.restore()
        if composing and isinstance(error, (HydraException, OmegaConfBaseException)):
            raise RefusedComposition(composition_message(error)) from None


def composed() -> None:
    """The run's config is composed: from here on Hydra reports as it always does."""
    if CheckedComposing.active is not None:
        CheckedComposing.active.restore()


def multirun_problem(
    argv: list[str], config_name: str = "config", config_module: str | None = TRAIN
) -> str | None:
    """override_problem for a sweep (`-m`), before anything launches: the one line for what
    Hydra would refuse composing one of its jobs. Expands nothing: it composes a few jobs that
    between them give every override each value it sweeps over (a `range(...)`: its first, an
    `interval(...)`: its start); None when they compose, or for flags that make no sweep."""

    flags = {arg.split("=")[0] for arg in argv if arg.startswith("-")}
    other_mode = sorted(flags & {"--cfg", "-c", "--info", "-sc", "--shell-completion"})
    if flags & MULTIRUN and other_mode:  # Hydra's own refusal of these is a traceback
        return f"{other_mode[0]} and -m (--multirun) do not go together; leave one out"
    if not flags & MULTIRUN or flags & (NOT_ONE_RUN - MULTIRUN):
        return None
    try:
        with hydra_search_path(config_module):
            for overrides in sweep_samples(typed_overrides(argv)):
                compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        return composition_message(error, config_name, config_module)
    return None


def sweep_samples(overrides: list[str]) -> list[list[str]]:
    """The overrides of as few of a sweep's jobs as give each override every value it takes
    (job i: value i of each, wrapping around); call within hydra_search_path (for `glob(...)`)."""

    loader = GlobalHydra.instance().config_loader()
    columns = []
    for override in OverridesParser.create(config_loader=loader).parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_choice_sweep():
            values = [f"{key}={value}" for value in override.sweep_string_iterator()]
        elif override.is_range_sweep():  # numbers of one type: the first says it
            first = itertools.islice(override.sweep_string_iterator(), 1)
            values = [f"{key}={value}" for value in first]
        elif override.is_interval_sweep():  # Optuna's: any value of it; the start
            values = [f"{key}={override.value().start}"]
        else:
            values = [override.input_line]
        if values:  # an empty range or glob sweeps over nothing
            columns.append(values)
    jobs = max((len(values) for values in columns), default=1)
    return [[values[i % len(values)] for values in columns] for i in range(jobs)]


def quoted_after(text: str, prefix: str) -> str | None:
    return text.split(prefix, 1)[1].split("'", 1)[0] if prefix in text else None


def composition_message(
    error: Exception, config_name: str = "config", config_module: str | None = TRAIN
) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if error.__cause__ is not None:  # its first line; past a first line that ends with `:`
        cause = [line.strip() for line in str(error.__cause__).splitlines() if line.strip()]
        lines += cause[: 2 if cause and cause[0].endswith(":") else 1]
    text = re.sub(
        r",? set env var HYDRA_FULL_ERROR=1 to see chained exception\.?", "", " ".join(lines)
    )
    ambiguous = quoted_after(text, "Ambiguous value for argument '")
    if ambiguous and "=" in ambiguous:
        return comma_message(ambiguous)
    unknown = quoted_after(text, "Could not override '")
    if unknown:
        key = suggest_key(unknown, config_name, config_module)
        return f"unknown config key {key}; `--cfg job` lists every key"
    # "find": one option chosen (Hydra lists the others); "load": one of a list, e.g. logger=[...]
    missing = quoted_after(text, "Could not find '") or quoted_after(text, "Could not load '")
    if missing and "/" in missing:
        group, _, option = missing.rpartition("/")
        header = f"Available options in '{group}':"
        listed = lines[lines.index(header) + 1 :] if header in lines else []
        options = list(itertools.takewhile(lambda line: line.isidentifier(), listed))
        options = options or packaged_options(group)
        return f"{group}={option} is not an option; {group} options: {', '.join(options)}"
    return text


def comma_message(argument: str) -> str:
    """One line for `key=a,b` outside a sweep, with the argument to type for one value with a
    comma in it (a path): quoted for Hydra, then for the shell."""

    key, _, value = argument.partition("=")
    quoted = f"{key}={hydra_quoted(value)}"
    typed = f'"{quoted}"' if not set('"$`\\!') & set(quoted) else shlex.quote(quoted)
    return (
        f"{argument}: a comma separates values, to sweep over (add -m) or of a list "
        f"({key}=[a,b]); for one value with a comma in it, type {typed}"
    )


def packaged_options(group: str) -> list[str]:
    """The options of one of hymtl's own config groups: conf/GROUP/*.yaml."""

    folder = files("hymtl.conf").joinpath(group)
    if not folder.is_dir():
        return []
    return sorted(
        item.name.removesuffix(".yaml") for item in folder.iterdir() if item.name.endswith(".yaml")
    )


def to_plain_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain Python types (safe for JSON and weights_only checkpoints)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def hydra_quoted(value: str) -> str:
    """`value` as a quoted string of Hydra's override grammar, which reads back as `value`:
    `'` and the backslashes before it or at the end escaped, `${` kept from interpolating."""
    escaped = re.sub(r"(\\*)('|$)", lambda m: m[1] * 2 + ("\\'" if m[2] else ""), value)
    return "'" + escaped.replace("${", "\\${") + "'"
