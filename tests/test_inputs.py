"""Every bad input is refused before any long step, with one line naming the column or
label and the fix: through ``battery()`` (the error class) and through the command
(exit status 2, one line, no traceback)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab import errors
from staggerlab.battery import BatterySpec, battery
from staggerlab.cli import main

N_UNITS, N_PERIODS = 30, 5


def _clean() -> pl.DataFrame:
    """A small staggered panel built here (not by staggerlab): string unit labels, years 2001..2005,
    units 1-10 adopt in 2003, 11-20 in 2004, the rest never."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(1, N_UNITS + 1):
        g = 2003 if i <= 10 else 2004 if i <= 20 else 0
        for t in range(2001, 2001 + N_PERIODS):
            d = int(g > 0 and t >= g)
            x = rng.normal()
            rows.append({"county": f"c{i:02d}", "yr": t, "policy": d, "pop": x, "wage": rng.normal(),
                         "emp": 0.5 * d + 0.3 * x + rng.normal(), "w": 1.0})
    return pl.DataFrame(rows)


CLEAN = _clean()
TREATED_UNIT = "c01"  # treated from 2003 on
BASE = dict(unit="county", time="yr", outcomes=["emp"], treat="policy", controls=["pop", "wage"], draws=9,
            boot_draws=9, power_draws=5, n_jobs=1, alternatives=False)


def _set(col: str, value, unit: str | None = None, year: int | None = None):
    """A change of ``col`` to ``value`` on the rows of ``unit`` (and ``year``), or everywhere."""
    def change(d: pl.DataFrame) -> pl.DataFrame:
        cond = pl.lit(True)
        if unit is not None:
            cond = cond & (pl.col("county") == unit)
        if year is not None:
            cond = cond & (pl.col("yr") == year)
        return d.with_columns(pl.when(cond).then(pl.lit(value)).otherwise(pl.col(col)).alias(col))
    return change


def _all_missing(col: str):
    return lambda d: d.with_columns(pl.lit(None, dtype=d.schema[col]).alias(col))


