"""The one results protocol: every result is a Result; every event-study
method aggregates into an Aggregate and tests pre-trends with a PretrendTest."""

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.inference.did.event_study import event_study
from staggerlab.inference.results import Aggregate, PretrendTest, Result


def test_every_result_class_is_a_result():
    from staggerlab.inference.did.bacon import BaconResult
    from staggerlab.inference.did.cs import CSAggregate, CSResult
    from staggerlab.inference.did.dcdh import TwfeWeightsResult
    from staggerlab.inference.did.event_study import EventStudyResult
    from staggerlab.inference.did.honest import HonestResult
    from staggerlab.inference.regression.feiv import FeivResult
    from staggerlab.inference.regression.feols import Feols, FeolsMulti
    from staggerlab.inference.resampling.placebo import PlaceboResult, PlaceboTimingResult
    from staggerlab.inference.resampling.split import SplitDifferenceResult
    from staggerlab.inference.resampling.wildboot import WildBootResult
    from staggerlab.inference.selection.dml import DmlResult
    from staggerlab.inference.selection.ebalance import EntropyBalanceResult
    from staggerlab.inference.selection.entropy_index import EntropyIndexResult
    from staggerlab.inference.selection.heckman import HeckmanResult, ProbitResult
    from staggerlab.inference.selection.psm import PsmDidResult
    from staggerlab.inference.studies.montecarlo import MonteCarloResult

    for cls in (BaconResult, CSAggregate, CSResult, TwfeWeightsResult, EventStudyResult, HonestResult, FeivResult,
                Feols, FeolsMulti, PlaceboResult, PlaceboTimingResult, SplitDifferenceResult, WildBootResult,
                DmlResult, EntropyBalanceResult, EntropyIndexResult, HeckmanResult, ProbitResult, PsmDidResult,
                MonteCarloResult, Aggregate, PretrendTest):
        assert issubclass(cls, Result), cls


@pytest.mark.parametrize("method", ["twfe", "sunab", "imputation", "cs"])
def test_aggregate_and_pretrend_types_are_shared(method):
    df = sl.simulate.staggered(120, 8, seed=4)
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=(-3, 3), method=method)
    agg = es.aggregate("simple")
    assert isinstance(agg, Aggregate)
    assert np.isfinite(agg.estimate) and agg.se > 0
    assert isinstance(agg.tidy(), pl.DataFrame) and isinstance(agg.summary(), str)
    pt = es.pretrend_test()
    assert isinstance(pt, PretrendTest)
    assert pt["pvalue"] == pt.pvalue and 0 <= pt.pvalue <= 1
    assert pt.tidy().columns == ["statistic", "wald", "df", "df2", "pvalue"]
    assert isinstance(es, Result) and isinstance(es.summary(), str)


def test_results_without_a_figure_say_so():
    fit = sl.feols("y ~ treat | unit + time", sl.simulate.staggered(40, 5, seed=1))
    with pytest.raises(NotImplementedError, match="has no figure"):
        fit.plot()


def test_no_figure_code_outside_plots():
    from pathlib import Path

    root = Path(sl.__file__).parent
    for f in root.rglob("*.py"):
        if "plots" in f.relative_to(root).parts:
            continue
        text = f.read_text()
        assert "import matplotlib" not in text and "plt." not in text, f"figure code in {f.relative_to(root)}"
