"""The hot paths at the study's size next to their memory-bandwidth bound (issue #20).

Run from the repository root::

    python benchmarks/limits.py              # >= 20 warm runs per path, 1 GB bandwidth array
    python benchmarks/limits.py --busy       # also with a CPU-bound competitor process
    python benchmarks/limits.py --quick      # 3 runs, 256 MB array: a smoke check, not a figure

For each hot path it prints the measured median wall time (warm: two untimed
calls first), the bytes the path must touch at minimum, the machine's measured
memory bandwidth (``_common.bandwidth``: a streaming read of a float64 array),
the bound ``bytes / bandwidth`` and the remaining factor ``time / bound``,
and the target with PASS/FAIL.

Paths (the built-in panel is ``sl.simulate.paper_panel(seed=0)``, 15,530 firm-years,
1,780 firms, 84 treated in 4 cohorts, 12 years; its model is the battery's
``NQPF ~ IM + 8 controls | firm + year``, CRV1 by firm):

* ``placebo``: ``sl.placebo(fit, param="IM", draws=1000, stat="t")`` (units+timing);
* ``wildboot``: ``sl.wildboot(fit, param="IM", draws=9999, confint=True)``;
* ``feols``: ``sl.feols("y ~ treat + x1..x8 | unit + time", CRV1 by unit)`` on the
  170k-row panel of ``bench_feols.py`` (10,000 units x 20 periods, 15% dropped);
* ``es_wildboot``: ``sl.wildboot(es, draws=9999)`` of the dynamic TWFE event study
  with window (-5, 5) (10 coefficients, intervals, sup-t band);
* ``power``: ``sl.power`` TWFE curve, 1,000 draws x 20 effect sizes, no controls.

What "bytes at minimum" counts
------------------------------
The smallest amount of data each algorithm has to read, given the arrays it
works from: per-draw data once per draw, data shared by every draw (tables,
Gram matrices) once per call, never the re-reads of an actual implementation.
Every formula is written next to its path below (``*_bytes``). Most of these
working sets fit in the CPU caches, and the bootstrap paths are bound by
arithmetic (their block products), so the bound is a floor that no path can
beat, not a prediction; the remaining factor shows how far each path is from
doing nothing but reading its data once.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    bandwidth,
    competitor,
    fmt_bytes,
    fmt_s,
    git_commit,
    load,
    machine_line,
    median_time,
)

F8 = 8  # bytes of a float64 or int64
CONTROLS = ["Size", "Lev", "Roa", "Cash", "Age", "Mb", "Top1", "Dual"]
PAPER_FML = f"NQPF ~ IM + {' + '.join(CONTROLS)} | firm + year"
FEOLS_FML = "y ~ treat + " + " + ".join(f"x{j}" for j in range(1, 9)) + " | unit + time"
POWER_SIZES = np.linspace(0.0, 0.06, 20)
BUSY_PATHS = ("placebo", "wildboot", "feols")
#: the busy-machine target of issue #20: at most this times the quiet time
BUSY_TARGET = 1.5


@dataclass
class HotPath:
    """One timed call, its byte count (named terms) and its target."""

    name: str
    label: str
    call: Callable[[], object]
    terms: dict[str, float]
    target: float
    target_source: str
    formula: str
    result: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> float:
        return float(sum(self.terms.values()))


def placebo_bytes(n: int, n_units: int, treated: int, n_adopt: int, n_periods: int, n_controls: int,
                  draws: int) -> tuple[dict[str, float], str]:
    """Bytes of the fast placebo path with CRV1 t (clusters = units).

    With ``M = T - 1 + n_controls`` partialled-out columns (period dummies and
    controls), every (unit, adoption time) has a table row of ``Q = M + 2``
    doubles and every unit a row ``W_i`` of ``P = M + M (M + 1) / 2`` doubles
    (its F'y and packed F'F). Per call: one pass over the columns that build
    the tables (N rows x (n_controls + 1 outcome + 1 treatment) doubles, plus
    the unit and period codes); the W rows and the P x P Gram matrix once. Per
    draw: the table row of each of its K treated units (the coefficient, then
    the treated clusters' part of the meat from the same rows) and its packed
    outer product ``z_b`` (P doubles) for the untreated clusters' quadratic form.
    """
    M = n_periods - 1 + n_controls
    Q, P = M + 2, M + M * (M + 1) // 2
    terms = {
        "columns read once (N x (controls + 2) doubles + 2 int64 codes)": n * (n_controls + 2 + 2) * F8,
        "W rows once (U x P doubles)": n_units * P * F8,
        "Gram matrix once (P x P)": P * P * F8,
        "treated units' table rows (draws x K x Q doubles)": draws * treated * Q * F8,
        "z_b per draw (draws x P doubles)": draws * P * F8,
    }
    text = (f"N(c+4)8 + U P 8 + P^2 8 + B K Q 8 + B P 8 with M = T-1+c = {M}, Q = M+2 = {Q}, "
            f"P = M+M(M+1)/2 = {P}, K = {treated} treated of U = {n_units}, B = {draws}, "
            f"{n_adopt} adoption times")
    return terms, text


def wildboot_bytes(n: int, n_clusters: int, k: int, draws: int, n_tables: int) -> tuple[dict[str, float], str]:
    """Bytes of the wild cluster bootstrap (one coefficient or a whole event study).

    One pass over the demeaned design and outcome (N x (k + 1) doubles, k the
    bootstrap regressors including the dummies of a FE not nested in the
    clusters) and the cluster codes (N int64) to form the per-cluster sums; the
    ``n_tables`` G x k tables of cluster sums once; the weights once: one byte
    per (draw, cluster) (Rademacher signs unpacked from their bits, the operand
    of the block products). The products themselves (draws x G x k multiply-adds
    per table) are arithmetic, not memory traffic, and are not in this bound.
    """
    terms = {
        "design + outcome once (N x (k + 1) doubles)": n * (k + 1) * F8,
        "cluster codes once (N int64)": n * F8,
        f"cluster-sum tables once ({n_tables} x G x k doubles)": n_tables * n_clusters * k * F8,
        "weights once (draws x G bytes)": draws * n_clusters,
    }
    text = f"N(k+1)8 + N 8 + {n_tables} G k 8 + B G with N = {n:,}, k = {k}, G = {n_clusters:,}, B = {draws:,}"
    return terms, text


def feols_bytes(n: int, n_cols: int, n_fe: int) -> tuple[dict[str, float], str]:
    """Bytes of feols with exact two-way demeaning and CRV1 by one of the FEs.

    One exact sweep reads the outcome and the K regressors (N x (K + 1)
    doubles) and the FE codes (N int64 per FE) once; the per-unit sums it
    forms give the coefficients and, the cluster being the unit, the CRV1
    scores, so a second pass over the rows is not needed at minimum.
    """
    terms = {"outcome + regressors once (N x (K + 1) doubles)": n * n_cols * F8,
             f"FE codes once ({n_fe} x N int64)": n * n_fe * F8}
    return terms, f"N (K+1) 8 + N n_fe 8 with N = {n:,}, K+1 = {n_cols}, n_fe = {n_fe} (one exact sweep)"


def build_paths(quick: bool) -> list[HotPath]:
    """The five hot paths, data built and calls warmed."""
    import polars as pl

    import staggerlab as sl

    warnings.simplefilter("ignore")
    df = sl.simulate.paper_panel(seed=0)
    n, n_units, n_periods = df.height, df["firm"].n_unique(), df["year"].n_unique()
    cohorts = df.filter(pl.col("first_year") > 0)
    treated, n_adopt = cohorts["firm"].n_unique(), cohorts["first_year"].n_unique()
    fit = sl.feols(PAPER_FML, df, vcov={"CRV1": "firm"})
    paths = []

    terms, text = placebo_bytes(n, n_units, treated, n_adopt, n_periods, len(CONTROLS), 1000)
    paths.append(HotPath("placebo", "placebo, 1,000 draws, CRV1 t (paper panel, 8 controls)",
                         lambda: sl.placebo(fit, param="IM", draws=1000, stat="t", seed=1),
                         terms, 0.010, "issue #20", text))

    k_wb = len(fit.design.regressors) + n_periods - 1  # year dummies: year is not nested in firm
    terms, text = wildboot_bytes(fit.nobs, fit.n_clusters, k_wb, 9999, 2)
    paths.append(HotPath("wildboot", "wild bootstrap, 9,999 draws + test-inversion CI (paper panel)",
                         lambda: sl.wildboot(fit, param="IM", draws=9999, confint=True, seed=1),
                         terms, 0.100, "issue #20", text))

    big = sl.simulate.staggered(10_000, 20, n_controls=8, drop_share=0.15, seed=0)
    terms, text = feols_bytes(big.height, 10, 2)
    paths.append(HotPath("feols", f"feols CRV1, {big.height:,} rows (10,000 x 20, 8 controls)",
                         lambda: sl.feols(FEOLS_FML, big, vcov={"CRV1": "unit"}),
                         terms, 0.015, "issue #20", text))

    es = sl.event_study(df, y="NQPF", unit="firm", time="year", cohort="first_year", window=(-5, 5))
    k_es = int(es.rel_time.size) + n_periods - 1
    # the combinations' stacked cluster sums: 3 k + k columns (RESULTS.md, event-study inference)
    terms, text = wildboot_bytes(n, n_units, k_es, 9999, 4)
    paths.append(HotPath("es_wildboot", f"event-study bootstrap, {es.rel_time.size} coefficients, 9,999 draws, "
                         "intervals + sup-t band", lambda: sl.wildboot(es, draws=9999, seed=1),
                         terms, 0.5, "RESULTS.md event-study inference", text))

    kw = dict(y="NQPF", unit="firm", time="year", treat="IM", seed=0)
    terms, text = placebo_bytes(n, n_units, treated, n_adopt, n_periods, 0, 1000)
    # the curve itself: draws x sizes t statistics written once
    terms["t statistics (draws x sizes doubles)"] = 1000 * POWER_SIZES.size * F8
    paths.append(HotPath("power", "TWFE power curve, 1,000 draws x 20 sizes (no controls)",
                         lambda: sl.power(df, **kw, draws=1000, sizes=POWER_SIZES),
                         terms, 0.100, "RESULTS.md design power", text + " + B S 8 (S = 20 sizes)"))
    return paths


def measure(quick: bool = False, runs: int = 20, busy: bool = False, only: list[str] | None = None) -> dict:
    """Time every path, measure the bandwidth, and (``busy``) the competitor runs.

    Returns a JSON-ready dict: ``machine``, ``load_before``/``load_after``,
    ``bandwidth`` (bytes/s), ``paths`` (one dict per path) and ``busy``.
    """
    out: dict = {"machine": machine_line(), "commit": git_commit(), "load_before": load(),
                 "runs": runs, "quick": quick}
    bw = bandwidth(1 << (28 if quick else 30), 3 if quick else 7)
    out["bandwidth"] = bw
    paths = [p for p in build_paths(quick) if not only or p.name in only]
    out["paths"], out["busy"] = [], []
    for p in paths:
        rec = {"name": p.name, "label": p.label, "bytes": p.nbytes, "terms": p.terms, "formula": p.formula,
               "target": p.target, "target_source": p.target_source}
        try:
            p.call()
            p.call()  # warm: compiled kernels loaded, worker pools and caches built
            t = median_time(p.call, runs)
        except Exception as err:  # a broken path is reported, the others still run
            rec["error"] = f"{type(err).__name__}: {err}"
            out["paths"].append(rec)
            continue
        bound = p.nbytes / bw["read"]
        rec.update(time=t, bound=bound, factor=t / bound, passed=bool(t <= p.target))
        p.result = rec
        out["paths"].append(rec)
    if busy:
        with competitor():
            loaded = load()
            for p in paths:
                if p.name not in BUSY_PATHS or not p.result:
                    continue
                t = median_time(p.call, runs)
                ratio = t / p.result["time"]
                out["busy"].append({"name": p.name, "label": p.label, "quiet": p.result["time"], "busy": t,
                                    "ratio": ratio, "passed": bool(ratio <= BUSY_TARGET),
                                    "load_during": loaded})
    out["load_after"] = load()
    return out


def markdown(res: dict) -> str:
    """The tables of :func:`measure`'s result."""
    bw = res["bandwidth"]
    lines = [f"Machine: {res['machine']}; commit {res['commit']}; load average before "
             f"{res['load_before'][0]:.2f}, after {res['load_after'][0]:.2f} (1 min).",
             f"Memory bandwidth (medians, {bw['nbytes'] / 2**30:.2f} GiB float64 array): streaming read "
             f"{bw['read'] / 1e9:.1f} GB/s, copy {bw['copy'] / 1e9:.1f} GB/s (read + write); the bound uses "
             f"the read figure. Medians of {res['runs']} warm runs.", "",
             "| path | median | bytes at minimum | bound (bytes / read bandwidth) | time / bound | target "
             "| status |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in res["paths"]:
        if "error" in r:
            lines.append(f"| {r['label']} | failed: {r['error']} | {fmt_bytes(r['bytes'])} | | | "
                         f"{fmt_s(r['target'])} | FAIL |")
            continue
        lines.append(f"| {r['label']} | {fmt_s(r['time'])} | {fmt_bytes(r['bytes'])} | {fmt_s(r['bound'])} | "
                     f"{r['factor']:.0f}x | <= {fmt_s(r['target'])} ({r['target_source']}) | "
                     f"{'PASS' if r['passed'] else 'FAIL'} |")
    lines += ["", "| path | bytes formula |", "|---|---|"]
    lines += [f"| {r['name']} | {r['formula']} |" for r in res["paths"]]
    if res["busy"]:
        lines += ["", f"Busy machine: one CPU-bound competitor process (`while True: pass`) started and killed "
                  f"by the script (load average {res['busy'][0]['load_during'][0]:.2f} when it started).", "",
                  "| path | quiet (same run) | with competitor | ratio | target | status |",
                  "|---|---:|---:|---:|---:|---|"]
        for b in res["busy"]:
            lines.append(f"| {b['label']} | {fmt_s(b['quiet'])} | {fmt_s(b['busy'])} | {b['ratio']:.2f}x | "
                         f"<= {BUSY_TARGET}x (issue #20) | {'PASS' if b['passed'] else 'FAIL'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Command line: measure, print the Markdown tables, optionally write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 runs per path and a 256 MB bandwidth array")
    ap.add_argument("--runs", type=int, default=20, help="warm runs per path (at least 20 unless --quick)")
    ap.add_argument("--busy", action="store_true", help=f"also time {', '.join(BUSY_PATHS)} with a competitor")
    ap.add_argument("--only", nargs="*", default=None, help="paths to run (placebo wildboot feols es_wildboot power)")
    ap.add_argument("--json", type=Path, default=None, help="write the raw results here")
    a = ap.parse_args(argv)
    runs = 3 if a.quick else max(20, a.runs)
    res = measure(a.quick, runs, a.busy, a.only)
    print(markdown(res))
    if a.json is not None:
        a.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
