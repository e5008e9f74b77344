"""One test per bad input: the named exception (and its builtin) and what its message says."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import (
    CollinearityError,
    ConvergenceError,
    DuplicateRowsError,
    EmptyPanelError,
    FormulaError,
    MissingColumnError,
    MissingValueError,
    MissingValueWarning,
    NonNumericError,
    PanelError,
    StaggerlabError,
    VcovError,
    WeightsError,
)


@pytest.fixture
def df() -> pl.DataFrame:
    return sl.simulate.staggered(30, 5, n_controls=2, seed=2).with_columns(
        name=pl.format("firm-{}", "unit"), one=pl.lit(1)
    )


def fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sl.errors.SingletonWarning)
        return sl.feols(*args, **kw)


# ------------------------------------------------------------ missing column
@pytest.mark.parametrize(
    "fml,vcov,what",
    [
        ("y ~ treat + nope | unit", None, "variable 'nope'"),
        ("nope ~ treat | unit", None, "outcome 'nope'"),
        ("y ~ treat | unit + nope", None, "fixed-effect column 'nope'"),
        ("y ~ treat | unit", {"CRV1": "nope"}, "cluster column 'nope'"),
    ],
)
def test_missing_column_in_feols(df, fml, vcov, what):
    with pytest.raises(MissingColumnError, match=f"{what} not found in the data") as exc:
        fit(fml, df, vcov=vcov)
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, PanelError)
    assert "columns: unit, time" in str(exc.value)


def test_missing_column_in_panel_and_weights(df):
    with pytest.raises(MissingColumnError, match="id column 'firm' not found"):
        sl.Panel.from_frame(df, unit="firm", time="time")
    with pytest.raises(KeyError, match="weights column 'wt' not found"):
        fit("y ~ treat | unit", df, weights="wt")


def test_column_name_that_is_not_a_string(df):
    # a required column argument left as None used to fail with a TypeError from len(None)
    with pytest.raises(sl.errors.ArgumentError, match="must be a string, got None of type NoneType"):
        sl.dml(df, y="y", treat=None, covariates=["x1"], unit="unit", time="time")
    with pytest.raises(sl.errors.ArgumentError, match="got 3 of type int"):
        sl.Panel.from_frame(df, unit=3, time="time")


# ------------------------------------------------------------ duplicated rows
def test_duplicated_unit_time_rows(df):
    dup = pl.concat([df, df.head(2)])
    with pytest.raises(DuplicateRowsError, match=r"4 rows share a \(unit, time\) pair.*one row per unit and period") as exc:
        sl.Panel.from_frame(dup, unit="unit", time="time")
    assert isinstance(exc.value, ValueError)
    assert "(1, 2011)" in str(exc.value)


# ------------------------------------------------------------ non-numeric
def test_non_numeric_outcome(df):
    with pytest.raises(NonNumericError, match="column 'name' has type String, not a number") as exc:
        fit("name ~ treat | unit", df)
    assert isinstance(exc.value, TypeError) and isinstance(exc.value, StaggerlabError)


def test_string_regressor_is_a_factor_as_in_pyfixest(df):
    """A string column on the right-hand side is expanded into dummies, not
    refused: unit dummies plus a time FE give the two-way FE coefficient (LSDV)."""
    lsdv = fit("y ~ treat + name | time", df)
    assert sum(n.startswith("name[T.firm-") for n in lsdv.coefnames) == df["unit"].n_unique() - 1
    within = fit("y ~ treat | unit + time", df)
    assert lsdv.coef()["treat"] == pytest.approx(within.coef()["treat"], rel=1e-9)


def test_non_numeric_value_column_in_panel(df):
    with pytest.raises(TypeError, match="value column 'name' has type String"):
        sl.Panel.from_frame(df.to_pandas(), unit="unit", time="time", columns=["name"])


# ------------------------------------------------------------ NaN / inf / null
@pytest.fixture
def dirty(df) -> pl.DataFrame:
    y = df["y"].to_numpy().copy()
    y[3] = np.nan
    y[7] = np.inf
    x1 = df["x1"].to_list()
    x1[11] = None
    return df.with_columns(y=pl.Series(y), x1=pl.Series(x1, dtype=pl.Float64))


def test_missing_values_dropped_with_count(dirty):
    with pytest.warns(MissingValueWarning, match=rf"dropped 3 of {dirty.height} row\(s\) with missing or non-finite"):
        f = fit("y ~ treat + x1 | unit + time", dirty)
    assert f.design.n_missing == 3
    assert f.nobs + f.design.n_singletons == dirty.height - 3
    assert not np.isin([3, 7, 11], f.design.rows).any()
    clean = fit("y ~ treat + x1 | unit + time", dirty[np.setdiff1d(np.arange(dirty.height), [3, 7, 11])])
    np.testing.assert_allclose(f.beta, clean.beta, rtol=1e-12)


def test_missing_values_raise(dirty):
    with pytest.raises(MissingValueError, match=r"3 row\(s\) have a missing or non-finite value.*na='drop'") as exc:
        fit("y ~ treat + x1 | unit + time", dirty, na="raise")
    assert isinstance(exc.value, ValueError)


def test_missing_values_in_panel(dirty):
    with pytest.warns(MissingValueWarning, match=r"dropped 2 of \d+ row"):
        p = sl.Panel.from_frame(dirty, unit="unit", time="time", columns=["y"])
    assert p.nobs == dirty.height - 2
    with pytest.raises(MissingValueError, match=r"3 row\(s\)"):
        sl.Panel.from_frame(dirty, unit="unit", time="time", columns=["y", "x1"], na="raise")


def test_non_positive_weights(df):
    bad = df.with_columns(w=pl.when(pl.col("unit") == 1).then(0.0).otherwise(1.0))
    with pytest.raises(WeightsError, match=r"weights column 'w' has 5 zero or negative value"):
        fit("y ~ treat | unit", bad, weights="w")


# ------------------------------------------------------------ empty frame
def test_empty_frame(df):
    with pytest.raises(EmptyPanelError, match="has no rows"):
        sl.Panel.from_frame(df.head(0), unit="unit", time="time")
    with pytest.raises(EmptyPanelError, match="has no rows") as exc:
        fit("y ~ treat | unit", df.head(0))
    assert isinstance(exc.value, ValueError)


def test_all_missing_column_is_named(df):
    allnan = df.with_columns(y=pl.lit(float("nan")))
    with pytest.raises(MissingValueError, match="column 'y' is all missing"):
        fit("y ~ treat | unit", allnan)
    with pytest.raises(MissingValueError, match="column 'y' is all missing"):
        sl.event_study(allnan, y="y", unit="unit", time="time", treat="treat", method="imputation")


def test_empty_after_dropping_missing(df):
    # no column is all missing, but every row misses one of them
    half = df.height // 2
    holes = df.with_columns(
        y=pl.when(pl.int_range(pl.len()) < half).then(float("nan")).otherwise(pl.col("y")),
        x1=pl.when(pl.int_range(pl.len()) >= half).then(float("nan")).otherwise(pl.col("x1")),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingValueWarning)
        with pytest.raises(EmptyPanelError, match="no rows left after dropping missing values"):
            fit("y ~ treat + x1 | unit", holes)


# ------------------------------------------------------------ collinearity
def test_all_regressors_collinear(df):
    with pytest.raises(CollinearityError, match=r"every regressor \['cohort', 'one'\] is collinear") as exc:
        fit("y ~ cohort + one | unit + time", df)
    assert isinstance(exc.value, ValueError)


# ------------------------------------------------------------ vcov
@pytest.mark.parametrize("kind", ["CRV1", "CRV3"])
def test_fewer_than_two_clusters(df, kind):
    with pytest.raises(VcovError, match="needs at least 2 clusters, found 1") as exc:
        fit("y ~ treat | unit", df, vcov={kind: "one"})
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    "vcov,msg",
    [
        ("robust", "unknown vcov 'robust'"),
        ({"CRV2": "unit"}, "unknown clustered vcov 'CRV2'"),
        ({"CRV1": "unit+time+one"}, "must name one or two columns"),
        ({"CRV3": "unit+time"}, "CRV3 supports one-way clustering only"),
    ],
)
def test_bad_vcov(df, vcov, msg):
    with pytest.raises(VcovError, match=msg):
        fit("y ~ treat | unit", df, vcov=vcov)


def test_with_vcov_needs_prepared_cluster(df):
    f = fit("y ~ treat | unit", df)
    with pytest.raises(VcovError, match=r"cluster column\(s\) \['time'\] were not prepared"):
        f.with_vcov({"CRV1": "time"})


def test_with_vcov_needs_prepared_cluster_without_fe(df):
    f = fit("y ~ treat", df)
    with pytest.raises(VcovError, match=r"cluster column\(s\) \['time'\] were not prepared"):
        f.with_vcov({"CRV1": "time"})


# ------------------------------------------------------------ formula
@pytest.mark.parametrize(
    "fml,msg",
    [
        ("y treat", "must have exactly one '~'"),
        ("y ~ x1 ~ x2", "must have exactly one '~'"),
        ("y ~ treat | unit | x1", "more than one '|'"),
        ("y ~ treat | log(unit)", "must be a column name"),
        ("y ~ treat + | unit", "empty term in the regressors"),
        ("y ~ treat + treat | unit", "a regressor appears twice"),
        ("y ~ (treat | unit", "unbalanced"),
        ("y ~ 0", "has no regressor to estimate"),
    ],
)
def test_bad_formula(df, fml, msg):
    with pytest.raises(FormulaError, match=msg) as exc:
        fit(fml, df)
    assert isinstance(exc.value, ValueError)


def test_bad_data_type():
    with pytest.raises(TypeError, match="expected a polars or pandas DataFrame or a staggerlab Panel, got dict"):
        sl.feols("y ~ x | u", {"y": [1.0]})


# ------------------------------------------------------------ convergence
def test_iterative_non_convergence_in_feols():
    rng = np.random.default_rng(0)
    n = 600
    frame = pl.DataFrame(
        {"y": rng.normal(size=n), "x": rng.normal(size=n), "a": rng.integers(0, 60, n), "b": rng.integers(0, 60, n)}
    )
    with pytest.raises(ConvergenceError, match=r"did not converge .* in 1 iterations.*raise maxiter") as exc:
        fit("y ~ x | a + b", frame, demean_method="iterative", fixef_maxiter=1)
    assert isinstance(exc.value, RuntimeError)


# ------------------------------------------------------ one error policy
def test_every_exception_class_lives_in_errors():
    import inspect
    import pkgutil

    import staggerlab
    from staggerlab import errors

    for info in pkgutil.walk_packages(staggerlab.__path__, "staggerlab."):
        if info.name == "staggerlab.cli" or info.name.startswith("staggerlab.plots"):
            continue
        module = __import__(info.name, fromlist=["_"])
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, (Exception, Warning)) and obj.__module__.startswith("staggerlab"):
                assert obj.__module__ == "staggerlab.errors", f"{info.name}.{name} is defined outside errors.py"
                assert getattr(errors, name) is obj


@pytest.mark.parametrize("name", ["placebo", "wildboot"])
def test_shared_options_raise_one_class_with_one_wording(df, name):
    from staggerlab.errors import ArgumentError
    from staggerlab.inference.resampling.placebo import placebo
    from staggerlab.inference.resampling.wildboot import wildboot

    proc = {"placebo": placebo, "wildboot": wildboot}[name]
    f = sl.feols("y ~ treat | unit + time", df, vcov={"CRV1": "unit"})
    with pytest.raises(ArgumentError, match=r"alternative must be one of \(.*\), got 'bigger'"):
        proc(f, alternative="bigger")
    with pytest.raises(ArgumentError, match=r"draws must be a positive integer, got 0"):
        proc(f, draws=0)
    with pytest.raises(ArgumentError, match=r"level must be in \(0, 1\), got 1.5"):
        proc(f, draws=9, level=1.5)
    with pytest.raises(TypeError, match="seed must be"):
        proc(f, draws=9, seed="x")


def test_missing_value_messages_name_only_the_columns_with_missing_values():
    df = sl.simulate.staggered(40, 6, n_controls=2, seed=1)
    y = df["y"].to_numpy().copy()
    y[[3, 17]] = np.nan
    df = df.with_columns(pl.Series("y", y), pl.when(pl.col("unit") == 5).then(None).otherwise(pl.col("x2")).alias("x2"))
    with pytest.warns(MissingValueWarning) as rec:
        sl.feols("y ~ treat + x1 + x2 | unit + time", df)
    msg = str(rec[0].message)
    assert "'y', 'x2'" in msg and "'x1'" not in msg and "'unit'" not in msg
    with pytest.warns(MissingValueWarning) as rec:
        sl.event_study(df, y="y", unit="unit", time="time", treat="treat", controls=["x1", "x2"],
                       cluster="unit", method="imputation")
    msgs = [str(w.message) for w in rec if issubclass(w.category, MissingValueWarning)]
    assert any("'y', 'x2'" in m and "'unit'" not in m for m in msgs)


# ------------------------------------------------------------ periods
@pytest.mark.parametrize("estimator", ["event_study", "cs", "bacon"])
def test_non_integer_or_text_periods_are_refused_by_the_staggered_estimators(df, estimator):
    # event time is time - adoption: 2011.5 used to be truncated to 2011 by a cast
    kw = dict(y="y", unit="unit", time="time", treat="treat")
    call = getattr(sl, estimator)
    with pytest.raises(PanelError, match=r"time column 'time' has non-integer periods \(e.g. 2011.5\)"):
        call(df.with_columns(pl.col("time") + 0.5), **kw)
    with pytest.raises(NonNumericError, match="time column 'time' has type String .e.g. '2011-Q1'.") as exc:
        call(df.with_columns(pl.format("{}-Q1", "time").alias("time")), **kw)
    assert isinstance(exc.value, TypeError)
    call(df.with_columns(pl.col("time").cast(pl.Float64)), **kw)  # whole numbers as floats are periods


def test_a_biennial_panel_is_told_why_its_relative_periods_collide():
    # odd cohorts on even years: relative times of two grids; the refusal says the periods are 2 apart
    df = sl.simulate.staggered(60, 8, n_controls=1, seed=4).filter(pl.col("time") % 2 == 0)
    with pytest.raises(sl.errors.ReferencePeriodError, match=r"are collinear with the unit and time") as exc:
        sl.event_study(df, y="y", unit="unit", time="time", cohort="cohort")
    assert "The periods of 'time' are 2 apart (2012, 2014, ...)" in str(exc.value)
    assert "(time - 2012) / 2 + 1" in str(exc.value)
