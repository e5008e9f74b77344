"""Figure of a wild bootstrap: the distribution of the bootstrap t statistics
against the observed one."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..inference.results import pvalue_text
from ._figure import axes

__all__ = ["plot_wildboot"]


def plot_wildboot(result: Any, path: str | None = None, *, bins: int | None = None, ax: Any = None):
    """Histogram of ``result.statistics`` with the observed t statistic.

    Parameters
    ----------
    result : WildBootResult
    path : str, optional
        Save the figure there as well.
    bins : int, optional
        Histogram bins (default: about sqrt(draws), 20-100).
    ax : matplotlib Axes, optional
        Draw into these axes instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    stats = np.asarray(result.statistics)
    stats = stats[np.isfinite(stats)]
    fig, ax = axes(ax, (6.4, 4.0))
    nb = bins or int(np.clip(np.sqrt(stats.size), 20, 100))
    ax.hist(stats, bins=nb, density=True, color="0.7", edgecolor="0.45", linewidth=0.4,
            label=f"bootstrap t ({result.draws:,} draws)")
    t = result.tstat
    ax.axvline(t, color="C3", linewidth=1.6, label=f"observed t = {t:.3f}")
    if result.alternative == "two-sided":
        ax.axvline(-t, color="C3", linewidth=1.0, linestyle="--",
                   label=f"mirror = {-t:.3f} (two-sided: both tails count)")
    ax.set_xlabel(f"t statistic of {result.param} (H0: {result.param} = {result.h0:g})")
    ax.set_ylabel("density")
    ax.set_title(
        f"Wild cluster bootstrap of the t statistic of {result.param}\n({result.bootstrap_type}, "
        f"{result.weights} weights; p {pvalue_text(result.pvalue, result.draws, result.pvalue == 0)}, "
        f"{result.alternative})"
    )
    ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
