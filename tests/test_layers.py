"""The package's structure, as docs/layout.md draws it: layers as folders, imports that only
run downward, no import cycle, and modules and functions a reader can hold in their head."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hymtl"

# Lower numbers sit lower: a module may import from its own folder and from lower layers;
# hymtl/__init__.py, errors.py and lazy_dynamo.py are layer 0.
LAYERS = {
    "config": 1,
    "data": 2,
    "training": 3,
    "run": 4,
    "tracking": 5,
    "reporting": 5,
    "inference": 5,
    "cli": 5,
}
COMMANDS = 6  # train, report, predict, evaluate, export, __main__: the entry points on top
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def place(module: str) -> tuple[str, int]:
    """(the folder or top-level module a module belongs to, its layer)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top in ("__init__", "errors", "lazy_dynamo"):  # the package face: imported first
        return "base", 0
    return top, LAYERS.get(top, COMMANDS)


def hymtl_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The hymtl modules `path` imports, wherever the import sits."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hymtl"):
            for alias in node.names:  # `from hymtl.run import sweep` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("hymtl")}
    return {name for name in found if name in known}


def test_imports_run_downward_only():
    known = modules()
    upward = []
    for module, path in known.items():
        folder, layer = place(module)
        for target in hymtl_imports(path, known):
            target_folder, target_layer = place(target)
            if target_folder == folder or target_layer < layer:
                continue
            if module == "hymtl.train" and target == "hymtl.train":  # `python -m`'s re-import
                continue
            upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycles():
    known = modules()
    graph = {module: hymtl_imports(path, known) - {module} for module, path in known.items()}
    graph["hymtl.train"].discard("hymtl.train")
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_modules_and_functions_stay_small(path):
    text = path.read_text()
    lines = len(text.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE)}: {lines} lines"
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
