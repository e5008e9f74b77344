"""Scaling benchmark: big panels on one machine, and workers.

Run:  python benchmarks/bench_scale.py            (full: ~10-15 min on 2 cores)
      python benchmarks/bench_scale.py --quick    (sizes up to 170k rows)

Steps
1. Write staggered 2-FE panels (units x 10 periods, 8 controls) to parquet,
   chunk by chunk of units, so generation stays within a few hundred MB.
2. Every measurement runs in a fresh subprocess (``--child``): its peak RSS
   (``getrusage(RUSAGE_SELF).ru_maxrss``) is that of the measured work plus
   the interpreter and libraries (``base`` column: RSS after imports and the
   warm-up fit, before reading the panel). Numba caches are warmed by a tiny
   fit in the same child; the big call is timed separately.
   pyfixest runs in a child with an address-space cap (RLIMIT_AS, 16 GB)
   so that it fails cleanly instead of taking the machine down.
3. A Monte Carlo study against workers: n_jobs=1, loky n_jobs=2, and a
   2-worker dask LocalCluster (loopback), with per-block cost and the bytes
   shipped per task, for the 64-node estimate.

Prints Markdown tables (paste into RESULTS.md) and writes
benchmarks/scale_figure.png (time and peak RSS against rows, log-log).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PERIODS = 10
START = 2011
N_CONTROLS = 8
CONTROLS = [f"x{j}" for j in range(1, N_CONTROLS + 1)]
USED = ["unit", "year", "y", "treat", *CONTROLS]  # the 12 columns a fit uses
FORMULA = f"y ~ treat + {' + '.join(CONTROLS)} | unit + year"
CHUNK_UNITS = 100_000
#: rows of the default sizes: 1.5k, 17k, 170k and 1M units x 10 periods
SIZES = [15_000, 170_000, 1_700_000, 10_000_000]
#: address-space cap of every child (a failing call raises MemoryError
#: instead of pushing the shared machine into the OOM killer)
PYFIXEST_CAP = 16 * 2**30
#: repetitions stop once a child has spent this long on the timed call
REP_BUDGET = 30.0
#: calls that would take longer than this (extrapolated linearly from the
#: previous size) are skipped and reported as such
TIME_LIMIT = 120.0


# ---------------------------------------------------------------- the data
def panel_chunk(first_unit: int, n_units: int, seed: int) -> dict[str, np.ndarray]:
    """One chunk of units (all periods): numpy columns of the panel."""
    rng = np.random.default_rng([seed, first_unit])
    T = PERIODS
    units = np.arange(first_unit, first_unit + n_units, dtype=np.int64)
    years = np.arange(START, START + T, dtype=np.int64)
    # half never treated; the rest adopt in 2014..2018 (staggered)
    cohort = np.where(rng.random(n_units) < 0.5, 0, rng.integers(START + 3, START + 8, n_units))
    unit_fe = rng.normal(0.0, 1.0, n_units)
    time_fe = np.linspace(0.0, 1.0, T)  # common to every chunk
    unit_r = np.repeat(units, T)
    year_r = np.tile(years, n_units)
    coh_r = np.repeat(cohort, T)
    treat = ((coh_r > 0) & (year_r >= coh_r)).astype(np.float64)
    X = rng.normal(size=(n_units * T, N_CONTROLS))
    beta = np.linspace(0.5, -0.5, N_CONTROLS)
    y = np.repeat(unit_fe, T) + np.tile(time_fe, n_units) + 1.0 * treat + X @ beta + rng.normal(size=unit_r.size)
    cols = {"unit": unit_r, "year": year_r, "cohort": coh_r.astype(np.int64), "y": y, "treat": treat}
    cols.update({c: np.ascontiguousarray(X[:, j]) for j, c in enumerate(CONTROLS)})
    return cols


def write_panel(path: Path, rows: int, seed: int = 0) -> Path:
    """Write a ``rows``-row panel (rows / 10 units) to ``path`` chunk by chunk.

    Chunks are seeded by their first unit, so a smaller panel is the first
    units of a larger one.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    n_units = rows // PERIODS
    writer = None
    try:
        for lo in range(0, n_units, CHUNK_UNITS):
            cols = panel_chunk(lo, min(CHUNK_UNITS, n_units - lo), seed)
            table = pa.table(cols)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=1_000_000)
    finally:
        if writer is not None:
            writer.close()
    return path


