"""Compile the battery's kernels in a second process while the battery runs.

numba compiles a kernel the first time it is called and keeps it in its
on-disk cache; a battery in a fresh environment spends most of its time there,
on one core. When the cache is cold and a second core is free, the battery
starts this module as a child process: the child runs the battery's sections
on the built-in panel from the last one backwards (few draws, output thrown
away; only the sections whose kernels the parent meets later, see
``_CHILD_SECTIONS``), so it compiles what the later sections need while the
parent works on the first ones, and writes it to the shared cache. The parent loads those
kernels from the cache when it reaches them. Before each section the child
reads which section the parent has started and stops once the two meet; the
parent stops it at the end in any case. The child only fills the cache: no
number of the parent's comes from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["Warmer", "start", "cache_is_cold", "idle_core"]

#: the sections the child runs, last first: those that compile kernels the parent meets later
#: (the others compile little or, with the child's fewer draws, other kernels: heterogeneity;
#: alternative estimators is scikit-learn work the child would only take CPU from)
_CHILD_SECTIONS = ("power", "inference", "robust", "event_study")
#: draws of the child's sections: enough to take every code path of the defaults
_CHILD_DRAWS = {"draws": 100, "boot_draws": 199, "es_boot_draws": 199, "power_draws": 4}


def cache_is_cold() -> bool:
    """True when most kernels of ``staggerlab.kernels`` (more than half) have
    nothing in numba's on-disk cache (a fresh install, a new numba,
    ``NUMBA_CACHE_DIR`` empty). Not "any": a battery never calls some kernels
    (the streaming and partitioned paths), so they stay uncached."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    from .. import kernels

    cached = missing = 0
    for mod in pkgutil.iter_modules(kernels.__path__):
        m = importlib.import_module(f"{kernels.__name__}.{mod.name}")
        for obj in vars(m).values():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == m.__name__:
                index = getattr(getattr(obj._cache, "_cache_file", None), "_index_path", None)
                if index is not None:
                    cached += os.path.exists(index)
                    missing += not os.path.exists(index)
    return missing > cached


class Warmer:
    """The running child; ``at(i)`` tells it the parent started section ``i``."""

    def __init__(self, proc: subprocess.Popen, ctl: Path) -> None:
        self.proc = proc
        self.ctl = ctl

    def at(self, index: int) -> None:
        """Record that the parent started section ``index`` (an atomic file replace)."""
        tmp = self.ctl / "now.tmp"
        tmp.write_text(str(index))
        os.replace(tmp, self.ctl / "now")

    def stop(self) -> None:
        """Stop the child (if still running) and remove its files."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        import shutil

        shutil.rmtree(self.ctl, ignore_errors=True)


def start() -> Warmer | None:
    """Start the child when it can help: numba's cache is cold, this process
    may use two or more cores and one of them is idle (see :func:`idle_core`),
    and ``STAGGERLAB_WARMUP`` is not ``0``. Returns ``None`` otherwise (and on
    any failure to start it): on a machine without an idle core the child would
    only take CPU from the battery."""
    from ..kernels._jit import n_threads

    cores = n_threads(float("inf"))
    if os.environ.get("STAGGERLAB_WARMUP", "1") == "0" or cores < 2 or not idle_core(cores):
        return None
    try:
        if not cache_is_cold():
            return None
        ctl = Path(tempfile.mkdtemp(prefix="staggerlab-warmup-"))
        w = Warmer(subprocess.Popen([sys.executable, "-m", __name__, str(ctl)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), ctl)
        w.at(-1)
        return w
    except Exception:  # the warm-up is an optimisation: never a reason to fail the battery
        return None


def idle_core(cores: int) -> bool:
    """Whether other processes leave a core idle right now: Linux's count of
    runnable tasks (``/proc/loadavg``, this process included) is at most
    ``cores - 1`` in at least one of five samples 20 ms apart (a CPU-bound
    competitor is runnable in all of them; a short-lived task is not). The
    1-minute load average would still count work that just ended; it is the
    test only where ``/proc`` is missing."""
    import time

    try:
        running = []
        for _ in range(5):
            with open("/proc/loadavg") as fh:
                running.append(int(fh.read().split()[3].split("/")[0]))
            time.sleep(0.02)
        return min(running) <= cores - 1
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] <= cores - 1


def _parent_at(ctl: Path) -> int:
    try:
        return int((ctl / "now").read_text())
    except (OSError, ValueError):
        return -1


def _main(ctl: Path) -> None:
    import warnings

    from ..battery_checks import helper_names
    from ..panels.simulate import paper_panel
    from . import SECTIONS, SharedFits, validate
    from .spec import BatterySpec

    warnings.simplefilter("ignore")
    spec = BatterySpec(out=str(ctl / "out"), n_jobs=1, **_CHILD_DRAWS)
    frame = paper_panel(spec.seed)
    cohort_col, treat_col = helper_names(frame.columns)
    frame = validate(frame, spec)
    treat = spec.treat if spec.treat and spec.treat in frame.columns else treat_col
    out = Path(spec.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    shared = SharedFits(frame, spec, treat, cohort_col)
    keys = [fn.__name__.removeprefix("section_") for fn in SECTIONS]
    for key in _CHILD_SECTIONS:
        index = keys.index(key)
        if _parent_at(ctl) >= index:
            return
        try:
            SECTIONS[index](frame, spec, treat, out, shared)
        except Exception:
            pass


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
