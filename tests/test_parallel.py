"""run_blocks: block order, small calls in-process, GIL-free blocks on threads."""

import os
import threading

import numpy as np
import pytest

import staggerlab as sl
from staggerlab import _parallel
from staggerlab._parallel import run_blocks
from staggerlab.inference.resampling.wildboot import wildboot


def _where(block):
    return block, os.getpid(), threading.get_ident()


def test_small_work_stays_in_the_calling_thread():
    out = run_blocks(_where, range(6), n_jobs=2, work=_parallel.IN_PROCESS_WORK / 2)
    assert [b for b, _, _ in out] == list(range(6))
    assert {(p, t) for _, p, t in out} == {(os.getpid(), threading.get_ident())}


@pytest.mark.parametrize("threads", ["1", "2"])
def test_wildboot_same_bits_for_any_thread_count_and_n_jobs(monkeypatch, threads):
    # G = 60: blocks of 4,096 draws, so 9,999 draws are 3 blocks pulled by the threads
    df = sl.simulate.staggered(60, 6, seed=3)
    fit = sl.feols("y ~ treat | unit + time", df, vcov={"CRV1": "unit"})
    kw = dict(param="treat", draws=9999, seed=5)
    monkeypatch.setenv("STAGGERLAB_NUM_THREADS", "1")
    ref = wildboot(fit, **kw)
    monkeypatch.setenv("STAGGERLAB_NUM_THREADS", threads)
    for n_jobs in (1, 2):
        got = wildboot(fit, n_jobs=n_jobs, **kw)
        np.testing.assert_array_equal(got.statistics, ref.statistics)
        assert got.pvalue == ref.pvalue and got.confint == ref.confint


@pytest.mark.slow
def test_wildboot_loky_gives_the_same_bits():
    df = sl.simulate.staggered(60, 6, seed=3)
    fit = sl.feols("y ~ treat | unit + time", df, vcov={"CRV1": "unit"})
    kw = dict(param="treat", draws=9999, seed=5, confint=False)
    one = wildboot(fit, n_jobs=1, **kw)
    two = wildboot(fit, n_jobs=2, backend="loky", **kw)
    np.testing.assert_array_equal(one.statistics, two.statistics)
