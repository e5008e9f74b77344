"""Goodman-Bacon decomposition figure: weight against 2x2 estimate by type."""

from __future__ import annotations

from typing import Any

from ._figure import axes

__all__ = ["plot_bacon"]

_MARKERS = {"earlier vs later treated": "o", "later vs earlier treated": "^",
            "treated vs never treated": "s", "later vs always treated": "D"}


def plot_bacon(result: Any, path: str | None = None, *, ax: Any = None, outcome: str | None = None) -> Any:
    """Scatter of every 2x2 DID (estimate) against its weight, by comparison type.

    Parameters
    ----------
    result : BaconResult
    path : str, optional
        Save the figure there.
    ax : matplotlib Axes, optional
    outcome : str, optional
        Name of the outcome, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    tab = result.tidy()
    fig, ax = axes(ax, (7, 4))
    for i, t in enumerate(tab["type"].unique(maintain_order=True).to_list()):
        sub = tab.filter(tab["type"] == t)
        ax.scatter(sub["weight"].to_numpy(), sub["estimate"].to_numpy(), marker=_MARKERS.get(t, "o"),
                   color=f"C{i}", label=t)
    ax.axhline(result.twfe, color="black", linestyle="--", linewidth=1, label=f"TWFE = {result.twfe:.3f}")
    w = tab["weight"].to_numpy()
    # a few large weights squeeze the many small ones against the axis: a log
    # scale spreads them (weights are positive shares)
    if w.size and (w > 0).all() and w.max() / w.min() > 100:
        ax.set_xscale("log")
    ax.set_xlabel("Weight")
    ax.set_ylabel("2x2 DID estimate")
    ax.set_title(f"Goodman-Bacon decomposition{' of ' + outcome if outcome else ''}")
    ax.legend(frameon=False, loc="best")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
