"""The command's contract: a failing section is reported and the battery goes on,
Ctrl-C ends with one line saying what was kept (exit 130), ``--version``; and the
interrupt messages of the long library calls."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab._parallel import run_blocks
from staggerlab.battery import BatterySpec, battery
from staggerlab.cli import main
from staggerlab.errors import CheckpointResumedWarning

bm = sys.modules["staggerlab.battery"]  # the package's `battery` attribute is the function


@pytest.fixture(scope="module")
def panel_csv(tmp_path_factory) -> str:
    df = sl.simulate.staggered(60, 6, n_controls=1, seed=3, effect=0.5)
    path = tmp_path_factory.mktemp("d") / "p.csv"
    df.write_csv(path)
    return str(path)


def _args(path: str, out) -> list[str]:
    return ["battery", "--data", path, "--unit", "unit", "--time", "time", "--outcome", "y", "--treat", "treat",
            "--controls", "x1", "--draws", "19", "--boot-draws", "19", "--power-draws", "5", "--n-jobs", "1", "--no-alternatives",
            "--out", str(out), "-q"]


def _broken(name: str, exc: BaseException):
    """A stand-in for the section function ``name`` that raises ``exc``."""
    def fn(*_a):
        raise exc
    fn.__name__ = name
    return fn


def _replace_section(monkeypatch, name: str, exc: BaseException) -> None:
    sections = list(bm.SECTIONS)
    i = [f.__name__ for f in sections].index(name)
    sections[i] = _broken(name, exc)
    monkeypatch.setattr(bm, "SECTIONS", sections)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"staggerlab {version('staggerlab')}"


def test_a_failing_section_is_reported_and_the_battery_goes_on(panel_csv, tmp_path, monkeypatch, capsys):
    _replace_section(monkeypatch, "section_robust", RuntimeError("robust estimators broke"))
    out = tmp_path / "r"
    assert main(_args(panel_csv, out)) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"staggerlab: section 'robust' failed (RuntimeError: robust estimators broke); the other "
                   f"sections are in {out / 'report.md'}"]
    report = (out / "report.md").read_text()
    assert "## 3. Heterogeneity-robust estimators" in report and "**Failed**: RuntimeError: robust estimators broke" in report
    assert "## 5. Placebo test and wild cluster bootstrap" in report  # the later sections ran
    assert "**Sections that failed** (their error is in the section): 3. Heterogeneity-robust estimators." in report
    res = json.loads((out / "results.json").read_text())
    assert res["sections"]["robust"]["error"] == {"type": "RuntimeError", "message": "robust estimators broke"}
    assert "estimate" in res["sections"]["baseline"]["main"]


def test_a_failing_baseline_exits_non_zero_with_the_report_written(panel_csv, tmp_path, monkeypatch, capsys):
    _replace_section(monkeypatch, "section_baseline", ValueError("no baseline"))
    out = tmp_path / "r"
    assert main(_args(panel_csv, out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("staggerlab: error: the baseline section failed (ValueError: no baseline)")
    assert "Traceback" not in "\n".join(err)
    assert "**Failed**: ValueError: no baseline" in (out / "report.md").read_text()


def test_ctrl_c_in_the_battery_one_line_exit_130(panel_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STAGGERLAB_BATTERY_PROCESSES", "1")  # every section in order, in this process
    _replace_section(monkeypatch, "section_inference", KeyboardInterrupt())
    out = tmp_path / "r"
    assert main(_args(panel_csv, out)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("staggerlab: battery interrupted during section '5. Placebo test and wild cluster "
                             "bootstrap'; the 4 finished section(s) are in")
    assert "run the same command again" in err[0]
    report = (out / "report.md").read_text()  # what finished is kept
    assert "## 4. Diagnostics" in report and "## 5." not in report
    assert "**Interrupted** (Ctrl-C) during section '5. Placebo test and wild cluster bootstrap'" in report


def test_ctrl_c_inside_the_draws_of_a_section(panel_csv, tmp_path, monkeypatch, capsys):
    """A Ctrl-C reaching the battery from inside a draw loop (here: the third placebo block)."""
    import staggerlab.inference.resampling.placebo  # noqa: F401 - sys.modules holds the module, not the function

    pb = sys.modules["staggerlab.inference.resampling.placebo"]
    real = pb.run_block
    calls = []

    def interrupted(ctx, block):
        calls.append(block)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(ctx, block)

    monkeypatch.setattr(pb, "run_block", interrupted)
    spec = BatterySpec(data=panel_csv, unit="unit", time="time", outcomes=["y"], treat="treat", controls=["x1"],
                       draws=1000, boot_draws=19, power_draws=5, n_jobs=1, alternatives=False, out=str(tmp_path / "r"))
    with pytest.raises(KeyboardInterrupt, match="battery interrupted during section '5"):
        battery(spec=spec)
    fit = sl.feols("y ~ treat | unit + time", pl.read_csv(panel_csv), vcov={"CRV1": "unit"})
    calls.clear()
    with pytest.raises(KeyboardInterrupt, match=r"^placebo interrupted after 2 of 4 block\(s\); nothing was kept"):
        sl.placebo(fit, param="treat", draws=1000, n_jobs=1)


def test_run_blocks_counts_the_finished_blocks():
    def f(b):
        if b == 5:
            raise KeyboardInterrupt
        return b

    with pytest.raises(KeyboardInterrupt, match=r"draws interrupted after 5 of 9 block\(s\)"):
        run_blocks(f, range(9), desc="draws")
    assert run_blocks(f, range(5), desc="draws") == [0, 1, 2, 3, 4]


def _interrupting(after: int):
    calls = []

    def est(frame: pl.DataFrame, seed: np.random.SeedSequence) -> dict:
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return {"estimate": float(frame["y"].mean()), "se": 1.0, "pvalue": 0.5}
    return est


def test_interrupted_montecarlo_says_what_was_saved_and_resume_says_what_it_found(tmp_path):
    d = sl.simulate.dgp("homogeneous", n_units=30)
    ck = tmp_path / "mc"
    args = dict(reps=20, block_size=5, n_jobs=1, checkpoint=ck)
    with pytest.raises(KeyboardInterrupt, match=r"2 of 4 block\(s\) are saved in .*mc'; call montecarlo\(\) again"):
        sl.montecarlo(d, {"m": _interrupting(12)}, **args)
    assert len(list(ck.glob("block-*.parquet"))) == 2  # independent count of the files on disk
    with pytest.warns(CheckpointResumedWarning, match=r"found 2 of 4 finished block\(s\); running the other 2"):
        res = sl.montecarlo(d, {"m": _interrupting(10**6)}, **args)
    assert res.replications().height == 20
    with pytest.raises(KeyboardInterrupt, match="nothing was kept: pass checkpoint=PATH"):
        sl.montecarlo(d, {"m": _interrupting(3)}, reps=20, block_size=5, n_jobs=1)


@pytest.mark.slow
def test_a_real_sigint_ends_the_command_in_one_line(panel_csv, tmp_path):
    """SIGINT to the running command (as Ctrl-C sends it): exit 130, one line, no traceback."""
    import signal
    import time

    args = _args(panel_csv, tmp_path / "r")
    args[args.index("--draws") + 1] = "2000000"  # the placebo section outlasts the wait below
    p = subprocess.Popen([sys.executable, "-m", "staggerlab.cli", *args], stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(20)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("staggerlab: ") and "interrupted" in lines[0]


@pytest.mark.slow
def test_console_script_version():
    r = subprocess.run([sys.executable, "-m", "staggerlab.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("staggerlab ")


# ------------------------------------------------------------ inputs refused before the first section
def _bad_input(tmp_path, capsys, frame: pl.DataFrame, **write) -> tuple[int, str]:
    path = tmp_path / "bad.csv"
    frame.write_csv(path, **write)
    code = main(_args(str(path), tmp_path / "out"))
    return code, capsys.readouterr().err


def test_text_periods_are_refused_by_name(tmp_path, capsys):
    df = sl.simulate.staggered(20, 4, n_controls=1, seed=1).with_columns(pl.format("{}-Q1", "time").alias("time"))
    code, err = _bad_input(tmp_path, capsys, df)
    assert code == 2 and "Traceback" not in err
    assert "time column 'time' has type String (e.g. '" in err and "-Q1'), not integer periods" in err


def test_non_integer_periods_are_refused_not_truncated(tmp_path, capsys):
    df = sl.simulate.staggered(20, 4, n_controls=1, seed=1).with_columns(pl.col("time") + 0.25)
    code, err = _bad_input(tmp_path, capsys, df)
    assert code == 2 and "has non-integer periods (e.g. " in err and ".25)" in err


def test_a_treatment_every_unit_adopts_in_one_period_is_refused(tmp_path, capsys):
    # D_it = 1[t >= 2013] for every unit: the period effects absorb it, there is nothing to compare
    df = sl.simulate.staggered(20, 4, n_controls=1, seed=1)
    start = int(df["time"].min()) + 2
    df = df.with_columns((pl.col("time") >= start).cast(pl.Int64).alias("treat"))
    code, err = _bad_input(tmp_path, capsys, df)
    assert code == 2
    assert f"takes one value per period (every unit has it from time = {start})" in err


def test_a_semicolon_csv_is_read_and_the_guess_reported_in_one_line(tmp_path, capsys):
    # the separator is guessed and said (one line, no source listing); the text periods then stop the run
    df = sl.simulate.staggered(20, 4, n_controls=1, seed=1).with_columns(pl.format("y{}", "time").alias("time"))
    code, err = _bad_input(tmp_path, capsys, df, separator=";")
    assert code == 2
    assert "staggerlab: warning: bad.csv: read with ';' as the field separator (its header line has no comma)\n" in err
    assert "time column 'time' has type String" in err  # the columns were found: the file was split on ';'
    assert "warnings.warn" not in err and ".py:" not in err
    from staggerlab.panels.io import read_frame

    with pytest.warns(sl.errors.StaggerlabWarning, match="read with ';'"):
        frame = read_frame(tmp_path / "bad.csv")
    assert frame.columns == df.columns and frame.height == df.height
