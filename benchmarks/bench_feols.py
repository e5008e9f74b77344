"""Benchmark: staggerlab vs pyfixest on demeaning and feols with CRV1.

Run from the repository root::

    python benchmarks/bench_feols.py                 # all sizes, Markdown table
    python benchmarks/bench_feols.py --sizes 15k,170k --reps 7
    python benchmarks/bench_feols.py --profile       # also a per-stage breakdown
    python benchmarks/bench_feols.py --sizes 170k --busy --no-cold   # also with a CPU-bound competitor

Both packages are timed in the same process on the same panels
(``sl.simulate.staggered`` with 8 controls, 15% of unit-years dropped so
the panels are unbalanced, unit + year FE), JIT compiled
first, medians of ``--reps`` repetitions (at least 20; runs longer than 10 s
are repeated 3 times). pyfixest gets a pandas frame and staggerlab a polars
frame (each its native input; the conversion is done once, outside the
timings). pyfixest runs with its defaults (Rust MAP demeaner, ``fixef_tol``
1e-6 for ``demean``/``feols``), staggerlab with its defaults (exact two-way
demeaning: no tolerance). The cold-start row times a fresh interpreter doing
``import staggerlab`` and one feols fit, with the numba cache already warm.
``--busy`` times both feols again while one CPU-bound competitor process
(``while True: pass``, started and killed by this script) runs, and prints
the BLAS thread count the fit runs with. Every table states the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from typing import Callable

import numpy as np
from _common import competitor  # benchmarks/, the script's folder, is on sys.path

#: (units, periods); 15% of unit-years dropped at random -> ~15k / 170k / 1.7M rows
SIZES = {"15k": (1_500, 12), "170k": (10_000, 20), "1.7M": (100_000, 20)}
DROP_SHARE = 0.15
FML = "y ~ treat + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 | unit + time"
DEMEAN_COLS = ["y", "treat", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8"]
LONG_RUN_S = 10.0


def machine() -> str:
    """CPU model and core count of this machine."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores, Python {platform.python_version()}"


def median_time(func: Callable[[], object], reps: int) -> float:
    """Median wall time of ``func`` over ``reps`` runs (3 if one run exceeds LONG_RUN_S)."""
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
        if i == 0 and times[0] > LONG_RUN_S:
            reps = min(reps, 3)
        if len(times) >= reps:
            break
    return statistics.median(times)


def busy_rows(label: str, n_units: int, n_periods: int, reps: int) -> list[str]:
    """feols of staggerlab and pyfixest quiet and with a competitor process, same run; Markdown rows."""
    import pyfixest as pf

    import staggerlab as sl
    from staggerlab._parallel import SERIAL_BLAS
    from staggerlab.kernels._jit import n_threads

    df, pdf = make_panel(n_units, n_periods)
    fits = {
        "staggerlab": lambda: sl.feols(FML, df, vcov={"CRV1": "unit"}),
        "pyfixest": lambda: pf.feols(FML, pdf, vcov={"CRV1": "unit"}),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in fits.values():
            f()
        quiet = {k: median_time(f, reps) for k, f in fits.items()}
        load_q = os.getloadavg()[0]
        with competitor():
            busy = {k: median_time(f, reps) for k, f in fits.items()}
            load_b = os.getloadavg()[0]
    with SERIAL_BLAS:  # what feols's products run with (it enters the same limiter)
        from threadpoolctl import threadpool_info

        blas = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=0)
    rows = [f"| {label} feols CRV1 | {k} | {fmt(quiet[k])} (load {load_q:.1f}) | {fmt(busy[k])} (load {load_b:.1f}) "
            f"| {busy[k] / quiet[k]:.2f}x |" for k in fits]
    rows.append(f"| | BLAS threads inside feols: {blas}; run_chunks threads for its demeaning: "
                f"{n_threads(df.height * 10 * 3)} | | | |")
    return rows


def cpu_time(func: Callable[[], object], reps: int) -> float:
    """Median process CPU seconds of ``func`` (all threads): the work, whatever the load."""
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        func()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def make_panel(n_units: int, n_periods: int):
    """The benchmark panel: polars and pandas versions of the same data."""
    import staggerlab as sl

    df = sl.simulate.staggered(n_units, n_periods, n_controls=8, drop_share=DROP_SHARE, seed=0)
    return df, df.to_pandas()


