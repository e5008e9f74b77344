"""The battery's timing table: wall seconds and numba compile seconds per section."""

from __future__ import annotations

import json
import sys
import time

import numba
import numpy as np
import pytest

import staggerlab as sl
from staggerlab.battery import BatterySpec, Section, battery

bm = sys.modules["staggerlab.battery"]  # the package's `battery` attribute is the function


def _compiling_section(seen: dict):
    """A section whose only work is the first call of a new (uncached) jitted function,
    so nearly all of that call is numba compiling it."""
    def section_compiles(frame, spec, treat, out, shared):
        @numba.njit(cache=False)
        def kernel(x):  # a fresh function object: compiled on its first call, never cached
            s = 0.0
            for i in range(x.size):
                s += np.sin(x[i]) * np.cos(x[i]) + np.sqrt(abs(x[i]))
            return s

        t0 = time.perf_counter()
        kernel(np.ones(3))
        seen["first_call"] = time.perf_counter() - t0
        return Section("compiles", "A. compiles", "")
    return section_compiles


def _plain_section(frame, spec, treat, out, shared):
    time.sleep(0.05)  # wall time without any compilation
    return Section("plain", "B. plain", "")


def test_timing_table_has_compile_seconds_per_section(tmp_path, monkeypatch, capsys):
    seen: dict = {}
    monkeypatch.setattr(bm, "SECTIONS", [_compiling_section(seen), _plain_section])
    df = sl.simulate.staggered(40, 6, n_controls=1, seed=3, effect=0.5)
    spec = BatterySpec(unit="unit", time="time", outcomes=["y"], treat="treat", controls=["x1"],
                       out=str(tmp_path / "r"))
    res = battery(df, spec=spec, verbose=True)
    comp, plain = res.sections
    # reference: the first call of the fresh function, timed around the call; compiling is all of it
    # but the type dispatch and cache look-up (a few ms)
    assert seen["first_call"] * 0.8 <= comp.compile_seconds <= seen["first_call"]
    assert comp.compile_seconds <= comp.seconds
    assert plain.compile_seconds == 0.0 and plain.seconds >= 0.05
    tab = res.timings()
    assert tab.columns == ["section", "seconds", "compile_seconds", "process"]
    assert tab["process"].to_list() == ["main", "main"]
    assert tab["compile_seconds"].to_list() == [comp.compile_seconds, 0.0]
    saved = json.loads((tmp_path / "r" / "results.json").read_text())["sections"]
    assert saved["compiles"]["compile_seconds"] == pytest.approx(comp.compile_seconds, rel=1e-12)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| section | wall seconds | numba compile seconds | process |" in report
    assert f"| A. compiles | {comp.seconds:.2f} | {comp.compile_seconds:.2f} | main |" in report
    err = capsys.readouterr().err
    assert f"{comp.compile_seconds:8.2f} s" in err.splitlines()[-2]


def test_compile_clock_is_removed_after_the_run(tmp_path, monkeypatch):
    """A compilation after the battery is not counted into its last section."""
    from numba.core import event

    monkeypatch.setattr(bm, "SECTIONS", [_plain_section])
    df = sl.simulate.staggered(40, 6, seed=3)
    before = len(event._registered.get("numba:compile", []))
    battery(df, spec=BatterySpec(unit="unit", time="time", outcomes=["y"], treat="treat", controls=[],
                                 out=str(tmp_path / "r")))
    assert len(event._registered.get("numba:compile", [])) == before


def test_second_process_runs_the_offloaded_sections_with_the_same_numbers(tmp_path, monkeypatch):
    """With an idle core the event study runs in the battery's second process; its
    section (text, tables, numbers) equals the one run in this process."""
    from staggerlab.battery import offload, section_event_study, warmup

    df = sl.simulate.staggered(60, 8, n_controls=1, seed=4, effect=0.5)
    kw = dict(unit="unit", time="time", outcomes=["y"], treat="treat", controls=["x1"], es_boot_draws=199)
    monkeypatch.setattr(bm, "SECTIONS", [section_event_study, _plain_section])
    monkeypatch.setattr(warmup, "idle_core", lambda cores: True)
    monkeypatch.setattr(bm.offload, "OFFLOADED", ("event_study",))
    monkeypatch.setattr("staggerlab.kernels._jit._cores", lambda: 2)
    two = battery(df, spec=BatterySpec(out=str(tmp_path / "two"), **kw))
    monkeypatch.setenv("STAGGERLAB_BATTERY_PROCESSES", "1")
    one = battery(df, spec=BatterySpec(out=str(tmp_path / "one"), **kw))
    assert [s.process for s in two.sections] == ["second", "main"]
    assert [s.process for s in one.sections] == ["main", "main"]
    assert [s.key for s in two.sections] == ["event_study", "plain"]  # the battery's order
    a, b = two.section("event_study"), one.section("event_study")
    # HonestDiD's smoothness intervals come from SLSQP, whose result moves at ~1e-8 with the
    # process's BLAS threads (the second process inherits OPENBLAS_NUM_THREADS=1 when earlier
    # tests' libraries set it); everything else is bit-identical
    ha, hb = a.numbers.pop("honest"), b.numbers.pop("honest")
    assert a.numbers == b.numbers
    for kind in ha:
        if isinstance(ha[kind], list):
            for ra, rb in zip(ha[kind], hb[kind]):
                assert ra == pytest.approx(rb, rel=1e-6)
    assert a.tables.keys() == b.tables.keys()
    for name, tab in b.tables.items():
        if name.startswith("honest"):
            continue
        assert a.tables[name].equals(tab)
    assert (tmp_path / "two" / "figures" / "event_study.png").exists()
    assert offload.MAX_ROWS >= df.height


@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) < 2, reason="the second process needs two cores")
def test_second_process_never_reruns_the_callers_script(tmp_path):
    """A script calling battery() at top level, without an ``if __name__ == "__main__"`` guard:
    the second process must not run the script again (multiprocessing's spawn would)."""
    import subprocess
    import sys

    df = sl.simulate.staggered(40, 6, n_controls=1, seed=3, effect=0.5)
    df.write_csv(tmp_path / "p.csv")
    script = tmp_path / "noguard.py"
    script.write_text(
        "import importlib\n"
        "import staggerlab as sl\n"
        "importlib.import_module('staggerlab.battery.warmup').idle_core = lambda cores: True\n"
        "print('top-level', flush=True)\n"
        f"r = sl.battery({str(tmp_path / 'p.csv')!r}, unit='unit', time='time', outcomes=['y'], treat='treat',\n"
        f"               controls=['x1'], draws=19, boot_draws=19, es_boot_draws=19, power_draws=4,\n"
        f"               alternatives=False, out={str(tmp_path / 'r')!r})\n"
        "print('processes', sorted({s.process for s in r.sections}), flush=True)\n")
    # earlier tests' libraries (ray, loky) leave OMP_NUM_THREADS=1 in this process's environment,
    # which would cap the script at one core (no second process)
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS", "STAGGERLAB_NUM_THREADS")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env={**env, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("top-level") == 1, out.stdout
    assert "processes ['main', 'second']" in out.stdout
