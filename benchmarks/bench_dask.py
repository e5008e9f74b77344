"""Partitioned panels on a dask cluster: feols CRV1 and a 1,000-draw placebo.

Run:  python benchmarks/bench_dask.py --rows 10000000          (~10 min on 2 cores)
      python benchmarks/bench_dask.py --rows 1000000 --draws 200   (quick)
      python benchmarks/bench_dask.py --rows 1000000 --exact-memory placebo   (the
          client's peak of the bit-identical route against exact.client_bytes)

Steps
1. Write a staggered panel (rows / 10 units x 10 periods, 8 controls; the
   generator of bench_scale.py) as one parquet file per 100,000 units,
   chunk by chunk: the writer never holds more than one chunk.
2. Start a LocalCluster of 2 worker processes (1 thread each) and fit
   ``y ~ treat + x1..x8 | unit + year`` with CRV1 by unit on the directory
   (``sl.feols(formula, directory, ...)``), then a 1,000-draw placebo
   (units+timing, CRV1 t) on that fit.
3. A streaming reference computed here with numpy only, file by file: the
   unit-demeaned ``[year dummies 2..T, treat, x1..x8]`` and outcome, their
   summed normal equations, one solve; the coefficient must equal the
   partitioned fit's at 1e-10.
4. Peak RSS (``VmHWM``) of every worker (read through ``client.run``) and of
   the client, after the fit and after the placebo.

With ``--event-study``: the TWFE, Sun-Abraham and imputation event studies of
the same directory (``sl.event_study(directory, treat="treat",
controls=x1..x8, window=(-4, 4))``, partition by partition) after the fit,
their times and the workers' peak, and, up to 20M rows, the largest
difference of their coefficients from the in-memory event studies of the
same rows.

Prints a Markdown block for benchmarks/SCALE.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scale import CONTROLS, FORMULA, PERIODS, START, panel_chunk  # noqa: E402

CHUNK_UNITS = 100_000


def vm_hwm_mb() -> float:
    """Peak RSS of the calling process (MiB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def write_parts(path: Path, rows: int, seed: int = 0) -> int:
    """One parquet file per ``CHUNK_UNITS`` units; returns the number of files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    n_units = rows // PERIODS
    n = 0
    for lo in range(0, n_units, CHUNK_UNITS):
        cols = panel_chunk(lo, min(CHUNK_UNITS, n_units - lo), seed)
        pq.write_table(pa.table(cols), path / f"part{n:05d}.parquet", compression="zstd")
        n += 1
    return n


def reset_hwm() -> None:
    """Reset the peak RSS of the calling process to its current RSS (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def exact_memory(path: Path, draws: int, whats: list[str]) -> None:
    """The client's peak RSS growth during the bit-identical placebo and
    wild bootstrap (rows gathered to the client, dask's local scheduler)
    against :func:`staggerlab.inference.distributed.exact.client_bytes`."""
    import staggerlab as sl
    from staggerlab.inference.distributed.exact import client_bytes

    fit = sl.feols(FORMULA, str(path), vcov={"CRV1": "unit"}).with_exact("require", client_budget=1 << 40)
    need = client_bytes(fit) / 2**20
    for what in whats:
        reset_hwm()
        before = vm_hwm_mb()
        t0 = time.perf_counter()
        if what == "placebo":
            sl.placebo(fit, param="treat", draws=draws, seed=0)
        else:
            sl.wildboot(fit, param="treat", draws=999, seed=0)
        grew = vm_hwm_mb() - before
        print(f"exact {what}: {time.perf_counter() - t0:.1f} s, client peak grew {grew:,.0f} MiB; "
              f"client_bytes {need:,.0f} MiB ({fit.nobs:,} rows, {fit.n_units:,} units)", flush=True)


def streaming_reference(path: Path) -> float:
    """The ``treat`` coefficient from per-file normal equations (numpy only)."""
    import pyarrow.parquet as pq

    names = ["treat", *CONTROLS]
    M = PERIODS - 1 + len(names)
    C, Fy = np.zeros((M, M)), np.zeros(M)
    for f in sorted(path.glob("*.parquet")):
        t = pq.read_table(f, columns=["unit", "year", "y", *names])
        unit = t["unit"].to_numpy()
        _, u = np.unique(unit, return_inverse=True)
        n_u = np.bincount(u).astype(float)
        F = np.zeros((u.size, M))
        yr = t["year"].to_numpy() - START
        hit = yr > 0
        F[np.flatnonzero(hit), yr[hit] - 1] = 1.0
        for j, c in enumerate(names):
            F[:, PERIODS - 1 + j] = t[c].to_numpy()
        y = t["y"].to_numpy()
        F -= (np.stack([np.bincount(u, F[:, m]) for m in range(M)], axis=1) / n_u[:, None])[u]
        y = y - (np.bincount(u, y) / n_u)[u]
        C += F.T @ F
        Fy += F.T @ y
    return float(np.linalg.solve(C, Fy)[PERIODS - 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="parquet directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the parquet directory")
    ap.add_argument("--stat", default="t", choices=["t", "coef"], help="placebo statistic")
    ap.add_argument("--batch", type=int, default=None, help="treated entries per round (BATCH_ENTRIES)")
    ap.add_argument("--no-placebo", action="store_true", help="fit only (the placebo tables of 100M rows exceed "
                    "this machine: see SCALE.md)")
    ap.add_argument("--event-study", action="store_true", help="also the partitioned TWFE event study (and, up to "
                    "20M rows, its difference from the in-memory one)")
    ap.add_argument("--exact-memory", nargs="+", choices=["placebo", "wildboot"], default=None,
                    help="measure the bit-identical route's client memory (no cluster) and stop; one procedure per "
                    "run gives a clean peak")
    args = ap.parse_args()

    from dask.distributed import Client, LocalCluster

    import staggerlab as sl

    path = args.dir or Path(tempfile.mkdtemp(prefix="bench_dask_")) / "panel"
    t0 = time.perf_counter()
    if not (path.exists() and any(path.glob("*.parquet"))):
        n_files = write_parts(path, args.rows)
    else:
        n_files = len(list(path.glob("*.parquet")))
    t_write = time.perf_counter() - t0
    size_gb = sum(f.stat().st_size for f in path.glob("*.parquet")) / 1e9
    print(f"panel: {args.rows:,} rows in {n_files} files ({size_gb:.2f} GB) written in {t_write:.1f} s", flush=True)
    if args.exact_memory:
        exact_memory(path, args.draws, args.exact_memory)
        if not args.keep and args.dir is None:
            shutil.rmtree(path.parent, ignore_errors=True)
        return

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    # numba compiles (or loads its cache) once per worker process: a tiny fit first
    warm = path.parent / "warm"
    write_parts(warm, 3000, seed=1)
    w = sl.feols(FORMULA, str(warm), vcov={"CRV1": "unit"})
    sl.placebo(w.with_exact("never"), param="treat", draws=10, seed=0)  # the workers' kernels
    client.run(lambda: None)

    t0 = time.perf_counter()
    fit = sl.feols(FORMULA, str(path), vcov={"CRV1": "unit"})
    t_fit = time.perf_counter() - t0
    rss_fit = client.run(vm_hwm_mb)
    client_fit = vm_hwm_mb()
    print(f"feols CRV1: {t_fit:.1f} s  coef {fit.coef()['treat']:.12f}  se {fit.se()['treat']:.6g}  "
          f"workers {rss_fit}  client {client_fit:.0f} MiB", flush=True)

    es_rows = []
    if args.event_study:
        es_kw = dict(y="y", unit="unit", time="year", treat="treat", controls=list(CONTROLS), window=(-4, 4))
        for method in ("twfe", "sunab", "imputation"):
            t0 = time.perf_counter()
            es = sl.event_study(str(path), method=method, **es_kw)
            t_es = time.perf_counter() - t0
            rss_es = client.run(vm_hwm_mb)
            gap = float("nan")
            if args.rows <= 20_000_000:
                import polars as pl

                mem = sl.event_study(pl.read_parquet(str(path)), method=method, **es_kw)
                gap = float(np.max(np.abs(mem.coef - es.coef) / np.abs(mem.coef).max()))
            print(f"event study ({method}, {es.rel_time.size} coefficients): {t_es:.1f} s  workers {rss_es}  "
                  f"largest coefficient difference from in memory (of the largest) {gap:.1e}", flush=True)
            es_rows.append((method, t_es, max(rss_es.values()), gap, es.rel_time.size))

    t_pl, rss_pl, client_pl = float("nan"), rss_fit, client_fit
    if not args.no_placebo:
        t0 = time.perf_counter()
        if args.batch:
            from staggerlab.inference.distributed import resampling

            resampling.BATCH_ENTRIES = args.batch
        ri = sl.placebo(fit, param="treat", draws=args.draws, seed=0, stat=args.stat)
        t_pl = time.perf_counter() - t0
        rss_pl = client.run(vm_hwm_mb)
        client_pl = vm_hwm_mb()
        print(f"placebo {args.draws} draws ({args.stat}, {ri.method}): {t_pl:.1f} s  p {ri.pvalue:.4f}  workers {rss_pl}  "
              f"client {client_pl:.0f} MiB", flush=True)
    client.close()
    cluster.close()

    t0 = time.perf_counter()
    ref = streaming_reference(path)
    t_ref = time.perf_counter() - t0
    rel = abs(ref - fit.coef()["treat"]) / abs(ref)
    print(f"streaming reference: {ref:.12f} ({t_ref:.1f} s), relative difference {rel:.2e}", flush=True)

    wmax_fit = max(rss_fit.values())
    wmax_pl = max(rss_pl.values())
    print()
    print(f"| rows | files | fit (s) | placebo {args.draws} draws (s) | peak RSS per worker, fit / +placebo (MiB) "
          "| client peak (MiB) | coef vs streaming reference |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.rows:,} | {n_files} | {t_fit:.1f} | {t_pl:.1f} | {wmax_fit:.0f} / {wmax_pl:.0f} | "
          f"{client_pl:.0f} | {rel:.1e} |")
    if es_rows:
        print("\n| rows | event study | coefficients | seconds | peak RSS per worker so far (MiB) "
              "| coefficients vs in memory (relative to the largest) |\n|---|---|---|---|---|---|")
        for method, t_es, rss, gap, k in es_rows:
            print(f"| {args.rows:,} | {method} | {k} | {t_es:.1f} | {rss:.0f} | {gap:.1e} |")
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; {args.workers} workers x 1 thread")
    if not args.keep and args.dir is None:
        shutil.rmtree(path.parent, ignore_errors=True)
    if rel > 1e-10:
        raise SystemExit("the partitioned coefficient differs from the streaming reference")


if __name__ == "__main__":
    main()
