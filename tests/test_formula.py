"""The formula front end: fixest syntax against pyfixest, backtick-quoted names,
multiple estimation, and every keyword-column API on columns with awkward names."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import FormulaError, MissingColumnError
from staggerlab.inference.regression.formula import Formula, parse_formula, parse_formulas
from staggerlab.inference.regression.terms import resolve

TOL = 1e-8  # coefficients and SEs against pyfixest (both solve to ~1e-13)


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    """A staggered, unbalanced panel with a string category, a positive and a negative column."""
    df = sl.simulate.staggered(120, 6, n_controls=3, drop_share=0.2, seed=3)
    rng = np.random.default_rng(8)
    n = df.height
    return df.with_columns(
        g=pl.Series(rng.choice(["lo", "mid", "hi"], n)),
        z=pl.Series(rng.uniform(0.5, 3.0, n)),
        neg=pl.Series(rng.normal(size=n)),  # log(neg) is missing on about half the rows
        region=pl.Series(rng.integers(0, 6, n)),
    )


FORMULAS = [
    "y ~ C(g) + x1 | unit + time",
    "y ~ i(g, ref='mid') + x1 | unit",
    "y ~ i(time, ref=2014) | unit",
    "y ~ i(g, x1, ref='lo') + x2 | unit + time",
    "y ~ x1:x2 + x3 | unit + time",
    "y ~ x1*x2 | unit + time",
    "y ~ x1*g | time",
    "log(z) ~ x1 + I(x2**2) | unit",
    "y ~ log(neg) + x1 | unit + time",
    "y ~ g + x1",
    "y ~ x1 + C(g) - 1",
    "y ~ x1:C(g) + x1 | unit",
    "y ~ x1 + x2 | unit + g^time",
]


@pytest.mark.parametrize("vcov", ["iid", "hetero", {"CRV1": "unit"}])
@pytest.mark.parametrize("fml", FORMULAS)
def test_expressions_equal_pyfixest(panel, pf_feols, fml, vcov):
    """Factor expansions, interactions and transforms: pyfixest's names, coefficients and SEs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sl.feols(fml, panel, vcov=vcov)
    ref = pf_feols(fml, panel.to_pandas(), vcov=vcov)
    assert sorted(fit.coefnames) == sorted(ref.coef().index)
    for name in ref.coef().index:
        assert abs(fit.coef()[name] - ref.coef()[name]) < TOL * max(1.0, abs(ref.coef()[name])), name
        assert abs(fit.se()[name] - ref.se()[name]) < TOL * max(1.0, ref.se()[name]), name
    assert fit.nobs == ref._N


def test_plain_formula_uses_the_frame_itself(panel):
    """Plain columns take the zero-copy path: the working frame is the caller's,
    and the design's raw regressor is the frame's buffer."""
    f = parse_formula("y ~ x1 + x2 | unit + time")
    assert resolve(f, panel, "y ~ x1 + x2 | unit + time").frame is panel
    fit = sl.feols("y ~ x1 + x2 | unit + time", panel)
    assert np.shares_memory(fit.design.columns["x1"], panel["x1"].to_numpy())


