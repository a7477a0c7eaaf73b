"""hymtl predict, evaluate and export as Hydra apps, with hymtl.train's conventions: typed configs
(hymtl.config.schema; a misspelled key is refused in one line), `-m` sweeps (one job per checkpoint:
`-m ckpt=A/best.pt,B/best.pt`), `--cfg job`, `--help` and tab completion (`-sc install=bash`).

Unlike training they own no run directory: Hydra makes no outputs/ folder, .hydra/ or log file
for them, and what they write goes where `out=` says. What they write never lands on a run's own
files and never replaces an existing file unless `overwrite=true` (check_outputs, write_outputs,
new_output_folder). A refusal is one line through hymtl.errors, `hymtl-NAME: error: ...`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import hydra
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hymtl import UserError, display_path
from hymtl.cli.commands import COMMANDS
from hymtl.config.compose import composition_message, hydra_quoted, override_problem
from hymtl.config.schema import EvaluateConfig, ExportConfig, PredictConfig
from hymtl.errors import FAILED, OK, USAGE, error, fail
from hymtl.run.files import LOCK_NAME, RUN_FILES

SCHEMAS = {"predict": PredictConfig, "evaluate": EvaluateConfig, "export": ExportConfig}

HELP = """${hydra.help.header}
usage: ${hydra.help.app_name} key=value ...   (every key below; a path with spaces: 'key=a b')
       ${hydra.help.app_name} -m ckpt=RUN_A/best.pt,RUN_B/best.pt ...   (one job per checkpoint)

Keys and defaults (??? = required):

$CONFIG
--cfg job shows the config a command line makes; --hydra-help lists Hydra's own flags.
"""


# A folder holds a run when it has one of the files only training writes there.
RUN_MARKERS = (".hydra", "summary.json", "last.pt", "metrics.csv", "train.log")
# Names a command never writes into such a folder, even with overwrite=true: every file a run
# owns (run.rundir.RUN_FILES: checkpoints, summary, plots, CSVs, .hydra/, train.log), its lock.
RUN_OWNED = frozenset(RUN_FILES) | {LOCK_NAME}


def holds_run(folder: Path) -> bool:
    return any(os.path.lexists(Path(folder) / name) for name in RUN_MARKERS)


def os_problem(error: OSError, path: Path) -> str:
    """An OSError met writing `path`, as one line."""
    return f"cannot write {display_path(path)}: {error.strerror or type(error).__name__}"


def writable_folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (or in the folders that would be made for it),
    judged before any work: a path through a file, or a folder the process may not write
    (os.access also answers False on a read-only file system, for root too). None: it looks fine."""
    ancestor = Path(folder)
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{display_path(ancestor)} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        reason = "read-only file system" if read_only_mount(ancestor) else "permission denied"
        return f"cannot write in {display_path(ancestor)}: {reason}"
    return None


def read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_outputs(
    paths: list[Path],
    overwrite: bool,
    out: Path | None = None,
    keep: tuple[Path, ...] = (),
    hint: str = "",
) -> None:
    """Refuse, in one line and before any work, to write `paths` (what `out=`, None for the
    default, makes the command write): a run's own file (a name of RUN_OWNED in a folder that
    holds a run), even with overwrite=true; a file of `keep` (the checkpoint being read); a
    folder; an existing file without overwrite=true; a folder that cannot be written. `hint`
    follows each `choose another out=`."""

    def refuse(path: Path, problem: str) -> UserError:
        given = f"out={display_path(out)}: " if out is not None and out != path else ""
        return UserError(f"{given}{display_path(path)} {problem}")

    for path in paths:
        folder = path.parent
        if path.name in RUN_OWNED and holds_run(folder):
            raise refuse(
                path,
                f"belongs to the run in {display_path(folder)}, and no other command replaces "
                f"a run's files (not even with overwrite=true); choose another out={hint}",
            )
        if path.exists() and any(other.exists() and path.samefile(other) for other in keep):
            raise refuse(path, f"is the checkpoint being read; choose another out={hint}")
        if path.is_dir():
            raise refuse(path, f"is a folder, not a file; choose another out={hint}")
        if os.path.lexists(path) and not overwrite:
            raise refuse(
                path, f"exists; choose another out={hint}, or add overwrite=true to replace it"
            )
    for folder in dict.fromkeys(path.parent for path in paths):
        problem = writable_folder_problem(folder)
        if problem:
            given = f"out={display_path(out)}: " if out is not None else ""
            raise UserError(f"{given}{problem}")


