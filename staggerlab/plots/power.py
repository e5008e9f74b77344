"""Power curves of a design-based power study (one line per estimator)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy import special

from ._figure import axes

__all__ = ["plot_power"]


def plot_power(curves: pl.DataFrame, *, level: float = 0.95, target: float = 0.8, ax: Any = None,
               title: str | None = None, path: str | None = None) -> Any:
    """Rejection rate against effect size, with pointwise Monte Carlo bands.

    Parameters
    ----------
    curves : polars.DataFrame
        ``PowerResult.tidy()`` (columns ``estimator, effect, power, power_mcse``).
    level : float
        The tests are at ``1 - level`` (a dotted line marks it) and the bands
        are ``power +- z * power_mcse`` with ``z`` the normal quantile of ``level``.
    target : float
        Power marked by a dashed line (the MDE's target).
    ax : matplotlib Axes, optional
    title : str, optional
    path : str, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = axes(ax, (6.4, 4.2))
    z = float(special.ndtri(0.5 + level / 2))  # scipy.stats' norm.ppf, without importing scipy.stats
    for name in dict.fromkeys(curves["estimator"].to_list()):
        r = curves.filter(pl.col("estimator") == name).sort("effect")
        x, p, se = (r[c].to_numpy() for c in ("effect", "power", "power_mcse"))
        line, = ax.plot(x, p, marker="o", ms=3, label=name)
        ax.fill_between(x, np.clip(p - z * se, 0, 1), np.clip(p + z * se, 0, 1), color=line.get_color(), alpha=0.15)
    ax.axhline(target, color="0.4", ls="--", lw=0.8, label=f"{target:.0%} power")
    ax.axhline(1 - level, color="0.4", ls=":", lw=0.8, label=f"nominal size {1 - level:.2g}")
    ax.set_xlabel("effect size")
    ax.set_ylabel("rejection rate")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Design-based power")
    ax.legend(fontsize=8, frameon=False)
    if path is not None:
        fig.savefig(path, dpi=130, bbox_inches="tight")
    return fig
