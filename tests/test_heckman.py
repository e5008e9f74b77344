"""Heckman two-step: probit against statsmodels, the textbook two-step against
explicit matrices in this file (statsmodels' probit as step 1) and against the
coefficients Wooldridge publishes for the Mroz data, and the FE/clustered
stacked variance against a sandwich built from FE dummies and a numerical
Jacobian of the stacked moment conditions.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from scipy import stats

from staggerlab.errors import MissingOutcomeError, MissingValueWarning, StaggerlabError, StaggerlabWarning
from staggerlab.inference.selection.heckman import (
    HeckmanResult,
    SelectionError,
    SeparationError,
    heckman,
    probit,
)


def _sm():
    """statsmodels, imported by the tests that compare with it."""
    return pytest.importorskip("statsmodels.api")

#: probit vs statsmodels (the brief's contract)
PROBIT_RTOL = 1e-6
#: two-step vs the explicit reference (same estimator, other code path)
REF_RTOL = 1e-6
#: numerical Jacobian (central differences, h = 1e-6) in the stacked reference
NUMJAC_RTOL = 1e-5

SEL_VARS = ["nwifeinc", "educ", "exper", "expersq", "age", "kidslt6", "kidsge6"]
OUT_VARS = ["educ", "exper", "expersq"]


@pytest.fixture(scope="module")
def mroz():
    mroz = pytest.importorskip("linearmodels.datasets.mroz")

    return mroz.load()


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# ------------------------------------------------------------------ probit
def test_probit_matches_statsmodels_mroz(mroz):
    W = _sm().add_constant(mroz[SEL_VARS])
    ref = _sm().Probit(mroz["inlf"], W).fit(disp=0, method="newton", tol=1e-12)
    ours = probit(W.to_numpy(), mroz["inlf"].to_numpy(), list(W.columns))
    assert _rel(ours.beta, ref.params.to_numpy()) < PROBIT_RTOL
    assert _rel(np.sqrt(np.diag(ours.vcov())), ref.bse.to_numpy()) < PROBIT_RTOL
    assert abs(ours.loglik - ref.llf) < 1e-8
    assert ours.tidy()["term"].to_list() == list(W.columns)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probit_matches_statsmodels_simulated(seed):
    rng = np.random.default_rng(seed)
    n = 400
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 3)), rng.integers(0, 2, n)])
    y = (X @ np.array([0.2, 0.8, -0.5, 0.3, 0.6]) + rng.normal(size=n) > 0).astype(float)
    ref = _sm().Probit(y, X).fit(disp=0, method="newton", tol=1e-12)
    ours = probit(X, y)
    assert _rel(ours.beta, ref.params) < PROBIT_RTOL
    assert _rel(np.sqrt(np.diag(ours.vcov())), ref.bse) < PROBIT_RTOL


def test_probit_complete_separation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    X = np.column_stack([np.ones(200), x, rng.normal(size=200)])
    with pytest.raises(SeparationError) as e:
        probit(X, (x > 0.1).astype(float))
    assert isinstance(e.value, ValueError) and isinstance(e.value, StaggerlabError)


def test_probit_quasi_complete_separation():
    rng = np.random.default_rng(4)
    n = 300
    d = rng.integers(0, 2, n).astype(float)
    y = (rng.normal(size=n) > 0).astype(float)
    y[d == 1] = 1.0  # d = 1 predicts selection perfectly, d = 0 does not
    X = np.column_stack([np.ones(n), d, rng.normal(size=n)])
    with pytest.raises(SeparationError):
        probit(X, y)


# ------------------------------------------------------------- textbook
def _textbook_reference(df, y, sel, xvars, wvars):
    """Heckman's two-step with explicit matrices (Greene's formula), step 1 by statsmodels."""
    W = np.column_stack([np.ones(len(df)), df[wvars].to_numpy(float)])
    s = df[sel].to_numpy(float)
    pr = _sm().Probit(s, W).fit(disp=0, method="newton", tol=1e-12)
    g, Vg = pr.params, pr.cov_params()
    m = (s == 1) & np.isfinite(df[y].to_numpy(float))  # selected rows with an outcome
    z = W[m] @ g
    lam = stats.norm.pdf(z) / stats.norm.cdf(z)
    Xs = np.column_stack([np.ones(m.sum()), df.loc[m, xvars].to_numpy(float), lam])
    yy = df.loc[m, y].to_numpy(float)
    b = np.linalg.lstsq(Xs, yy, rcond=None)[0]
    e = yy - Xs @ b
    Delta = np.diag(lam * (lam + z))
    n = m.sum()
    sigma2 = e @ e / n + b[-1] ** 2 * np.trace(Delta) / n
    rho2 = b[-1] ** 2 / sigma2
    XXi = np.linalg.inv(Xs.T @ Xs)
    Q = rho2 * (Xs.T @ Delta @ W[m]) @ Vg @ (W[m].T @ Delta @ Xs)
    V = sigma2 * XXi @ (Xs.T @ (np.eye(n) - rho2 * Delta) @ Xs + Q) @ XXi
    return b, np.sqrt(np.diag(V)), np.sqrt(sigma2), b[-1] / np.sqrt(sigma2)


def test_textbook_twostep_matches_explicit_reference(mroz):
    h = heckman(mroz, y="lwage", selection="inlf", outcome_vars=OUT_VARS, selection_vars=SEL_VARS)
    b, se, sigma, rho = _textbook_reference(mroz, "lwage", "inlf", OUT_VARS, SEL_VARS)
    assert isinstance(h, HeckmanResult)
    assert h.coefnames == ["Intercept", *OUT_VARS, "imr"]
    assert _rel(h.beta, b) < REF_RTOL
    assert _rel(np.sqrt(np.diag(h.vcov())), se) < REF_RTOL
    assert _rel(h.sigma, sigma) < REF_RTOL and _rel(h.rho, rho) < REF_RTOL
    assert h.variance == "heckman-twostep" and h.df_t is None


def test_textbook_matches_wooldridge_example_17_5(mroz):
    """Wooldridge, Introductory Econometrics, Example 17.5 (Mroz data, heckit):
    log(wage) = -.578 + .109 educ + .044 exper - .00086 expersq + .032 lambda;
    compared to the published rounding (half a unit of the last digit shown)."""
    h = heckman(mroz, y="lwage", selection="inlf", outcome_vars=OUT_VARS, selection_vars=SEL_VARS)
    published = {"Intercept": (-0.578, 5e-4), "educ": (0.109, 5e-4), "exper": (0.044, 5e-4),
                 "expersq": (-0.00086, 5e-6), "imr": (0.032, 5e-4)}
    for term, (v, half) in published.items():
        assert abs(h.coef()[term] - v) <= half


# --------------------------------------------------------------- FE panel
def _panel(seed=0, n_units=40, n_t=8):
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n_units), n_t)
    time = np.tile(np.arange(n_t), n_units)
    N = unit.size
    a_u = rng.normal(size=n_units)[unit]
    z = rng.normal(size=N)  # exclusion restriction
    x = rng.normal(size=N) + 0.3 * a_u
    u_s, e = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=N).T
    s = (0.8 + 0.7 * z + 0.4 * x + u_s > 0).astype(int)
    y = 1.0 + 0.5 * x + a_u + 0.1 * time + e
    return pl.DataFrame({"unit": unit, "time": time, "x": x, "z": z, "s": s,
                         "y": np.where(s == 1, y, np.nan), "g": unit // 2})


def _stacked_reference(df: pl.DataFrame, cluster, all_rows=False):
    """Sandwich of the stacked (probit, OLS-with-FE-dummies) moments; Jacobian
    of the step-2 moments in the probit coefficients by central differences."""
    pdf = df.to_pandas()
    W = np.column_stack([np.ones(len(pdf)), pdf[["x", "z"]].to_numpy()])
    s = pdf["s"].to_numpy(float)
    pr = _sm().Probit(s, W).fit(disp=0, method="newton", tol=1e-12)
    g = pr.params
    q = 2 * s - 1
    m = np.ones(len(s), bool) if all_rows else s == 1
    m &= np.isfinite(pdf["y"].to_numpy(float))  # a selected row without outcome is in the probit only
    U = np.eye(pdf["unit"].nunique())[pdf["unit"].to_numpy()][:, :]
    T = np.eye(pdf["time"].nunique())[pdf["time"].to_numpy()][:, 1:]
    yy = np.where(m, pdf["y"].to_numpy(), 0.0)

    def design(gam):
        z = W @ gam
        if all_rows:  # generalized residual: phi/Phi if selected, -phi/(1-Phi) if not
            lam = np.where(s == 1, stats.norm.pdf(z) / stats.norm.cdf(z), -stats.norm.pdf(z) / stats.norm.sf(z))
        else:
            lam = stats.norm.pdf(z) / stats.norm.cdf(z)
        return np.column_stack([pdf["x"].to_numpy(), lam, U, T])

    X = design(g)
    b = np.linalg.lstsq(X[m], yy[m], rcond=None)[0]

    def m2(gam):
        Xg = design(gam)
        return (Xg[m] * (yy[m] - Xg[m] @ b)[:, None]).sum(axis=0)

    h = 1e-6
    J = np.column_stack([(m2(g + h * ej) - m2(g - h * ej)) / (2 * h) for ej in np.eye(3)])
    lam1 = q * stats.norm.pdf(q * (W @ g)) / stats.norm.cdf(q * (W @ g))
    psi1 = W * lam1[:, None]
    H1 = -(W * (lam1 * (lam1 + W @ g))[:, None]).T @ W
    psi2 = np.where(m[:, None], X * (yy - X @ b)[:, None], 0.0)
    A = psi2 - psi1 @ np.linalg.solve(H1, J.T)
    codes = pdf[cluster].to_numpy() if cluster else np.arange(len(pdf))
    S = np.array([A[codes == c].sum(axis=0) for c in np.unique(codes)])
    Binv = np.linalg.inv(X[m].T @ X[m])
    V = Binv @ S.T @ S @ Binv
    return b[:2], V[:2, :2], int(m.sum()), X.shape[1], len(np.unique(codes))


@pytest.mark.parametrize("all_rows", [False, True])
@pytest.mark.parametrize("cluster", ["unit", "g", None])
def test_fe_stacked_variance_matches_dummy_reference(cluster, all_rows):
    df = _panel()
    if all_rows:  # treatment-effects variant: outcome observed for every row
        df = df.with_columns(y=pl.col("y").fill_nan(None).fill_null(pl.col("x") - 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no singletons, no missing rows expected
        h = heckman(df, y="y", selection="s", outcome_vars=["x"], selection_vars=["x", "z"],
                    unit="unit", time="time", cluster=cluster,
                    outcome_sample="all" if all_rows else "selected")
    b, V, n, p, G = _stacked_reference(df, cluster, all_rows)
    assert h.coefnames == ["x", "imr"]
    assert _rel(h.beta, b) < REF_RTOL
    # pyfixest's small-sample factor of the step-2 regression: unit FE nested in
    # a unit or pair-of-units cluster is not counted (p - n_units + 1 parameters)
    n_units = df["unit"].n_unique()
    if cluster is None:
        c = n / (n - p)
    else:
        c = (n - 1) / (n - (p - n_units + 1)) * G / (G - 1)
    assert _rel(np.sqrt(np.diag(h.vcov())), np.sqrt(np.diag(c * V))) < NUMJAC_RTOL
    assert h.df_t == (G - 1 if cluster else n - p)


def test_fe_correction_changes_naive_se_and_tidy():
    h = heckman(_panel(1), y="y", selection="s", outcome_vars=["x"], selection_vars=["x", "z"],
                unit="unit", time="time", cluster="unit")
    t = h.tidy()
    assert isinstance(t, pl.DataFrame)
    assert {"term", "estimate", "se", "se_naive", "pvalue"} <= set(t.columns)
    assert not np.allclose(t["se"], t["se_naive"], rtol=1e-6)
    assert "Selection equation (probit)" in h.summary()
    assert h.imr_se > 0 and np.isfinite(h.imr_coef)


# ------------------------------------------------------------- bad input
def test_heckman_separation_raises():
    df = _panel(2).with_columns(sep=pl.col("s").cast(pl.Float64) * 2 - 1)
    with pytest.raises(SeparationError):
        heckman(df, y="y", selection="s", outcome_vars=["x"], selection_vars=["x", "sep"])


def test_selection_must_be_binary_and_vary():
    df = _panel(3)
    with pytest.raises(SelectionError):
        heckman(df.with_columns(s=pl.col("s") * 2), y="y", selection="s", outcome_vars=["x"], selection_vars=["z"])
    with pytest.raises(SelectionError):
        heckman(df.with_columns(s=pl.lit(1)), y="y", selection="s", outcome_vars=["x"], selection_vars=["z"])


def test_missing_rows_warn_and_no_exclusion_warns():
    df = _panel(4)
    df = df.with_columns(z=pl.when(pl.col("time") == 0).then(None).otherwise(pl.col("z")))
    with pytest.warns(StaggerlabWarning, match="dropped"):
        h = heckman(df, y="y", selection="s", outcome_vars=["x"], selection_vars=["x", "z"])
    assert h.probit.nobs == df.height - df["z"].null_count()
    with pytest.warns(StaggerlabWarning, match="exclusion restriction"):
        heckman(_panel(4), y="y", selection="s", outcome_vars=["x"], selection_vars=["x"])


# ------------------------------------------------- missing outcomes (#23)
def _selection_sample(seed=5, n=600):
    """Outcome NaN on every unselected row: the usual coding of a selection sample."""
    rng = np.random.default_rng(seed)
    z, x = rng.normal(size=n), rng.normal(size=n)
    u, e = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=n).T
    s = (0.2 + 0.9 * z + 0.4 * x + u > 0).astype(float)
    y = 1.0 + 0.7 * x + e
    return pl.DataFrame({"y": np.where(s == 1, y, np.nan), "s": s, "x": x, "z": z})


def test_probit_keeps_rows_whose_outcome_is_missing():
    df = _selection_sample()
    sel_rows = np.flatnonzero(df["s"].to_numpy() == 1)[:7]
    df = df.with_columns(y=pl.Series(np.where(np.isin(np.arange(df.height), sel_rows), np.nan, df["y"])))
    with pytest.warns(MissingValueWarning) as rec:
        h = heckman(df, y="y", selection="s", outcome_vars=["x"], selection_vars=["x", "z"])
    msgs = [str(w.message) for w in rec if issubclass(w.category, MissingValueWarning)]
    assert len(msgs) == 1 and "7 selected row(s)" in msgs[0] and msgs[0].count("'y'") == 1
    assert "'x'" not in msgs[0] and "'z'" not in msgs[0]
    # every row is in the probit (selected rows without outcome included), as statsmodels' probit on all rows
    assert h.probit.nobs == df.height and h.n_selected == int(df["s"].sum())
    assert h.outcome_fit.nobs == h.n_selected - 7
    b, se, sigma, rho = _textbook_reference(df.to_pandas(), "y", "s", ["x"], ["x", "z"])
    assert _rel(h.beta, b) < REF_RTOL
    assert _rel(np.sqrt(np.diag(h.vcov())), se) < REF_RTOL
    assert _rel(h.sigma, sigma) < REF_RTOL and _rel(h.rho, rho) < REF_RTOL


def test_usual_selection_coding_is_silent_and_outcome_sample_all_names_the_outcome():
    df = _selection_sample()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN outcomes of unselected rows are not "missing values"
        h = heckman(df, y="y", selection="s", outcome_vars=["x"], selection_vars=["x", "z"])
    assert h.probit.nobs == df.height
    with pytest.raises(MissingOutcomeError, match=r"s == 0 has a missing value in 'y'.*outcome_sample='selected'") as err:
        heckman(df, y="y", selection="s", outcome_vars=["x"], selection_vars=["x", "z"], outcome_sample="all")
    assert "variation" not in str(err.value)
    with pytest.raises(MissingOutcomeError, match=r"s == 1 has a missing value in 'y'"):
        heckman(df.with_columns(y=pl.lit(None, pl.Float64)), y="y", selection="s", outcome_vars=["x"],
                selection_vars=["x", "z"])


def test_fe_stacked_variance_with_selected_rows_missing_outcome():
    df = _panel(6)
    lose = np.flatnonzero(df["s"].to_numpy() == 1)[::23]
    df = df.with_columns(y=pl.Series(np.where(np.isin(np.arange(df.height), lose), np.nan, df["y"])))
    with pytest.warns(MissingValueWarning, match="stay in the selection probit"):
        h = heckman(df, y="y", selection="s", outcome_vars=["x"], selection_vars=["x", "z"],
                    unit="unit", time="time", cluster="unit")
    b, V, n, p, G = _stacked_reference(df, "unit")
    assert h.probit.nobs == df.height and h.outcome_fit.nobs == n
    assert _rel(h.beta, b) < REF_RTOL
    c = (n - 1) / (n - (p - df["unit"].n_unique() + 1)) * G / (G - 1)
    assert _rel(np.sqrt(np.diag(h.vcov())), np.sqrt(np.diag(c * V))) < NUMJAC_RTOL


def test_missing_selection_variables_listed_once():
    df = _selection_sample().with_columns(
        x=pl.when(pl.int_range(pl.len()) < 4).then(None).otherwise(pl.col("x")))
    with pytest.warns(MissingValueWarning) as rec:
        h = heckman(df, y="y", selection="s", outcome_vars=["x"], selection_vars=["x", "z"])
    msg = next(str(w.message) for w in rec if issubclass(w.category, MissingValueWarning))
    assert "dropped 4 of 600" in msg and msg.count("'x'") == 1 and "'z'" not in msg and "'y'" not in msg
    assert h.probit.nobs == 596


def test_imr_name_reserved_in_every_outcome_role():
    df = _selection_sample().with_columns(imr=pl.col("x") > 0)
    for kw in ({"outcome_vars": ["imr"]}, {"cluster": "imr"}):
        args = {"outcome_vars": ["x"], **kw}
        with pytest.raises(ValueError, match="column 'imr': heckman derives"):
            heckman(df, y="y", selection="s", selection_vars=["x", "z"], **args)
