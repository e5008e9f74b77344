"""Cluster backends: results are bit-identical to the local run, and an
interrupted distributed Monte Carlo study resumes from its checkpoint.

The distributed runs use a dask ``LocalCluster`` with 2 worker processes on
the loopback interface (what a real cluster does, minus the network). The
local reference of every comparison is ``n_jobs=1`` in this process, an
independent execution path (no pickling, no joblib).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import staggerlab as sl
from staggerlab.inference.resampling.placebo import BLOCK_SIZE, placebo
from staggerlab.inference.resampling.wildboot import wildboot
from staggerlab.inference.studies.estimators import twfe
from staggerlab.inference.studies.montecarlo import Estimator, MonteCarloError, montecarlo

distributed = pytest.importorskip("distributed")
from distributed import get_task_stream  # noqa: E402

#: a distributed call that takes longer than this has hung (the calls here
#: take well under a second once the workers are up)
HANG_TIMEOUT = 60.0
#: replications per Monte Carlo block, and the first replication of the
#: interrupted study that fails
MC_BLOCK = 5
FAIL_FROM = 10


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def fit():
    df = sl.simulate.staggered(200, 8, n_controls=2, seed=3)
    return sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"})


def _bounded(fn):
    """Run ``fn()`` in a daemon thread; fail (instead of hanging the suite)
    if it does not return within ``HANG_TIMEOUT``."""
    box: dict = {}

    def target():
        try:
            box["out"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["exc"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(HANG_TIMEOUT)
    if th.is_alive():
        pytest.fail(f"the distributed call did not return within {HANG_TIMEOUT:.0f} s")
    if "exc" in box:
        raise box["exc"]
    return box["out"]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ placebo
@pytest.mark.parametrize("method", ["fast", "general"])
def test_placebo_dask_bit_identical(client, fit, method):
    draws = 2 * BLOCK_SIZE + 200  # three blocks, spread over both workers
    local = placebo(fit, draws=draws, seed=11, method=method, n_jobs=1)
    with get_task_stream(client) as ts:
        dist = _bounded(lambda: placebo(fit, draws=draws, seed=11, method=method, n_jobs=-1, backend="dask"))
    assert len(ts.data) >= 1  # the blocks ran on the cluster
    assert local.method == dist.method == method
    assert _same_bits(local.statistics, dist.statistics)
    assert local.pvalue == dist.pvalue and local.count == dist.count


def test_parallel_config_context_routes_to_dask(client, fit):
    # how callers without a backend= option (battery) reach a cluster:
    # n_jobs != 1 inside joblib's parallel_config(backend="dask")
    from joblib import parallel_config

    def run():
        with parallel_config(backend="dask"):  # thread-local: entered in the thread that runs the call
            return placebo(fit, draws=BLOCK_SIZE + 50, seed=2, n_jobs=-1)

    local = placebo(fit, draws=BLOCK_SIZE + 50, seed=2, n_jobs=1)
    with get_task_stream(client) as ts:
        dist = _bounded(run)
    assert len(ts.data) >= 1
    assert _same_bits(local.statistics, dist.statistics)


# ----------------------------------------------------------------- wildboot
def test_wildboot_dask_bit_identical(client, fit):
    from staggerlab.inference.resampling.wildboot_algebra import Runner

    if Runner.__hash__ is None:
        # joblib's dask backend puts each task's callable in a set; with an
        # unhashable one the submission fails inside the event loop and the
        # call waits forever, so fail fast instead of hanging
        pytest.fail("wildboot's block runner Runner is unhashable (@dataclass with eq=True): "
                    "backend='dask' hangs; declare it @dataclass(eq=False)")
    # 200 clusters -> 4,096 draws per block: 9,999 draws make three blocks
    local = wildboot(fit, param="treat", draws=9999, seed=7, n_jobs=1)
    with get_task_stream(client) as ts:
        dist = _bounded(lambda: wildboot(fit, param="treat", draws=9999, seed=7, n_jobs=-1, backend="dask"))
    assert len(ts.data) >= 1
    assert _same_bits(local.statistics, dist.statistics)
    assert local.pvalue == dist.pvalue
    assert local.confint == dist.confint


# --------------------------------------------------------------- montecarlo
def _study(**kw):
    dgp = sl.simulate.dgp("homogeneous", n_units=60)
    return montecarlo(dgp, ["twfe"], reps=4 * MC_BLOCK, block_size=MC_BLOCK, seed=5, show_progress=False, **kw)


def test_montecarlo_dask_identical(client):
    local = _study(n_jobs=1)
    with get_task_stream(client) as ts:
        dist = _bounded(lambda: _study(n_jobs=-1, backend="dask"))
    assert len(ts.data) >= 1
    assert local.summary().equals(dist.summary())
    assert local.replications().equals(dist.replications())


def flaky_twfe(frame, *, dgp, truth, level, seed, marker, log):
    """The built-in TWFE estimator, failing from replication ``FAIL_FROM`` on
    while ``marker`` exists (a node lost midway), and logging every
    replication it runs (to see what a resumed study recomputes)."""
    rep = int(seed.spawn_key[-2])  # seed = block_seed(block_seed(seed, rep), 1)
    Path(log, f"r{rep:04d}").touch()
    if rep >= FAIL_FROM and os.path.exists(marker):
        raise RuntimeError("simulated worker failure")
    return twfe(frame, dgp=dgp, truth=truth, level=level)


def test_interrupted_distributed_study_resumes(client, tmp_path):
    import cloudpickle

    # dask workers import this module by value, wherever pytest put it
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        marker, log, ckpt = tmp_path / "fail", tmp_path / "log", tmp_path / "study.parquet"
        log.mkdir()
        marker.touch()
        est = {"twfe": Estimator("twfe", flaky_twfe, options={"marker": str(marker), "log": str(log)})}
        dgp = sl.simulate.dgp("homogeneous", n_units=60)

        def run(**kw):
            return montecarlo(dgp, est, reps=4 * MC_BLOCK, block_size=MC_BLOCK, seed=5, checkpoint=ckpt,
                              show_progress=False, **kw)

        with pytest.raises(RuntimeError, match="simulated worker failure"):
            _bounded(lambda: run(n_jobs=-1, backend="dask"))
        stored = sorted(p.name for p in ckpt.glob("block-*.parquet"))
        failing = f"block-d000-r{FAIL_FROM:07d}-{FAIL_FROM + MC_BLOCK:07d}.parquet"
        assert failing not in stored and len(stored) < 4
        first_blocks = {f"block-d000-r{lo:07d}-{lo + MC_BLOCK:07d}.parquet" for lo in range(0, FAIL_FROM, MC_BLOCK)}
        # joblib's dask backend dispatches every block at once; the blocks
        # before the failing one ran (the same worker pool had time to) unless
        # the failure cancelled them first, so only require what is certain
        assert set(stored) <= first_blocks | {f"block-d000-r{lo:07d}-{lo + MC_BLOCK:07d}.parquet"
                                              for lo in range(FAIL_FROM + MC_BLOCK, 4 * MC_BLOCK, MC_BLOCK)}

        marker.unlink()
        for p in log.iterdir():
            p.unlink()
        resumed = _bounded(lambda: run(n_jobs=-1, backend="dask"))
        recomputed = sorted(int(p.name[1:]) for p in log.iterdir())
        expected = sorted(r for lo in range(0, 4 * MC_BLOCK, MC_BLOCK)
                          if f"block-d000-r{lo:07d}-{lo + MC_BLOCK:07d}.parquet" not in stored
                          for r in range(lo, lo + MC_BLOCK))
        assert recomputed == expected  # stored blocks were not recomputed

        # the same study, uninterrupted and local, without a checkpoint
        clean = montecarlo(dgp, est, reps=4 * MC_BLOCK, block_size=MC_BLOCK, seed=5, n_jobs=1, show_progress=False)
        assert resumed.replications().equals(clean.replications())
        assert resumed.summary().equals(clean.summary())
        # a finished checkpoint is read back without computing anything
        for p in log.iterdir():
            p.unlink()
        again = run(n_jobs=1)
        assert not any(log.iterdir())
        assert again.summary().equals(clean.summary())
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_checkpoint_of_another_study_is_refused(tmp_path):
    dgp = sl.simulate.dgp("homogeneous", n_units=60)
    montecarlo(dgp, ["twfe"], reps=MC_BLOCK, block_size=MC_BLOCK, seed=5, n_jobs=1, checkpoint=tmp_path / "s",
               show_progress=False)
    with pytest.raises(MonteCarloError, match="another study"):
        montecarlo(dgp, ["twfe"], reps=MC_BLOCK, block_size=MC_BLOCK, seed=6, n_jobs=1,
                   checkpoint=tmp_path / "s", show_progress=False)


# ---------------------------------------------------------------------- ray
@pytest.mark.slow
def test_ray_bit_identical(fit):
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        register_ray()
        draws = 2 * BLOCK_SIZE + 200
        local = placebo(fit, draws=draws, seed=11, n_jobs=1)
        dist = _bounded(lambda: placebo(fit, draws=draws, seed=11, n_jobs=2, backend="ray"))
        assert _same_bits(local.statistics, dist.statistics)
        assert _study(n_jobs=1).summary().equals(_bounded(lambda: _study(n_jobs=2, backend="ray")).summary())
    finally:
        ray.shutdown()
