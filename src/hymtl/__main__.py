"""`hymtl COMMAND ...` and `python -m hymtl COMMAND ...`: one entry point for every command.

Each command keeps its own arguments (train, predict, evaluate, export: Hydra overrides, -m
sweeps, --help; report: SWEEP_DIR... [--out DIR]) and is the same as `python -m hymtl.COMMAND`.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys

from hymtl.cli.commands import COMMANDS, HYDRA_COMMANDS
from hymtl.cli.process_exit import import_command
from hymtl.errors import OK, USAGE, error, fail

COMPLETION_FLAGS = ("-sc", "--shell-completion")

# Like Hydra's own script, but for `hymtl COMMAND ...`: it asks `hymtl -sc query=bash`, which
# answers with the command names, then with the command's keys (Hydra's completion).
BASH_COMPLETION = """_hymtl_completion()
{
    local words=($COMP_LINE)
    local choices=$(COMP_LINE="$COMP_LINE" hymtl -sc query=bash 2> /dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "${words[$COMP_CWORD]}"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _hymtl_completion hymtl"""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hymtl COMMAND [ARGS...]   (hymtl COMMAND --help for its arguments)", ""]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", 'Tab completion in bash: eval "$(hymtl -sc install=bash)"']
    return "\n".join(lines)


def complete(request: str) -> None:
    """`hymtl -sc install=bash` prints the bash script; `hymtl -sc query=bash` answers it for
    the line in COMP_LINE: command names, or the keys of the command being typed."""
    if request == "install=bash":
        print(BASH_COMPLETION)
        return
    if request != "query=bash":
        fail("hymtl", f"-sc {request}: only install=bash and query=bash", USAGE)
    line = os.environ.get("COMP_LINE", "")
    typed = re.match(r"\s*\S+\s+(\S+)\s", line)  # `hymtl COMMAND ` and a blank after it
    if typed is None:
        start = line.split()[1] if len(line.split()) > 1 else ""
        print(" ".join(name for name in COMMANDS if name.startswith(start)))
        return
    command = typed[1]
    if command == "train":  # the command TAB is pressed for most: answered without torch
        from hymtl.cli.completion import complete_train  # Hydra: imported when asked

        os.environ["COMP_LINE"] = f"hymtl-train {line[typed.end() :]}"
        complete_train()
    elif command in HYDRA_COMMANDS:
        os.environ["COMP_LINE"] = f"hymtl-{command} {line[typed.end() :]}"
        sys.argv = [f"hymtl-{command}", "-sc", "query=bash"]
        importlib.import_module(COMMANDS[command][0]).cli()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(usage(), file=sys.stderr)
        sys.exit(USAGE)
    if argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(OK)
    if argv[0] in COMPLETION_FLAGS or (len(argv) > 2 and argv[1] in COMPLETION_FLAGS):
        # `hymtl predict -sc install=bash` too: Hydra's script would name `hymtl predict`.
        complete(argv[-1])
        sys.exit(OK)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        guess = difflib.get_close_matches(command, list(COMMANDS), n=1)
        error(
            "hymtl",
            f"unknown command {command!r}" + (f" (did you mean {guess[0]}?)" if guess else ""),
        )
        print(usage(), file=sys.stderr)
        sys.exit(USAGE)
    module = import_command(COMMANDS[command][0], "hymtl")
    # Each command reads sys.argv as if it had been run on its own (Hydra does too).
    sys.argv = [f"hymtl {command}", *rest]
    module.cli()


if __name__ == "__main__":
    main()
