"""A missing outcome never stops the battery: every section runs on the rows it can use and says so."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.battery import BatterySpec, battery

EXACT = 1e-10  # same math, different route


def _with_holes() -> tuple[pl.DataFrame, list[int]]:
    """The built-in panel with four outcome values set to null: in a treated and in a
    never-treated firm observed every year, in a treated firm with gaps, in a firm's first year."""
    df = sl.simulate.paper_panel(seed=0).with_row_index("_row")
    per_firm = df.group_by("firm").agg(pl.len().alias("n"), pl.col("IM").max().alias("ever"),
                                       pl.col("_row").sort().alias("rows")).sort("firm")
    full_treated = per_firm.filter((pl.col("n") == 12) & (pl.col("ever") == 1))["rows"]
    full_never = per_firm.filter((pl.col("n") == 12) & (pl.col("ever") == 0))["rows"]
    gappy_treated = per_firm.filter((pl.col("n") < 12) & (pl.col("ever") == 1))["rows"]
    holes = [full_treated[0][5], full_treated[1][0], full_never[0][3], gappy_treated[0][1]]
    y = df["NQPF"].to_list()
    for r in holes:
        y[r] = None
    return df.drop("_row").with_columns(pl.Series("NQPF", y, dtype=pl.Float64)), holes


def test_missing_outcomes_every_section_runs_and_reports_its_sample(tmp_path):
    df, holes = _with_holes()
    assert df["NQPF"].null_count() == len(holes) == 4
    spec = BatterySpec(draws=19, boot_draws=99, power_draws=20, n_jobs=1, splits=["hightech"], extra_controls=["Subsidy"],
                       mechanisms=["N_ML"], dml_learners=["lasso"], out=str(tmp_path / "rep"))
    res = battery(df, spec=spec)
    keys = [s.key for s in res.sections]
    assert keys == ["baseline", "event_study", "robust", "diagnostics", "inference", "extra_controls",
                    "mechanisms", "heterogeneity", "alternatives", "power"]
    report = (tmp_path / "rep" / "report.md").read_text()
    for s in res.sections:
        assert s.title in report

    controls = " + ".join(spec.controls)
    with pytest.warns(sl.errors.MissingValueWarning, match="dropped 4 of 15530"):
        direct = sl.feols(f"NQPF ~ IM + {controls} | firm + year", df, vcov={"CRV1": "firm"})
    main = res.section("baseline").numbers["main"]
    assert main["estimate"] == pytest.approx(direct.coef()["IM"], rel=EXACT)
    assert main["nobs"] == direct.nobs
    assert any("dropped 4 of 15530 row(s)" in n for n in res.section("baseline").numbers["notes"])

    # Callaway-Sant'Anna: every firm (one with a null outcome keeps its other years), 4 rows fewer
    robust = res.section("robust")
    cs_num = robust.numbers["cs"]
    assert (cs_num["n_units"], cs_num["nobs"]) == (1780, 15530 - 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs_direct = sl.cs(df, y="NQPF", unit="firm", time="year", treat="IM", allow_unbalanced_panel=True)
    assert cs_num["estimate"] == pytest.approx(cs_direct.aggregate("simple").estimate, rel=EXACT)
    assert cs_num["se"] == pytest.approx(cs_direct.aggregate("simple").se, rel=EXACT)
    assert "uses all 1,780 `firm` units (15,526 rows)" in robust.text
    assert robust.tables["robust"]["rows"].to_list()[2] == 15530 - 4

    # Bacon: the firms with NQPF in all 12 years, counted by hand (three of the 705 lost a year)
    seen = df.filter(pl.col("NQPF").is_not_null())
    full = seen.group_by("firm").len().filter(pl.col("len") == 12)
    assert full.height == 702
    diag = res.section("diagnostics")
    assert f"Sample: {full.height:,} `firm` units, {12 * full.height:,} rows" in diag.text
    assert "of 1,780 units, 15,526 rows with `NQPF`" in diag.text
    assert "15,526 rows: every row with `NQPF`" in diag.text
    for key in ("inference", "extra_controls", "mechanisms", "heterogeneity", "alternatives"):
        assert res.section(key).text.strip(), key
    assert np.isfinite(res.section("inference").numbers["placebo"]["pvalue"])
