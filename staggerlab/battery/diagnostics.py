"""Sections 4-5: Goodman-Bacon and dCDH diagnostics; placebo test and wild cluster bootstrap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..inference.results import pvalue_text
from ..report import md_table
from .spec import BatterySpec, Section, jobs_for, save_figure
from .tables import SharedFits

__all__ = ["section_diagnostics", "section_inference"]


def section_diagnostics(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Goodman-Bacon decomposition and dCDH weights."""
    from ..inference.did.bacon import bacon
    from ..inference.did.dcdh import twfe_weights

    y = spec.outcomes[0]
    b = bacon(frame, y=y, unit=spec.unit, time=spec.time, cohort=shared.cohort, balance=True)
    note = f" Sample: {b.n_units:,} `{spec.unit}` units, {b.nobs:,} rows"
    if b.balanced_from is not None:
        note += (f"; the decomposition is exact on balanced panels only, so it uses the units observed with `{y}` "
                 f"in every period (of {b.balanced_from[0]:,} units, {b.balanced_from[1]:,} rows with `{y}`).")
    else:
        note += "."
    bt = b.by_type()
    w = twfe_weights(frame, y=y, unit=spec.unit, time=spec.time, cohort=shared.cohort)
    share_neg = abs(w.sum_negative) / (w.sum_positive + abs(w.sum_negative)) if w.n_negative else 0.0
    from ..plots.bacon import plot_bacon

    figs = [save_figure(plot_bacon(b, outcome=y), out, "bacon.png")]
    wt = pl.DataFrame({"quantity": ["positive weights", "negative weights", "sum of positive weights",
                                    "sum of negative weights", "share of negative weight", "sigma (robustness)"],
                       "value": [float(w.n_positive), float(w.n_negative), w.sum_positive, w.sum_negative,
                                 share_neg, w.sigma]})
    # the Markdown shows the two counts as integers (the parquet/JSON column stays numeric)
    shown = wt.with_columns(pl.Series("value", [f"{w.n_positive:,}", f"{w.n_negative:,}",
                                                *(f"{v:.4f}" for v in wt["value"].to_list()[2:])]))
    text = (f"Goodman-Bacon decomposition of the TWFE coefficient of `{y}` (no controls) into 2x2 comparisons; "
            f"TWFE = {b.twfe:.4f}.{note}\n\n" + md_table(bt)
            + "\n\nde Chaisemartin-D'Haultfoeuille weights attached by the TWFE coefficient to the treated "
              f"(cohort, period) cells ({w.n_units:,} units, {w.nobs:,} rows: every row with `{y}`):\n\n"
            + md_table(shown))
    return Section("diagnostics", "4. Diagnostics", text, {"bacon": b.tidy(), "bacon_by_type": bt,
                                                        "dcdh_weights": w.tidy()}, figs,
                   {"bacon_twfe": b.twfe, "bacon_by_type": bt.to_dicts(), "dcdh": wt.to_dicts()})


def section_inference(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Figure 2 (placebo test) and the wild cluster bootstrap of the treatment coefficient."""
    from ..inference.resampling.placebo import placebo
    from ..inference.resampling.wildboot import wildboot

    y = spec.outcomes[0]
    fit = shared.baseline
    parts, tables, numbers, figs = [], {}, {}, []
    ri = placebo(fit, param=treat, draws=spec.draws, scheme="units+timing", stat="t", seed=spec.seed,
                 n_jobs=jobs_for(spec), backend=spec.backend, unit=spec.unit, time=spec.time)
    tables["placebo"] = ri.tidy()
    figs.append(save_figure(ri.plot(), out, "placebo.png"))
    lo, hi = ri.pvalue_ci
    numbers["placebo"] = {"observed": ri.observed, "pvalue": ri.pvalue, "pvalue_ci": [lo, hi],
                          "n_extreme": ri.count, "valid_draws": ri.n_valid,
                          "draws": spec.draws, "mean": float(np.mean(ri.statistics)),
                          "sd": float(np.std(ri.statistics, ddof=1))}
    parts.append(
        f"**Placebo test** ({spec.draws:,} draws; each draw picks as many treated units as the data have, at "
        "random, and gives each an adoption year drawn from the empirical adoption-year distribution; "
        f"statistic: the CRV1 t of `{treat}`). Observed t = {ri.observed:.3f}; placebo t's have mean "
        f"{np.mean(ri.statistics):.3f} and sd {np.std(ri.statistics, ddof=1):.3f}; randomization p-value "
        f"{pvalue_text(ri.pvalue, ri.n_valid, ri.count == 0)}{' (no draw as extreme as the observed t)' if ri.count == 0 else ''} (exact 95% Clopper-Pearson interval for its Monte "
        "Carlo error "
        f"[{lo:.4f}, {hi:.4f}])."
    )
    wb = wildboot(fit, param=treat, draws=spec.boot_draws, seed=spec.seed, n_jobs=jobs_for(spec), backend=spec.backend)
    tables["wildboot"] = wb.tidy()
    figs.append(save_figure(wb.plot(), out, "wildboot.png"))
    numbers["wildboot"] = {"tstat": wb.tstat, "pvalue": wb.pvalue, "confint": list(wb.confint),
                           "draws": spec.boot_draws, "note": wb.note}
    parts.append(
        f"**Wild cluster bootstrap** (WCR, Rademacher weights by {spec.cluster_col}, {spec.boot_draws:,} draws): "
        f"t = {wb.tstat:.3f}, bootstrap p-value {pvalue_text(wb.pvalue, spec.boot_draws, wb.pvalue == 0)}, 95% CI by test inversion "
        f"[{wb.confint[0]:.4f}, {wb.confint[1]:.4f}]." + (f" Note: {wb.note}" if wb.note else "")
    )
    text = (f"Inference on the baseline coefficient of `{treat}` for `{y}` (with controls; N = {fit.nobs:,}, "
            f"{fit.n_clusters:,} clusters).\n\n" + "\n\n".join(parts))
    return Section("inference", "5. Placebo test and wild cluster bootstrap", text, tables, figs, numbers)


