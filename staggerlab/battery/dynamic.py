"""Sections 2-3: the dynamic TWFE event study (wild bootstrap band, pre-trend test
and power, HonestDiD) and the heterogeneity-robust estimators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from ..panels.panel import finite_mask
from ..report import md_table
from .spec import BatterySpec, Section, jobs_for, save_figure
from .tables import SharedFits

__all__ = ["section_event_study", "section_robust"]


def section_event_study(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Figure 1: dynamic TWFE event study with its wild bootstrap (sup-t band), pre-trend test and its
    power, HonestDiD sensitivity."""
    from ..inference.did.event_study import event_study

    y = spec.outcomes[0]
    es = event_study(frame, y=y, unit=spec.unit, time=spec.time, cohort=shared.cohort, controls=spec.controls,
                     cluster=spec.cluster_col, window=spec.window, method="twfe")
    from ..inference.did.pretrend_power import pretrend_power
    from ..inference.resampling.wildboot import wildboot

    tab = es.tidy()
    pre = es.pretrend_test()
    wb = wildboot(es, draws=spec.es_boot_draws, seed=spec.seed, n_jobs=jobs_for(spec), backend=spec.backend)
    btab = wb.tidy()
    pp = pretrend_power(es)
    s50, s80 = pp.slope(0.5), pp.slope(0.8)
    figs = [save_figure(wb.plot(outcome=y, binned=spec.window), out, "event_study.png")]
    text = (f"Dynamic TWFE of `{y}` on relative-time indicators {spec.window[0]}..{spec.window[1]} (endpoints "
            f"binned, reference period {es.ref}), with the controls, {spec.unit} and {spec.time} FE, CRV1 by "
            f"{spec.cluster_col}; N = {es.nobs:,}.\n\n" + md_table(tab)
            + f"\n\nJoint pre-trend test of the leads: Wald = {pre.wald:.3f} on {pre.df} restrictions, "
              f"p = {pre.pvalue:.4f}."
            + f"\n\nWild cluster bootstrap of the whole event study (WCR, Rademacher weights, {wb.draws:,} draws, "
              f"bootstrap clusters {spec.cluster_col}): p-values and test-inversion intervals per coefficient, and "
              f"the {wb.level:.0%} sup-t band over the post periods (critical value {wb.band_crit:.3f}; drawn on "
              f"the figure). Bootstrap pre-trend test p = {wb.pretrend_pvalue:.4f}.\n\n"
            + md_table(btab.select("rel_time", "estimate", "pvalue", "ci_low", "ci_high", "band_low", "band_high"))
            + f"\n\nPre-trend power (Roth 2022; the pre-test passes when no lead is significant at 5%): a linear "
              f"trend of slope {s80:.4g} per period would be detected with 80% power ({s50:.4g} with 50%). "
              "The band holds the whole post-period path with 95% probability, so effects it excludes are "
              "rejected jointly, not period by period; a passed pre-test only rules out trends steeper than the "
              "80%-power slope, and a violation that shallow would still bias the post estimates by about "
              "slope x periods since the reference.")
    numbers: dict[str, Any] = {"coefficients": tab.to_dicts(), "pretrend": {"wald": pre.wald, "df": pre.df,
                                                                          "pvalue": pre.pvalue},
                               "bootstrap": {"coefficients": btab.to_dicts(), "band_crit": wb.band_crit,
                                             "pretrend_pvalue": wb.pretrend_pvalue, "draws": wb.draws},
                               "pretrend_power": {"slope_50": s50, "slope_80": s80, "test": pp.test}}
    tables = {"event_study": tab, "event_study_bootstrap": btab}
    from ..errors import HonestDiDError
    from ..inference.did.honest import check_covariance, honest

    try:
        check_covariance(es.vcov, es.df)
    except HonestDiDError as e:
        text += f"\n\nRambachan-Roth sensitivity: not computed: {e}."
        return Section("event_study", "2. Event study", text, tables, figs, numbers)
    rm = honest(es, method="relative_magnitude", Mbar=[0.5, 1.0, 1.5, 2.0], seed=spec.seed)
    sm = honest(es, method="smoothness", M=[0.0, 0.01, 0.02, 0.05])
    rtab, stab = rm.tidy(), sm.tidy()
    tables.update({"honest_rm": rtab, "honest_sd": stab})
    numbers["honest"] = {"relative_magnitude": rtab.to_dicts(), "breakdown_Mbar": rm.breakdown,
                         "smoothness": stab.to_dicts(), "breakdown_M": sm.breakdown}
    figs.append(save_figure(rm.plot(), out, "honest_relative_magnitude.png"))
    figs.append(save_figure(sm.plot(), out, "honest_smoothness.png"))
    text += ("\n\nRambachan-Roth sensitivity of the first post-period effect. Relative magnitudes: robust "
             "confidence sets when post-period violations of parallel trends may be up to Mbar times the largest "
             "pre-period one (conditional least-favourable hybrid test, its interval's ends solved); "
             f"{rm.breakdown_text()} (Rambachan and Roth's breakdown value, solved to a relative 1e-3).\n\n"
             + md_table(rtab)
             + "\n\nSmoothness (the slope of the violation may change by at most M per period; fixed-length CI); "
               f"{sm.breakdown_text()}.\n\n" + md_table(stab))
    return Section("event_study", "2. Event study", text, tables, figs, numbers)


