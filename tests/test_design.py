"""The fitted design as the single source of truth: what ``Design`` keeps,
``Design.restrict``, the one adoption-time routine, and the TWFE plim."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import NonAbsorbingTreatmentError, TreatmentError
from staggerlab.inference.did.staggered_data import prepare
from staggerlab.inference.regression.feols import Feols
from staggerlab.inference.studies.plim import twfe_plim
from staggerlab.kernels.adoption import adoption_by_row, adoption_by_run
from staggerlab.panels.adoption import adoption_times
from staggerlab.panels.dgp import DGPError, dgp


def _unbalanced(seed: int = 5) -> pl.DataFrame:
    df = sl.simulate.staggered(120, 8, seed=seed)
    rng = np.random.default_rng(seed)
    df = df.filter(pl.Series(rng.uniform(size=df.height) > 0.35))
    return df.with_columns(x=pl.Series(rng.normal(size=df.height)), uname=pl.format("u{}", pl.col("unit")),
                           w=1.0 + (pl.col("unit") % 3).cast(pl.Float64))


# ------------------------------------------------------------ what it keeps
@pytest.mark.parametrize("unit", ["unit", "uname"])
def test_design_keeps_validated_columns_codes_and_ids(unit):
    df = _unbalanced()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sl.feols(f"y ~ treat + x | {unit} + time", df, vcov={"CRV1": "cohort"})
    d = fit.design
    for c in ("y", "treat", "x"):
        np.testing.assert_array_equal(d.column(c), d.frame[c].cast(pl.Float64).to_numpy())
    assert d.requested == ["treat", "x"]
    for name in (unit, "time", "cohort"):
        ids, codes = d.ids(name), d.codes(name)
        assert codes.min() == 0 and codes.max() == ids.size - 1
        np.testing.assert_array_equal(ids[codes], d.frame[name].to_numpy())
        np.testing.assert_array_equal(ids, np.sort(d.frame[name].unique().to_numpy()))


def test_nesting_facts_and_df_k():
    df = _unbalanced().with_columns(grp=pl.col("unit") // 10)
    fit = sl.feols("y ~ treat | unit + time", df, vcov={"CRV1": "grp"})
    d = fit.design
    assert d.nesting(["grp"]) == [True, False]  # units lie within groups, periods do not
    assert d.df_k(fit.vcov_spec) == d.df_k_clusters(["grp"], [d.codes("grp")])


# ----------------------------------------------------------------- restrict
@pytest.mark.parametrize("vcov", ["iid", "hetero", {"CRV1": "unit"}, {"CRV1": "unit+time"}])
@pytest.mark.parametrize("weights", [None, "w"])
def test_restrict_equals_a_fit_on_the_subset(vcov, weights):
    """A refit through the design is bit-identical to feols on the subset
    (singletons dropped again, codes dense again)."""
    df = _unbalanced()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sl.feols("y ~ treat + x | unit + time", df, vcov=vcov, weights=weights)
        d = fit.design
        t = d.frame["time"].to_numpy()
        keep = (t <= t.min() + 1) | (d.frame["unit"].to_numpy() % 2 == 0)  # odd units: singletons
        z = np.random.default_rng(1).normal(size=d.nobs)
        sub = d.restrict(keep, {"x": z})
        ref = sl.feols("y ~ treat + x | unit + time", d.frame.with_columns(x=pl.Series(z)).filter(pl.Series(keep)),
                       vcov=vcov, weights=weights)
    y = sub.column("y")
    refit = Feols(sub, "y", np.ascontiguousarray(sub.demean(y.reshape(-1, 1))[:, 0]),
                                                y, fit.vcov_spec, fit.formula)
    assert sub.n_singletons == ref.design.n_singletons > 0
    np.testing.assert_array_equal(refit.beta, ref.beta)
    np.testing.assert_array_equal(refit.vcov(), ref.vcov())
    np.testing.assert_array_equal(sub.ids("unit"), ref.design.ids("unit"))
    np.testing.assert_array_equal(sub.codes("unit"), ref.design.codes("unit"))


# ----------------------------------------------------------- adoption times
def test_adoption_row_and_run_traversals_agree():
    df = _unbalanced().sort("unit", "time")
    u = df["unit"].to_numpy() - df["unit"].min()
    t = df["time"].to_numpy()
    d = df["treat"].to_numpy().astype(float)
    lens = np.bincount(u)
    g_row, bad_r, n_r, first_r = adoption_by_row(u, t, d, lens.size, False)
    g_run, bad_u, n_u, first_u = adoption_by_run(lens, t, d, False)
    np.testing.assert_array_equal(g_row, g_run)
    assert (bad_r, n_r, first_r) == (bad_u, n_u, first_u) == (-1, 0, -1)
    # the first observed treated period (the adoption row itself may be missing)
    first = df.group_by("unit", maintain_order=True).agg(pl.col("time").filter(pl.col("treat") == 1).min())
    np.testing.assert_array_equal(g_row, first["time"].fill_null(0).to_numpy())


def test_adoption_messages_and_flags():
    df = sl.simulate.staggered(40, 6, seed=2).sort("unit", "time")
    codes = (df["unit"] - df["unit"].min()).to_numpy()
    units = np.unique(df["unit"].to_numpy())
    t = df["time"].to_numpy()
    d = df["treat"].to_numpy().astype(float)
    last = int(np.flatnonzero(d == 1)[-1])
    off = d.copy()
    off[last] = 0.0  # the last treated row of a unit: its treatment switches off
    who = df["unit"][last]
    for kw in (dict(unit_codes=codes, units=units), dict(run_lengths=np.bincount(codes), units=df["unit"])):
        with pytest.raises(NonAbsorbingTreatmentError, match=rf"switches off for 1 unit\(s\) \(first {who}\)"):
            adoption_times(off, t, column="treat", **kw)
        a = adoption_times(off, t, column="treat", allow_switching=True, **kw)
        assert not a.absorbing and a.n_switching == 1
        two = d.copy()
        two[last] = 2.0
        with pytest.raises(TreatmentError, match=rf"must be 0/1 .* unit {who} has the value 2.0"):
            adoption_times(two, t, column="treat", **kw)
        with pytest.raises(TreatmentError, match="never varies: no unit is ever treated"):
            adoption_times(np.zeros_like(d), t, column="treat", **kw)
        coh = df["cohort"].to_numpy().astype(float)
        coh[last] += 1
        with pytest.raises(TreatmentError, match=rf"cohort column 'g' varies within a unit \(1 unit\(s\), first {who}\)"):
            adoption_times(coh, t, column="g", cohort=True, **kw)


def test_dcdh_picks_unit_cells_for_a_treatment_that_switches_off():
    df = sl.simulate.staggered(60, 6, seed=3)
    t = df["treat"].to_numpy().copy()
    t[np.flatnonzero(t == 1)[-1]] = 0
    w = sl.twfe_weights(df.with_columns(treat=pl.Series(t)), y="y", unit="unit", time="time", treat="treat")
    assert w.cells == "unit"


def test_staggered_data_codes_match_factorized_ids():
    df = _unbalanced().sample(fraction=1.0, shuffle=True, seed=2)
    sd = prepare(df, y="y", unit="uname", time="time", treat="treat")
    ucode, tcode = sd.codes()
    np.testing.assert_array_equal(ucode, sd.frame["uname"].rank("dense").to_numpy() - 1)
    np.testing.assert_array_equal(tcode, sd.frame["time"].rank("dense").to_numpy() - 1)
    p = sd.panel()
    assert p.units.to_list() == sorted(df["uname"].unique().to_list())


# --------------------------------------------------------------- TWFE plim
def test_twfe_plim_is_computed_in_inference_and_recorded_in_truth():
    _, truth = dgp("homogeneous", n_units=80).draw(1)
    assert truth.known_twfe_plim is None and "twfe_plim" not in truth.estimands
    with pytest.raises(DGPError, match="not computed"):
        truth.twfe_plim
    value = twfe_plim(truth)
    assert truth.twfe_plim == value == truth.estimands["twfe_plim"] == truth.target("twfe_plim")


def test_panels_do_not_import_inference():
    import pathlib

    root = pathlib.Path(sl.__file__).parent / "panels"
    for path in root.glob("*.py"):
        code = [ln for ln in path.read_text().splitlines() if ln.lstrip().startswith(("from ", "import "))]
        assert not [ln for ln in code if "inference" in ln], path.name


# ------------------------------------------------------------------ battery
def test_battery_fits_the_baseline_model_once(tmp_path, monkeypatch):
    import importlib

    bt = importlib.import_module("staggerlab.battery.tables")  # where the sections call feols

    formulas: list[str] = []
    real = bt.feols

    def counting(fml, *args, **kwargs):
        formulas.append(str(fml))
        return real(fml, *args, **kwargs)

    monkeypatch.setattr(bt, "feols", counting)
    df = sl.simulate.staggered(80, 6, seed=1).with_columns(
        x=pl.Series(np.random.default_rng(0).normal(size=480)), e=pl.Series(np.random.default_rng(1).normal(size=480)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sl.battery(df, unit="unit", time="time", outcomes=["y"], treat="treat", controls=["x"], extra_controls=["e"],
                   draws=19, boot_draws=99, power_draws=5, alternatives=False, n_jobs=1, out=str(tmp_path))
    assert formulas.count("y ~ treat + x | unit + time") == 1
