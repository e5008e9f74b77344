"""End-to-end tests of the battery command and its heterogeneity section."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.battery import BatterySpec, battery
from staggerlab.cli import main

EXACT = 1e-10  # same math, different route


@pytest.fixture(scope="module")
def user_panel(tmp_path_factory) -> tuple[str, pl.DataFrame]:
    """A small panel with column names unlike the built-in one, as a CSV."""
    df = sl.simulate.staggered(120, 8, n_controls=2, seed=7, effect=0.5).rename(
        {"unit": "county", "time": "yr", "treat": "policy", "y": "emp", "x1": "pop", "x2": "wage"}
    )
    rng = np.random.default_rng(1)
    grp = (rng.random(120) < 0.5).astype(np.int64)
    df = df.with_columns(
        urban=pl.Series(grp[df["county"].to_numpy() - 1]),
        shock=pl.Series(rng.normal(size=df.height)),
        mech=pl.col("emp") * 0.5 + pl.Series(rng.normal(size=df.height)),
    )
    path = tmp_path_factory.mktemp("data") / "panel.csv"
    df.write_csv(path)
    return str(path), df


def test_battery_on_user_csv_matches_library(user_panel, tmp_path):
    path, df = user_panel
    out = tmp_path / "rep"
    rc = main([
        "battery", "--data", path, "--unit", "county", "--time", "yr", "--outcome", "emp",
        "--treat", "policy", "--controls", "pop,wage", "--extra-controls", "shock", "--mechanisms", "mech",
        "--split", "urban", "--draws", "99", "--power-draws", "10", "--n-jobs", "1", "--out", str(out), "-q",
    ])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "report.md").exists()
    base = {r["model"]: r for r in res["sections"]["baseline"]["coefficients"]}
    direct = sl.feols("emp ~ policy + pop + wage | county + yr", df, vcov={"CRV1": "county"})
    got = base["emp (controls)"]
    assert got["estimate"] == pytest.approx(direct.coef()["policy"], rel=EXACT)
    assert got["se"] == pytest.approx(direct.se()["policy"], rel=EXACT)
    assert got["nobs"] == direct.nobs
    nc = sl.feols("emp ~ policy | county + yr", df, vcov={"CRV1": "county"})
    assert base["emp (no controls)"]["estimate"] == pytest.approx(nc.coef()["policy"], rel=EXACT)
    het = res["sections"]["heterogeneity"]["urban"]
    direct_split = sl.split_difference(df, y="emp", param="policy", controls=["pop", "wage"], group="urban",
                                       unit="county", time="yr", draws=99, seed=0)
    assert het["difference"] == pytest.approx(direct_split.difference, rel=EXACT)
    assert het["permutation_pvalue"] == direct_split.pvalue
    mech = res["sections"]["mechanisms"]["coefficients"][0]
    direct_m = sl.feols("mech ~ policy + pop + wage | county + yr", df, vcov={"CRV1": "county"})
    assert mech["estimate"] == pytest.approx(direct_m.coef()["policy"], rel=EXACT)
    ev = res["sections"]["event_study"]
    es = sl.event_study(df, y="emp", unit="county", time="yr", treat="policy", controls=["pop", "wage"],
                        cluster="county", window=(-5, 5))
    wb = sl.wildboot(es, draws=1999, seed=0)
    assert [r["pvalue"] for r in ev["bootstrap"]["coefficients"]] == wb.pvalue.tolist()
    assert ev["bootstrap"]["band_crit"] == pytest.approx(wb.band_crit, rel=EXACT)
    assert ev["pretrend_power"]["slope_80"] == pytest.approx(sl.pretrend_power(es).slope(0.8), rel=1e-8)
    report = (out / "report.md").read_text()
    assert "1. Baseline TWFE" in report and "8. Heterogeneity" in report
    assert "sup-t band" in report and "80% power" in report


def test_battery_from_toml_spec(user_panel, tmp_path):
    path, df = user_panel
    spec_file = tmp_path / "b.toml"
    spec_file.write_text(
        f'[battery]\ndata = "{path}"\nunit = "county"\ntime = "yr"\noutcomes = ["emp"]\ntreat = "policy"\n'
        'controls = ["pop"]\ndraws = 49\nn_jobs = 1\n'
    )
    out = tmp_path / "rep"
    assert main(["battery", "--spec", str(spec_file), "--out", str(out), "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["spec"]["controls"] == ["pop"]
    direct = sl.feols("emp ~ policy + pop | county + yr", df, vcov={"CRV1": "county"})
    assert res["sections"]["baseline"]["main"]["estimate"] == pytest.approx(direct.coef()["policy"], rel=EXACT)


@pytest.mark.parametrize(
    "change, args, message",
    [
        (None, ["--outcome", "nope"], "outcome column 'nope' not found"),
        (lambda d: d.with_columns(policy=pl.lit(0)), [], "treatment 'policy' never varies"),
        (lambda d: d.with_columns(emp=pl.lit(1.0)), [], "outcome 'emp' is constant"),
        (lambda d: d.with_columns(one=pl.lit(1)), ["--cluster", "one"], "has 1 cluster; clustering needs at least 2"),
        (None, ["--treat", "missing_treat"], "treatment column 'missing_treat' not found"),
        (lambda d: pl.concat([d, d.head(1)]), [], "share a (county, yr) pair"),
    ],
)
def test_battery_bad_input_one_clear_line(user_panel, tmp_path, capsys, change, args, message):
    path, df = user_panel
    if change is not None:
        path = str(tmp_path / "bad.parquet")
        change(df).write_parquet(path)
    base = ["battery", "--data", path, "--unit", "county", "--time", "yr", "--treat", "policy", "--out",
            str(tmp_path / "r"), "-q"]
    if "--outcome" not in args:
        base += ["--outcome", "emp"]
    if "--treat" in args:
        i = base.index("--treat")
        del base[i : i + 2]
    rc = main(base + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("staggerlab: error:")
    assert message in err[0]


def test_builtin_battery_recovers_true_effect(tmp_path):
    spec = BatterySpec(draws=99, power_draws=20, n_jobs=1, splits=["hightech"], out=str(tmp_path / "rep"))
    res = battery(spec=spec)
    main_fit = res.section("baseline").numbers["main"]
    assert abs(main_fit["estimate"] - 0.093) < 2 * main_fit["se"] + 0.0
    # Callaway-Sant'Anna keeps every firm of the unbalanced panel, not only the 705 seen in all 12 years
    df = sl.simulate.paper_panel(seed=0)
    cs_row = res.section("robust").numbers["cs"]
    assert (cs_row["n_units"], cs_row["nobs"]) == (df["firm"].n_unique(), df.height) == (1780, 15530)
    # ... and with the 8 controls (doubly robust) the 705 firms seen in all 12 years, as a direct call
    dr_row = res.section("robust").numbers["cs_dr"]
    with pytest.warns(sl.errors.MissingValueWarning, match="dropped 1075 of 1780"):
        direct = sl.cs(df, y="NQPF", unit="firm", time="year", treat="IM", controls=spec.controls, est_method="dr")
    assert (dr_row["n_units"], dr_row["nobs"]) == (705, 705 * 12)
    assert dr_row["estimate"] == pytest.approx(direct.aggregate("simple").estimate, rel=1e-12)
    assert dr_row["se"] == pytest.approx(direct.aggregate("simple").se, rel=1e-12)
    tab = res.section("robust").tables["robust"]
    assert tab["estimator"].to_list()[2:4] == ["Callaway-Sant'Anna (never-treated controls)",
                                               "Callaway-Sant'Anna (dr, controls)"]
    assert tab["controls"].to_list()[2:4] == ["no", "yes"]
    assert "uses the 705 units observed in every period (8,460 rows)" in res.section("robust").text


def test_battery_backend_gives_identical_numbers(user_panel, tmp_path):
    """The draw loops give the same numbers in-process and on another joblib backend."""
    path, _ = user_panel
    common = dict(data=path, unit="county", time="yr", outcomes=["emp"], treat="policy", controls=["pop"],
                  splits=["urban"], draws=299, boot_draws=999, power_draws=10, alternatives=False)
    a = battery(spec=BatterySpec(**common, n_jobs=1, out=str(tmp_path / "a")))
    b = battery(spec=BatterySpec(**common, n_jobs=2, backend="threading", out=str(tmp_path / "b")))
    for key in ("inference", "heterogeneity"):
        assert a.section(key).numbers == b.section(key).numbers


def test_battery_without_scikit_learn_skips_dml_with_a_note(user_panel, tmp_path, monkeypatch):
    """A plain install (no ``ml`` extra) runs the whole battery; the DML rows are left out, and the report says why."""
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if scikit-learn were not installed
    path, _ = user_panel
    res = battery(spec=BatterySpec(data=path, unit="county", time="yr", outcomes=["emp"], treat="policy",
                                   controls=["pop"], draws=99, boot_draws=99, power_draws=10, n_jobs=1,
                                   out=str(tmp_path / "rep")))
    sec = res.section("alternatives")
    assert "DML skipped" in sec.text and "staggerlab[ml]" in sec.text
    estimators = sec.tables["alternatives"]["estimator"].to_list()
    assert estimators and not any(e.startswith("DML") for e in estimators)


def test_cli_reports_an_internal_error_in_one_line(monkeypatch, capsys, tmp_path):
    import sys

    bm = sys.modules["staggerlab.battery"]  # the package's `battery` attribute is the function

    def broken(**_):
        raise RuntimeError("boom")

    monkeypatch.setattr(bm, "battery", broken)
    assert main(["battery", "--out", str(tmp_path / "r"), "--quiet"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["staggerlab: internal error (RuntimeError): boom; please report it with the command you ran"]


def test_missing_outcome_in_a_fully_observed_unit_does_not_stop_the_diagnostics(user_panel, tmp_path):
    """A unit observed every period but with one missing outcome leaves the balanced
    subsample of the Bacon decomposition instead of stopping the battery."""
    _, df = user_panel
    emp = df["emp"].to_numpy().copy()
    emp[3] = np.nan  # county 1 is observed in every period
    path = tmp_path / "holes.csv"
    df.with_columns(pl.Series("emp", emp)).write_csv(path)
    res = battery(spec=BatterySpec(data=str(path), unit="county", time="yr", outcomes=["emp"], treat="policy",
                                   controls=["pop"], draws=99, boot_draws=99, power_draws=10, alternatives=False, n_jobs=1,
                                   out=str(tmp_path / "rep")))
    text = res.section("diagnostics").text
    assert "uses the units observed with `emp` in every period (of 120 units" in text
    assert "kept the 119 of 120 units observed with 'emp' in all 8 periods" in text


def test_power_section_names_tests_whose_size_is_off():
    """The sentence under the power table follows the size column: a size more than
    2 MC s.e. above 0.05 is named, one within is not."""
    from staggerlab.battery.power import _size_sentence

    rows = [{"estimator": "A", "size": 0.14, "size_mcse": 0.03},
            {"estimator": "B", "size": 0.058, "size_mcse": 0.01}]
    text = _size_sentence(rows)
    assert "A (0.140" in text and "B (" not in text
    assert "holds its size" in _size_sentence(rows[1:])
