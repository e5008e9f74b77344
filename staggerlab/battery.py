"""``staggerlab battery``: the reference study's robustness battery in one call.

Each section is a function of the validated options and the data; it returns
a ``Section`` (Markdown text, tables, figures, numbers for results.json). The
report is written as ``report.md`` + ``figures/*.png`` + ``results.json`` +
one parquet file per table.
"""

from __future__ import annotations

import sys
import time
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from .battery_checks import check_spec_types, helper_names, instrument_columns, validate
from .errors import (
    ArgumentTypeError,
    SpecError,
    StaggerlabWarning,
)
from .inference.regression.feols import Feols, FeolsMulti, feols
from .inference.regression.formula import Formula, quote
from .inference.regression.results import significance_stars
from .inference.results import pvalue_text
from .panels.io import read_frame
from .panels.panel import finite_mask, to_polars
from .panels.simulate import PAPER_CONTROLS, PAPER_OUTCOMES, paper_panel
from .report import md_table, write_report

__all__ = ["BatterySpec", "battery", "BatteryResult"]


@dataclass
class BatterySpec:
    """Every option of a battery run (also readable from a TOML file).

    With ``data=None`` the built-in panel calibrated to the study
    (``simulate.paper_panel(seed)``) is used with its column names.
    """

    data: str | None = None
    unit: str = "firm"
    time: str = "year"
    outcomes: list[str] = field(default_factory=lambda: list(PAPER_OUTCOMES))
    treat: str | None = "IM"
    cohort: str | None = None
    controls: list[str] = field(default_factory=lambda: list(PAPER_CONTROLS))
    cluster: str | None = None
    draws: int = 1000
    boot_draws: int = 9999
    es_boot_draws: int = 1999
    seed: int = 0
    n_jobs: int = -1
    backend: str | None = None
    window: tuple[int, int] = (-5, 5)
    extra_controls: list[str] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    dml_learners: list[str] = field(default_factory=lambda: ["lasso", "ridge", "rf", "svm-nystroem"])
    alternatives: bool = True
    power_draws: int = 100
    out: str = "report"

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> "BatterySpec":
        """Read a spec file (keys = field names; ``[battery]`` table or top level).

        Raises
        ------
        SpecError
            No file at ``path``, or the file is not valid TOML, has a key that is not an option (the
            message lists the valid ones) or a value of the wrong type.
        """
        name = Path(path).name
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise SpecError(f"no such spec file: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"spec file {name} is not valid TOML: {e}; fix the file") from None
        raw = raw.get("battery", raw)
        if not isinstance(raw, dict):
            raise SpecError(f"spec file {name}: [battery] must be a table of options")
        unknown = [k for k in raw if k not in cls.__dataclass_fields__]
        if unknown:
            raise SpecError(f"unknown option {unknown[0]!r} in spec file {name}; valid options: "
                            f"{', '.join(cls.__dataclass_fields__)}")
        check_spec_types(raw, name, cls())
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if "window" in raw:
            raw["window"] = tuple(raw["window"])
        return cls(**raw)

    @property
    def cluster_col(self) -> str:
        """Cluster column (defaults to the unit)."""
        return self.cluster or self.unit


@dataclass
class Section:
    """One section of the report."""

    key: str
    title: str
    text: str
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None  # "Type: message" when the section raised


@dataclass
class BatteryResult:
    """What a battery run produced (also written to ``out``)."""

    spec: BatterySpec
    sections: list[Section]
    out: Path
    interrupted: str | None = None  # title of the section a Ctrl-C stopped (the report then has the ones before it)

    def section(self, key: str) -> Section:
        """Look a section up by key."""
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(key)

    @property
    def failed(self) -> dict[str, str]:
        """The sections that raised: key -> ``"Type: message"``."""
        return {s.key: s.error for s in self.sections if s.error}

    def summary(self) -> str:
        """One line per section."""
        return "\n".join(f"{s.title}: " + (f"FAILED ({s.error})" if s.error else f"{s.seconds:.2f} s")
                         for s in self.sections)


# --------------------------------------------------------------------- helpers
def _fml(y: str | list[str], treat: str, controls: list[str], unit: str, time: str) -> Formula:
    return Formula.of(y, [treat, *controls], [unit, time])


def _as_multi(fit: Feols | FeolsMulti) -> dict[str, Feols]:
    return {fit.depvar: fit} if isinstance(fit, Feols) else dict(fit.fits)


def regression_table(fits: dict[str, Feols], param: str, labels: dict[str, str], unit: str = "firm",
                     time: str = "year") -> pl.DataFrame:
    """The study's Table 4 layout: coefficient with stars, (se), controls, ``unit`` FE, ``time`` FE, N, R2, within R2."""
    cols: dict[str, list[str]] = {"": [param, "", "Controls", f"{unit} FE", f"{time} FE", "N", "R2", "Within R2"]}
    for key, f in fits.items():
        c, se, p = f.coef()[param], f.se()[param], f.pvalue()[param]
        has_controls = len(f.coefnames) > 1
        cols[labels.get(key, key)] = [
            f"{c:.4f}{significance_stars(p)}", f"({se:.4f})", "Yes" if has_controls else "No", "Yes", "Yes",
            f"{f.nobs:,}", f"{f.r2:.4f}", f"{f.r2_within:.4f}",
        ]
    return pl.DataFrame(cols)


def _coef_rows(fits: dict[str, Feols], param: str) -> pl.DataFrame:
    rows = []
    for key, f in fits.items():
        t = f.tidy().filter(pl.col("term") == param).row(0, named=True)
        rows.append({"model": key, **{k: t[k] for k in ("estimate", "se", "pvalue", "ci_low", "ci_high")},
                     "nobs": f.nobs, "r2": f.r2, "r2_within": f.r2_within})
    return pl.DataFrame(rows)


def _jobs(spec: BatterySpec) -> int:
    """Workers for the draw loops: starting a local process pool costs ~2 s, more
    than 10,000 placebo or permutation draws take, so small local runs stay
    in-process (an explicit ``backend``, e.g. a dask cluster, is always used)."""
    return 1 if spec.draws <= 10_000 and spec.backend is None else spec.n_jobs


# ------------------------------------------------------------------ sections
@dataclass(eq=False)
class SharedFits:
    """Fits several sections use, each fitted once per battery.

    ``baseline`` is the study's model (main outcome on the treatment and the
    controls, unit and period FE, CRV1 by the cluster column): the baseline
    table, the placebo test, the wild bootstrap and the extra-controls table
    all read it.
    """

    frame: pl.DataFrame
    spec: BatterySpec
    treat: str
    cohort: str = "_cohort"  # the adoption-period column validate() added
    fitted: dict[str, Feols] = field(default_factory=dict)

    @property
    def baseline(self) -> Feols:
        """The baseline model (fitted on first use unless the baseline section lent it)."""
        if "baseline" not in self.fitted:
            spec = self.spec
            self.fitted["baseline"] = feols(_fml(spec.outcomes[0], self.treat, spec.controls, spec.unit, spec.time),
                                            self.frame, vcov={"CRV1": quote(spec.cluster_col)})
        return self.fitted["baseline"]


def section_baseline(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Table 4: every outcome, without and with controls, one demeaning per design."""
    vc = {"CRV1": quote(spec.cluster_col)}
    fits: dict[str, Feols] = {}
    for controls, tag in (([], "no controls"), (spec.controls, "controls")):
        res = _as_multi(feols(_fml(spec.outcomes, treat, controls, spec.unit, spec.time), frame, vcov=vc))
        for y, f in res.items():
            fits[f"{y} ({tag})"] = f
    order = [f"{y} ({t})" for y in spec.outcomes for t in ("no controls", "controls")]
    fits = {k: fits[k] for k in order if k in fits}
    table = regression_table(fits, treat, {}, spec.unit, spec.time)
    coefs = _coef_rows(fits, treat)
    main = fits[f"{spec.outcomes[0]} (controls)"] if spec.controls else fits[f"{spec.outcomes[0]} (no controls)"]
    shared.fitted["baseline"] = main  # the same model: later sections reuse it
    text = (
        f"TWFE regressions of each outcome on `{treat}` with {spec.unit} and {spec.time} fixed effects, "
        f"without and with the controls ({', '.join(spec.controls) or 'none'}); standard errors clustered by "
        f"{spec.cluster_col} (CRV1) in parentheses; * p<0.1, ** p<0.05, *** p<0.01. Outcomes sharing a "
        f"missing-value pattern share one demeaning of the regressors.\n\n" + md_table(table)
    )
    return Section("baseline", "1. Baseline TWFE", text, {"baseline": coefs}, [],
                   {"coefficients": coefs.to_dicts(), "main": {"estimate": main.coef()[treat], "se": main.se()[treat],
                                                               "nobs": main.nobs}})


def _fig(fig: Any, out: Path, name: str) -> str:
    from .plots._figure import save_and_close

    save_and_close(fig, out / "figures" / name, dpi=130)
    return name


def section_event_study(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Figure 1: dynamic TWFE event study with its wild bootstrap (sup-t band), pre-trend test and its
    power, HonestDiD sensitivity."""
    from .inference.did.event_study import event_study

    y = spec.outcomes[0]
    es = event_study(frame, y=y, unit=spec.unit, time=spec.time, cohort=shared.cohort, controls=spec.controls,
                     cluster=spec.cluster_col, window=spec.window, method="twfe")
    from .inference.did.pretrend_power import pretrend_power
    from .inference.resampling.wildboot import wildboot

    tab = es.tidy()
    pre = es.pretrend_test()
    wb = wildboot(es, draws=spec.es_boot_draws, seed=spec.seed, n_jobs=_jobs(spec), backend=spec.backend)
    btab = wb.tidy()
    pp = pretrend_power(es)
    s50, s80 = pp.slope(0.5), pp.slope(0.8)
    figs = [_fig(wb.plot(outcome=y, binned=spec.window), out, "event_study.png")]
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
    from .inference.did.honest import honest

    rm = honest(es, method="relative_magnitude", Mbar=[0.5, 1.0, 1.5, 2.0], seed=spec.seed)
    sm = honest(es, method="smoothness", M=[0.0, 0.01, 0.02, 0.05])
    rtab, stab = rm.tidy(), sm.tidy()
    tables.update({"honest_rm": rtab, "honest_sd": stab})
    numbers["honest"] = {"relative_magnitude": rtab.to_dicts(), "breakdown_Mbar": rm.breakdown,
                         "smoothness": stab.to_dicts(), "breakdown_M": sm.breakdown}
    figs.append(_fig(rm.plot(), out, "honest_relative_magnitude.png"))
    figs.append(_fig(sm.plot(), out, "honest_smoothness.png"))
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
    from .errors import EventStudyError, OverlapError, SingularCovariatesError, TreatmentError
    from .inference.did.event_study import event_study

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
        from .plots.event_study import plot_event_studies

        figs.append(_fig(plot_event_studies(results, y), out, "robust_event_studies.png"))
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


def section_diagnostics(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Goodman-Bacon decomposition and dCDH weights."""
    from .inference.did.bacon import bacon
    from .inference.did.dcdh import twfe_weights

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
    from .plots.bacon import plot_bacon

    figs = [_fig(plot_bacon(b, outcome=y), out, "bacon.png")]
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
    from .inference.resampling.placebo import placebo
    from .inference.resampling.wildboot import wildboot

    y = spec.outcomes[0]
    fit = shared.baseline
    parts, tables, numbers, figs = [], {}, {}, []
    ri = placebo(fit, param=treat, draws=spec.draws, scheme="units+timing", stat="t", seed=spec.seed,
                 n_jobs=_jobs(spec), backend=spec.backend, unit=spec.unit, time=spec.time)
    tables["placebo"] = ri.tidy()
    figs.append(_fig(ri.plot(), out, "placebo.png"))
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
    wb = wildboot(fit, param=treat, draws=spec.boot_draws, seed=spec.seed, n_jobs=_jobs(spec), backend=spec.backend)
    tables["wildboot"] = wb.tidy()
    figs.append(_fig(wb.plot(), out, "wildboot.png"))
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


def section_extra_controls(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Table 7: competing policies / extra controls added one at a time."""
    y = spec.outcomes[0]
    vc = {"CRV1": quote(spec.cluster_col)}
    if not spec.extra_controls:
        return Section("extra_controls", "6. Competing policies / extra controls",
                       "Not run: no extra controls were given (`--extra-controls a,b,...`).")
    fits = {"baseline": shared.baseline}
    for c in spec.extra_controls:
        fits[f"+ {c}"] = feols(_fml(y, treat, [*spec.controls, c], spec.unit, spec.time), frame, vcov=vc)
    coefs = _coef_rows(fits, treat)
    text = (f"`{y}` on `{treat}` with the baseline controls plus each extra control added one at a time "
            f"(CRV1 by {spec.cluster_col}).\n\n" + md_table(regression_table(fits, treat, {}, spec.unit, spec.time)))
    return Section("extra_controls", "6. Competing policies / extra controls", text, {"extra_controls": coefs}, [],
                   {"coefficients": coefs.to_dicts()})


def section_mechanisms(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Table 8: the same model on mechanism outcomes, one demeaning of the regressors."""
    if not spec.mechanisms:
        return Section("mechanisms", "7. Mechanisms", "Not run: no mechanism outcomes were given (`--mechanisms a,b`).")
    fits = _as_multi(feols(_fml(spec.mechanisms, treat, spec.controls, spec.unit, spec.time), frame,
                           vcov={"CRV1": quote(spec.cluster_col)}))
    coefs = _coef_rows(fits, treat)
    text = (f"Each mechanism outcome on `{treat}` with the baseline controls, {spec.unit} and {spec.time} FE, "
            f"CRV1 by {spec.cluster_col}.\n\n" + md_table(regression_table(fits, treat, {}, spec.unit, spec.time)))
    return Section("mechanisms", "7. Mechanisms", text, {"mechanisms": coefs}, [], {"coefficients": coefs.to_dicts()})


def section_heterogeneity(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Table 9: split samples, permutation test of the difference, pooled interaction."""
    from .inference.resampling.split import split_difference

    if not spec.splits:
        return Section("heterogeneity", "8. Heterogeneity", "Not run: no split variables were given (`--split col`).")
    y = spec.outcomes[0]
    parts, tables, numbers = [], {}, {}
    for g in spec.splits:
        r = split_difference(frame, y=y, param=treat, controls=spec.controls, group=g, unit=spec.unit,
                             time=spec.time, cluster=spec.cluster_col, draws=spec.draws, seed=spec.seed,
                             n_jobs=_jobs(spec), backend=spec.backend)
        tab = r.tidy()
        tables[f"heterogeneity_{g}"] = tab
        numbers[g] = {"difference": r.difference, "permutation_pvalue": r.pvalue,
                      "interaction": r.interaction.coef()[r.interaction_term],
                      "interaction_se": r.interaction.se()[r.interaction_term], "table": tab.to_dicts()}
        parts.append(f"**Split by `{g}`** ({spec.draws:,} permutations of the group labels across units):\n\n"
                     + md_table(tab))
    text = (f"`{y}` on `{treat}` with the baseline controls in each group; the difference is tested (a) by "
            "reshuffling the unit-level group labels (empirical p-value, exact refits of both groups per draw) "
            f"and (b) by a pooled model with `{treat}` x group (CRV1 by {spec.cluster_col}).\n\n" + "\n\n".join(parts))
    return Section("heterogeneity", "8. Heterogeneity", text, tables, [], numbers)


def section_alternatives(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Tables 5-6: PSM-DID, entropy balancing, IV-2SLS, Heckman, double machine learning."""
    if not spec.alternatives:
        return Section("alternatives", "9. Alternative estimators (Tables 5-6)", "Not run (`alternatives = false`).")
    from .inference.regression.feiv import IVFormula, feiv
    from .inference.selection.dml import dml
    from .inference.selection.ebalance import entropy_balance
    from .inference.selection.heckman import heckman
    from .inference.selection.psm import psm_did

    y = spec.outcomes[0]
    C = spec.controls
    vc = {"CRV1": quote(spec.cluster_col)}
    common = dict(y=y, treat=treat, unit=spec.unit, time=spec.time)
    rows: list[dict[str, Any]] = []
    numbers: dict[str, Any] = {}

    def add(name: str, est: float, se: float, p: float, nobs: int, detail: str) -> None:
        rows.append({"estimator": name, "estimate": est, "se": se, "pvalue": p, "nobs": nobs, "detail": detail})
        numbers[name] = {"estimate": est, "se": se, "pvalue": p, "nobs": nobs, "detail": detail}

    notes = []
    if C:
        ps = psm_did(frame, **common, covariates=C, controls=C, k=4, cluster=spec.cluster_col)
        f = ps.fit
        add("PSM-DID (1:4 NN)", f.coef()[treat], f.se()[treat], f.pvalue()[treat], f.nobs,
            f"{ps.n_treated_matched:,} of {ps.n_treated:,} treated-group rows matched")
        eb = entropy_balance(frame, **common, covariates=C, controls=C, moments=1, cluster=spec.cluster_col)
        f = eb.fit
        add("Entropy balancing", f.coef()[treat], f.se()[treat], f.pvalue()[treat], f.nobs,
            f"means matched to {eb.max_gap:.1e} in {eb.n_iter} iterations")
    else:
        notes.append("PSM-DID, entropy balancing and DML need covariates: give --controls.")
    for z in spec.instruments:
        iv = feiv(IVFormula(y, tuple(C), (spec.unit, spec.time), (treat,), instrument_columns(z), False), frame, vcov=vc)
        dg = iv.diagnostics
        add(f"IV-2SLS ({z})", iv.coef()[treat], iv.se()[treat], iv.pvalue()[treat], iv.nobs,
            f"first-stage KP Wald F {dg.kp_wald_f:.1f}, KP LM {dg.kp_lm:.1f} (p {dg.kp_lm_pvalue:.3g}), "
            f"CD Wald F {dg.cd_wald_f:.1f}")
    if spec.instruments and C:
        excl = list(instrument_columns(spec.instruments[0]))
        hk = heckman(frame, y=y, selection=treat, outcome_vars=[treat, *C], selection_vars=[*C, *excl],
                     unit=spec.unit, time=spec.time, cluster=spec.cluster_col, outcome_sample="all")
        add("Heckman (treatment-effects two-step)", hk.coef()[treat], hk.se()[treat], hk.pvalue()[treat],
            hk.nobs if hasattr(hk, "nobs") else frame.height,
            f"IMR coefficient {hk.coef()['imr']:.4f} (se {hk.se()['imr']:.4f}); exclusion: {', '.join(excl)}")
    if C and spec.dml_learners and not _have_sklearn():
        notes.append("DML skipped: it needs scikit-learn, an optional dependency "
                     "(pip install \"staggerlab[ml]\").")
    elif C:
        params = {"rf": dict(n_estimators=20, max_depth=6, max_samples=0.3)}
        for learner in spec.dml_learners:
            r = dml(frame, y=y, treat=treat, covariates=C, unit=spec.unit, time=spec.time, learner=learner,
                    learner_params=params.get(learner), n_folds=5, seed=spec.seed)
            from scipy.special import ndtr

            add(f"DML ({learner})", r.coef, r.se, float(2 * ndtr(-abs(r.coef / r.se))), r.nobs,
                "partially linear, 5-fold cross-fitting on within-transformed data")
    tab = pl.DataFrame(rows) if rows else pl.DataFrame({"estimator": [], "estimate": []})
    text = (f"Alternative estimates of the effect of `{treat}` on `{y}` (the reference study's Tables 5-6, docs/study.md); all with "
            f"{spec.unit} and {spec.time} fixed effects (DML: within-transformed first) and the controls; "
            f"standard errors clustered by {spec.cluster_col} except DML (i.i.d. cross-fitted SE).\n\n"
            + md_table(tab) + ("\n\n" + " ".join(notes) if notes else ""))
    return Section("alternatives", "9. Alternative estimators (Tables 5-6)", text, {"alternatives": tab}, [], numbers)


def _have_sklearn() -> bool:
    """Whether the DML rows can run (scikit-learn is the ``ml`` extra, not a core dependency)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def section_power(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Design power: MDE at 80% power of the baseline TWFE and the robust estimators (``sl.power``)."""
    from .errors import PowerError
    from .inference.studies.power import power

    y = spec.outcomes[0]
    kw: dict[str, Any] = dict(y=y, unit=spec.unit, time=spec.time, cohort="_cohort", controls=spec.controls,
                              cluster=spec.cluster_col, seed=spec.seed)
    # the exact TWFE curve is instant: its default grid (4 placebo s.d.) sets the scale, doubled for
    # the robust estimators, whose standard errors are larger
    scale = float(power(frame, **kw, draws=spec.draws).sizes.max())
    sizes = np.linspace(0.0, 2.0 * scale, 17)
    twfe = power(frame, **kw, draws=spec.draws, sizes=sizes)
    robust = power(frame, **kw, draws=spec.power_draws, sizes=sizes, estimators=["imputation", "sunab", "cs"])
    rows = []
    for res, name, label in ((twfe, "twfe", "Baseline TWFE (CRV1 t test, exact)"),
                             (robust, "imputation", "Imputation (BJS)"), (robust, "sunab", "Sun-Abraham"),
                             (robust, "cs", "Callaway-Sant'Anna")):
        size, size_se = res.size(name)
        mde = lo = hi = None  # blank in the table: not reached on the grid
        try:
            m = res.mde(name)
            mde, lo, hi = m.estimate, m.low, None if m.censored else m.high
        except PowerError:
            pass
        rows.append({"estimator": label, "draws": res.draws, "size": size, "size_mcse": size_se,
                     "mde_80": mde, "mde_low": lo, "mde_high": hi})
    tab = pl.DataFrame(rows)
    curves = pl.concat([twfe.tidy(), robust.tidy()])
    figs = [_fig(_power_figure(curves, y), out, "power.png")]
    text = (f"Design-based power on this panel: `{y}` as the untreated outcome, adoption re-assigned with the "
            f"placebo scheme units+timing (as many treated units as observed, adoption periods from the observed "
            f"ones), a homogeneous effect added to the re-assigned treated cells, every estimator re-run; "
            f"two-sided tests at 5%, standard errors clustered by {spec.cluster_col}. The baseline TWFE curve is "
            f"exact from one placebo run ({spec.draws:,} draws); the robust estimators are refitted on "
            f"{spec.power_draws:,} draws (option `power_draws`). MDE: smallest effect with 80% power, linearly "
            f"interpolated on the grid of {sizes.size} effect sizes up to {sizes.max():.4g}; its interval is "
            f"where the 95% Monte Carlo band of the curve reaches 80% (blank: not reached on the grid). "
            f"`size` is the rejection rate at zero effect (nominal 0.05).\n\n" + md_table(tab))
    numbers = {"mde": tab.to_dicts(), "curves": curves.to_dicts(), "power_draws": spec.power_draws}
    return Section("power", "10. Design power", text, {"power": tab, "power_curves": curves}, figs, numbers)


def _power_figure(curves: pl.DataFrame, y: str) -> Any:
    from .plots.power import plot_power

    return plot_power(curves, title=f"Design power: {y}")


SECTIONS: list[Callable[[pl.DataFrame, BatterySpec, str, Path, SharedFits], Section]] = [
    section_baseline,
    section_event_study,
    section_robust,
    section_diagnostics,
    section_inference,
    section_extra_controls,
    section_mechanisms,
    section_heterogeneity,
    section_alternatives,
    section_power,
]


_TITLES = {
    "baseline": "1. Baseline TWFE", "event_study": "2. Event study", "robust": "3. Heterogeneity-robust estimators",
    "diagnostics": "4. Diagnostics", "inference": "5. Placebo test and wild cluster bootstrap",
    "extra_controls": "6. Competing policies / extra controls", "mechanisms": "7. Mechanisms",
    "heterogeneity": "8. Heterogeneity", "alternatives": "9. Alternative estimators (Tables 5-6)",
    "power": "10. Design power",
}


def _section_key(fn: Callable[..., Section]) -> str:
    return fn.__name__.removeprefix("section_")


def _failed_section(fn: Callable[..., Section], e: Exception) -> Section:
    """The report entry of a section that raised: its error, in place of its results."""
    key = _section_key(fn)
    error = f"{type(e).__name__}: {e}"
    text = (f"**Failed**: {error}\n\nThe other sections ran; fix the cause and run the battery again to get "
            "this one.")
    return Section(key, _TITLES.get(key, key), text, numbers={"error": {"type": type(e).__name__,
                                                                          "message": str(e)}}, error=error)


def load_data(spec: BatterySpec) -> tuple[pl.DataFrame, str]:
    """The battery's data and a one-line description of where it came from."""
    if spec.data is None:
        return paper_panel(spec.seed), f"built-in synthetic panel calibrated to the study (seed {spec.seed})"
    return read_frame(spec.data), f"`{spec.data}`"


def battery(data: Any = None, *, spec: BatterySpec | None = None, verbose: bool = False, **options: Any) -> BatteryResult:
    """Run the robustness battery and write the report.

    Parameters
    ----------
    data : frame, Panel, path or None
        The panel; ``None`` uses the built-in synthetic panel (``spec.data``
        may also name a file).
    spec : BatterySpec, optional
        All options; keyword ``options`` override its fields.
    verbose : bool
        Print each section's timing as it finishes.

    Returns
    -------
    BatteryResult
    """
    spec = spec or BatterySpec()
    for k, v in options.items():
        if k not in BatterySpec.__dataclass_fields__:
            raise ArgumentTypeError(f"unknown battery option {k!r}")
        setattr(spec, k, v)
    if isinstance(data, (str, Path)):
        spec.data = str(data)
        data = None
    if data is None:
        frame, source = load_data(spec)
    else:
        frame, source = to_polars(data), "the frame passed to `battery()`"
    cohort_col, treat_col = helper_names(frame.columns)  # before validate() adds them
    frame = validate(frame, spec)
    treat = spec.treat if spec.treat and spec.treat in frame.columns else treat_col
    out = Path(spec.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    sections: list[Section] = []
    shared = SharedFits(frame, spec, treat, cohort_col)
    t_all = time.perf_counter()
    for fn in SECTIONS:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StaggerlabWarning)
            try:
                sec = fn(frame, spec, treat, out, shared)
            except KeyboardInterrupt:
                # what finished is worth keeping: the report of the finished sections, then stop
                key = _section_key(fn)
                write_report(BatteryResult(spec, sections, out, _TITLES.get(key, key)), frame, source,
                             time.perf_counter() - t_all)
                raise KeyboardInterrupt(
                    f"battery interrupted during section {_TITLES.get(key, key)!r}; the {len(sections)} finished "
                    f"section(s) are in {out / 'report.md'}; run the same command again to redo the battery "
                    f"(seed {spec.seed} gives the same numbers; fewer --draws / --boot-draws / --power-draws make it shorter)"
                ) from None
            except Exception as e:  # one section's failure is reported, the others still run
                sec = _failed_section(fn, e)
        sec.seconds = time.perf_counter() - t0
        notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, StaggerlabWarning)))
        if notes:
            sec.text += "\n\nNotes (rows dropped or terms removed):\n\n" + "\n".join(f"- {n}" for n in notes)
            sec.numbers["notes"] = notes
        sections.append(sec)
        if verbose:
            status = f"FAILED ({sec.error})" if sec.error else f"{sec.seconds:6.2f} s"
            print(f"  {sec.title:<45} {status}", file=sys.stderr)
    result = BatteryResult(spec, sections, out)
    write_report(result, frame, source, time.perf_counter() - t_all)
    return result
