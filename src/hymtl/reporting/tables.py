"""How the report writes numbers, paths and tables (stats.py: percentages and intervals)."""

from __future__ import annotations

from pathlib import Path

from hymtl.reporting.stats import percent_mean_std


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def percent_points(diff: float | None) -> str:
    return "–" if diff is None else f"{100 * diff:+.2f}"


def number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def optional_mean_std(value) -> str:
    return "–" if value is None else percent_mean_std(value)


def readable(value: float) -> str:
    """Σ|w| of a whole network is ~1e5, of a head alone ~1e-1: thousands separators or 4 digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def distinct(values) -> str:
    """The distinct values, numbers in numeric order (1, 2, 3, 25), then the rest by name."""
    found = {v for v in values if v is not None}
    numbers = sorted(v for v in found if isinstance(v, int | float) and not isinstance(v, bool))
    others = sorted(str(v) for v in found if v not in numbers)
    return ", ".join([*map(str, numbers), *others]) or "unknown"


def relative(path: Path) -> str:
    """A path as the report shows it: relative to where the command ran when it lies below it
    (a committed report then names no machine's folders, and its regenerate command runs from
    any checkout), else as given."""
    path = Path(path).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
