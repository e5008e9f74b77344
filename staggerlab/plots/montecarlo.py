"""Figures of a Monte Carlo study: bias and coverage with Monte Carlo error
bars, and the sampling distribution of each estimator against the truth."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import polars as pl

__all__ = ["plot_montecarlo"]

#: error bars span +- this many Monte Carlo standard errors
MCSE_BARS = 2.0


def plot_montecarlo(result: Any, path: str | os.PathLike[str] | None = None):
    """One row of three panels per DGP: bias, coverage, sampling distributions.

    Parameters
    ----------
    result : MonteCarloResult
    path : path, optional
        Where to save the figure (format from the extension).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    summ = result.summary()
    reps = result.replications()
    dgps, ests = result.dgps, result.estimators
    fig, axes = plt.subplots(len(dgps), 3, figsize=(13, 3.4 * len(dgps)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ypos = np.arange(len(ests))
    for i, d in enumerate(dgps):
        s = summ.filter(pl.col("dgp") == d)
        s = pl.DataFrame({"estimator": ests}).join(s, on="estimator", how="left", maintain_order="left")
        ax_b, ax_c, ax_d = axes[i]
        ax_b.errorbar(s["bias"].to_numpy(), ypos, xerr=MCSE_BARS * s["bias_mcse"].to_numpy(), fmt="o", capsize=3)
        ax_b.axvline(0.0, color="grey", lw=1, ls="--")
        ax_b.set_yticks(ypos, ests)
        ax_b.set_xlabel(f"bias (+- {MCSE_BARS:g} MC se)")
        ax_b.set_title(f"{d}: bias")
        cov = s["coverage"].to_numpy()
        ax_c.errorbar(cov, ypos, xerr=MCSE_BARS * s["coverage_mcse"].to_numpy(), fmt="s", capsize=3)
        ax_c.axvline(result.level, color="grey", lw=1, ls="--")
        ax_c.set_yticks(ypos, ests)
        ax_c.set_xlim(-0.02, 1.02)
        ax_c.set_xlabel(f"coverage of {100 * result.level:g}% intervals")
        ax_c.set_title(f"{d}: coverage")
        sub = reps.filter(pl.col("dgp") == d)
        for j, e in enumerate(ests):
            r = sub.filter(pl.col("estimator") == e)
            est = r["estimate"].to_numpy()
            est = est[np.isfinite(est)]
            if est.size == 0:
                continue
            c = colors[j % len(colors)]
            ax_d.hist(est, bins=min(40, max(5, est.size // 10)), histtype="step", color=c, label=e, density=True)
            ax_d.axvline(float(np.mean(r["truth"].to_numpy())), color=c, ls=":", lw=1.2)
        plim = sub["plim"].drop_nulls().to_numpy()
        if plim.size:
            ax_d.axvline(float(np.mean(plim)), color="black", ls="-.", lw=1, label="TWFE plim")
        ax_d.set_xlabel("estimate (dotted: each estimator's truth)")
        ax_d.set_ylabel("density")
        ax_d.set_title(f"{d}: sampling distributions")
        ax_d.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
