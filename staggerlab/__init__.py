"""staggerlab: fast, exact inference batteries for TWFE and staggered DID designs.

The public names are imported on first use (``sl.feols`` loads the regression
core, ``sl.battery`` everything): ``import staggerlab`` itself loads no numba,
polars or scipy, so a command or a worker that needs one estimator starts fast.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from . import errors

if TYPE_CHECKING:  # the eager imports, for type checkers and IDEs
    from .battery import BatterySpec, battery
    from .inference import Feols, FeolsMulti, feols
    from .inference.did.bacon import bacon
    from .inference.did.cs import callaway_santanna, cs
    from .inference.did.dcdh import twfe_weights
    from .inference.did.event_study import EventStudyResult, event_study
    from .inference.did.honest import honest
    from .inference.did.pretrend_power import PretrendPower, pretrend_power
    from .inference.distributed.partitions import repartition_by_unit
    from .inference.regression.feiv import FeivResult, IVFormula, feiv
    from .inference.regression.formula import Formula
    from .inference.resampling.es_wildboot import EventStudyBootResult
    from .inference.resampling.placebo import PlaceboResult, placebo, placebo_timing
    from .inference.resampling.split import split_difference
    from .inference.resampling.wildboot import WildBootResult, wildboot
    from .inference.selection.dml import DmlResult, dml
    from .inference.selection.ebalance import EntropyBalanceResult, entropy_balance
    from .inference.selection.entropy_index import EntropyIndexResult, entropy_index
    from .inference.selection.heckman import HeckmanResult, heckman
    from .inference.selection.psm import PsmDidResult, psm_did
    from .inference.studies.montecarlo import MonteCarloResult, montecarlo
    from .inference.studies.power import PowerResult, power
    from .panels import Panel, read_panel, simulate

__version__ = "0.1.0"

#: public name -> the module that defines it (relative to this package)
_LAZY = {
    "BatterySpec": ".battery",
    "Feols": ".inference",
    "FeolsMulti": ".inference",
    "feols": ".inference",
    "bacon": ".inference.did.bacon",
    "callaway_santanna": ".inference.did.cs",
    "cs": ".inference.did.cs",
    "twfe_weights": ".inference.did.dcdh",
    "EventStudyResult": ".inference.did.event_study",
    "event_study": ".inference.did.event_study",
    "honest": ".inference.did.honest",
    "repartition_by_unit": ".inference.distributed.partitions",
    "pretrend_power": ".inference.did.pretrend_power",
    "PretrendPower": ".inference.did.pretrend_power",
    "FeivResult": ".inference.regression.feiv",
    "IVFormula": ".inference.regression.feiv",
    "feiv": ".inference.regression.feiv",
    "Formula": ".inference.regression.formula",
    "PlaceboResult": ".inference.resampling.placebo",
    "placebo": ".inference.resampling.placebo",
    "placebo_timing": ".inference.resampling.placebo",
    "split_difference": ".inference.resampling.split",
    "WildBootResult": ".inference.resampling.wildboot",
    "wildboot": ".inference.resampling.wildboot",
    "EventStudyBootResult": ".inference.resampling.es_wildboot",
    "DmlResult": ".inference.selection.dml",
    "dml": ".inference.selection.dml",
    "EntropyBalanceResult": ".inference.selection.ebalance",
    "entropy_balance": ".inference.selection.ebalance",
    "EntropyIndexResult": ".inference.selection.entropy_index",
    "entropy_index": ".inference.selection.entropy_index",
    "HeckmanResult": ".inference.selection.heckman",
    "heckman": ".inference.selection.heckman",
    "PsmDidResult": ".inference.selection.psm",
    "psm_did": ".inference.selection.psm",
    "MonteCarloResult": ".inference.studies.montecarlo",
    "montecarlo": ".inference.studies.montecarlo",
    "PowerResult": ".inference.studies.power",
    "power": ".inference.studies.power",
    "Panel": ".panels",
    "read_panel": ".panels",
    "simulate": ".panels",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"battery"})


class _Package(types.ModuleType):
    """``staggerlab.battery`` names both a submodule and the public function.

    Importing the submodule assigns it to the package attribute, which would
    hide the function from ``sl.battery``; a property keeps serving the function
    and ignores that assignment.
    """

    @property
    def battery(self) -> Any:
        from .battery import battery

        return battery

    @battery.setter
    def battery(self, value: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package

__all__ = [
    "Panel",
    "read_panel",
    "simulate",
    "feols",
    "Feols",
    "FeolsMulti",
    "Formula",
    "IVFormula",
    "repartition_by_unit",
    "event_study",
    "EventStudyResult",
    "cs",
    "callaway_santanna",
    "bacon",
    "twfe_weights",
    "honest",
    "pretrend_power",
    "PretrendPower",
    "split_difference",
    "placebo",
    "placebo_timing",
    "PlaceboResult",
    "wildboot",
    "WildBootResult",
    "EventStudyBootResult",
    "feiv",
    "FeivResult",
    "heckman",
    "HeckmanResult",
    "psm_did",
    "PsmDidResult",
    "entropy_balance",
    "EntropyBalanceResult",
    "dml",
    "DmlResult",
    "entropy_index",
    "EntropyIndexResult",
    "montecarlo",
    "MonteCarloResult",
    "power",
    "PowerResult",
    "battery",
    "BatterySpec",
    "errors",
    "__version__",
]
