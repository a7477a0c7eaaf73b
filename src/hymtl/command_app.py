"""hymtl predict, evaluate and export as Hydra apps, with hymtl.train's conventions: typed configs
(hymtl.schema; a misspelled key is refused in one line), `-m` sweeps (one job per checkpoint:
`-m ckpt=A/best.pt,B/best.pt`), `--cfg job`, `--help` and tab completion (`-sc install=bash`).

Unlike training they own no run directory: Hydra makes no outputs/ folder, .hydra/ or log file
for them, and what they write goes where `out=` says.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hymtl import UserError, display_path
from hymtl.config import composition_message, override_problem
from hymtl.schema import EvaluateConfig, ExportConfig, PredictConfig

SCHEMAS = {"predict": PredictConfig, "evaluate": EvaluateConfig, "export": ExportConfig}

HELP = """${hydra.help.header}
usage: ${hydra.help.app_name} key=value ...   (every key below; a path with spaces: 'key=a b')
       ${hydra.help.app_name} -m ckpt=RUN_A/best.pt,RUN_B/best.pt ...   (one job per checkpoint)

Keys and defaults (??? = required):

$CONFIG
--cfg job shows the config a command line makes; --hydra-help lists Hydra's own flags.
"""


def command_config(name: str, summary: str) -> dict:
    """hymtl_NAME, the primary config: the schema's keys and defaults, and Hydra set up to
    leave no trace in the working directory."""
    return {
        "defaults": [
            f"{name}_schema",
            # Log lines are the command's own (run_command's `logging.basicConfig`), no file.
            {"override hydra/hydra_logging": "none"},
            {"override hydra/job_logging": "none"},
            "_self_",
        ],
        "hydra": {
            # Hydra creates the run dir of every job: the working directory, which exists.
            "run": {"dir": "."},
            # A sweep writes Hydra's multirun.yaml into its sweep dir: the user's cache, not here.
            "sweep": {
                "dir": "${oc.env:XDG_CACHE_HOME,${oc.env:HOME,/tmp}/.cache}/hymtl/" + name,
                "subdir": ".",
            },
            "output_subdir": None,  # no .hydra/
            "job": {"name": name, "chdir": False},
            "help": {
                "app_name": f"hymtl {name}",
                "header": f"hymtl {name}: {summary}",
                "template": HELP,
            },
        },
    }


def register_command_configs() -> None:
    """The ConfigStore entries the commands compose; called before each one runs."""
    from hymtl.__main__ import COMMANDS

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)
        store.store(name=f"hymtl_{name}", node=command_config(name, COMMANDS[name][1]))


def hydra_quoted(value: str) -> str:
    """`value` as a quoted string of Hydra's override grammar, which reads back as `value`:
    `'` and the backslashes before it or at the end escaped, `${` kept from interpolating."""
    escaped = re.sub(r"(\\*)('|$)", lambda m: m[1] * 2 + ("\\'" if m[2] else ""), value)
    return "'" + escaped.replace("${", "\\${") + "'"


def literal_values(argv: list[str]) -> list[str]:
    """`key=value` arguments whose value Hydra's grammar cannot read (a path with non-ASCII
    letters, spaces, brackets, a name that is not UTF-8) with the value quoted, so paths work
    as typed; the rest (sweeps `a,b`, null, numbers, flags) unchanged."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    readable = []
    for arg in argv:
        key, equals, value = arg.partition("=")
        if not arg.startswith("-") and equals and re.fullmatch(r"[A-Za-z_][\w.]*", key):
            try:
                parser.parse_override(arg)
            except HydraException:  # the lexer and the parser raise different subclasses
                arg = f"{key}={hydra_quoted(value)}"
        readable.append(arg)
    return readable


def sweep_problem(argv: list[str], config_name: str) -> str | None:
    """override_problem for each job of a sweep (`-m`), so that a misspelled key or a bad value
    in any job is one line before the first job runs, not Hydra's multi-line report."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    overrides = [arg for arg in argv if not arg.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        return composition_message(error, config_name, config_module=None)
    for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None):
        for number, job in enumerate(batch):
            problem = override_problem(list(job), config_name, config_module=None)
            if problem:
                return f"job {number} ({' '.join(job)}): {problem}"
    return None


def run_command(
    name: str, task: Callable[[DictConfig], None], usage: str, argv: list[str] | None = None
) -> int:
    """Run hymtl NAME with `argv` (default: the command line) as Hydra would, and return its
    exit status: 0; 2 for a refusal, one `hymtl-NAME: error:` line; 1 when jobs of a sweep
    failed (each one said why, and the others ran)."""
    register_command_configs()
    argv = literal_values(sys.argv[1:] if argv is None else argv)
    if {"-m", "--multirun"} & set(argv):
        problem = sweep_problem(argv, f"hymtl_{name}")
    else:
        problem = override_problem(argv, f"hymtl_{name}", config_module=None)
    if problem:
        print(f"hymtl-{name}: error: {display_path(problem)}", file=sys.stderr)
        return 2
    failed_jobs = []

    def job(cfg: DictConfig) -> None:
        try:
            # Required keys left out, or given nothing (`ckpt=`): either way, name them.
            required = OmegaConf.missing_keys(OmegaConf.structured(SCHEMAS[name]))
            missing = sorted(key for key in required if OmegaConf.select(cfg, key) in (None, ""))
            if missing:
                raise UserError(f"missing {', '.join(k + '=' for k in missing)}; usage: {usage}")
            task(cfg)
        except UserError as error:
            hydra_cfg = HydraConfig.get()
            if hydra_cfg.mode != RunMode.MULTIRUN:
                print(f"hymtl-{name}: error: {display_path(str(error))}", file=sys.stderr)
                sys.exit(2)
            job_name = f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)})"
            line = display_path(f"{job_name}: {error}")  # an override may hold a non-UTF-8 path
            print(f"hymtl-{name}: error: {line}", file=sys.stderr)
            failed_jobs.append(hydra_cfg.job.num)

    # With Hydra's logging off, log lines are plain: the command's, and a sweep's job list.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = hydra.main(version_base="1.3", config_path=None, config_name=f"hymtl_{name}")(job)
    command_line = sys.argv
    sys.argv = [command_line[0], *argv]  # Hydra reads its arguments from sys.argv
    try:
        app()
    except SystemExit as exit:  # --help, a refusal, or Hydra's own error (status 1)
        return 0 if exit.code is None else exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv = command_line
    return 1 if failed_jobs else 0
