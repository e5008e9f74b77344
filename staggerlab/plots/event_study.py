"""Figure 1 of the study: event-study coefficients with confidence intervals."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._figure import axes, interval_bars

__all__ = ["plot_event_study", "plot_event_studies", "plot_event_study_band", "plot_pretrend_power", "METHOD_NAMES",
           "binned_tick_labels"]

#: how figures name the event-study methods (never their code names)
METHOD_NAMES = {"twfe": "dynamic TWFE", "sunab": "Sun-Abraham", "imputation": "imputation (BJS / two-stage DID)",
                "lpdid": "LP-DiD", "stacked": "stacked DiD", "etwfe": "extended TWFE (Wooldridge)",
                "cs": "Callaway-Sant'Anna"}


def binned_tick_labels(ticks: Any, binned: tuple[int, int] | None) -> list[str]:
    """Tick labels of relative periods; the binned endpoints of ``binned = (lo, hi)`` read ``<=lo`` / ``>=hi``."""
    out = []
    for t in np.asarray(ticks).tolist():
        if binned is not None and t == binned[0]:
            out.append(f"<={t}")
        elif binned is not None and t == binned[1]:
            out.append(f">={t}")
        else:
            out.append(str(t))
    return out


def plot_event_study(result: Any, path: str | None = None, *, level: float = 0.95, ax: Any = None,
                     title: str | None = None, outcome: str | None = None,
                     binned: tuple[int, int] | None = None) -> Any:
    """Plot an event-study result against relative time.

    Point estimates with ``level`` confidence intervals, every reference
    (normalised) period drawn at zero (hollow markers, named in the legend), a horizontal zero line and a vertical
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
        Default: the method's name (and the outcome's, if given).
    outcome : str, optional
        Name of the outcome, for the y-axis label and the default title.
    binned : (int, int), optional
        The window whose endpoints bin every earlier / later period: their
        ticks read ``<=lo`` and ``>=hi``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    tab = result.tidy(level)
    x = tab["rel_time"].to_numpy()
    est = tab["estimate"].to_numpy()
    lo, hi = tab["ci_low"].to_numpy(), tab["ci_high"].to_numpy()
    fig, ax = axes(ax, (7, 4))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axvline(-0.5, color="grey", linestyle="--", linewidth=1)
    interval_bars(ax, x, est, lo, hi, fmt="o", color="C0", capsize=3,
                  label=f"estimate, {int(round(level * 100))}% CI")
    method = getattr(result, "method", "")
    name = METHOD_NAMES.get(method, method)
    return _finish(fig, ax, result, x, outcome, title or f"Event study{' of ' + outcome if outcome else ''}: {name}",
                   binned, path)


def _finish(fig: Any, ax: Any, result: Any, x: np.ndarray, outcome: str | None, title: str, binned: Any,
            path: str | None) -> Any:
    """The reference periods (drawn at zero), axis labels, ticks, legend and file of an event-study figure."""
    refs = list(getattr(result, "refs", (result.ref,)))
    ax.plot(refs, [0.0] * len(refs), marker="o", markerfacecolor="white", color="C0", linestyle="none",
            label=f"reference ({', '.join(map(str, refs))})")
    ax.set_xlabel("Periods relative to adoption")
    ax.set_ylabel(f"Effect on {outcome}" if outcome else "Effect on the outcome")
    ax.set_title(title)
    ticks = np.union1d(x, refs)
    if ticks.size <= 25 or binned is not None:
        ax.set_xticks(ticks, binned_tick_labels(ticks, binned))
    ax.legend(frameon=False, loc="best")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def plot_event_studies(results: dict[str, Any], outcome: str, path: str | None = None, *, ax: Any = None) -> Any:
    """Several event studies of one outcome side by side (dodged), one colour per method.

    Parameters
    ----------
    results : dict of name -> event-study result
        Anything with ``tidy()`` giving ``rel_time, estimate, ci_low, ci_high``; a
        method code (``"sunab"``...) as a name is shown as the method's name.
    outcome : str
        Name of the outcome (y-axis label).
    path : str, optional
        Save the figure there.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = axes(ax, (7.5, 4.2))
    offsets = np.linspace(-0.2, 0.2, len(results))
    for off, (method, es) in zip(offsets, results.items()):
        t = es.tidy()
        interval_bars(ax, t["rel_time"].to_numpy() + off, t["estimate"].to_numpy(), t["ci_low"].to_numpy(),
                      t["ci_high"].to_numpy(), fmt="o", ms=4, capsize=2, label=METHOD_NAMES.get(method, method))
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(-0.5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("Periods relative to adoption")
    ax.set_ylabel(f"Effect on {outcome}")
    ax.set_title(f"Heterogeneity-robust event studies of {outcome} (95% CI)")
    ax.legend(frameon=False)
    if path is not None:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    return fig


def plot_event_study_band(result: Any, path: str | None = None, *, ax: Any = None, title: str | None = None,
                          outcome: str | None = None, binned: tuple[int, int] | None = None) -> Any:
    """An event study with its bootstrap intervals and sup-t simultaneous band.

    Point estimates with the bootstrap (test-inversion) intervals as error bars
    (the CRV1 ones if the intervals were not computed) and the sup-t band as a
    shaded region over the periods it covers jointly.

    Parameters
    ----------
    result : EventStudyBootResult
        Anything with ``rel_time, estimate, se, ci_low, ci_high, band_low,
        band_high, band_mask, level, ref``.
    path : str, optional
        Save the figure there.
    ax : matplotlib Axes, optional
    title : str, optional
        Default: the method's name (and the outcome's, if given).
    outcome : str, optional
        Name of the outcome, for the y-axis label and the default title.
    binned : (int, int), optional
        The window whose endpoints bin every earlier / later period (ticks
        ``<=lo`` and ``>=hi``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = result.rel_time
    est = result.estimate
    pct = int(round(result.level * 100))
    fig, ax = axes(ax, (7, 4))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axvline(-0.5, color="grey", linestyle="--", linewidth=1)
    m = np.asarray(result.band_mask, bool)
    ax.fill_between(x[m], result.band_low[m], result.band_high[m], color="C1", alpha=0.25, step=None,
                    label=f"{pct}% sup-t band")
    if result.ci_low is not None:
        interval_bars(ax, x, est, result.ci_low, result.ci_high, fmt="o", color="C0", capsize=3,
                      label=f"estimate, {pct}% bootstrap CI")
    else:
        ax.plot(x, est, "o", color="C0", label="estimate")
    name = METHOD_NAMES.get(result.method, result.method)
    return _finish(fig, ax, result, x, outcome,
                   title or f"Event study{' of ' + outcome if outcome else ''}: {name}, wild bootstrap", binned, path)


def plot_pretrend_power(pp: Any, path: str | None = None, *, power: float = 0.8, ax: Any = None,
                        title: str | None = None) -> Any:
    """The event study with the linear trend its pre-test detects with ``power``.

    Parameters
    ----------
    pp : PretrendPower
        Anything with ``es``, ``slope(power)``, ``trend(slope)``, ``rel_time`` and ``ref``.
    path : str, optional
        Save the figure there.
    power : float
        Power of the drawn trend.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = plot_event_study(pp.es, ax=ax, title=title or "Event study and the trend its pre-test would detect")
    ax = fig.axes[0] if ax is None else ax
    slope = pp.slope(power)
    x = np.union1d(pp.rel_time, [pp.ref])
    ax.plot(x, slope * (x - pp.ref), color="C3", linestyle="-.",
            label=f"trend detected with {int(round(power * 100))}% power (slope {slope:.3g})")
    ax.legend(frameon=False, loc="best")
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
