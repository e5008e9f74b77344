"""The chunk dispatcher: the same bits for any thread count, errors surface."""

import os

import numpy as np
import pytest

from staggerlab.kernels import _jit
from staggerlab.kernels._jit import jit, run_chunks


@jit
def _chunk_sums(lo, hi, x, n_chunks, out):
    # chunk ch sums rows [ch N / C, (ch + 1) N / C) in order
    N = x.shape[0]
    for ch in range(lo, hi):
        s = 0.0
        for r in range(ch * N // n_chunks, (ch + 1) * N // n_chunks):
            s += x[r]
        out[ch] = s


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_same_bits_for_any_thread_count(monkeypatch, threads):
    monkeypatch.setenv("STAGGERLAB_NUM_THREADS", threads)
    x = np.random.default_rng(0).standard_normal(200_003) * 1e6
    out = np.zeros(16)
    run_chunks(_chunk_sums, 16, (x, 16, out), work=0.0)  # serial reference
    ref = out.copy()
    for _ in range(5):
        out[:] = 0.0
        run_chunks(_chunk_sums, 16, (x, 16, out), work=1e9)
        assert np.array_equal(out, ref)
    # each chunk is the plain in-order sum of its rows
    s = 0.0
    for v in x[3 * 200_003 // 16: 4 * 200_003 // 16].tolist():
        s += v
    assert out[3] == s


def test_threads_follow_work_and_caps(monkeypatch):
    monkeypatch.setenv("STAGGERLAB_NUM_THREADS", "3")
    assert _jit.n_threads(10.0) == 1
    assert _jit.n_threads(1e9) == min(3, len(os.sched_getaffinity(0)))
    monkeypatch.delenv("STAGGERLAB_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _jit.n_threads(1e9) == 1


def test_kernel_errors_reach_the_caller(monkeypatch):
    monkeypatch.setenv("STAGGERLAB_NUM_THREADS", "2")

    def body(lo, hi, seen):
        seen.append(lo)
        if lo == 5:
            raise ValueError("chunk 5")

    seen: list[int] = []
    with pytest.raises(ValueError, match="chunk 5"):
        run_chunks(body, 8, (seen,), work=1e9)