def write_outputs(writers: dict[Path, Callable[[str], None]], overwrite: bool) -> None:
    """Write each file through a temporary file beside it, then put them all in place:
    replacing what is there only with overwrite=true (else a file that appeared since
    check_outputs is kept, and the ones just put in place are taken back). Each writer gets
    the temporary file's path, which ends in the file's own suffix (matplotlib reads the format
    from it). An OSError is one line (UserError)."""
    staged: dict[Path, str] = {}
    placed: list[Path] = []
    path = next(iter(writers))
    try:
        for path, write in writers.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
            )
            os.close(fd)
            staged[path] = tmp
            write(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs are for sharing
        for path, tmp in staged.items():
            if not place(tmp, path, overwrite):
                for earlier in placed:
                    earlier.unlink(missing_ok=True)
                raise UserError(
                    f"{display_path(path)} appeared while it was being written and is kept; "
                    "choose another out=, or add overwrite=true to replace it"
                )
            placed.append(path)
    except OSError as error:
        raise UserError(os_problem(error, path)) from None
    finally:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)


def place(tmp: str, path: Path, overwrite: bool) -> bool:
    """Rename `tmp` to `path`. Without overwrite never over an existing file (False): a hard
    link fails atomically if `path` exists (where links are not supported: checked, renamed)."""
    if overwrite:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(path):
            return False
        os.replace(tmp, path)
    return True


def new_output_folder(parent: Path) -> Path:
    """PARENT/YYYYMMDD-HHMMSS-ffffff/, made now and by this call only (like evaluate's reports:
    microseconds keep two calls apart, and a name already taken is never reused)."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        while True:
            folder = parent / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
    except OSError as problem:
        reason = problem.strerror or type(problem).__name__
        raise UserError(f"cannot write in {display_path(parent)}: {reason}") from None


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
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)
        store.store(name=f"hymtl_{name}", node=command_config(name, COMMANDS[name][1]))


def literal_values(argv: list[str]) -> list[str]:
    """`key=value` arguments whose value Hydra's grammar cannot read (a path with non-ASCII
    letters, spaces, brackets, a name that is not UTF-8) with the value quoted, so paths work
    as typed; the rest (sweeps `a,b`, null, numbers, flags) unchanged."""
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
    exit status: OK; USAGE for a refusal, one `hymtl-NAME: error:` line; FAILED when jobs of a
    sweep failed (each one said why, and the others ran)."""
    program = f"hymtl-{name}"
    register_command_configs()
    argv = literal_values(sys.argv[1:] if argv is None else argv)
    if {"-m", "--multirun"} & set(argv):
        problem = sweep_problem(argv, f"hymtl_{name}")
    else:
        problem = override_problem(argv, f"hymtl_{name}", config_module=None)
    if problem:
        error(program, problem)
        return USAGE
    failed_jobs: list[int] = []
    job = command_job(name, task, usage, failed_jobs)
    # With Hydra's logging off, log lines are plain: the command's, and a sweep's job list.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = hydra.main(version_base="1.3", config_path=None, config_name=f"hymtl_{name}")(job)
    command_line = sys.argv
    sys.argv = [command_line[0], *argv]  # Hydra reads its arguments from sys.argv
    try:
        app()
    except SystemExit as exit:  # --help, a refusal, or Hydra's own error (status 1)
        return OK if exit.code is None else exit.code if isinstance(exit.code, int) else FAILED
    finally:
        sys.argv = command_line
    return FAILED if failed_jobs else OK


def command_job(
    name: str, task: Callable[[DictConfig], None], usage: str, failed_jobs: list[int]
) -> Callable[[DictConfig], None]:
    """The Hydra task of hymtl NAME: `task` on the composed config. A refusal (UserError) is
    one line: alone, the command exits USAGE; in a sweep, the line names the job, whose number
    goes into `failed_jobs`, and the other jobs still run."""
    program = f"hymtl-{name}"

    def job(cfg: DictConfig) -> None:
        try:
            # Required keys left out, or given nothing (`ckpt=`): either way, name them.
            required = OmegaConf.missing_keys(OmegaConf.structured(SCHEMAS[name]))
            missing = sorted(key for key in required if OmegaConf.select(cfg, key) in (None, ""))
            if missing:
                raise UserError(f"missing {', '.join(k + '=' for k in missing)}; usage: {usage}")
            task(cfg)
        except UserError as refusal:
            hydra_cfg = HydraConfig.get()
            if hydra_cfg.mode != RunMode.MULTIRUN:
                fail(program, str(refusal), USAGE)
            job_name = f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)})"
            error(program, f"{job_name}: {refusal}")  # an override may hold a non-UTF-8 path
            failed_jobs.append(hydra_cfg.job.num)

    return job
