"""Callaway-Sant'Anna event-study figure."""

from __future__ import annotations

from typing import Any

from ._figure import axes, interval_bars

__all__ = ["plot_cs"]


def plot_cs(result: Any, path: str | None = None, *, ax: Any = None) -> Any:
    """Estimates with intervals against event time, pre- and post-adoption in two colours.

    Parameters
    ----------
    result : CSResult
    path : str, optional
        Save the figure there.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = axes(ax, (7, 4))
    tab = result.tidy()
    pre = result.rel_time < 0
    lo, hi = tab["ci_low"].to_numpy(), tab["ci_high"].to_numpy()
    for mask, colour, label in ((pre, "tab:red", "pre-adoption"), (~pre, "tab:blue", "post-adoption")):
        if mask.any():
            interval_bars(ax, result.rel_time[mask], result.coef[mask], lo[mask], hi[mask], fmt="o", color=colour,
                          capsize=3, label=label)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.axvline(-0.5 - result.anticipation, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("event time (periods since adoption)")
    ax.set_ylabel("ATT (Callaway-Sant'Anna)")
    band = "uniform" if result.bootstrap else "pointwise"
    ax.set_title(f"Event study ({band} {100 * result.level:.0f}% intervals)")
    ax.legend(frameon=False)
    if path is not None:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    return fig
