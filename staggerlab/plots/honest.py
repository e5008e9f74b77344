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
    # the original CI sits one step left of the grid; its tick is a word, so
    # no negative M / Mbar ever shows on the axis
    x_orig = vals.min() - step
    lo, hi = result.original
    interval_bars(ax, [x_orig], [(lo + hi) / 2], [lo], [hi], fmt="none", capsize=4, color="tab:red",
                  label="original CI (no violation allowed)")
    mid = (result.ci_low + result.ci_high) / 2
    rm = result.param == "Mbar"
    interval_bars(ax, vals, mid, result.ci_low, result.ci_high, fmt="none", capsize=4,
                  color="tab:blue", label="robust CI (" + ("conditional least-favourable" if rm else "FLCI") + ")")
    ax.axhline(0.0, color="black", lw=0.8)
    name = r"$\bar{M}$" if rm else "$M$"
    ax.set_xticks([x_orig, *vals], ["original", *(f"{v:g}" for v in vals)])
    ax.set_xlabel(name)
    ax.set_ylabel(f"{100 * result.level:.0f}% confidence interval")
    meaning = ("post-period violations up to Mbar x the largest pre-period one" if rm
               else "the slope of the violation changes by at most M per period")
    ax.set_title(f"HonestDiD sensitivity ({'relative magnitudes' if rm else 'smoothness'}): robust CI against "
                 f"{name}\n({meaning})")
    ax.legend(frameon=False)
    if path is not None:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    return fig
