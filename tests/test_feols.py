"""``sl.feols`` against pyfixest's ``feols`` (the oracle), every vcov type."""

from __future__ import annotations

import re
import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import staggered_panel

import staggerlab as sl
from staggerlab.errors import CollinearityWarning, MissingValueWarning, SingletonWarning
from staggerlab.inference.regression.compat import as_feols
from staggerlab.inference.regression.vcov import VcovSpec

#: coefficients, SEs, t-stats and CI bounds: relative agreement with pyfixest
REL_TOL = 1e-8
#: p-values: pyfixest computes 2 * (1 - cdf), which loses everything below ~1e-15
PVALUE_ATOL = 1e-12

VCOVS_PF = ["iid", "hetero", {"CRV1": "f1"}, {"CRV1": "f1+f2"}, {"CRV3": "f1"}]
VCOVS_SIM = ["iid", "hetero", {"CRV1": "unit"}, {"CRV1": "unit+time"}, {"CRV3": "region"}]
PF_FORMULAS = ["Y ~ X1 + X2 | f1 + f2", "Y ~ X1 | f1", "Y ~ X1 | f1 + f2 + f3", "Y ~ X1 + X2"]
SIM_FORMULAS = [
    "y ~ treat + x1 + x2 + x3 | unit",
    "y ~ treat + x1 + x2 + x3 | unit + time",
    "y ~ treat + x1 + x2 + x3 | unit + time + region",
]


def vcov_id(v) -> str:
    return v if isinstance(v, str) else "-".join(f"{k}:{c}" for k, c in v.items())


def quiet_fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sl.errors.StaggerlabWarning)
        return sl.feols(*args, **kw)


def assert_same_fit(ours: sl.Feols, ref, rtol: float = REL_TOL) -> None:
    """Every reported number of ``ours`` equals pyfixest's ``ref``."""
    names = list(ref.coef().index)
    assert ours.coefnames == names
    assert ours.nobs == int(ref._N)
    assert ours.df_t == int(ref._df_t)
    for mine, theirs in [
        (ours.coef(), ref.coef()),
        (ours.se(), ref.se()),
        (ours.tstat(), ref.tstat()),
    ]:
        np.testing.assert_allclose([mine[n] for n in names], theirs.to_numpy(), rtol=rtol, atol=0)
    np.testing.assert_allclose(ours.vcov(), np.asarray(ref._vcov), rtol=rtol, atol=0)
    p = ours.pvalue()
    np.testing.assert_allclose([p[n] for n in names], ref.pvalue().to_numpy(), rtol=rtol, atol=PVALUE_ATOL)
    ci = ours.confint()
    rci = ref.confint()
    assert ci["term"].to_list() == names
    np.testing.assert_allclose(ci["ci_low"].to_numpy(), rci.iloc[:, 0].to_numpy(), rtol=rtol)
    np.testing.assert_allclose(ci["ci_high"].to_numpy(), rci.iloc[:, 1].to_numpy(), rtol=rtol)
    td = ours.tidy()
    assert td.columns == ["term", "estimate", "se", "tstat", "pvalue", "ci_low", "ci_high"]
    np.testing.assert_allclose(td["se"].to_numpy(), ref.se().to_numpy(), rtol=rtol)


# -------------------------------------------------------- pyfixest's data
@pytest.mark.parametrize("vcov", VCOVS_PF, ids=vcov_id)
@pytest.mark.parametrize("fml", PF_FORMULAS)
def test_pyfixest_example_data(pf_data, pf_feols, fml, vcov):
    ref_data = pf_data
    if "|" not in fml and isinstance(vcov, dict):
        # pyfixest refuses NaN in a cluster column that is not a FE; staggerlab
        # drops those rows like any missing value, so give pyfixest the same rows
        ref_data = pf_data.dropna(subset=["f1"])
    ref = pf_feols(fml, ref_data, vcov=vcov)
    ours = quiet_fit(fml, pf_data, vcov=vcov)
    assert_same_fit(ours, ref)


@pytest.mark.parametrize("vcov", VCOVS_PF, ids=vcov_id)
def test_pyfixest_example_data_weighted(pf_data, pf_feols, vcov):
    fml = "Y ~ X1 + X2 | f1 + f2"
    ref = pf_feols(fml, pf_data, vcov=vcov, weights="weights")
    ours = quiet_fit(fml, pf_data, vcov=vcov, weights="weights")
    assert_same_fit(ours, ref)


def test_missing_values_reported(pf_data):
    n_bad = int(pf_data[["Y", "X1", "X2", "f1", "f2"]].isna().any(axis=1).sum())
    assert n_bad > 0
    with pytest.warns(MissingValueWarning, match=rf"dropped {n_bad} of {len(pf_data)} row"):
        fit = sl.feols("Y ~ X1 + X2 | f1 + f2", pf_data)
    assert fit.design.n_missing == n_bad
    assert fit.nobs + n_bad + fit.design.n_singletons == len(pf_data)