# ------------------------------------------------------------ child tasks
def _rss_mb() -> float:
    """Peak RSS of this process. ``VmHWM`` belongs to the process's own
    address space; ``ru_maxrss`` survives exec, so a child forked from a big
    parent would report at least the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _tiny_frame():
    import polars as pl

    return pl.DataFrame(panel_chunk(0, 300, 1))


def _timed(fn, reps: int) -> tuple[list[float], object, float]:
    """Times of ``reps`` calls, the last result, and the peak RSS (MB) after
    the first call (later calls cannot raise it: the previous result is
    dropped before each call)."""
    times, out, peak = [], None, 0.0
    for i in range(reps):
        out = None
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if i == 0:
            peak = _rss_mb()
        if sum(times) > REP_BUDGET:
            break
    return times, out, peak


class _Counter:
    """A write-only file that counts bytes (pickled sizes without the bytes)."""

    n = 0

    def write(self, data) -> int:
        k = memoryview(data).nbytes
        self.n += k
        return k


def _task_bytes(module, name: str, call) -> tuple[object, int, int]:
    """Run ``call()`` with ``module.run_blocks`` spied on; return its result,
    the pickled size of the callable every task carries, and the number of
    tasks (blocks)."""
    import cloudpickle

    seen = {}
    orig = getattr(module, name)

    def spy(func, blocks, **kw):
        seen["func"], seen["n"], seen["shared"] = func, len(blocks), kw.get("shared")
        return orig(func, blocks, **kw)

    setattr(module, name, spy)
    try:
        out = call()
    finally:
        setattr(module, name, orig)
    # what every task carries: the callable (the ``shared`` data is sent once:
    # scattered by dask, memory-mapped by loky)
    c = _Counter()
    cloudpickle.dump(seen["func"], c)
    return out, c.n, seen["n"]


def child(task: str, path: str, reps: int, extra: dict) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able dict."""
    resource.setrlimit(resource.RLIMIT_AS, (PYFIXEST_CAP, PYFIXEST_CAP))
    if task == "pyfixest":
        return _child_pyfixest(path, reps)
    import staggerlab as sl

    tiny = _tiny_frame()
    warm = sl.feols(FORMULA, tiny, vcov={"CRV1": "unit"})
    res: dict = {"task": task}
    if task == "feols":
        res["base_mb"] = _current_rss_mb()
        t0 = time.perf_counter()
        panel = sl.read_panel(path, unit="unit", time="year", columns=USED[2:])
        res["read_s"] = time.perf_counter() - t0
        res["after_read_mb"] = _current_rss_mb()
        res["read_peak_mb"] = _rss_mb()
        times, fit, res["peak_first_mb"] = _timed(lambda: sl.feols(FORMULA, panel, vcov={"CRV1": "unit"}), reps)
        res["times"] = times
        res["coef"] = fit.coef()["treat"]
        res["se"] = fit.se()["treat"]
        res["nobs"] = fit.nobs
    elif task == "placebo":
        from staggerlab.inference.resampling.placebo import placebo

        placebo(warm, draws=20, scheme="units+timing", stat="t", seed=0)
        res["base_mb"] = _current_rss_mb()
        panel = sl.read_panel(path, unit="unit", time="year", columns=USED[2:])
        fit = sl.feols(FORMULA, panel, vcov={"CRV1": "unit"})
        res["after_read_mb"] = _current_rss_mb()
        times, ri, res["peak_first_mb"] = _timed(lambda: placebo(fit, draws=extra.get("draws", 1000), scheme="units+timing",
                                           stat="t", seed=1), reps)
        res["times"] = times
        res["method"] = ri.method
        res["pvalue"] = ri.pvalue
        res["peak_mb"] = _rss_mb()
        import staggerlab.inference.resampling.placebo as plm

        _, res["task_bytes"], res["tasks"] = _task_bytes(
            plm, "run_blocks", lambda: placebo(fit, draws=500, scheme="units+timing", stat="t", seed=1))
    elif task == "wildboot":
        from staggerlab.inference.resampling.wildboot import wildboot

        wildboot(warm, param="treat", draws=99, seed=0)
        res["base_mb"] = _current_rss_mb()
        panel = sl.read_panel(path, unit="unit", time="year", columns=USED[2:])
        fit = sl.feols(FORMULA, panel, vcov={"CRV1": "unit"})
        res["after_read_mb"] = _current_rss_mb()
        times, wb, res["peak_first_mb"] = _timed(lambda: wildboot(fit, param="treat", draws=extra.get("draws", 999), seed=1,
                                            confint=extra.get("confint", True)), reps)
        res["times"] = times
        res["pvalue"] = float(wb.pvalue)
        res["peak_mb"] = _rss_mb()
        import staggerlab.inference.resampling.wildboot as wbm

        # without a named backend the blocks stay on this process's threads (no tasks to ship);
        # a named one (here threading, the same blocks as loky or dask) shows what each task carries
        _, res["task_bytes"], res["tasks"] = _task_bytes(
            wbm, "run_blocks", lambda: wildboot(fit, param="treat", draws=extra.get("draws", 999), seed=1,
                                                confint=extra.get("confint", True), n_jobs=2,
                                                backend="threading"))
    elif task == "imputation" or task.startswith("event_"):
        method = "imputation" if task == "imputation" else task.split("_", 1)[1]
        # CS has no covariates here: it reads (and is charged for) 4 columns
        controls = None if method == "cs" else CONTROLS
        kw = dict(y="y", unit="unit", time="year", treat="treat", controls=controls, method=method)
        sl.event_study(tiny, **kw)
        if method in ("twfe", "sunab"):  # compile the lean path's kernels too
            from staggerlab.inference.did.event_study import EventStudyTuning

            sl.event_study(tiny, tuning=EventStudyTuning(lean_bytes=0), **kw)
        res["base_mb"] = _current_rss_mb()
        panel = sl.read_panel(path, unit="unit", time="year", columns=["y", "treat", *(controls or [])])
        res["after_read_mb"] = _current_rss_mb()
        times, es, res["peak_first_mb"] = _timed(lambda: sl.event_study(panel, **kw), reps)
        res["times"] = times
        res["att"] = float(es.aggregate("simple").estimate)
    else:
        raise ValueError(task)
    res.setdefault("peak_mb", _rss_mb())
    return res


