"""Monte Carlo engine: exactness of the TWFE fast path, estimator bias and
coverage against the DGP truth (tolerances: 3 Monte Carlo standard errors,
derived from the number of replications), reproducibility across n_jobs and
backends, and checkpoint/resume."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import polars as pl
import pytest

from staggerlab._seed import block_seed
from staggerlab.inference.studies.estimators import twfe_fit
from staggerlab.inference.studies.montecarlo import (
    Estimator,
    MonteCarloError,
    MonteCarloResult,
    fast_twfe,
    montecarlo,
)
from staggerlab.panels.dgp import Truth, dgp

FIT = 1e-10  # fast path vs feols/pyfixest (relative)
K_MCSE = 3.0  # Monte Carlo tolerance in MC standard errors
NOMINAL = 0.95

SUMMARY_COLUMNS = [
    "dgp", "estimator", "reps", "mean", "truth", "bias", "sd", "rmse", "se_ratio", "coverage",
    "rejection", "mean_mcse", "bias_mcse", "coverage_mcse", "rejection_mcse",
]


def coverage_tol(reps: int) -> float:
    """3 MC standard errors of a coverage rate at its nominal value."""
    return K_MCSE * np.sqrt(NOMINAL * (1 - NOMINAL) / reps)


def row(mc: MonteCarloResult, estimator: str, d: str | None = None) -> dict:
    s = mc.summary().filter(pl.col("estimator") == estimator)
    if d is not None:
        s = s.filter(pl.col("dgp") == d)
    assert s.height == 1
    return s.row(0, named=True)


# -------------------------------------------------------------- fast TWFE path
@pytest.mark.parametrize(
    "preset,knobs",
    [
        ("paper_panel", {}),
        ("homogeneous", {"drop_share": 0.3}),  # singletons appear and are dropped
        ("few_treated_clusters", {"n_covariates": 2, "x_confound": 1.0}),
        ("heterogeneous_dynamic", {"entry_share": 0.5, "ar1": 0.5, "effect_sd": 0.3}),
    ],
)
def test_fast_twfe_equals_feols_and_pyfixest(preset, knobs):
    import pyfixest as pf

    d = dgp(preset, **knobs)
    frame, _ = d.draw(7)
    b, se, df_t, plim = fast_twfe(frame, d.covariates, d.inference_cluster)
    truth = Truth(frame, covariates=d.covariates)
    fit = twfe_fit(frame, d, truth)
    j = fit.coefnames.index("treat")
    assert b == pytest.approx(fit.beta[j], rel=FIT)
    assert se == pytest.approx(np.sqrt(fit.vcov()[j, j]), rel=FIT)
    assert df_t == fit.df_t
    assert plim == pytest.approx(truth.twfe_plim, rel=FIT)
    rhs = " + ".join(["treat", *d.covariates])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pf.feols(f"y ~ {rhs} | unit + time", frame.to_pandas(), vcov={"CRV1": d.inference_cluster},
                       demeaner=pf.MapDemeaner(fixef_tol=1e-13, fixef_maxiter=100_000))
    assert b == pytest.approx(ref.coef()["treat"], rel=1e-8)
    assert se == pytest.approx(ref.se()["treat"], rel=1e-8)


# ----------------------------------------------------------- bias and coverage
def test_twfe_mean_equals_plim_on_heterogeneous_dynamic():
    reps = 200
    mc = montecarlo(dgp("heterogeneous_dynamic"), ["twfe"], reps=reps, n_jobs=1)
    r = mc.replications()
    est, plim, att = (r[c].to_numpy() for c in ("estimate", "plim", "att"))
    dev = est - plim
    mcse = dev.std(ddof=1) / np.sqrt(reps)
    assert abs(dev.mean()) <= K_MCSE * mcse
    s = row(mc, "twfe")
    assert s["truth"] == pytest.approx(att.mean())
    # the plim is far from the truth: TWFE's bias is real, not MC noise
    assert abs(s["plim"] - s["truth"]) > 100 * s["bias_mcse"]
    assert s["bias"] == pytest.approx(s["plim"] - s["truth"], abs=K_MCSE * s["bias_mcse"])


def test_twfe_unbiased_and_covers_on_homogeneous():
    reps = 400
    mc = montecarlo(dgp("homogeneous"), ["twfe"], reps=reps, n_jobs=1)
    s = row(mc, "twfe")
    assert abs(s["bias"]) <= K_MCSE * s["bias_mcse"]
    assert abs(s["coverage"] - NOMINAL) <= coverage_tol(reps)
    assert s["rejection"] == 1.0  # effect 1 with se ~ 0.08: power is 1


def test_size_under_null():
    """With no effect, rejection at 5% is within 3 MC se of 5%."""
    reps = 400
    mc = montecarlo(dgp("homogeneous", effect=0.0), ["twfe"], reps=reps, n_jobs=1)
    s = row(mc, "twfe")
    assert abs(s["rejection"] - 0.05) <= K_MCSE * np.sqrt(0.05 * 0.95 / reps)


def test_target_override_twfe_plim():
    mc = montecarlo(dgp("heterogeneous_dynamic", n_units=200),
                    [Estimator("twfe_vs_plim", sl_twfe(), target="twfe_plim"), "twfe"], reps=30, n_jobs=1)
    r = mc.replications()
    a = r.filter(pl.col("estimator") == "twfe_vs_plim")
    np.testing.assert_allclose(a["truth"].to_numpy(), a["plim"].to_numpy(), rtol=0, atol=0)
    assert row(mc, "twfe_vs_plim")["target"] == "twfe_plim"


def sl_twfe():
    from staggerlab.inference.studies.montecarlo import BUILTIN_ESTIMATORS

    return BUILTIN_ESTIMATORS["twfe"][0]


@pytest.mark.parametrize("name", ["imputation", "cs", "etwfe"])
def test_robust_estimators_unbiased_fast(name):
    """Few replications: imputation and CS recover the ATT where static TWFE fails."""
    reps = 30
    mc = montecarlo(dgp("heterogeneous_dynamic", n_units=200), [name, "twfe"], reps=reps, n_jobs=1)
    s = row(mc, name)
    assert s["failed"] == 0
    assert abs(s["bias"]) <= K_MCSE * s["bias_mcse"]
    assert abs(row(mc, "twfe")["bias"]) > 20 * row(mc, "twfe")["bias_mcse"]


@pytest.mark.parametrize("name,method,options", [("lpdid", "lpdid", {}), ("lpdid_rw", "lpdid", {"reweight": True}),
                                                  ("stacked", "stacked", {"window": (-2, 3)}),
                                                  ("etwfe", "etwfe", {})])
def test_new_named_estimators_report_the_simple_aggregate(name, method, options):
    """The named estimators return the method's ``aggregate("simple")`` of one draw."""
    from staggerlab.inference.did.event_study import event_study

    d = dgp("heterogeneous_dynamic", n_units=120)
    mc = montecarlo(d, [name], reps=1, n_jobs=1)
    frame, _ = d.draw(block_seed(0, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agg = event_study(frame, y="y", unit="unit", time="time", cohort="cohort", method=method,
                          controls=d.covariates or None, **options).aggregate("simple")
    r = mc.replications()
    np.testing.assert_allclose(r["estimate"].to_numpy(), [agg.estimate], rtol=1e-12)
    np.testing.assert_allclose(r["se"].to_numpy(), [agg.se], rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["imputation", "cs", "sunab", "etwfe"])
def test_robust_estimators_slow(name):
    reps = 400
    mc = montecarlo({"het": dgp("heterogeneous_dynamic"), "hom": dgp("homogeneous")}, [name], reps=reps, n_jobs=-1)
    het, hom = row(mc, name, "het"), row(mc, name, "hom")
    assert abs(het["bias"]) <= K_MCSE * het["bias_mcse"]
    assert abs(hom["bias"]) <= K_MCSE * hom["bias_mcse"]
    assert abs(hom["coverage"] - NOMINAL) <= coverage_tol(reps)


# ------------------------------------------------------------ summary contract
def noisy_estimator(frame: pl.DataFrame, seed: np.random.SeedSequence) -> dict:
    """A toy estimator using its seed: mean treated-minus-control outcome plus noise."""
    rng = np.random.default_rng(seed)
    y, d = frame["y"].to_numpy(), frame["treat"].to_numpy()
    est = y[d == 1].mean() - y[d == 0].mean() + rng.normal(0, 0.1)
    return {"estimate": est, "se": 0.2, "pvalue": float(rng.uniform())}


def test_summary_columns_and_mcse_formulas():
    mc = montecarlo(dgp("homogeneous", n_units=80), ["twfe", noisy_estimator], reps=37, n_jobs=1,
                    block_size=10)
    s = mc.summary()
    assert s.columns[: len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS
    assert s["estimator"].to_list() == ["twfe", "noisy_estimator"]
    r = mc.replications().filter(pl.col("estimator") == "noisy_estimator")
    assert r["rep"].to_list() == list(range(37))
    est, truth = r["estimate"].to_numpy(), r["truth"].to_numpy()
    got = row(mc, "noisy_estimator")
    R = 37
    assert got["reps"] == R
    assert got["mean"] == pytest.approx(est.mean())
    assert got["bias"] == pytest.approx((est - truth).mean())
    assert got["sd"] == pytest.approx(est.std(ddof=1))
    assert got["rmse"] == pytest.approx(np.sqrt(((est - truth) ** 2).mean()))
    assert got["se_ratio"] == pytest.approx(0.2 / est.std(ddof=1))
    assert got["mean_mcse"] == pytest.approx(est.std(ddof=1) / np.sqrt(R))
    assert got["bias_mcse"] == pytest.approx((est - truth).std(ddof=1) / np.sqrt(R))
    z = 1.959963984540054
    cov = np.mean(np.abs(est - truth) <= z * 0.2)
    assert got["coverage"] == pytest.approx(cov)
    assert got["coverage_mcse"] == pytest.approx(np.sqrt(cov * (1 - cov) / R))
    rej = np.mean(r["pvalue"].to_numpy() < 0.05)
    assert got["rejection"] == pytest.approx(rej)
    assert got["rejection_mcse"] == pytest.approx(np.sqrt(rej * (1 - rej) / R))


def test_grid_and_block_size_invariance():
    grid = {"a": dgp("homogeneous", n_units=60), "b": dgp("heterogeneous_dynamic", n_units=60)}
    m1 = montecarlo(grid, ["twfe", noisy_estimator], reps=23, n_jobs=1, block_size=5)
    m2 = montecarlo(grid, ["twfe", noisy_estimator], reps=23, n_jobs=1, block_size=23)
    assert m1.summary().equals(m2.summary())
    assert m1.replications().equals(m2.replications())
    assert m1.summary()["dgp"].to_list() == ["a", "a", "b", "b"]


def test_identical_for_n_jobs_and_backends():
    d = dgp("few_treated_clusters", n_units=200, n_clusters=20)
    args = dict(estimators=["twfe", noisy_estimator], reps=24, block_size=4)
    serial = montecarlo(d, n_jobs=1, **args)
    loky = montecarlo(d, n_jobs=2, **args)
    threads = montecarlo(d, n_jobs=2, backend="threading", **args)
    assert serial.summary().equals(loky.summary())
    assert serial.summary().equals(threads.summary())
    assert serial.replications().equals(loky.replications())


@pytest.mark.slow
def test_identical_with_dask_localcluster():
    distributed = pytest.importorskip("dask.distributed")
    d = dgp("homogeneous", n_units=100)
    args = dict(estimators=["twfe", noisy_estimator], reps=20, block_size=5)
    serial = montecarlo(d, n_jobs=1, **args)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        viadask = montecarlo(d, n_jobs=-1, backend="dask", **args)
    assert serial.summary().equals(viadask.summary())


# --------------------------------------------------------------- checkpointing
class Flaky:
    """Raises after ``fail_after`` calls (a study killed midway); counts calls."""

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.calls = 0

    def __call__(self, frame: pl.DataFrame, seed: np.random.SeedSequence) -> dict:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("killed")
        return noisy_estimator(frame, seed)


def test_interrupted_study_resumes(tmp_path):
    d = dgp("homogeneous", n_units=60)
    ck = tmp_path / "study.parquet"
    args = dict(reps=30, block_size=5, n_jobs=1)
    full = montecarlo(d, ["twfe", Estimator("flaky", Flaky())], **args)

    killer = Flaky(fail_after=12)  # dies in the third block
    with pytest.raises(RuntimeError, match="killed"):
        montecarlo(d, ["twfe", Estimator("flaky", killer)], checkpoint=ck, **args)
    assert len(list(ck.glob("block-*.parquet"))) == 2

    resumer = Flaky()
    done = montecarlo(d, ["twfe", Estimator("flaky", resumer)], checkpoint=ck, **args)
    assert resumer.calls == 30 - 10  # the two finished blocks were not redone
    assert done.summary().equals(full.summary())
    assert done.replications().equals(full.replications())

    again = Flaky()
    stored = montecarlo(d, ["twfe", Estimator("flaky", again)], checkpoint=ck, **args)
    assert again.calls == 0
    assert stored.summary().equals(full.summary())


def test_checkpoint_of_another_study_is_refused(tmp_path):
    ck = tmp_path / "ck"
    montecarlo(dgp("homogeneous", n_units=40), ["twfe"], reps=5, n_jobs=1, checkpoint=ck)
    with pytest.raises(MonteCarloError, match="another study"):
        montecarlo(dgp("homogeneous", n_units=40), ["twfe"], reps=5, n_jobs=1, checkpoint=ck, seed=1)
    with pytest.raises(MonteCarloError, match="reproducible seed"):
        montecarlo(dgp("homogeneous", n_units=40), ["twfe"], reps=5, seed=None, checkpoint=tmp_path / "x")


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from staggerlab.inference.studies.montecarlo import montecarlo, Estimator
    from staggerlab.panels.dgp import dgp

    SLEEP = 0.0

    def slow(frame, seed):
        time.sleep(SLEEP)  # slows the subprocess down so it can be killed midway
        rng = np.random.default_rng(seed)
        return {"estimate": float(frame["y"].mean() + rng.normal()), "se": 1.0, "pvalue": 0.5}

    if __name__ == "__main__":
        SLEEP = 0.1
        montecarlo(dgp("homogeneous", n_units=40), ["twfe", Estimator("slow", slow)], reps=60,
                   block_size=5, n_jobs=1, checkpoint=sys.argv[1])
    """
)


def test_killed_subprocess_resumes(tmp_path):
    """Terminate a real process midway, rerun: same result as an uninterrupted run."""
    script = tmp_path / "study.py"
    script.write_text(KILL_SCRIPT)
    ck = tmp_path / "killed.parquet"
    proc = subprocess.Popen([sys.executable, str(script), str(ck)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(ck.glob("block-*.parquet"))) < 2:
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    n_done = len(list(ck.glob("block-*.parquet")))
    assert 2 <= n_done < 12, "the study should have been killed midway"

    ns: dict = {"__name__": "study"}
    exec(compile(KILL_SCRIPT, "study", "exec"), ns)
    slow = ns["slow"]
    calls = []

    def counted(frame, seed):
        calls.append(1)
        return slow(frame, seed)

    # the fingerprint names the function as the killed script did
    for f in (slow, counted):
        f.__module__, f.__qualname__ = "__main__", "slow"
    d = dgp("homogeneous", n_units=40)
    resumed = montecarlo(d, ["twfe", Estimator("slow", counted)], reps=60, block_size=5, n_jobs=1,
                         checkpoint=ck)
    assert len(calls) == 60 - 5 * n_done
    fresh = montecarlo(d, ["twfe", Estimator("slow", slow)], reps=60, block_size=5, n_jobs=1)
    assert resumed.summary().equals(fresh.summary())
    assert resumed.replications().equals(fresh.replications())


# ---------------------------------------------------------- errors, variants
def test_record_errors_and_bad_input():
    def sometimes(frame, seed):
        if np.random.default_rng(seed).uniform() < 0.3:
            raise ValueError("boom")
        return {"estimate": 1.0, "se": 1.0, "pvalue": 0.5}

    mc = montecarlo(dgp("homogeneous", n_units=40), [sometimes], reps=20, n_jobs=1, on_error="record")
    r = mc.replications()
    failed = r["error"].is_not_null().sum()
    assert 0 < failed < 20
    assert row(mc, "sometimes")["failed"] == failed
    assert row(mc, "sometimes")["reps"] == 20 - failed
    with pytest.raises(MonteCarloError, match="unknown estimator"):
        montecarlo(dgp("homogeneous"), ["nope"], reps=2)
    with pytest.raises(MonteCarloError, match="unique"):
        montecarlo([dgp("homogeneous"), dgp("homogeneous")], ["twfe"], reps=2)


def test_wildboot_variant():
    mc = montecarlo(dgp("few_treated_clusters", n_units=200, n_clusters=20), ["twfe+wildboot"], reps=4, n_jobs=1)
    r = mc.replications()
    assert r["error"].is_null().all()
    p = r["pvalue"].to_numpy()
    assert ((0 <= p) & (p <= 1)).all()
    assert r["covers"].is_not_null().all()


def test_placebo_variant():
    mc = montecarlo(dgp("homogeneous", n_units=100), [Estimator("ri", sl_placebo(), options={"draws": 99})],
                    reps=3, n_jobs=1)
    p = mc.replications()["pvalue"].to_numpy()
    assert ((0 < p) & (p <= 1)).all()


def sl_placebo():
    from staggerlab.inference.studies.montecarlo import BUILTIN_ESTIMATORS

    return BUILTIN_ESTIMATORS["twfe+placebo"][0]


def test_plot(tmp_path):
    mc = montecarlo({"a": dgp("homogeneous", n_units=60), "b": dgp("heterogeneous_dynamic", n_units=60)},
                    ["twfe", noisy_estimator], reps=12, n_jobs=1)
    out = tmp_path / "mc.png"
    fig = mc.plot(out)
    assert out.stat().st_size > 0
    assert len(fig.axes) == 6
    assert fig.axes[0].get_xlabel().startswith("bias")
    assert "MonteCarloResult" in repr(mc)