# ---------------------------------------- simulated unbalanced staggered panels
@pytest.mark.parametrize("vcov", VCOVS_SIM, ids=vcov_id)
@pytest.mark.parametrize("fml", SIM_FORMULAS, ids=["1fe", "2fe", "3fe"])
def test_simulated_unbalanced_panel(sim_panel, pf_feols, fml, vcov):
    ref = pf_feols(fml, sim_panel.to_pandas(), vcov=vcov)
    ours = quiet_fit(fml, sim_panel, vcov=vcov)
    assert_same_fit(ours, ref)


@pytest.mark.parametrize("vcov", VCOVS_SIM, ids=vcov_id)
@pytest.mark.parametrize("fml", SIM_FORMULAS[1:], ids=["2fe", "3fe"])
def test_simulated_weighted(sim_panel, pf_feols, fml, vcov):
    ref = pf_feols(fml, sim_panel.to_pandas(), vcov=vcov, weights="w")
    ours = quiet_fit(fml, sim_panel, vcov=vcov, weights="w")
    assert_same_fit(ours, ref)


@pytest.mark.parametrize("method", ["exact", "iterative"])
def test_demean_methods_agree_with_pyfixest(sim_panel, pf_feols, method):
    fml = SIM_FORMULAS[2]
    ref = pf_feols(fml, sim_panel.to_pandas(), vcov={"CRV1": "unit"})
    ours = quiet_fit(fml, sim_panel, vcov={"CRV1": "unit"}, demean_method=method)
    assert_same_fit(ours, ref)


def test_singletons_count_matches_pyfixest(sim_panel):
    import pyfixest as pf

    fml = "y ~ treat + x1 | unit + time"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ref = pf.feols(fml, sim_panel.to_pandas())
    msgs = [str(w.message) for w in rec if "singleton" in str(w.message)]
    n_pf = int(re.search(r"(\d+) singleton", msgs[0]).group(1))
    assert n_pf > 0, "the fixture must contain singletons"
    with pytest.warns(SingletonWarning, match=rf"dropped {n_pf} singleton observation") as got:
        ours = sl.feols(fml, sim_panel)
    assert len([w for w in got if issubclass(w.category, SingletonWarning)]) == 1
    assert ours.design.n_singletons == n_pf
    assert ours.nobs == int(ref._N) == sim_panel.height - n_pf