def _child_pyfixest(path: str, reps: int) -> dict:
    import pandas as pd
    import pyfixest as pf

    pf.feols(FORMULA, _tiny_frame().to_pandas(), vcov={"CRV1": "unit"})
    res: dict = {"task": "pyfixest", "base_mb": _current_rss_mb()}
    try:
        t0 = time.perf_counter()
        df = pd.read_parquet(path, columns=USED)
        res["read_s"] = time.perf_counter() - t0
        res["after_read_mb"] = _current_rss_mb()
        res["read_peak_mb"] = _rss_mb()
        times, fit, res["peak_first_mb"] = _timed(lambda: pf.feols(FORMULA, df, vcov={"CRV1": "unit"}), reps)
        res["times"] = times
        res["coef"] = float(fit.coef()["treat"])
        res["se"] = float(fit.se()["treat"])
    except MemoryError as exc:
        res["error"] = f"MemoryError under a {PYFIXEST_CAP / 2**30:.0f} GB address-space cap: {exc}"[:200]
    res["peak_mb"] = _rss_mb()
    return res


def run_child(task: str, path: Path, reps: int, timeout: float, **extra) -> dict:
    """Run ``child`` in a fresh interpreter; parse its last JSON line."""
    cmd = [sys.executable, __file__, "--child", task, "--path", str(path), "--reps", str(reps),
           "--extra", json.dumps(extra)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"task": task, "error": f"timeout after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"task": task, "error": f"exit {p.returncode}: {tail[:200]}", "wall_s": wall}
    out = json.loads(lines[-1])
    out["wall_s"] = wall
    return out


# ------------------------------------------------------------ Monte Carlo
def _mc_transfer_bytes(dgp) -> dict:
    """Bytes pickled per Monte Carlo block and per placebo block (what a
    worker receives with every task, since both bind their context in the
    task's callable)."""
    import cloudpickle

    import staggerlab as sl
    import staggerlab.inference.resampling.placebo as plm
    from staggerlab._seed import resolve_entropy
    from staggerlab.inference.studies.estimators import as_estimators
    from staggerlab.inference.studies.replications import Block, run_block

    ests = as_estimators(["twfe"])
    blk = Block(0, dgp.name, dgp, tuple(ests), resolve_entropy(0), (0, 25), 0.05, 0.95, "raise", None)
    mc_bytes = len(cloudpickle.dumps((run_block, blk)))
    frame, _ = dgp.draw(resolve_entropy(0))
    fit = sl.feols("y ~ treat | unit + time", frame, vcov={"CRV1": "unit"})
    ctx = {}
    orig = plm.run_blocks

    def spy(func, blocks, **kw):
        ctx["func"], ctx["n"], ctx["shared"] = func, len(blocks), kw.get("shared")
        return orig(func, blocks, **kw)

    plm.run_blocks = spy
    try:
        plm.placebo(fit, draws=1000, seed=0)
    finally:
        plm.run_blocks = orig
    pl_bytes = len(cloudpickle.dumps((ctx["func"], (0, 250))))
    return {"mc_block_bytes": mc_bytes, "placebo_task_bytes": pl_bytes, "placebo_blocks": ctx["n"],
            "panel_rows": frame.height, "panel_bytes": int(frame.estimated_size())}


def bench_montecarlo(reps: int, n_rep_timing: int) -> dict:
    """The study timed against workers; every pool is started (and its
    workers warmed) by an untimed call first, so times are steady-state."""
    import staggerlab as sl
    from staggerlab.inference.studies.montecarlo import montecarlo

    dgp = sl.simulate.dgp("paper_panel")
    block = 25  # montecarlo's default block size

    def study(**kw):
        return montecarlo(dgp, ["twfe"], reps=reps, block_size=block, seed=1, show_progress=False, **kw)

    out: dict = {"reps": reps, "block_size": block}
    res_ref = None

    def timed(label, kw):
        nonlocal res_ref
        montecarlo(dgp, ["twfe"], reps=8, block_size=2, seed=99, show_progress=False, **kw)  # warm the pool
        ts = []
        for _ in range(n_rep_timing):
            t0 = time.perf_counter()
            r = study(**kw)
            ts.append(time.perf_counter() - t0)
        out[label] = ts
        s = r.summary()
        res_ref = s if res_ref is None else res_ref
        out[label + " identical"] = s.equals(res_ref)

    timed("n_jobs=1", dict(n_jobs=1))
    timed("loky n_jobs=2", dict(n_jobs=2))
    from dask.distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        out["dask start-up"] = time.perf_counter() - t0
        timed("dask LocalCluster 2 workers", dict(n_jobs=-1, backend="dask"))
    out.update(_mc_transfer_bytes(dgp))
    return out


# ----------------------------------------------------------------- driver
def _med(ts) -> float:
    return float(statistics.median(ts))


def _fmt_t(r: dict) -> str:
    if not r:  # task skipped (--skip)
        return "-"
    if "error" in r:
        return "fails" if "Memory" in r["error"] else r["error"][:40]
    if r.get("skipped"):
        return "skipped"
    return f"{_med(r['times']):.2f}"


def _peak(r: dict) -> float:
    """Peak RSS (MiB) of the child up to the end of the first measured call."""
    return r.get("peak_first_mb", r.get("peak_mb", float("nan")))


def _fmt_mb(r: dict) -> str:
    return f"{_peak(r):.0f}" if "peak_mb" in r else "-"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="sizes up to 170k rows, 40 MC reps")
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    ap.add_argument("--data", type=str, default=None, help="directory for the parquet panels (temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the parquet files")
    ap.add_argument("--mc-reps", type=int, default=200)
    ap.add_argument("--skip", nargs="*", default=[], help="tasks to skip: feols pyfixest placebo wildboot event_twfe event_sunab event_cs "
                    "imputation montecarlo")
    ap.add_argument("--figure", type=str, default=str(HERE / "scale_figure.png"))
    ap.add_argument("--json", type=str, default=None, help="write raw results here")
    ap.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--path", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--extra", type=str, default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.path, args.reps, json.loads(args.extra))))
        return

    sizes = args.sizes or (SIZES[:2] if args.quick else SIZES)
    mc_reps = 40 if args.quick else args.mc_reps
    tmp = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="staggerlab-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results: dict = {"sizes": sizes, "rows": {}}
    # tasks, repetitions (small / large) and which sizes
    tasks = [
        ("feols", 5, 3),
        ("pyfixest", 5, 1),
        ("placebo", 5, 1),
        ("wildboot", 5, 1),
        ("imputation", 5, 1),
        ("event_twfe", 5, 1),
        ("event_sunab", 5, 1),
        ("event_cs", 5, 1),
    ]
    last: dict[str, tuple[int, float]] = {}
    for n in sizes:
        path = tmp / f"panel_{n}.parquet"
        if not path.exists():
            t0 = time.perf_counter()
            write_panel(path, n)
            print(f"wrote {path.name} ({path.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - t0:.1f} s",
                  flush=True)
        row: dict = {}
        for task, r_small, r_large in tasks:
            if task in args.skip:
                continue
            reps = r_small if n <= 2_000_000 else r_large
            if task in last:  # linear extrapolation from the previous size
                n0, t0_ = last[task]
                if t0_ * n / n0 > TIME_LIMIT:
                    row[task] = {"skipped": True, "reason": f"extrapolated {t0_ * n / n0:.0f} s > {TIME_LIMIT:.0f} s"}
                    print(f"  {n:>10,} {task:<11} skipped ({row[task]['reason']})", flush=True)
                    continue
            r = run_child(task, path, reps, timeout=max(300.0, 6 * TIME_LIMIT))
            row[task] = r
            if "times" in r:
                last[task] = (n, _med(r["times"]))
            msg = r.get("error") or f"median {_med(r['times']):.3f} s  peak {r['peak_mb']:.0f} MB  base {r['base_mb']:.0f} MB"
            print(f"  {n:>10,} {task:<11} {msg}", flush=True)
        results["rows"][n] = row
    if "montecarlo" not in args.skip:
        print("Monte Carlo study against workers ...", flush=True)
        results["montecarlo"] = bench_montecarlo(mc_reps, 3)
    results["total_s"] = time.perf_counter() - t_start
    if not args.keep and not args.data:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    report(results)
    figure(results, args.figure)


