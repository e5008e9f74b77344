"""Synthetic staggered-adoption panels with a known treatment effect.

``staggered`` is the minimal generator (unit and period effects, absorbing
staggered treatment, optional dynamics, controls and unbalancedness);
``paper_panel`` is a firm-year panel with the shape and moments of the
reference study (docs/study.md: 2011-2022, cohorts 2015-2018, about 15.5k
firm-years, 3.3% treated firm-years, the 8 controls of Table 3). Both return
polars frames; the Monte Carlo layer builds DGP objects on the same pieces.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from .._seed import SeedLike, as_generator

__all__ = ["staggered", "paper_panel", "PAPER_CONTROLS", "PAPER_OUTCOMES", "dgp", "DGP", "Truth"]


def staggered(
    n_units: int = 1500,
    n_periods: int = 12,
    *,
    start: int = 2011,
    cohorts: Sequence[int] | None = None,
    cohort_shares: Sequence[float] | None = None,
    never_share: float = 0.5,
    effect: float = 1.0,
    dynamic: float = 0.0,
    cohort_slope: float = 0.0,
    unit_sd: float = 1.0,
    time_sd: float = 0.5,
    noise_sd: float = 1.0,
    n_controls: int = 0,
    drop_share: float = 0.0,
    seed: SeedLike = 0,
) -> pl.DataFrame:
    """Simulate a staggered-adoption panel.

    ``y_it = a_i + l_t + x_it' 0.5 + tau_it D_it + e_it`` with
    ``D_it = 1[t >= g_i]`` and
    ``tau_it = effect + dynamic * (t - g_i) + cohort_slope * (g_i - g_first)``.

    Parameters
    ----------
    n_units, n_periods : int
        Panel size before any row is dropped.
    start : int
        First period label (periods are ``start .. start + n_periods - 1``).
    cohorts : sequence of int, optional
        Adoption periods; default: four evenly spread interior periods.
    cohort_shares : sequence of float, optional
        Relative sizes of the cohorts among treated units (default equal).
    never_share : float
        Share of never-treated units.
    effect, dynamic, cohort_slope : float
        Treatment effect on impact, its change per period of exposure, and its
        change per period of later adoption.
    unit_sd, time_sd, noise_sd : float
        Standard deviations of unit effects, period effects and idiosyncratic noise.
    n_controls : int
        Number of time-varying controls ``x1..xK`` (correlated with the unit effect).
    drop_share : float
        Share of unit-period rows dropped at random (unbalanced panel).
    seed : int, Generator or SeedSequence

    Returns
    -------
    polars.DataFrame
        Columns ``unit, time, cohort`` (0 = never treated), ``treat``, ``y``,
        ``tau`` (the true effect of each row, 0 when untreated), ``x1..xK``.
    """
    rng = as_generator(seed)
    times = np.arange(start, start + n_periods)
    if cohorts is None:
        cohorts = np.unique(np.linspace(start + max(1, n_periods // 4), start + n_periods - 2, 4).astype(int))
    cohorts = np.asarray(cohorts, dtype=np.int64)
    shares = np.ones(len(cohorts)) if cohort_shares is None else np.asarray(cohort_shares, float)
    shares = shares / shares.sum()
    n_treated = int(round(n_units * (1.0 - never_share)))
    g_treated = rng.choice(cohorts, size=n_treated, p=shares)
    cohort_u = np.zeros(n_units, dtype=np.int64)
    cohort_u[rng.permutation(n_units)[:n_treated]] = g_treated

    alpha_u = rng.normal(0.0, unit_sd, n_units)
    lam_t = rng.normal(0.0, time_sd, n_periods)
    unit = np.repeat(np.arange(1, n_units + 1), n_periods)
    t = np.tile(times, n_units)
    g = np.repeat(cohort_u, n_periods)
    treat = ((g > 0) & (t >= g)).astype(np.int64)
    tau = np.where(
        treat == 1,
        effect + dynamic * (t - g) + cohort_slope * (g - cohorts.min()),
        0.0,
    )
    y = np.repeat(alpha_u, n_periods) + np.tile(lam_t, n_units) + tau
    cols: dict[str, np.ndarray] = {}
    for k in range(n_controls):
        xk = 0.5 * np.repeat(alpha_u, n_periods) + rng.normal(size=unit.size)
        cols[f"x{k + 1}"] = xk
        y = y + 0.5 * xk
    y = y + rng.normal(0.0, noise_sd, unit.size)
    frame = pl.DataFrame(
        {"unit": unit, "time": t, "cohort": g, "treat": treat, "y": y, "tau": tau, **cols}
    )
    if drop_share > 0:
        frame = frame.filter(pl.Series(rng.random(frame.height) >= drop_share))
    return frame


PAPER_CONTROLS = ["Size", "Lev", "Roa", "Cash", "Age", "Mb", "Top1", "Dual"]
PAPER_OUTCOMES = ["NQPF", "N_ML", "N_TFP", "NPRO"]

# Table 3 of the study: mean, sd, min, max.
_MOMENTS = {
    "Size": (21.934, 1.138, 19.551, 25.281),
    "Lev": (0.414, 0.251, 0.0, 0.886),
    "Roa": (0.033, 0.075, -0.321, 0.212),
    "Cash": (0.195, 0.138, 0.014, 0.664),
    "Mb": (0.578, 0.241, 0.098, 1.133),
    "Top1": (0.330, 0.140, 0.088, 0.715),
}
# outcome: (mean, sd, true effect, rows missing out of 15,511)
_OUTCOMES = {
    "NQPF": (0.339, 0.329, 0.093, 0),
    "N_ML": (0.831, 1.192, 0.340, 20),
    "N_TFP": (0.912, 0.138, 0.018, 606),
    "NPRO": (4.921, 2.349, 0.393, 667),
}


def paper_panel(
    seed: SeedLike = 0,
    *,
    n_firms: int = 1780,
    n_treated: int = 84,
    effect: float = 0.093,
) -> pl.DataFrame:
    """A synthetic firm-year panel shaped like the reference study.

    Firms are observed from their listing year (or 2011) to 2022, so the panel
    is unbalanced by entry (about 15.5k firm-years). ``n_treated`` firms enter
    the pilot in one of four batches 2015-2018 (``IM = 1`` from then on, about
    3.3% of firm-years). The controls follow Table 3's means and standard
    deviations (clipped to its min/max); ``NQPF`` has true effect ``effect``
    (0.093, the study's estimate) and the other outcomes the study's
    with-controls estimates, all with firm and year effects. Extra columns for
    the battery: ``industry`` (strata), ``city`` (a coarser cluster),
    ``hightech`` (split variable, whose firms have a larger effect), and
    ``first_year`` (adoption year, 0 = never). Outcomes ``N_ML``, ``N_TFP`` and
    ``NPRO`` have missing values as in Table 3.

    Parameters
    ----------
    seed : int, Generator or SeedSequence
    n_firms, n_treated : int
        Number of firms and of pilot firms.
    effect : float
        True effect of ``IM`` on ``NQPF``.

    Returns
    -------
    polars.DataFrame
        Columns ``firm, year, IM, first_year, NQPF, N_ML, N_TFP, NPRO``, the 8
        controls, ``industry, city, hightech``, ``smart_city, lowcarbon_city``
        (two city-level staggered "competing policies" with no effect), and
        mechanism outcomes ``Subsidy, Patents, FinConstraint`` (true effects
        0.20, 0.15 and 0 standard deviations), and two instruments for ``IM``:
        ``iv_peer`` (leave-one-out pilot share of the firm's city-year) and
        ``iv_synth`` (``IM`` plus independent noise; strong and exogenous by
        construction).
    """
    rng = as_generator(seed)
    years = np.arange(2011, 2023)
    T = years.size
    # listing years: most firms listed before 2011, the rest enter at listing
    # calibrated so ln(year - listing + 1) has Table 3's mean 2.13 and sd 0.76
    listing = np.where(
        rng.random(n_firms) < 0.40,
        rng.integers(1995, 2011, n_firms),
        rng.integers(2011, 2021, n_firms),
    )
    first_obs = np.maximum(listing + 1, 2011)
    treated_ids = rng.choice(np.flatnonzero(first_obs <= 2013), n_treated, replace=False)
    first_year = np.zeros(n_firms, dtype=np.int64)
    first_year[treated_ids] = rng.choice([2015, 2016, 2017, 2018], n_treated)
    industry = rng.integers(1, 15, n_firms)
    city = rng.integers(1, 120, n_firms)
    hightech = (rng.random(n_firms) < 0.45).astype(np.int64)

    firm = np.repeat(np.arange(1, n_firms + 1), T)
    year = np.tile(years, n_firms)
    keep = year >= np.repeat(first_obs, T)
    fi = np.repeat(np.arange(n_firms), T)[keep]
    firm, year = firm[keep], year[keep]
    n = firm.size
    g = first_year[fi]
    im = ((g > 0) & (year >= g)).astype(np.int64)

    cols: dict[str, np.ndarray] = {}
    firm_level = rng.normal(size=n_firms)
    for name, (mu, sd, lo, hi) in _MOMENTS.items():
        # 60% of the variance between firms, 40% within: realistic persistence
        z = np.sqrt(0.6) * rng.normal(size=n_firms)[fi] + np.sqrt(0.4) * rng.normal(size=n)
        if name == "Size":
            z = 0.5 * z + 0.5 * firm_level[fi] * np.sqrt(1.0) + 0.0
            z = z / z.std()
        cols[name] = np.clip(mu + sd * z, lo, hi)
    age_years = year - listing[fi] + 1
    cols["Age"] = np.log(np.clip(age_years, 2, 28)).astype(float)
    # persistent within firm; P(Dual = 1) = P(N(0,1) > 0.5212) = 0.301
    cols["Dual"] = (0.8 * rng.normal(size=n_firms)[fi] + 0.6 * rng.normal(size=n) > 0.5212).astype(np.int64)

    z_ctrl = sum(
        c * (cols[v] - _MOMENTS[v][0]) / _MOMENTS[v][1]
        for v, c in [("Size", 0.30), ("Lev", -0.10), ("Roa", 0.10), ("Cash", 0.05)]
    )
    year_effect = np.linspace(-0.6, 0.6, T)[year - 2011]
    out: dict[str, np.ndarray] = {}
    for name, (mu, sd, tau, n_missing) in _OUTCOMES.items():
        firm_fe = rng.normal(size=n_firms)[fi] + 0.5 * firm_level[fi]
        tau_i = tau * (1.0 + 0.6 * (hightech[fi] - 0.45))  # hightech firms gain more
        y_std = 0.80 * firm_fe / np.sqrt(1.25) + 0.25 * year_effect + 0.25 * z_ctrl + 0.35 * rng.normal(size=n)
        y = mu + sd * y_std / y_std.std() + tau_i * im
        if name == "NQPF":
            y = y + (effect - tau) * im
        if n_missing:
            y[rng.choice(n, n_missing, replace=False)] = np.nan
        out[name] = y
    # two city-level "competing policies" (staggered, unrelated to the outcome),
    # drawn last so the columns above do not depend on them
    pol = {}
    for name in ("smart_city", "lowcarbon_city"):
        start_city = np.where(rng.random(120) < 0.35, rng.integers(2012, 2021, 120), 0)
        s = start_city[city[fi] - 1]
        pol[name] = ((s > 0) & (year >= s)).astype(np.int64)
    # mechanism outcomes (Table 8 style): true effects 0.20, 0.15, 0.0 (in sd units)
    mech = {}
    for name, tau_sd in (("Subsidy", 0.20), ("Patents", 0.15), ("FinConstraint", 0.0)):
        mech[name] = (
            rng.normal(size=n_firms)[fi] + 0.3 * year_effect + 0.8 * rng.normal(size=n) + tau_sd * im
        )
    # two instruments for the IV section (exogenous by construction): the
    # leave-one-out pilot share of the firm's city-year, and a noisy copy of
    # the treatment (a strong synthetic instrument)
    city_r = city[fi]
    key = city_r * 10_000 + year
    uniq, inv = np.unique(key, return_inverse=True)
    tot = np.bincount(inv, weights=im)
    cnt = np.bincount(inv)
    iv_peer = np.where(cnt[inv] > 1, (tot[inv] - im) / np.maximum(cnt[inv] - 1, 1), 0.0)
    iv_synth = im + rng.normal(0.0, 0.6, n)
    return pl.DataFrame(
        {
            "firm": firm,
            "year": year,
            "IM": im,
            "first_year": g,
            **out,
            **{c: cols[c] for c in PAPER_CONTROLS},
            "industry": industry[fi],
            "city": city[fi],
            "hightech": hightech[fi],
            **pol,
            **mech,
            "iv_peer": iv_peer,
            "iv_synth": iv_synth,
        }
    )


from .dgp import DGP, Truth, dgp  # noqa: E402
