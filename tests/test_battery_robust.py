"""The battery's robust-estimators table: LP-DiD, stacked DiD and ETWFE rows
equal direct ``event_study`` calls, and an unestimable method is said, not NaN."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import staggerlab as sl
from staggerlab.battery import BatterySpec, SharedFits, section_robust

EXACT = 1e-10  # same computation, another route


@pytest.mark.parametrize("periods,stack_ok", [pytest.param(8, False, marks=pytest.mark.slow), (12, True)])
def test_robust_table_lists_new_estimators(tmp_path, periods, stack_ok):
    df = sl.simulate.staggered(150, periods, n_controls=2, seed=7, effect=0.5)
    df = df.with_columns(_cohort=df["cohort"])
    (tmp_path / "figures").mkdir()
    spec = BatterySpec(data="x.csv", unit="unit", time="time", outcomes=["y"], controls=["x1", "x2"],
                       cluster="unit", out=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sec = section_robust(df, spec, "treat", tmp_path, SharedFits(df, spec, "treat"))
    labels = sec.tables["robust"]["estimator"].to_list()
    assert any("LP-DiD" in s for s in labels) and any("Extended TWFE" in s for s in labels)
    assert any("Stacked" in s for s in labels) == stack_ok
    for method in ("lpdid", "etwfe", *(["stacked"] if stack_ok else [])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agg = sl.event_study(df, y="y", unit="unit", time="time", cohort="cohort", controls=["x1", "x2"],
                                 window=spec.window, method=method).aggregate("simple")
        assert sec.numbers[method]["estimate"] == pytest.approx(agg.estimate, rel=EXACT)
        assert sec.numbers[method]["se"] == pytest.approx(agg.se, rel=EXACT)
    assert np.isfinite(sec.tables["robust"]["estimate"].to_numpy()).all()
    if not stack_ok:
        assert "Stacked DiD (clean controls, corrective weights): not estimable" in sec.text
