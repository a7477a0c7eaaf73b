"""comparison.png: the val curves of every run of the report, one colour per regularizer."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hymtl.reporting.runs import Run
from hymtl.reporting.settings import regularizer_order
from hymtl.training.plots import whole_epochs


def plot_comparison(runs: list[Run], path: Path) -> Figure:
    """Val accuracy and val loss per epoch of every run; one colour per regularizer."""
    plotted = [run for run in runs if run.metrics and run.status != "failed"]
    names = regularizer_order(run.regularizer for run in plotted)
    colors = {name: f"C{index % 10}" for index, name in enumerate(names)}
    fig = Figure(figsize=(12, 5), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    for run in plotted:
        epochs = [row["epoch"] for row in run.metrics]
        style = {"color": colors[run.regularizer], "lw": 1, "alpha": 0.8, "marker": "o", "ms": 3}
        style["ls"] = "-" if run.status == "completed" else "--"
        ax_acc.plot(epochs, [row["val_acc"] for row in run.metrics], **style)
        ax_loss.plot(epochs, [row["val_loss"] for row in run.metrics], **style)
    # "val" is whatever chose each run's epoch: val/, or the select split (holdout, kfold).
    which = "val/select images, which choose the epoch"
    ax_acc.set(xlabel="epoch", ylabel="val accuracy", title=f"val accuracy per epoch ({which})")
    ax_loss.set(xlabel="epoch", ylabel="val cross-entropy", title=f"val loss per epoch ({which})")
    all_epochs = [row["epoch"] for run in plotted for row in run.metrics]
    for ax in (ax_acc, ax_loss):
        whole_epochs(ax, all_epochs)
    if plotted:
        handles = [Line2D([], [], color=colors[name], marker="o", label=name) for name in names]
        # Below the axes, so the legend never covers a run's points.
        ax_acc.legend(
            handles=handles,
            title="regularizer",
            loc="upper center",
            bbox_to_anchor=(1.1, -0.14),
            ncol=len(handles),
            frameon=False,
        )
    else:
        for ax in (ax_acc, ax_loss):
            ax.text(0.5, 0.5, "no metrics.csv rows yet", ha="center", va="center")
    dashed = " (dashed = incomplete)" if any(r.status != "completed" for r in plotted) else ""
    fig.suptitle(f"{len(plotted)} runs, one colour per regularizer{dashed}")
    fig.savefig(path, dpi=100)
    return fig
