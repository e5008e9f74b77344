"""Figure 1 of the study: event-study coefficients with confidence intervals."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_event_study"]


def plot_event_study(result: Any, path: str | None = None, *, level: float = 0.95, ax: Any = None,
                     title: str | None = None) -> Any:
    """Plot an event-study result against relative time.

    Point estimates with ``level`` confidence intervals, the reference period
    drawn at zero (hollow marker), a horizontal zero line and a vertical
    dashed line between periods -1 and 0 (adoption).

    Parameters
    ----------
    result : EventStudyResult
        Anything with ``tidy(level)`` and ``ref``.
    path : str, optional
        Save the figure there.
    level : float
        Confidence level.
    ax : matplotlib Axes, optional
        Draw into it instead of a new figure.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tab = result.tidy(level)
    x = tab["rel_time"].to_numpy()
    est = tab["estimate"].to_numpy()
    lo, hi = tab["ci_low"].to_numpy(), tab["ci_high"].to_numpy()
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axvline(-0.5, color="grey", linestyle="--", linewidth=1)
    ax.errorbar(x, est, yerr=np.vstack([est - lo, hi - est]), fmt="o", color="C0", capsize=3,
                label=f"estimate, {int(round(level * 100))}% CI")
    ax.plot([result.ref], [0.0], marker="o", markerfacecolor="white", color="C0", linestyle="none",
            label=f"reference ({result.ref})")
    ax.set_xlabel("Periods relative to adoption")
    ax.set_ylabel("Effect on outcome")
    ax.set_title(title or f"Event study ({getattr(result, 'method', '')})")
    ticks = np.union1d(x, [result.ref])
    if ticks.size <= 25:
        ax.set_xticks(ticks)
    ax.legend(frameon=False, loc="best")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
