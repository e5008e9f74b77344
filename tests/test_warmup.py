"""The cold-cache warm-up child of the battery: when it starts, when it stops."""

import os
import subprocess
import sys
import time

import pytest

from staggerlab.battery import SECTIONS, warmup


def test_no_child_when_disabled(monkeypatch):
    monkeypatch.setenv("STAGGERLAB_WARMUP", "0")
    assert warmup.start() is None


def test_an_empty_numba_cache_is_cold(tmp_path):
    code = "from staggerlab.battery.warmup import cache_is_cold; print(cache_is_cold())"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("parent_at", [len(SECTIONS) - 1, len(SECTIONS)])
def test_child_stops_where_the_parent_is(tmp_path, parent_at):
    """A parent already at (or past) the last section leaves the child nothing to do:
    it exits by itself, without running a section (no output written)."""
    (tmp_path / "now").write_text(str(parent_at))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "staggerlab.battery.warmup", str(tmp_path)], timeout=120)
    assert proc.returncode == 0
    assert not any((tmp_path / "out" / "figures").iterdir())
    assert time.perf_counter() - t0 < 60


def test_stop_ends_a_running_child(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    w = warmup.Warmer(proc, tmp_path)
    w.at(3)
    assert (tmp_path / "now").read_text() == "3"
    w.stop()
    assert proc.poll() is not None
    assert not tmp_path.exists()
