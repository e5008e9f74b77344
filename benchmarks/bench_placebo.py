"""Placebo battery speed: staggerlab ``placebo`` vs pyfixest ``ritest``.

Cases:

* paper-shaped panel (``sl.simulate.paper_panel(0)``, ~15k firm-years,
  ``NQPF ~ IM + 8 controls | firm + year``, CRV1 by firm): 1,000 draws,
  ``units+timing``, ``stat="t"``, vs ``fit.ritest(resampvar="IM", reps=1000,
  type="randomization-c")`` on the pyfixest fit (its fast coefficient path);
* 170k rows (10,000 units x 20 periods, 15% of rows dropped, ``sl.simulate.staggered`` with 8
  controls), same statistic, vs the same pyfixest call;
* memory: 100,000 draws at 15k rows in a child process; its peak RSS is
  compared with a child doing 1,000 draws (the run holds one block at a time);
* hot path (issue #20): the 1,000-draw paper-panel placebo alone, median of
  ``--hot-reps`` (>= 20) runs, quiet and then with one CPU-bound competitor
  process (``python -c "while True: pass"``) that this script starts and
  kills; the load average is printed before each case.

JIT is warmed first; medians over ``--reps`` repetitions (pyfixest at 170k:
one repetition, it takes about a minute). Prints a Markdown table.

Usage: ``python benchmarks/bench_placebo.py [--reps 5] [--skip-large] [--skip-memory] [--hot-only]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

CONTROLS = ["Size", "Lev", "Roa", "Cash", "Age", "Mb", "Top1", "Dual"]


def _median_time(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _paper():
    import staggerlab as sl

    df = sl.simulate.paper_panel(0)
    fml = f"NQPF ~ IM + {' + '.join(CONTROLS)} | firm + year"
    return df, fml, "IM", "firm"


def _large():
    import staggerlab as sl

    df = sl.simulate.staggered(10_000, 20, n_controls=8, drop_share=0.15, seed=0)  # ~170k rows
    fml = "y ~ treat + " + " + ".join(f"x{j}" for j in range(1, 9)) + " | unit + time"
    return df, fml, "treat", "unit"


def bench_case(name: str, make, reps: int, pf_reps: int) -> dict:
    import pyfixest as pf

    import staggerlab as sl
    from staggerlab.inference.resampling.placebo import placebo

    df, fml, param, cl = make()
    fit = sl.feols(fml, df, vcov={"CRV1": cl})
    placebo(fit, param=param, draws=300, seed=99)  # warm the JIT
    t_sl = _median_time(lambda: placebo(fit, param=param, draws=1000, seed=1), reps)
    t_sl_gen = _median_time(lambda: placebo(fit, param=param, draws=1000, seed=1, method="general"), max(1, reps // 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # pyfixest 0.60's ritest splits the FE part on "+" without stripping spaces
        lhs, fe = fml.split("|")
        # and its fast path demeans an integer treatment into zeros (singular matrix): pass floats
        pdf = df.to_pandas()
        pdf[param] = pdf[param].astype(float)
        pfit = pf.feols(lhs + "| " + fe.replace(" ", ""), pdf, vcov={"CRV1": cl})
        pfit.ritest(resampvar=param, reps=20, type="randomization-c", rng=np.random.default_rng(0))  # warm
        t_pf = _median_time(
            lambda: pfit.ritest(resampvar=param, reps=1000, type="randomization-c", rng=np.random.default_rng(1)),
            pf_reps,
        )
    return {"case": name, "rows": df.height, "sl": t_sl, "sl_general": t_sl_gen, "pf": t_pf}


_CHILD = """
import sys, time, json
import staggerlab as sl
from staggerlab.inference.resampling.placebo import placebo
df = sl.simulate.paper_panel(0)
fit = sl.feols("NQPF ~ IM + Size + Lev + Roa + Cash + Age + Mb + Top1 + Dual | firm + year", df, vcov={"CRV1": "firm"})
draws = int(sys.argv[1])
t0 = time.perf_counter()
r = placebo(fit, param="IM", draws=draws, seed=0)
dt = time.perf_counter() - t0
# VmHWM: this process's own peak (ru_maxrss would include the forked parent's)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"draws": draws, "seconds": dt, "maxrss_mb": hwm / 1024,
                  "pvalue": r.pvalue}))
"""


def bench_memory() -> list[dict]:
    out = []
    for draws in (1_000, 100_000):
        res = subprocess.run([sys.executable, "-c", _CHILD, str(draws)], capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_hot(reps: int) -> list[dict]:
    """The paper-panel 1,000-draw placebo (CRV1 t), quiet and next to one
    CPU-bound competitor process started and killed here."""
    import staggerlab as sl
    from staggerlab.inference.resampling.placebo import placebo

    df, fml, param, cl = _paper()
    fit = sl.feols(fml, df, vcov={"CRV1": cl})
    placebo(fit, param=param, draws=300, seed=99)  # warm the JIT

    def case(name: str) -> dict:
        load = _load()
        t0 = time.process_time()
        t = _median_time(lambda: placebo(fit, param=param, draws=1000, seed=1), reps)
        return {"case": name, "median": t, "cpu_per_call": (time.process_time() - t0) / reps, "load": load}

    out = [case("quiet")]
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)  # let the scheduler see it
        out.append(case("one CPU-bound competitor"))
    finally:
        competitor.kill()
        competitor.wait()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--hot-only", action="store_true", help="only the hot-path (quiet / busy machine) case")
    ap.add_argument("--hot-reps", type=int, default=25)
    args = ap.parse_args()
    hot = bench_hot(max(20, args.hot_reps))
    print(f"\n1,000-draw placebo, paper panel, CRV1 t ({os.cpu_count()} CPUs; load average 1/5/15 min before each case)\n")
    print("| case | median wall | CPU per call | ratio to quiet | load before |")
    print("|---|---:|---:|---:|---|")
    for h in hot:
        print(f"| {h['case']} | {h['median'] * 1e3:.1f} ms | {h['cpu_per_call'] * 1e3:.1f} ms "
              f"| {h['median'] / hot[0]['median']:.2f}x | {h['load']} |")
    if args.hot_only:
        return
    rows = [bench_case("paper panel (units+timing, t, CRV1 firm)", _paper, args.reps, max(1, min(args.reps, 3)))]
    if not args.skip_large:
        rows.append(bench_case("10,000 x 20, unbalanced (units+timing, t, CRV1 unit)", _large, args.reps, 1))
    print("\n| case | rows | staggerlab placebo (fast) | staggerlab (general path) | pyfixest ritest (coef) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['rows']:,} | {r['sl'] * 1e3:.1f} ms | {r['sl_general'] * 1e3:.0f} ms "
              f"| {r['pf']:.2f} s | {r['pf'] / r['sl']:.0f}x |")
    if not args.skip_memory:
        mem = bench_memory()
        print("\n| draws (15k rows) | time | peak RSS |")
        print("|---:|---:|---:|")
        for m in mem:
            print(f"| {m['draws']:,} | {m['seconds']:.2f} s | {m['maxrss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
