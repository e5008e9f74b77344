"""Stacked DiD: against a by-hand stack of per-cohort regressions (numpy
lstsq) and pyfixest on a hand-built stacked frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import EventStudyError
from staggerlab.inference.did.event_study import event_study

pf = pytest.importorskip("pyfixest")

TOL_HAND = 1e-9  # lstsq on dense dummies vs the FE solver
TOL_PYFIXEST = 1e-8
WINDOW = (-3, 3)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return sl.simulate.staggered(240, 12, seed=5, dynamic=0.3, cohort_slope=0.5, n_controls=1).to_pandas()


def _stack(df: pd.DataFrame, window=WINDOW) -> pd.DataFrame:
    """The stack built by hand: per cohort a (window inside the panel), its rows
    and its clean controls' (never treated or treated after a + hi) in the window."""
    lo, hi = window
    parts = []
    for s, a in enumerate(sorted(df.cohort[df.cohort > 0].unique())):
        if a + lo < df.time.min() or a + hi > df.time.max():
            continue
        m = df.time.between(a + lo, a + hi) & ((df.cohort == a) | (df.cohort == 0) | (df.cohort > a + hi))
        p = df[m].copy()
        p["sub"], p["a"], p["e"], p["D"] = s, a, p.time - a, (p.cohort == a).astype(float)
        parts.append(p)
    st = pd.concat(parts, ignore_index=True)
    st["su"] = st["sub"] * 10_000 + st.unit
    st["stt"] = st["sub"] * 10_000 + st.time
    for k in range(lo, hi + 1):
        if k != -1:
            st[f"ev{k + 10}"] = st.D * (st.e == k)
    return st


def _es(df, **kw):
    return event_study(pl.from_pandas(df), y="y", unit="unit", time="time", cohort="cohort", window=WINDOW,
                       method="stacked", **kw)


def test_weighted_stack_is_treated_share_average_of_per_cohort_regressions(panel):
    st = _stack(panel)
    ks = [k for k in range(WINDOW[0], WINDOW[1] + 1) if k != -1]
    want = np.zeros(len(ks))
    n_treated = st[st.D == 1].groupby("a").unit.nunique()
    for a, p in st.groupby("a"):
        # the cohort's own event study: unit and period dummies, OLS by lstsq
        U = pd.get_dummies(p.unit).to_numpy(float)
        Tm = pd.get_dummies(p.time).to_numpy(float)[:, 1:]
        E = p[[f"ev{k + 10}" for k in ks]].to_numpy()
        beta = np.linalg.lstsq(np.hstack([E, U, Tm]), p.y.to_numpy(), rcond=None)[0][: len(ks)]
        want += n_treated[a] / n_treated.sum() * beta
    with pytest.warns(UserWarning, match="left out"):
        es = _es(panel)
    assert es.rel_time.tolist() == ks
    np.testing.assert_allclose(es.coef, want, rtol=TOL_HAND, atol=TOL_HAND)


@pytest.mark.parametrize("weighting", ["none", "corrective"])
def test_matches_pyfixest_on_hand_built_stack(panel, weighting):
    st = _stack(panel)
    if weighting == "corrective":
        nD = st[st.D == 1].groupby(["sub", "e"]).size()
        nC = st[st.D == 0].groupby(["sub", "e"]).size()
        q = (nD / nD.groupby("e").transform("sum")) / (nC / nC.groupby("e").transform("sum"))
        st["w"] = np.where(st.D == 1, 1.0, q.reindex(pd.MultiIndex.from_frame(st[["sub", "e"]])).to_numpy())
    evs = [c for c in st.columns if c.startswith("ev")]
    ref = pf.feols("y ~ " + " + ".join(evs) + " | su + stt", st, vcov={"CRV1": "unit"},
                   weights="w" if weighting == "corrective" else None)
    with pytest.warns(UserWarning, match="left out"):
        es = _es(panel, weighting=weighting)
    np.testing.assert_allclose(es.coef, ref.coef()[evs], rtol=TOL_PYFIXEST)
    np.testing.assert_allclose(es.se, ref.se()[evs], rtol=TOL_PYFIXEST)
    assert es.nobs == ref._N


def test_controls_cluster_and_protocol(panel):
    df = panel.assign(state=panel.unit % 23)
    with pytest.warns(UserWarning):
        es = event_study(pl.from_pandas(df), y="y", unit="unit", time="time", cohort="cohort", window=WINDOW,
                         method="stacked", controls=["x1"], cluster="state")
    assert es.df == 22
    assert es.pretrend_test().df == 2
    simple = es.aggregate("simple")
    post = es.rel_time >= 0
    n = es.extra["n_rel"][post]
    np.testing.assert_allclose(simple.estimate, n @ es.coef[post] / n.sum(), rtol=1e-12)


def test_refusals(panel):
    with pytest.raises(EventStudyError, match="no cohort"):
        event_study(pl.from_pandas(panel), y="y", unit="unit", time="time", cohort="cohort", window=(-11, 11),
                    ref=-1, method="stacked")