# (id, change of the frame, spec overrides, error class, text the one line must hold)
CASES = [
    ("header-only", lambda d: d.head(0), {}, errors.EmptyPanelError, "no rows"),
    ("all-missing outcome", _all_missing("emp"), {}, errors.MissingValueError, "outcome column 'emp' is entirely missing"),
    ("all-missing treatment", _all_missing("policy"), {}, errors.MissingValueError,
     "treatment column 'policy' is entirely missing"),
    ("all-missing control", _all_missing("pop"), {}, errors.MissingValueError, "control column 'pop' is entirely missing"),
    ("all-missing cluster", lambda d: d.with_columns(cl=pl.lit(None, pl.Int64)), {"cluster": "cl"},
     errors.MissingValueError, "cluster column 'cl' is entirely missing"),
    ("all-missing unit", _all_missing("county"), {}, errors.MissingValueError, "unit column 'county' is entirely missing"),
    ("all-missing time", _all_missing("yr"), {}, errors.MissingValueError, "time column 'yr' is entirely missing"),
    ("all-missing split", lambda d: d.with_columns(grp=pl.lit(None, pl.Int64)), {"splits": ["grp"]},
     errors.MissingValueError, "split column 'grp' is entirely missing"),
    ("treatment not 0/1", _set("policy", 2, unit=TREATED_UNIT, year=2004), {}, errors.TreatmentError,
     f"unit '{TREATED_UNIT}' has the value 2"),
    ("treatment switches off", _set("policy", 0, unit=TREATED_UNIT, year=2005), {},
     errors.NonAbsorbingTreatmentError, f"switches off for 1 unit(s) (first '{TREATED_UNIT}')"),
    ("treatment is the outcome", None, {"outcomes": ["policy"]}, errors.TreatmentError,
     "treatment 'policy' is also listed as an outcome; drop it from --outcome"),
    ("treatment is a control", None, {"controls": ["pop", "policy"]}, errors.TreatmentError,
     "treatment 'policy' is also listed as a control; drop it from --controls"),
    ("one cluster", lambda d: d.with_columns(one=pl.lit(1)), {"cluster": "one"}, errors.VcovError,
     "cluster column 'one' has 1 cluster"),
    ("one row", lambda d: d.head(1), {}, errors.PanelError, "the panel has 1 row(s)"),
    ("one period", lambda d: d.filter(pl.col("yr") == 2004), {}, errors.PanelError, "1 period(s) (yr)"),
    ("draws 0", None, {"draws": 0}, errors.ArgumentError, "draws (--draws) must be a positive integer, got 0"),
    ("boot draws negative", None, {"boot_draws": -1}, errors.ArgumentError,
     "boot_draws (--boot-draws) must be a positive integer, got -1"),
    ("power draws zero", None, {"power_draws": 0}, errors.ArgumentError,
     "power_draws (--power-draws) must be a positive integer, got 0"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_battery_refuses_bad_input_before_any_section(case, tmp_path, monkeypatch):
    _, change, over, cls, text = case
    bm = sys.modules["staggerlab.battery"]  # the package's `battery` attribute is the function
    ran = []
    monkeypatch.setattr(bm, "SECTIONS", [lambda *a: ran.append(1)])
    frame = CLEAN if change is None else change(CLEAN)
    with pytest.raises(cls) as exc:
        battery(frame, spec=BatterySpec(**{**BASE, **over, "out": str(tmp_path / "r")}))
    assert text in str(exc.value)
    assert "np.int64" not in str(exc.value)
    assert not ran


def _cli_args(path: str, over: dict, out: str) -> list[str]:
    spec = {**BASE, **over}
    args = ["battery", "--data", path, "--unit", "county", "--time", "yr", "--treat", "policy",
            "--controls", ",".join(spec["controls"]), "--draws", str(spec["draws"]), "--boot-draws",
            str(spec["boot_draws"]), "--power-draws", str(spec["power_draws"]), "--n-jobs", "1", "--no-alternatives",
            "--out", out, "-q"]
    for y in spec["outcomes"]:
        args += ["--outcome", y]
    if "cluster" in over:
        args += ["--cluster", over["cluster"]]
    for g in over.get("splits", []):
        args += ["--split", g]
    return args


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cli_bad_input_exit_2_one_line(case, tmp_path, capsys):
    _, change, over, _, text = case
    path = tmp_path / "panel.csv"
    (CLEAN if change is None else change(CLEAN)).write_csv(path)
    rc = main(_cli_args(str(path), over, str(tmp_path / "r")))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("staggerlab: error:"), err
    assert text in err[0]
    assert not (tmp_path / "r" / "report.md").exists()


def test_cli_empty_file(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert main(_cli_args(str(path), {}, str(tmp_path / "r"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["staggerlab: error: data file empty.csv is empty (0 bytes); give a file with a header and rows"]


def test_cli_header_only_file_names_the_file(tmp_path, capsys):
    path = tmp_path / "head.csv"
    path.write_text("county,yr,policy,emp,pop,wage\n")
    assert main(_cli_args(str(path), {}, str(tmp_path / "r"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "head.csv has column names but no rows" in err[0]


@pytest.mark.parametrize(
    "text, message",
    [
        ('[battery]\noutcomes = ["emp"\n', "spec.toml is not valid TOML"),
        ('[battery]\noutcome = "emp"\n', "unknown option 'outcome' in spec file spec.toml; valid options: data, unit"),
        ('[battery]\ndraws = "ten"\n', "option 'draws' in spec.toml must be an integer, got 'ten'"),
        ('[battery]\ncontrols = "pop"\n', "option 'controls' in spec.toml must be a list of column names"),
    ],
    ids=["malformed", "unknown key", "wrong type", "list expected"],
)
def test_cli_bad_spec_file(tmp_path, capsys, text, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    with pytest.raises(errors.SpecError, match="spec.toml"):
        BatterySpec.from_toml(spec)
    assert main(["battery", "--spec", str(spec), "--out", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_console_script_bad_input_no_traceback(tmp_path):
    """The real command in a fresh interpreter: exit 2, one line, no traceback."""
    path = tmp_path / "panel.csv"
    _set("policy", 0, unit=TREATED_UNIT, year=2005)(CLEAN).write_csv(path)
    r = subprocess.run([sys.executable, "-m", "staggerlab.cli", *_cli_args(str(path), {}, str(tmp_path / "r"))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "staggerlab: error: treatment 'policy' switches off for 1 unit(s) (first 'c01'); adoption times need an "
        "absorbing (staggered) treatment: pass a cohort column of unit-level adoption periods instead"]


# ------------------------------------------------------------------ weights
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_zero_or_negative_weights_are_a_weights_error(value):
    bad = _set("w", value, unit="c05")(CLEAN)
    with pytest.raises(errors.WeightsError, match=r"weights column 'w' has 5 zero or negative value\(s\)") as exc:
        sl.feols("emp ~ policy | county + yr", bad, weights="w")
    assert not isinstance(exc.value, errors.MissingValueError)


# -------------------------------------------------------------------- level
def _level_calls():
    fit = sl.feols("emp ~ policy + pop | county + yr", CLEAN, vcov={"CRV1": "county"})
    es = sl.event_study(CLEAN, y="emp", unit="county", time="yr", treat="policy", method="twfe")
    from staggerlab.inference.resampling.placebo import clopper_pearson

    return {
        "feols.tidy": lambda: fit.tidy(level=95),
        "feols.confint": lambda: fit.confint(level=95),
        "placebo": lambda: sl.placebo(fit, param="policy", draws=9, level=95),
        "wildboot": lambda: sl.wildboot(fit, param="policy", draws=9, level=95),
        "event_study.tidy": lambda: es.tidy(level=95),
        "aggregate.tidy": lambda: es.aggregate("simple").tidy(level=95),
        "event_study.plot": lambda: es.plot(level=95),
        "cs": lambda: sl.cs(CLEAN, y="emp", unit="county", time="yr", treat="policy", level=95),
        "honest": lambda: sl.honest(es, Mbar=[1.0], level=95),
        "montecarlo": lambda: sl.montecarlo(sl.simulate.dgp("homogeneous", n_units=20), reps=1, level=95),
        "clopper_pearson": lambda: clopper_pearson(1, 10, level=95),
    }


@pytest.mark.parametrize("name", list(_level_calls()))
@pytest.mark.parametrize("level", [95, 0.0, 1.0, -0.5])
def test_level_outside_unit_interval_refused_everywhere(name, level):
    call = _level_calls()[name]
    with pytest.raises(errors.ArgumentError, match=r"level must be in \(0, 1\), got"):
        call()


def test_cli_missing_spec_file(tmp_path, capsys):
    assert main(["battery", "--spec", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"staggerlab: error: no such spec file: {tmp_path / 'nope.toml'}"]


_KW = dict(y="emp", unit="county", time="yr", treat="policy")
_ADOPTION_USERS = {
    "placebo": lambda d: sl.placebo(sl.feols("emp ~ policy | county + yr", d, vcov={"CRV1": "county"}),
                                    param="policy", draws=9),
    "event_study": lambda d: sl.event_study(d, **_KW),
    "cs": lambda d: sl.cs(d, **_KW),
    "bacon": lambda d: sl.bacon(d, **_KW),
    "twfe_weights": lambda d: sl.twfe_weights(d, **_KW),
}


@pytest.mark.parametrize("name", list(_ADOPTION_USERS))
def test_treatment_errors_name_units_by_label_in_every_api(name):
    """Units with string labels: the message names one of the offending units by its label."""
    bad = _set("policy", 2, unit=TREATED_UNIT, year=2004)(CLEAN)
    bad = _set("policy", 2, unit="c12", year=2005)(bad)
    with pytest.raises(errors.TreatmentError, match=r"must be 0/1") as exc:
        _ADOPTION_USERS[name](bad)
    msg = str(exc.value)
    assert f"unit '{TREATED_UNIT}'" in msg or "unit 'c12'" in msg
    assert "np." not in msg


@pytest.mark.parametrize("dtype", [pl.String, pl.Float64, pl.Null], ids=["text (CSV)", "float NaN", "null"])
@pytest.mark.parametrize("col, fml", [("emp", "emp ~ policy | county + yr"), ("pop", "emp ~ policy + pop | county + yr")])
def test_feols_names_an_entirely_missing_column(col, fml, dtype):
    value = float("nan") if dtype == pl.Float64 else None
    bad = CLEAN.with_columns(pl.lit(value, dtype=dtype).alias(col))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.MissingValueWarning)
        with pytest.raises(errors.MissingValueError, match=f"'{col}'.* (entirely|all) missing"):
            sl.feols(fml, bad)


def test_panel_names_an_entirely_missing_id_column():
    bad = CLEAN.with_columns(pl.lit(None, dtype=pl.Int64).alias("yr"))
    with pytest.warns(sl.errors.MissingValueWarning):
        with pytest.raises(errors.MissingValueError, match=r"column 'yr' is all missing"):
            sl.Panel.from_frame(bad, unit="county", time="yr")
