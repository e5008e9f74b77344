"""HonestDiD relative magnitudes on the battery's event study (built-in panel, seed 0).

Run:  python benchmarks/bench_honest.py [--reps 7]

Times ``sl.honest(es, method="relative_magnitude", Mbar=[0.5, 1, 1.5, 2])`` with its
defaults (1000 scan points, 10^4 least-favourable draws), then the breakdown value
on its own, on the dynamic TWFE event study the battery's section 2 builds from
``sl.simulate.paper_panel(seed=0)``. One untimed call warms imports first; medians
of ``--reps`` repetitions. Prints a Markdown table and the intervals.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import staggerlab as sl
from staggerlab.battery import BatterySpec, validate
from staggerlab.inference.did.event_study import event_study

MBAR = [0.5, 1.0, 1.5, 2.0]


def battery_event_study():
    spec = BatterySpec()
    frame = validate(sl.simulate.paper_panel(seed=0), spec)
    return event_study(frame, y=spec.outcomes[0], unit=spec.unit, time=spec.time, cohort="_cohort",
                       controls=spec.controls, cluster=spec.cluster_col, window=spec.window, method="twfe")


def timed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    es = battery_event_study()
    res = sl.honest(es, method="relative_magnitude", Mbar=MBAR)  # warm
    t_ci = timed(lambda: sl.honest(es, method="relative_magnitude", Mbar=MBAR), args.reps)
    t_bd = timed(lambda: sl.honest(es, method="relative_magnitude", Mbar=MBAR).breakdown, args.reps) - t_ci
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| task | median |\n|---|---:|")
    print(f"| honest(relative_magnitude, Mbar = 0.5, 1, 1.5, 2), event times -5..5 | {t_ci:.3f} s |")
    print(f"| its breakdown value (bisection, relative tolerance 1e-3), on top | {t_bd:.3f} s |")
    print()
    print(res.tidy())
    print(res.breakdown_text())


if __name__ == "__main__":
    main()