def section_robust(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Heterogeneity-robust estimators: imputation / two-stage DID, Sun-Abraham, Callaway-Sant'Anna
    (without covariates, and doubly robust with the controls), LP-DiD, stacked DiD and extended TWFE."""
    from ..errors import EventStudyError, OverlapError, SingularCovariatesError, TreatmentError
    from ..inference.did.event_study import event_study

    y = spec.outcomes[0]
    rows, numbers, figs = [], {}, []
    # (key, method, label, controls, options). Callaway-Sant'Anna without covariates keeps
    # every unit of an unbalanced panel (did's allow_unbalanced_panel); with covariates
    # (the doubly robust estimator, R did's default) it needs a balanced panel
    methods = [("imputation", "imputation", "Imputation / two-stage DID (BJS, Gardner)", spec.controls, {}),
               ("sunab", "sunab", "Sun-Abraham (interaction-weighted)", spec.controls, {}),
               ("cs", "cs", "Callaway-Sant'Anna (never-treated controls)", [], {"allow_unbalanced_panel": True})]
    if spec.controls:
        methods.append(("cs_dr", "cs", "Callaway-Sant'Anna (dr, controls)", spec.controls, {"est_method": "dr"}))
    methods += [("lpdid", "lpdid", "LP-DiD (not-yet-treated clean controls, pooled post)", spec.controls, {}),
                ("stacked", "stacked", "Stacked DiD (clean controls, corrective weights)", spec.controls, {}),
                ("etwfe", "etwfe", "Extended TWFE (Wooldridge)", spec.controls, {})]
    results, skipped = {}, []
    for key, method, label, controls, options in methods:
        try:
            es = event_study(frame, y=y, unit=spec.unit, time=spec.time, cohort=shared.cohort, controls=controls,
                             cluster=spec.cluster_col, window=spec.window, method=method, **options)
        except (EventStudyError, OverlapError, SingularCovariatesError, TreatmentError) as e:
            if key in ("imputation", "sunab", "cs") or (key != "cs_dr" and not isinstance(e, EventStudyError)):
                raise
            # e.g. no cohort has the whole stacking window inside the panel, or a covariate
            # 2x2 of Callaway-Sant'Anna fails on a small panel: said in the text, no row
            skipped.append(f"{label}: not estimable ({e})")
            continue
        agg = es.aggregate("simple")
        results["Callaway-Sant'Anna (dr, controls)" if key == "cs_dr" else label.split(" (")[0]] = es
        n_units, n_rows = _sample_size(es, frame, [y, *controls], spec.unit)
        rows.append({"estimator": label, "estimate": agg.estimate, "se": agg.se,
                     "ci_low": agg.estimate - 1.959964 * agg.se, "ci_high": agg.estimate + 1.959964 * agg.se,
                     "controls": "yes" if controls else "no", "units": n_units, "rows": n_rows})
        numbers[key] = {"estimate": agg.estimate, "se": agg.se, "units": n_units, "rows": n_rows,
                        "nobs": es.nobs, "event_study": es.tidy().to_dicts()}
        if key == "cs":
            cs_res = es
        if key == "cs_dr":
            numbers["cs_dr"]["n_units"] = es.n_units
    numbers["cs"]["n_units"] = cs_res.n_units
    cs_note = (f" Callaway-Sant'Anna uses all {cs_res.n_units:,} `{spec.unit}` units ({cs_res.nobs:,} rows)"
               + ("; the panel is unbalanced, so each ATT(g,t) compares the rows observed in its two periods "
                  "(R did's allow_unbalanced_panel=TRUE)." if cs_res.unbalanced else "."))
    if "cs_dr" in numbers:
        dr = numbers["cs_dr"]
        cs_note += (f" With the controls (doubly robust, Sant'Anna-Zhao, R did's default; the controls' values in "
                    f"each 2x2's earlier period) it uses the {dr['n_units']:,} units observed in every period "
                    f"({dr['nobs']:,} rows), since that estimator needs a balanced panel.")
    tab = pl.DataFrame(rows)
    if results:
        from ..plots.event_study import plot_event_studies

        figs.append(save_figure(plot_event_studies(results, y), out, "robust_event_studies.png"))
    base = shared.baseline
    text = (f"Overall ATT of `{treat}` on `{y}` from estimators robust to heterogeneous and dynamic effects "
            f"(standard errors clustered by {spec.cluster_col}); compare with the baseline TWFE (N = "
            f"{base.nobs:,} rows).{cs_note} `units` and `rows` are the sample each estimator used.\n\n"
            + md_table(tab) + "".join(f"\n\n{m}" for m in skipped))
    return Section("robust", "3. Heterogeneity-robust estimators", text, {"robust": tab}, figs, numbers)


def _sample_size(es: Any, frame: pl.DataFrame, columns: list[str], unit: str) -> tuple[int, int | None]:
    """(units, rows) an event-study estimator used: its own counts where it reports them, else the units
    of the rows complete in ``columns``."""
    rows = getattr(es, "nobs", None)
    units = getattr(es, "n_units", None)
    if units is None:
        units = frame.filter(pl.Series(finite_mask(frame, columns)))[unit].n_unique()
    return int(units), None if rows is None else int(rows)


