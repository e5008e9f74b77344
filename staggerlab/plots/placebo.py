"""The placebo distribution figure: placebo statistics with the observed one
marked (the study's Figure 2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..inference.results import pvalue_text

__all__ = ["plot_placebo"]


def plot_placebo(
    statistics: np.ndarray,
    observed: float,
    *,
    stat: str = "t",
    param: str = "treat",
    pvalue: float | None = None,
    alternative: str = "two-sided",
    scheme: str | None = None,
    n_extreme: int | None = None,
    bins: int | str = "auto",
    ax: Any = None,
    path: str | None = None,
) -> Any:
    """Histogram and kernel density of placebo statistics, observed value marked.

    Parameters
    ----------
    statistics : ndarray
        The placebo draws' statistics (NaNs are ignored).
    observed : float
        The statistic of the actual assignment.
    stat : {"t", "coef"}
        Only used for the axis label.
    param : str
        Coefficient name, for the title.
    pvalue : float, optional
        Shown in the legend if given.
    alternative : str
        With ``"two-sided"`` the mirror ``-observed`` is marked too (dashed, in the legend).
    scheme : str, optional
        The placebo scheme (``"units+timing"``...), stated in the title.
    n_extreme : int, optional
        Draws at least as extreme as the observed one; with 0 the legend shows
        the bound ``p < 1/(B+1)`` instead of ``pvalue``.
    bins : int or str
        ``numpy.histogram`` bins.
    ax : matplotlib Axes, optional
        Draw into this axes instead of a new figure.
    path : str, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

    s = np.asarray(statistics, dtype=float)
    s = s[np.isfinite(s)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
    else:
        fig = ax.figure
    ax.hist(s, bins=bins, density=True, color="0.8", edgecolor="0.55", label=f"placebo draws (n={s.size:,})")
    if s.size > 2 and np.ptp(s) > 0:
        grid = np.linspace(min(s.min(), observed), max(s.max(), observed), 400)
        ax.plot(grid, gaussian_kde(s)(grid), color="0.2", lw=1.2, label="kernel density")
    if pvalue is None:
        lab = f"observed = {observed:.3g}"
    elif n_extreme == 0:
        lab = f"observed = {observed:.3g} (p {pvalue_text(pvalue, s.size, True)})"
    else:
        lab = f"observed = {observed:.3g} (p = {pvalue:.3g})"
    ax.axvline(observed, color="tab:red", lw=1.8, label=lab)
    if alternative == "two-sided" and observed != 0:
        ax.axvline(-observed, color="tab:red", lw=1.0, ls="--",
                   label=f"mirror = {-observed:.3g} (two-sided: both tails count)")
    what = "t statistic" if stat == "t" else "coefficient"
    ax.set_xlabel(what)
    ax.set_ylabel("density")
    ax.set_title(f"Placebo distribution of the {what} of {param}" + (f"\n(scheme: {scheme})" if scheme else ""))
    ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
