"""Sections 1 and 6-8 (the study's regression tables: baseline, extra controls,
mechanisms, heterogeneity) and the fits several sections share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..inference.regression.feols import Feols, FeolsMulti, feols
from ..inference.regression.formula import Formula, quote
from ..inference.regression.results import significance_stars
from ..report import md_table
from .spec import BatterySpec, Section, jobs_for

__all__ = ["formula_of", "as_multi", "regression_table", "coef_rows", "SharedFits", "section_baseline",
           "section_extra_controls", "section_mechanisms", "section_heterogeneity"]


def formula_of(y: str | list[str], treat: str, controls: list[str], unit: str, time: str) -> Formula:
    """``y ~ treat + controls | unit + time``."""
    return Formula.of(y, [treat, *controls], [unit, time])


def as_multi(fit: Feols | FeolsMulti) -> dict[str, Feols]:
    """Outcome -> fit, for one fit or several outcomes' fits."""
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


def coef_rows(fits: dict[str, Feols], param: str) -> pl.DataFrame:
    """One row per model: ``param``'s estimate, se, p-value, CI, N, R2, within R2."""
    rows = []
    for key, f in fits.items():
        t = f.tidy().filter(pl.col("term") == param).row(0, named=True)
        rows.append({"model": key, **{k: t[k] for k in ("estimate", "se", "pvalue", "ci_low", "ci_high")},
                     "nobs": f.nobs, "r2": f.r2, "r2_within": f.r2_within})
    return pl.DataFrame(rows)


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
            self.fitted["baseline"] = feols(formula_of(spec.outcomes[0], self.treat, spec.controls, spec.unit, spec.time),
                                            self.frame, vcov={"CRV1": quote(spec.cluster_col)})
        return self.fitted["baseline"]


def section_baseline(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Table 4: every outcome, without and with controls, one demeaning per design."""
    vc = {"CRV1": quote(spec.cluster_col)}
    fits: dict[str, Feols] = {}
    for controls, tag in (([], "no controls"), (spec.controls, "controls")):
        res = as_multi(feols(formula_of(spec.outcomes, treat, controls, spec.unit, spec.time), frame, vcov=vc))
        for y, f in res.items():
            fits[f"{y} ({tag})"] = f
    order = [f"{y} ({t})" for y in spec.outcomes for t in ("no controls", "controls")]
    fits = {k: fits[k] for k in order if k in fits}
    table = regression_table(fits, treat, {}, spec.unit, spec.time)
    coefs = coef_rows(fits, treat)
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



def section_extra_controls(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Table 7: competing policies / extra controls added one at a time."""
    y = spec.outcomes[0]
    vc = {"CRV1": quote(spec.cluster_col)}
    if not spec.extra_controls:
        return Section("extra_controls", "6. Competing policies / extra controls",
                       "Not run: no extra controls were given (`--extra-controls a,b,...`).")
    fits = {"baseline": shared.baseline}
    for c in spec.extra_controls:
        fits[f"+ {c}"] = feols(formula_of(y, treat, [*spec.controls, c], spec.unit, spec.time), frame, vcov=vc)
    coefs = coef_rows(fits, treat)
    text = (f"`{y}` on `{treat}` with the baseline controls plus each extra control added one at a time "
            f"(CRV1 by {spec.cluster_col}).\n\n" + md_table(regression_table(fits, treat, {}, spec.unit, spec.time)))
    return Section("extra_controls", "6. Competing policies / extra controls", text, {"extra_controls": coefs}, [],
                   {"coefficients": coefs.to_dicts()})


def section_mechanisms(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Table 8: the same model on mechanism outcomes, one demeaning of the regressors."""
    if not spec.mechanisms:
        return Section("mechanisms", "7. Mechanisms", "Not run: no mechanism outcomes were given (`--mechanisms a,b`).")
    fits = as_multi(feols(formula_of(spec.mechanisms, treat, spec.controls, spec.unit, spec.time), frame,
                           vcov={"CRV1": quote(spec.cluster_col)}))
    coefs = coef_rows(fits, treat)
    text = (f"Each mechanism outcome on `{treat}` with the baseline controls, {spec.unit} and {spec.time} FE, "
            f"CRV1 by {spec.cluster_col}.\n\n" + md_table(regression_table(fits, treat, {}, spec.unit, spec.time)))
    return Section("mechanisms", "7. Mechanisms", text, {"mechanisms": coefs}, [], {"coefficients": coefs.to_dicts()})


def section_heterogeneity(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Table 9: split samples, permutation test of the difference, pooled interaction."""
    from ..inference.resampling.split import split_difference

    if not spec.splits:
        return Section("heterogeneity", "8. Heterogeneity", "Not run: no split variables were given (`--split col`).")
    y = spec.outcomes[0]
    parts, tables, numbers = [], {}, {}
    for g in spec.splits:
        r = split_difference(frame, y=y, param=treat, controls=spec.controls, group=g, unit=spec.unit,
                             time=spec.time, cluster=spec.cluster_col, draws=spec.draws, seed=spec.seed,
                             n_jobs=jobs_for(spec), backend=spec.backend)
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


