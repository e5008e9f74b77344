"""Section 9: the alternative estimators of the study's Tables 5-6."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from ..battery_checks import instrument_columns
from ..inference.regression.formula import quote
from ..kernels._jit import n_threads
from ..report import md_table
from .spec import BatterySpec, Section
from .tables import SharedFits

__all__ = ["section_alternatives", "have_sklearn"]


def section_alternatives(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, shared: SharedFits) -> Section:
    """Tables 5-6: PSM-DID, entropy balancing, IV-2SLS, Heckman, double machine learning."""
    if not spec.alternatives:
        return Section("alternatives", "9. Alternative estimators (Tables 5-6)", "Not run (`alternatives = false`).")
    from ..inference.regression.feiv import IVFormula, feiv
    from ..inference.selection.dml import dml
    from ..inference.selection.ebalance import entropy_balance
    from ..inference.selection.heckman import heckman
    from ..inference.selection.psm import psm_did

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
    if C and spec.dml_learners and not have_sklearn():
        notes.append("DML skipped: it needs scikit-learn, an optional dependency "
                     "(pip install \"staggerlab[ml]\").")
    elif C:
        params = {"rf": dict(n_estimators=20, max_depth=6, max_samples=0.3)}
        # the 10 nuisance fits of each learner on every core this process may use (the same numbers)
        threads = n_threads(float("inf"))
        for learner in spec.dml_learners:
            r = dml(frame, y=y, treat=treat, covariates=C, unit=spec.unit, time=spec.time, learner=learner,
                    learner_params=params.get(learner), n_folds=5, seed=spec.seed, threads=threads)
            from scipy.special import ndtr

            add(f"DML ({learner})", r.coef, r.se, float(2 * ndtr(-abs(r.coef / r.se))), r.nobs,
                "partially linear, 5-fold cross-fitting on within-transformed data")
    tab = pl.DataFrame(rows) if rows else pl.DataFrame({"estimator": [], "estimate": []})
    text = (f"Alternative estimates of the effect of `{treat}` on `{y}` (the reference study's Tables 5-6, docs/study.md); all with "
            f"{spec.unit} and {spec.time} fixed effects (DML: within-transformed first) and the controls; "
            f"standard errors clustered by {spec.cluster_col} except DML (i.i.d. cross-fitted SE).\n\n"
            + md_table(tab) + ("\n\n" + " ".join(notes) if notes else ""))
    return Section("alternatives", "9. Alternative estimators (Tables 5-6)", text, {"alternatives": tab}, [], numbers)


def have_sklearn() -> bool:
    """Whether the DML rows can run (scikit-learn is the ``ml`` extra, not a core dependency)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