def fmt(seconds: float) -> str:
    """Seconds as a short human string."""
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def bench_size(label: str, n_units: int, n_periods: int, reps: int) -> list[tuple]:
    """Time demeaning and feols CRV1 at one panel size; returns table rows."""
    import pyfixest as pf
    from pyfixest.estimation import demean as pf_demean

    import staggerlab as sl
    from staggerlab.inference.regression.absorb import Absorber

    df, pdf = make_panel(n_units, n_periods)
    n = df.height
    X = np.ascontiguousarray(df.select(DEMEAN_COLS).to_numpy().astype(np.float64))
    # dense codes, computed once for both (factorization is timed in feols)
    u = np.unique(df["unit"].to_numpy(), return_inverse=True)[1]
    t = np.unique(df["time"].to_numpy(), return_inverse=True)[1]
    flist = np.ascontiguousarray(np.column_stack([u, t]).astype(np.uint64))
    ones = np.ones(n)
    codes = [u.astype(np.int64), t.astype(np.int64)]

    # warm-up: compiles numba kernels, loads pyfixest's Rust extension
    pf_demean(X, flist, ones)
    ab = Absorber(codes)
    ab.demean(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf.feols(FML, pdf, vcov={"CRV1": "unit"})
        sl.feols(FML, df, vcov={"CRV1": "unit"})

    # the two fits must agree before their timings mean anything
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = pf.feols(FML, pdf, vcov={"CRV1": "unit"})
        b = sl.feols(FML, df, vcov={"CRV1": "unit"})
    rel = float(np.max(np.abs(a.coef().to_numpy() - b.beta) / np.abs(b.beta)))

    def sl_feols():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sl.feols(FML, df, vcov={"CRV1": "unit"})

    def pf_feols():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pf.feols(FML, pdf, vcov={"CRV1": "unit"})

    t_pf_dm = median_time(lambda: pf_demean(X, flist, ones), reps)
    t_sl_dm_build = median_time(lambda: Absorber(codes).demean(X), reps)
    t_sl_dm = median_time(lambda: ab.demean(X), reps)
    t_pf_fe = median_time(pf_feols, reps)
    t_sl_fe = median_time(sl_feols, reps)
    c_pf_fe = cpu_time(pf_feols, reps)
    c_sl_fe = cpu_time(sl_feols, reps)
    size = f"{label} ({n_units:,} x {n_periods}, N={n:,})"
    return [
        (size, "demean 10 cols: build + demean", t_pf_dm, t_sl_dm_build, None),
        (size, "demean 10 cols: demean only", t_pf_dm, t_sl_dm, None),
        (size, "feols CRV1(unit)", t_pf_fe, t_sl_fe, rel),
        (size, "feols CRV1(unit), process CPU seconds", c_pf_fe, c_sl_fe, None),
    ]


def profile_size(label: str, n_units: int, n_periods: int, reps: int) -> list[tuple[str, float]]:
    """Per-stage medians of staggerlab's feols (mirrors ``build_design``'s steps)."""
    import polars as pl
    import scipy.linalg as sla

    import staggerlab as sl
    from staggerlab.inference.regression.absorb import Absorber, drop_singletons
    from staggerlab.inference.regression.design import factorize_column
    from staggerlab.inference.regression.rank import independent_columns
    from staggerlab.inference.regression.vcov import vcov_crv1
    from staggerlab.panels.panel import check_numeric, finite_mask

    df, _ = make_panel(n_units, n_periods)
    regs = DEMEAN_COLS[1:]
    used = ["y", *regs, "unit", "time"]
    codes = [factorize_column(df["unit"]), factorize_column(df["time"])]
    ab = Absorber(codes)
    X = np.column_stack([df[r].cast(pl.Float64).to_numpy() for r in regs])
    Xd = ab.demean(X)
    y = df["y"].to_numpy()
    yd = ab.demean(y)
    XtX = Xd.T @ Xd
    ss = ((X - X.mean(0)) ** 2).sum(0)
    bread = sla.cho_solve(sla.cho_factor(XtX), np.eye(XtX.shape[0]))
    beta = bread @ (Xd.T @ yd)
    scores = Xd * (yd - Xd @ beta)[:, None]
    cl = factorize_column(df["unit"])
    stages: list[tuple[str, Callable[[], object]]] = [
        ("validate + NaN mask", lambda: (check_numeric(df, ["y", *regs], "x"), finite_mask(df, used))),
        ("factorize FE + cluster ids (3 cols)", lambda: [factorize_column(df[c]) for c in ("unit", "time", "unit")]),
        ("drop singletons", lambda: drop_singletons(codes)),
        ("build Absorber", lambda: Absorber(codes)),
        ("extract X to numpy", lambda: np.column_stack([df[r].cast(pl.Float64).to_numpy() for r in regs])),
        ("demean X (9 cols)", lambda: ab.demean(X)),
        ("demean y", lambda: ab.demean(y)),
        ("collinearity check + Cholesky", lambda: (independent_columns(Xd.T @ Xd, ss, 1e-9), sla.cho_factor(XtX))),
        ("vcov CRV1", lambda: vcov_crv1(bread, Xd * (yd - Xd @ beta)[:, None], [cl], yd.size, 9 + 2)),
        ("whole sl.feols", lambda: sl.feols(FML, df, vcov={"CRV1": "unit"})),
    ]
    del scores
    return [(name, median_time(f, reps)) for name, f in stages]


COLD_CODE = (
    "import staggerlab as sl\n"
    f"df = sl.simulate.staggered(1500, 12, n_controls=8, drop_share={DROP_SHARE}, seed=0)\n"
    f"fit = sl.feols({FML!r}, df, vcov={{'CRV1': 'unit'}})\n"
    "print(fit.coef()['treat'])\n"
)


def cold_start(code: str = COLD_CODE, reps: int = 5) -> float:
    """Median wall time of a fresh interpreter running ``code`` (numba cache warmed first)."""
    cmd = [sys.executable, "-c", code]
    subprocess.run(cmd, check=True, capture_output=True)  # warms the numba cache
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print Markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(SIZES), help=f"comma list of {list(SIZES)}")
    ap.add_argument("--reps", type=int, default=20, help="repetitions per timing (>= 20)")
    ap.add_argument("--busy", action="store_true", help="also time feols with a CPU-bound competitor process")
    ap.add_argument("--profile", action="store_true", help="per-stage breakdown of staggerlab's feols")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start subprocess timing")
    ap.add_argument("--threads", type=int, default=None, help="numba threads (default: numba's)")
    args = ap.parse_args(argv)
    reps = max(20, args.reps)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]

    import numba
    import pyfixest as pf

    import staggerlab as sl

    if args.threads:
        numba.set_num_threads(args.threads)
    print(f"Machine: {machine()}; load average before the run {os.getloadavg()[0]:.1f}")
    print(f"pyfixest {pf.__version__}, staggerlab {sl.__version__}, numba threads "
          f"{numba.get_num_threads()}; medians of {reps} runs "
          f"(3 for runs > {LONG_RUN_S:.0f} s)\n")
    rows = []
    for s in sizes:
        rows += bench_size(s, *SIZES[s], reps)
    print("| panel | task | pyfixest | staggerlab | speed-up (pyfixest / staggerlab) | max rel. coef diff |")
    print("|---|---|---:|---:|---:|---:|")
    for size, task, tp, ts, rel in rows:
        print(f"| {size} | {task} | {fmt(tp)} | {fmt(ts)} | {tp / ts:.1f}x | "
              f"{'' if rel is None else f'{rel:.1e}'} |")
    if not args.no_cold:
        ti = cold_start("import staggerlab")
        print(f"| fresh process | `import staggerlab` only | | {fmt(ti)} | | |")
        tc = cold_start()
        print(f"| fresh process | `import staggerlab` + first feols (15k), numba cache warm | | "
              f"{fmt(tc)} | target < 3 s: {'met' if tc < 3 else 'MISSED'} | |")
    print(f"\n(load average after the table {os.getloadavg()[0]:.1f})")
    if args.busy:
        print("\nBusy machine: one CPU-bound competitor process started and killed by this script "
              f"(medians of {reps} runs each, quiet and busy in the same run):\n")
        print("| case | package | quiet | with competitor | busy / quiet |")
        print("|---|---|---:|---:|---:|")
        for s in sizes:
            for row in busy_rows(s, *SIZES[s], reps):
                print(row)
    if args.profile:
        for s in sizes:
            print(f"\nstaggerlab feols stages, {s} ({SIZES[s][0]:,} x {SIZES[s][1]}):\n")
            print(f"(load average now {os.getloadavg()[0]:.1f})\n")
            print("| stage | median |")
            print("|---|---:|")
            for name, t in profile_size(s, *SIZES[s], reps):
                print(f"| {name} | {fmt(t)} |")


if __name__ == "__main__":
    main()
