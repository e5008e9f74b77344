"""Messy inputs, generated: any column names, id types, row orders and missing
values give the clean frame's numbers; broken inputs (duplicated rows, a
treatment that switches off, an all-missing column) raise one of staggerlab's
named errors whose message names the column or the unit.

The oracle is the same call on the clean frame (clean names, integer ids,
sorted rows, the rows with missing values removed).
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import staggerlab as sl
from staggerlab.errors import StaggerlabError

ROLES = ("unit", "time", "cohort", "treat", "y", "x1", "x2")
# characters users put in column names: spaces, dots, operators, unicode, digits
ALPHABET = list("abqXZ éß.+-*:^()/0123_ ")
TOL = dict(rtol=1e-8, atol=1e-10)

names = st.lists(
    # polars reads "*" and "^...$" in pl.col as a wildcard / regex: not column names
    st.text(alphabet=ALPHABET, min_size=1, max_size=7).filter(
        lambda s: s.strip() == s and s != "*" and not (s.startswith("^") and s.endswith("$"))),
    min_size=len(ROLES), max_size=len(ROLES), unique=True,
)


def _base(seed: int) -> pl.DataFrame:
    return sl.simulate.staggered(24, 6, n_controls=2, seed=seed, effect=1.0).drop("tau")


def _fits(frame: pl.DataFrame, col: dict[str, str]) -> dict[str, np.ndarray]:
    """The calls under test, on a frame whose role -> column name map is ``col``."""
    q = {k: f"`{v}`" for k, v in col.items()}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sl.feols(f"{q['y']} ~ {q['treat']} + {q['x1']} + {q['x2']} | {q['unit']} + {q['time']}", frame,
                       vcov={"CRV1": q["unit"]})
        out["feols"] = np.array([fit.coef()[col["treat"]], fit.se()[col["treat"]]])
        es = sl.event_study(frame, y=col["y"], unit=col["unit"], time=col["time"], cohort=col["cohort"],
                            controls=[col["x1"]], method="imputation")
        tab = es.tidy()
        out["imputation"] = np.column_stack([tab["estimate"].to_numpy(), tab["se"].to_numpy()])
    return out


@st.composite
def messy(draw):
    seed = draw(st.integers(0, 50))
    clean = _base(seed)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    new = dict(zip(ROLES, draw(names)))
    frame = clean.rename({r: new[r] for r in ROLES})
    # missing values in the outcome and a control (null or NaN), never in the ids
    n_miss = draw(st.integers(0, 6))
    miss = rng.choice(clean.height, n_miss, replace=False)
    drop = np.zeros(clean.height, dtype=bool)
    drop[miss] = True
    for j, r in enumerate(miss):
        role = "y" if j % 2 == 0 else "x1"
        vals = frame[new[role]].to_numpy().copy()
        vals[r] = np.nan
        s = pl.Series(new[role], vals)
        frame = frame.with_columns(s.fill_nan(None) if draw(st.booleans()) else s)
    # the unit id as int, string, float or categorical
    kind = draw(st.sampled_from(["int", "str", "float", "cat"]))
    u = frame[new["unit"]]
    if kind == "str":
        frame = frame.with_columns(("firm " + u.cast(pl.Utf8)).alias(new["unit"]))
    elif kind == "float":
        frame = frame.with_columns((u.cast(pl.Float64) + 0.5).alias(new["unit"]))
    elif kind == "cat":
        frame = frame.with_columns(("f" + u.cast(pl.Utf8)).cast(pl.Categorical).alias(new["unit"]))
    frame = frame.sample(fraction=1.0, shuffle=True, seed=int(rng.integers(2**31)))
    defect = draw(st.sampled_from([None, None, None, "duplicate", "all_missing"]))
    return clean.filter(pl.Series(~drop)), frame, new, defect, rng


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy())
def test_messy_frames_give_clean_numbers_or_named_errors(case):
    clean, frame, new, defect, rng = case
    if defect == "duplicate":
        # a complete row: a duplicated row with a missing value is dropped with it
        complete = frame[new["y"]].is_not_nan().fill_null(False) & frame[new["x1"]].is_not_nan().fill_null(False)
        frame = pl.concat([frame, frame.filter(complete).sample(1, seed=int(rng.integers(2**31)))])
        with pytest.raises(StaggerlabError) as exc:
            _fits(frame, new)
        assert new["unit"] in str(exc.value) and new["time"] in str(exc.value)
        return
    if defect == "all_missing":
        frame = frame.with_columns(pl.Series(new["x2"], [None] * frame.height, dtype=pl.Float64))
        with pytest.raises(StaggerlabError) as exc:
            _fits(frame, new)
        assert new["x2"] in str(exc.value) and "missing" in str(exc.value)
        return
    got = _fits(frame, new)
    want = _fits(clean, {r: r for r in ROLES})
    for k in want:
        np.testing.assert_allclose(got[k], want[k], **TOL, err_msg=k)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 50), label=st.sampled_from(["firm 7", "Ünit.7", "u-7"]))
def test_treatment_switching_off_names_the_unit(seed, label):
    df = _base(seed).with_columns(pl.col("unit").cast(pl.Utf8))
    treated = df.filter(pl.col("treat") == 1)["unit"].unique().sort()[0]
    last = df.filter(pl.col("unit") == treated)["time"].max()
    df = df.with_columns(
        pl.when(pl.col("unit") == treated).then(pl.lit(label)).otherwise(pl.col("unit")).alias("unit"),
    ).with_columns(
        pl.when((pl.col("unit") == label) & (pl.col("time") == last)).then(0).otherwise(pl.col("treat")).alias("treat")
    )
    with pytest.raises(StaggerlabError) as exc:
        sl.event_study(df, y="y", unit="unit", time="time", treat="treat", method="imputation")
    assert label in str(exc.value)


@pytest.mark.parametrize("name", ["*", "^y.*$"])
def test_pattern_like_column_names_are_refused_by_name(name):
    df = _base(0).rename({"y": name})
    with pytest.raises(StaggerlabError, match="pattern") as exc:
        sl.event_study(df, y=name, unit="unit", time="time", cohort="cohort", method="imputation")
    assert repr(name) in str(exc.value)


def test_power_on_odd_column_names_equals_clean():
    clean = _base(2)
    odd = {"unit": "firm id", "time": "fiscal.year", "treat": "policy on", "y": "q score", "x1": "log(size)"}
    kw = dict(estimators=["twfe", "imputation"], sizes=[0.0, 0.5], draws=20, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = sl.power(clean, y="y", unit="unit", time="time", treat="treat", controls=["x1"], **kw).tidy()
        b = sl.power(clean.rename(odd), y=odd["y"], unit=odd["unit"], time=odd["time"], treat=odd["treat"],
                     controls=[odd["x1"]], **kw).tidy()
    for c in ("power", "bias"):
        np.testing.assert_allclose(b[c].to_numpy(), a[c].to_numpy(), **TOL)
