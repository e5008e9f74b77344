"""Helpers shared by ``limits.py`` and ``run_all.py``: the machine and its load,
warm medians, the measured memory bandwidth, and a CPU-bound competitor process.

Not a benchmark itself; the scripts import it from their own folder
(``python benchmarks/limits.py`` puts ``benchmarks/`` first on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, object]:
    """CPU model, usable cores and RAM (from ``/proc``), Python and OS."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_gib = float("nan")
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                ram_gib = int(line.split()[1]) / 2**20
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "ram_gib": round(ram_gib, 1), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def machine_line() -> str:
    """:func:`machine` as one line."""
    m = machine()
    return f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['system']}, Python {m['python']}"


def load() -> tuple[float, float, float]:
    """The 1-, 5- and 15-minute load averages."""
    return os.getloadavg()


def git_commit() -> str:
    """The checkout's commit (``+dirty`` if the work tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls of ``fn`` (the caller warms it first)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fmt_s(seconds: float) -> str:
    """Seconds as a short string (ms below one second)."""
    if seconds != seconds:
        return "-"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    """Bytes in MB (10^6) or kB."""
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def bandwidth(nbytes: int = 1 << 30, runs: int = 7) -> dict[str, float]:
    """Measured memory bandwidth in bytes per second, medians of ``runs``.

    ``read``: the faster of two streaming reads of a ``nbytes`` float64 array
    (``np.dot(a, a)``, which reads it once through BLAS, and ``a.max()``);
    ``copy``: ``np.copyto`` into a second array, counting the bytes read plus
    the bytes written. The arrays are filled first so that their pages exist.
    """
    a = np.ones(nbytes // 8)
    b = np.zeros_like(a)
    t_dot = median_time(lambda: np.dot(a, a), runs)
    t_max = median_time(a.max, runs)
    t_copy = median_time(lambda: np.copyto(b, a), runs)
    return {"read": a.nbytes / min(t_dot, t_max), "copy": 2 * a.nbytes / t_copy, "nbytes": float(a.nbytes)}


@contextlib.contextmanager
def competitor() -> Iterator[subprocess.Popen]:
    """A CPU-bound Python process that runs for the duration of the block.

    Started with ``subprocess.Popen([sys.executable, "-c", "while True: pass"])``
    and killed (by its own pid) when the block ends, also on errors. Waits 0.3 s
    after the start so that the process is spinning when the timings begin.
    """
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        yield proc
    finally:
        proc.kill()
        proc.wait()