def report(results: dict) -> None:
    used_mb = {n: 12 * 8 * int(n) / 2**20 for n in results["rows"]}
    print("\n### feols CRV1, `y ~ treat + x1..x8 | unit + year` (warm; seconds, median)\n")
    print("Peak RSS (MiB) of the whole child (interpreter + libraries + read + fit); `used` = 12 columns x 8 B x N.\n")
    print("| rows | used MiB | read_panel s | staggerlab feols s | peak MiB | peak / used | pyfixest s "
          "| pyfixest peak MiB | pyfixest / staggerlab |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, row in results["rows"].items():
        s, p = row.get("feols", {}), row.get("pyfixest", {})
        ratio = (f"{_med(p['times']) / _med(s['times']):.1f}x" if "times" in s and "times" in p else "-")
        rel = f"{_peak(s) / used_mb[n]:.2f}" if "peak_mb" in s else "-"
        rd = f"{s['read_s']:.2f}" if "read_s" in s else "-"
        print(f"| {int(n):,} | {used_mb[n]:.0f} | {rd} | {_fmt_t(s)} | {_fmt_mb(s)} | {rel} | {_fmt_t(p)} "
              f"| {_fmt_mb(p)} | {ratio} |")
    diffs = [(abs(r["feols"]["coef"] - r["pyfixest"]["coef"]) / abs(r["pyfixest"]["coef"]),
              abs(r["feols"]["se"] - r["pyfixest"]["se"]) / r["pyfixest"]["se"])
             for r in results["rows"].values() if "coef" in r.get("feols", {}) and "coef" in r.get("pyfixest", {})]
    if diffs:
        print(f"\nmax relative difference to pyfixest: coef {max(d[0] for d in diffs):.1e}, "
              f"se {max(d[1] for d in diffs):.1e}")
    print("\n### Inference at scale (warm; seconds, median; peak RSS of the child in MiB)\n")
    print("| rows | placebo 1,000 draws s | peak MiB | wildboot 999 draws + CI s | peak MiB | "
          "event_study imputation s | peak MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, row in results["rows"].items():
        cells = []
        for t in ("placebo", "wildboot", "imputation"):
            r = row.get(t, {})
            cells += [_fmt_t(r) if r else "-", _fmt_mb(r)]
        print(f"| {int(n):,} | " + " | ".join(cells) + " |")
    print("\n### Event-study estimators (warm; seconds, median; peak RSS MiB; peak / used columns)\n")
    print("Used columns: unit, year, y, treat and the 8 controls (12), except CS without covariates (4).\n")
    es_tasks = [("imputation", 12), ("event_twfe", 12), ("event_sunab", 12), ("event_cs", 4)]
    print("| rows | " + " | ".join(f"{t.replace('event_', '')} s | peak | ratio" for t, _ in es_tasks) + " |")
    print("|---:|" + "---:|---:|---:|" * len(es_tasks))
    for n, row in results["rows"].items():
        cells = []
        for t, n_cols in es_tasks:
            r = row.get(t, {})
            used = n_cols * 8 * int(n) / 2**20
            ok = bool(r) and "peak_mb" in r
            cells += [_fmt_t(r) if r else "-", _fmt_mb(r), f"{_peak(r) / used:.2f}x" if ok else "-"]
        print(f"| {int(n):,} | " + " | ".join(cells) + " |")
    print("\n### Bytes every joblib task carries (pickled callable with its context)\n")
    print("| rows | placebo bytes/task | placebo tasks (500 draws) | wildboot bytes/task | wildboot tasks (999 draws) |")
    print("|---:|---:|---:|---:|---:|")
    for n, row in results["rows"].items():
        p, w = row.get("placebo", {}), row.get("wildboot", {})
        def nb(r: dict) -> str:
            return f"{r['task_bytes']:,}" if "task_bytes" in r else "-"

        print(f"| {int(n):,} | {nb(p)} | {p.get('tasks', '-')} | {nb(w)} | {w.get('tasks', '-')} |")
    mc = results.get("montecarlo")
    if mc:
        print(f"\n### Monte Carlo, paper_panel DGP, ['twfe'], {mc['reps']} reps (seconds)\n")
        print("| workers | time s | speed-up | summary() identical to n_jobs=1 |")
        print("|---|---:|---:|---|")
        base = _med(mc["n_jobs=1"])
        for k in ("n_jobs=1", "loky n_jobs=2", "dask LocalCluster 2 workers"):
            if k in mc:
                print(f"| {k} | {_med(mc[k]):.2f} | {base / _med(mc[k]):.2f}x | {mc.get(k + ' identical')} |")
        print(f"\nper replication (n_jobs=1): {base / mc['reps'] * 1e3:.1f} ms, per block of {mc['block_size']}: "
              f"{base / mc['reps'] * mc['block_size']:.2f} s; LocalCluster start-up "
              f"{mc.get('dask start-up', float('nan')):.1f} s; bytes per MC task {mc['mc_block_bytes']:,}; "
              f"placebo: {mc['placebo_blocks']} tasks of {mc['placebo_task_bytes']:,} bytes each "
              f"(panel {mc['panel_rows']:,} rows, {mc['panel_bytes']:,} bytes)")
    print(f"\ntotal benchmark time {results['total_s']:.0f} s")


def figure(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mc = results.get("montecarlo")
    fig, axes = plt.subplots(1, 3 if mc else 2, figsize=(16 if mc else 11, 4.2))
    ax1, ax2 = axes[0], axes[1]
    labels = {"feols": "staggerlab feols CRV1", "pyfixest": "pyfixest feols CRV1",
              "placebo": "placebo, 1,000 draws", "wildboot": "wildboot, 999 draws + CI",
              "imputation": "event_study imputation"}
    for task, lab in labels.items():
        xs, ts, ms = [], [], []
        for n, row in results["rows"].items():
            r = row.get(task, {})
            if "times" in r:
                xs.append(int(n))
                ts.append(_med(r["times"]))
                ms.append(_peak(r) / 1024)
        if xs:
            ax1.plot(xs, ts, "o-", label=lab)
            ax2.plot(xs, ms, "o-", label=lab)
    ns = np.array(sorted(int(n) for n in results["rows"]))
    ax2.plot(ns, 3 * 12 * 8 * ns / 2**30, "k--", label="3 x used columns (target)")
    ax2.plot(ns, 12 * 8 * ns / 2**30, "k:", label="used columns (12 x 8 B x N)")
    for ax, yl in ((ax1, "time (s, warm, median)"), (ax2, "peak RSS of the process (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows (units x 10 periods)")
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_title("Time against rows")
    ax2.set_title("Peak memory against rows")
    ax2.legend(fontsize=7, loc="upper left")
    ax1.legend(fontsize=7, loc="upper left")
    if mc:
        ax3 = axes[2]
        names = [k for k in ("n_jobs=1", "loky n_jobs=2", "dask LocalCluster 2 workers") if k in mc]
        meds = [_med(mc[k]) for k in names]
        lo = [m - min(mc[k]) for m, k in zip(meds, names)]
        hi = [max(mc[k]) - m for m, k in zip(meds, names)]
        ax3.bar(range(len(names)), meds, yerr=[lo, hi], capsize=4, color=["tab:gray", "tab:blue", "tab:orange"])
        ax3.set_xticks(range(len(names)), [k.replace(" 2 workers", "\n2 workers") for k in names], fontsize=8)
        for i, k in enumerate(names):
            same = "identical" if mc.get(f"{k} identical", True) else "DIFFERENT"
            ax3.text(i, meds[i] / 2, f"{meds[i]:.2f} s\n{same}", ha="center", fontsize=7, color="white")
        ax3.set_ylabel("time (s, median; bars: min-max of 3)")
        ax3.set_title(f"Monte Carlo, {mc['reps']} reps, against workers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
