"""What every figure of :mod:`staggerlab.plots` does the same way: get its
axes, draw intervals as error bars, save a figure for a report."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["axes", "interval_bars", "save_and_close"]


def axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """``(figure, axes)``: the figure of ``ax``, or a new figure of ``figsize``.

    The user's matplotlib backend is left as it is; without a display
    matplotlib itself falls back to a non-interactive one.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        return plt.subplots(figsize=figsize)
    return ax.figure, ax


def interval_bars(ax: Any, x: Any, est: Any, lo: Any, hi: Any, **kwargs: Any) -> Any:
    """Error bars from ``lo`` to ``hi`` around ``est`` at ``x`` (intervals need not be symmetric)."""
    est = np.asarray(est, float)
    yerr = np.vstack([est - np.asarray(lo, float), np.asarray(hi, float) - est])
    return ax.errorbar(x, est, yerr=yerr, **kwargs)


def save_and_close(fig: Any, path: Any, dpi: int = 130) -> None:
    """Write ``fig`` to ``path`` and release it (a battery draws many figures)."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
