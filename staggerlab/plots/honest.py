"""Sensitivity plot of a Rambachan-Roth (HonestDiD) analysis."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._figure import axes, interval_bars

__all__ = ["plot_sensitivity"]


def plot_sensitivity(result: Any, path: str | None = None, *, ax: Any = None):
    """Robust confidence intervals against ``M`` / ``Mbar``, with the original CI.

    Parameters
    ----------
    result : HonestResult
    path : str, optional
        Save the figure there.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = axes(ax, (7, 4))
    vals = np.asarray(result.values, float)
    step = np.min(np.diff(vals)) if vals.size > 1 else 1.0
    x_orig = vals.min() - step
    lo, hi = result.original
    interval_bars(ax, [x_orig], [(lo + hi) / 2], [lo], [hi], fmt="none", capsize=4, color="tab:red",
                  label="original")
    mid = (result.ci_low + result.ci_high) / 2
    interval_bars(ax, vals, mid, result.ci_low, result.ci_high, fmt="none", capsize=4,
                  color="tab:blue", label="robust (" + ("C-LF" if result.param == "Mbar" else "FLCI") + ")")
    ax.axhline(0.0, color="black", lw=0.8)
    name = r"$\bar{M}$" if result.param == "Mbar" else "$M$"
    ax.set_xlabel(name)
    ax.set_ylabel(f"{100 * result.level:.0f}% confidence interval")
    ax.set_title(f"Sensitivity analysis ({result.method.replace('_', ' ')})")
    ax.legend(frameon=False)
    if path is not None:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    return fig