def test_no_singleton_removal_option(sim_panel, pf_feols):
    fml = "y ~ treat + x1 | unit + time"
    ref = pf_feols(fml, sim_panel.to_pandas(), vcov={"CRV1": "unit"}, fixef_rm="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingletonWarning)
        ours = sl.feols(fml, sim_panel, vcov={"CRV1": "unit"}, fixef_rm="none")
    assert ours.nobs == sim_panel.height
    assert_same_fit(ours, ref)


# ------------------------------------------------------------ several outcomes
def test_multiple_outcomes_different_missing_patterns(pf_data, pf_feols):
    fml = "Y + Y2 ~ X1 + X2 | f1 + f2"
    assert pf_data["Y"].isna().any() and not pf_data["Y2"].isna().any()
    multi = quiet_fit(fml, pf_data, vcov={"CRV1": "f1"})
    assert isinstance(multi, sl.FeolsMulti) and len(multi) == 2
    for y in ("Y", "Y2"):
        single = quiet_fit(f"{y} ~ X1 + X2 | f1 + f2", pf_data, vcov={"CRV1": "f1"})
        np.testing.assert_array_equal(multi[y].beta, single.beta)
        np.testing.assert_array_equal(multi[y].vcov(), single.vcov())
        assert multi[y].nobs == single.nobs
        assert multi[y].formula == f"{y} ~ X1 + X2 | f1 + f2"
        assert_same_fit(multi[y], pf_feols(f"{y} ~ X1 + X2 | f1 + f2", pf_data, vcov={"CRV1": "f1"}))
    assert multi["Y"].nobs != multi["Y2"].nobs
    td = multi.tidy()
    assert td["depvar"].to_list() == ["Y", "Y", "Y2", "Y2"]


def test_multiple_outcomes_share_one_design(sim_panel):
    multi = quiet_fit("y + y2 ~ treat + x1 | unit + time", sim_panel, vcov={"CRV1": "unit"})
    assert multi["y"].design is multi["y2"].design
    assert multi[0] is multi["y"]
    for y in ("y", "y2"):
        single = quiet_fit(f"{y} ~ treat + x1 | unit + time", sim_panel, vcov={"CRV1": "unit"})
        np.testing.assert_allclose(multi[y].beta, single.beta, rtol=1e-13)
        np.testing.assert_allclose(multi[y].vcov(), single.vcov(), rtol=1e-13)


# ----------------------------------------------------------------- collinearity
def test_collinear_regressors_dropped(sim_panel, pf_feols):
    df = sim_panel.with_columns(x12=pl.col("x1") + 2 * pl.col("x2"))
    fml = "y ~ treat + x1 + x2 + x12 + cohort | unit + time"
    ref = pf_feols(fml, df.to_pandas(), vcov={"CRV1": "unit"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingletonWarning)
        with pytest.warns(CollinearityWarning, match=r"x12.*cohort|cohort.*x12") as rec:
            ours = sl.feols(fml, df, vcov={"CRV1": "unit"})
    msg = str([w for w in rec if issubclass(w.category, CollinearityWarning)][0].message)
    assert "'x1'" not in msg and "'treat'" not in msg
    assert ours.coefnames == ["treat", "x1", "x2"]
    assert_same_fit(ours, ref)


# ------------------------------------------------------------ pyfixest interop
@pytest.mark.parametrize(
    "vcov,weights", [("iid", None), ({"CRV1": "f1"}, None), ("hetero", "weights"), ({"CRV1": "f1+f2"}, "weights")]
)
def test_as_feols_accepts_pyfixest_fit(pf_data, pf_feols, vcov, weights):
    ref = pf_feols("Y ~ X1 + X2 | f1 + f2", pf_data, vcov=vcov, weights=weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sl.errors.StaggerlabWarning)
        ours = as_feols(ref)
    assert isinstance(ours, sl.Feols)
    assert ours.vcov_spec.kind == (vcov if isinstance(vcov, str) else next(iter(vcov)))
    assert_same_fit(ours, ref)
    assert as_feols(ours) is ours


def test_as_feols_rejects_other_objects():
    with pytest.raises(TypeError, match="expected a staggerlab or pyfixest Feols fit, got dict"):
        as_feols({})


# --------------------------------------------------------------- result object
def test_with_vcov_equals_fresh_fit(sim_panel):
    fml = SIM_FORMULAS[1]
    fit = quiet_fit(fml, sim_panel, vcov={"CRV1": "unit+time"})
    for v in ("iid", "hetero", {"CRV1": "unit"}, {"CRV1": "time"}):
        np.testing.assert_allclose(fit.with_vcov(v).vcov(), quiet_fit(fml, sim_panel, vcov=v).vcov(), rtol=1e-12)


def test_residuals_and_summary(sim_panel, pf_feols):
    fml = SIM_FORMULAS[1]
    ref = pf_feols(fml, sim_panel.to_pandas(), vcov={"CRV1": "unit"})
    ours = quiet_fit(fml, sim_panel, vcov={"CRV1": "unit"})
    np.testing.assert_allclose(ours.resid(), ref.resid(), rtol=0, atol=1e-9)
    text = ours.summary()
    assert "treat" in text and "CRV1 by unit" in text and f"{ours.nobs:,}" in text


# ------------------------------------------------- random small staggered panels
# two-way CRV1 (V1 + V2 - V12) can have a negative diagonal in tiny panels: NaN SE in both
@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")
@settings(max_examples=15)
@given(df=staggered_panel(with_weights=True), vcov=st.sampled_from(VCOVS_SIM[:4]), weighted=st.booleans())
def test_random_staggered_panels_match_pyfixest(pf_feols, df, vcov, weighted):
    df = df.with_columns(region=pl.col("unit") % 3)
    fml = "y ~ treat + x1 + x2 | unit + time"
    w = "w" if weighted else None
    try:
        ours = quiet_fit(fml, df, vcov=vcov, weights=w)
    except (sl.errors.CollinearityError, sl.errors.EmptyPanelError, sl.errors.VcovError, ZeroDivisionError):
        # degenerate draw (treat absorbed by the FEs, no residual df: see
        # test_saturated_model_named_error): nothing to compare
        assume(False)
    # a (nearly) saturated fit has residuals at rounding level: SEs are noise in both
    assume(ours.nobs - ours.design.df_k(VcovSpec("iid")) >= 2)
    ref = pf_feols(fml, df.to_pandas(), vcov=vcov, weights=w)
    assume(list(ref.coef().index) == ours.coefnames)
    assert_same_fit(ours, ref, rtol=1e-7)


@pytest.mark.parametrize("vcov", ["iid", "hetero"])
def test_saturated_model_named_error(vcov):
    # 3 units x 2 periods, 2 regressors: df_k = 2 + 3 + 2 - 1 = 6 = N
    rng = np.random.default_rng(0)
    df = pl.DataFrame(
        {"unit": [0, 0, 1, 1, 2, 2], "time": [0, 1] * 3, "y": rng.normal(size=6),
         "x1": rng.normal(size=6), "x2": rng.normal(size=6)}
    )
    with pytest.raises(sl.errors.StaggerlabError, match="degrees of freedom"):
        sl.feols("y ~ x1 + x2 | unit + time", df, vcov=vcov)