def test_import_does_not_load_the_formula_libraries():
    """formulaic and pyfixest are imported only by a formula that needs them."""
    code = ("import sys, staggerlab as sl; df = sl.simulate.staggered(40, 4, seed=1); "
            "sl.feols('y ~ treat | unit + time', df); "
            "print('formulaic' in sys.modules, 'pyfixest' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------ parsing
def test_multiple_estimation_equals_pyfixest(panel, pf_feols):
    fml = "y ~ x1 + csw0(x2, x3) | sw(unit, time)"
    multi = sl.feols(fml, panel, vcov={"CRV1": "unit"})
    ref = pf_feols(fml, panel.to_pandas(), vcov={"CRV1": "unit"})
    # pyfixest keys the models by their raw text ('y ~ x1 + 1 | unit'): compare parsed
    ref_models = {str(parse_formula(k)): m for k, m in ref.all_fitted_models.items()}
    assert multi.keys() == list(ref_models)  # same models, same (pyfixest's) order
    for key, fit in zip(multi.keys(), multi):
        assert isinstance(fit, sl.Feols) and multi[key] is fit
        r = ref_models[key]
        for name in r.coef().index:
            assert abs(fit.coef()[name] - r.coef()[name]) < TOL
            assert abs(fit.se()[name] - r.se()[name]) < TOL
    tidy = multi.tidy()
    assert tidy.height == sum(len(f.coefnames) for f in multi)
    assert tidy["model"].unique(maintain_order=True).to_list() == multi.keys()
    assert multi.summary().count("feols:") == len(multi) == 6


@pytest.mark.parametrize(
    "fml,expected",
    [
        ("y ~ sw(a, b)", ["y ~ a", "y ~ b"]),
        ("y ~ csw(a, b, c)", ["y ~ a", "y ~ a + b", "y ~ a + b + c"]),
        ("y ~ x + sw0(a, b)", ["y ~ x", "y ~ x + a", "y ~ x + b"]),
        ("sw(y1, y2) ~ x | f", ["y1 ~ x | f", "y2 ~ x | f"]),
        ("y ~ x | csw0(f1, f2)", ["y ~ x", "y ~ x | f1", "y ~ x | f1 + f2"]),
        ("`sw(a, b)` ~ x", ["`sw(a, b)` ~ x"]),  # a column name, not a call
    ],
)
def test_multiple_estimation_expansion(fml, expected):
    assert [str(f) for f in parse_formulas(fml)] == expected


def test_backticks_and_programmatic_formulas():
    f = parse_formula("`q score` + y2 ~ `policy on` + `log(z)` + x1 | `firm id` + year")
    assert [t.text for t in f.depvars] == ["q score", "y2"]
    assert [(t.text, t.column) for t in f.regressors] == [("policy on", True), ("log(z)", True), ("x1", True)]
    assert f.fixef == ("firm id", "year") and not f.intercept
    g = Formula.of("a+b", ["x:y", "2nd"], ["_cohort"])
    assert str(g) == "`a+b` ~ `x:y` + `2nd` | _cohort"
    assert parse_formula(str(g)) == g  # the printed formula parses back to the same columns
    h = parse_formula("y ~ x | `firm id`^year + region")
    assert h.fixef == (("firm id", "year"), "region") and str(h) == "y ~ x | `firm id`^year + region"
    assert parse_formula("y ~ x - 1").intercept is False and parse_formula("y ~ 0 + x").intercept is False


@pytest.mark.parametrize(
    "fml,match",
    [
        ("y ~ x | f | d ~ z", "IV part"),
        ("y ~ (x", "unbalanced"),
        ("y ~ `x", "unclosed"),
        ("y ~ x - z", "only the intercept"),
        ("y ~ x + x", "appears twice"),
        ("y ~ x | log(f)", "must be a column name"),
        ("y x", "exactly one '~'"),
    ],
)
def test_syntax_errors(fml, match):
    with pytest.raises(FormulaError, match=match):
        parse_formulas(fml)


def test_unknown_column_suggests_backticks(panel):
    df = panel.rename({"y": "q score", "x1": "x.one"})
    with pytest.raises(MissingColumnError, match=r"backticks: `q score`"):
        sl.feols("q score ~ x.one | unit", df)
    with pytest.raises(MissingColumnError, match=r"'x_one'.*did you mean x\.one"):
        sl.feols("`q score` ~ x_one | unit", df)
    with pytest.raises(MissingColumnError, match=r"'x2b'"):
        sl.feols("`q score` ~ C(x2b) | unit", df)


def test_a_column_named_like_a_term_is_refused_not_confused(panel):
    """A column literally called ``log(z)`` next to the function ``log(z)``."""
    df = panel.with_columns((pl.col("z") * 2).alias("log(z)"))
    with pytest.raises(FormulaError, match="name of a column"):
        sl.feols("y ~ log(z) | unit", df)
    quoted = sl.feols("y ~ `log(z)` | unit", df)  # the column, as written
    direct = sl.feols("y ~ z2 | unit", df.with_columns(z2=pl.col("log(z)")))
    assert quoted.coef()["log(z)"] == pytest.approx(direct.coef()["z2"], rel=1e-12)


# ------------------------------------------------------------- any column name
NASTY = {
    "y": "_rel",               # the name of a column the estimators add
    "treat": "policy+on",      # a formula operator
    "unit": "_cohort",         # another one
    "time": "1 year",          # a leading digit and a space
    "cohort": "_treat",        # another internal name
    "x1": "log(x1)",           # looks like a call
    "x2": "x:y",               # looks like an interaction
    "x3": "ñandú.size",        # unicode and a dot
    "region": "région id",
}


def _same(a: float, b: float) -> None:
    assert a == pytest.approx(b, rel=1e-10, abs=1e-12)


def test_keyword_apis_on_nasty_names(panel):
    """Every keyword-column API gives the clean frame's numbers on renamed columns."""
    bal = sl.simulate.staggered(60, 6, n_controls=2, seed=4).with_columns(
        region=pl.col("unit") % 5
    )
    nasty = bal.rename({k: v for k, v in NASTY.items() if k in bal.columns})
    n = NASTY
    ctl, nctl = ["x1", "x2"], [n["x1"], n["x2"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("twfe", "sunab", "imputation"):
            a = sl.event_study(bal, y="y", unit="unit", time="time", cohort="cohort", controls=ctl,
                               method=method, window=(-3, 3))
            b = sl.event_study(nasty, y=n["y"], unit=n["unit"], time=n["time"], cohort=n["cohort"],
                               controls=nctl, method=method, window=(-3, 3))
            np.testing.assert_allclose(b.tidy()["estimate"], a.tidy()["estimate"], rtol=1e-10)
            np.testing.assert_allclose(b.tidy()["se"], a.tidy()["se"], rtol=1e-10)
        a = sl.cs(bal, y="y", unit="unit", time="time", cohort="cohort")
        b = sl.cs(nasty, y=n["y"], unit=n["unit"], time=n["time"], cohort=n["cohort"])
        np.testing.assert_allclose(b.tidy()["estimate"], a.tidy()["estimate"], rtol=1e-10)
        a = sl.bacon(bal, y="y", unit="unit", time="time", treat="treat")
        b = sl.bacon(nasty, y=n["y"], unit=n["unit"], time=n["time"], treat=n["treat"])
        _same(b.twfe, a.twfe)
        a = sl.twfe_weights(bal, y="y", unit="unit", time="time", treat="treat")
        b = sl.twfe_weights(nasty, y=n["y"], unit=n["unit"], time=n["time"], treat=n["treat"])
        np.testing.assert_allclose(b.tidy()["weight"], a.tidy()["weight"], rtol=1e-10)
        _same(b.beta, a.beta)
        # a treatment that switches off: the unit-cell path
        off = pl.when(pl.col("time") == pl.col("time").max()).then(0).otherwise(pl.col("treat"))
        a = sl.twfe_weights(bal.with_columns(off.alias("treat")), y="y", unit="unit", time="time", treat="treat")
        b = sl.twfe_weights(bal.with_columns(off.alias("treat")).rename({k: v for k, v in n.items() if k in bal.columns}),
                            y=n["y"], unit=n["unit"],
                            time=n["time"], treat=n["treat"])
        assert a.cells == b.cells == "unit"
        np.testing.assert_allclose(b.tidy()["weight"], a.tidy()["weight"], rtol=1e-10)
        _same(b.beta, a.beta)
        assert b.tidy()[n["unit"]].to_list() == a.tidy()["unit"].to_list()

        fa = sl.feols("y ~ treat + x1 + x2 | unit + time", bal, vcov={"CRV1": "region"})
        fb = sl.feols(Formula.of(n["y"], [n["treat"], *nctl], [n["unit"], n["time"]]), nasty,
                      vcov={"CRV1": n["region"]})
        fq = sl.feols("`_rel` ~ `policy+on` + `log(x1)` + `x:y` | `_cohort` + `1 year`", nasty,
                      vcov={"CRV1": "`région id`"})
        for f in (fb, fq):
            _same(f.coef()[n["treat"]], fa.coef()["treat"])
            _same(f.se()[n["treat"]], fa.se()["treat"])
        pa = sl.placebo(fa, param="treat", draws=60, seed=1)
        pb = sl.placebo(fb, param=n["treat"], draws=60, seed=1)
        np.testing.assert_allclose(pb.statistics, pa.statistics, rtol=1e-9)
        _same(pb.pvalue, pa.pvalue)
        wa = sl.wildboot(fa, param="treat", draws=99, seed=1)
        wb = sl.wildboot(fb, param=n["treat"], draws=99, seed=1, cluster=n["region"])
        _same(wb.pvalue, wa.pvalue)
        grp = pl.col("unit") % 2
        sa = sl.split_difference(bal.with_columns(grp.alias("grp")), y="y", param="treat", controls=ctl,
                                 group="grp", unit="unit", time="time", draws=40, seed=2)
        sb = sl.split_difference(nasty.with_columns((pl.col(n["unit"]) % 2).alias("grp x")), y=n["y"],
                                 param=n["treat"], controls=nctl, group="grp x", unit=n["unit"],
                                 time=n["time"], draws=40, seed=2)
        np.testing.assert_allclose(sb.tidy()["estimate"], sa.tidy()["estimate"], rtol=1e-10)
        _same(sb.pvalue, sa.pvalue)


def _numbers(obj) -> list[float]:
    """Every number in a nested result, in order (labels, which carry names, left out)."""
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in _numbers(v)]
    if isinstance(obj, (bool, np.bool_)) or obj is None:
        return []
    if isinstance(obj, (int, float, np.integer, np.floating)):
        return [float(obj)]
    return []


@pytest.mark.slow
def test_battery_on_nasty_names(tmp_path):
    """The battery gives the same numbers with awkward column names (every section)."""
    from staggerlab.battery import battery

    df = sl.simulate.staggered(80, 7, n_controls=2, seed=7, effect=0.5)
    rng = np.random.default_rng(2)
    df = df.with_columns(
        urban=(pl.col("unit") % 2),
        shock=pl.Series(rng.normal(size=df.height)),
        z=pl.col("treat") + pl.Series(rng.normal(size=df.height)),
    )
    names = {"unit": "_cohort", "time": "1 year", "treat": "policy+on", "y": "q score", "x1": "log(x1)",
             "x2": "x:y", "urban": "ürban", "shock": "_treat", "z": "z z", "tau": "mech (%)"}
    nasty = df.rename(names)

    def run(frame, n, out):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return battery(frame, unit=n["unit"], time=n["time"], outcomes=[n["y"]], treat=n["treat"],
                           controls=[n["x1"], n["x2"]], extra_controls=[n["shock"]], splits=[n["urban"]],
                           mechanisms=[n["tau"]],
                           instruments=[f"`{n['z']}`" if " " in n["z"] else n["z"]], dml_learners=[],
                           draws=49, boot_draws=99, power_draws=5, n_jobs=1, out=str(out))

    a = run(df, {k: k for k in names}, tmp_path / "a")
    b = run(nasty, names, tmp_path / "b")
    assert [s.key for s in a.sections] == [s.key for s in b.sections]
    for sa, sb in zip(a.sections, b.sections):
        na, nb = _numbers(sa.numbers), _numbers(sb.numbers)
        assert len(na) == len(nb) > 0, sa.key
        np.testing.assert_allclose(nb, na, rtol=1e-9, atol=1e-12, err_msg=sa.key)
