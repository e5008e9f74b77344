"""staggerlab: fast, exact inference batteries for TWFE and staggered DID designs."""

from __future__ import annotations

from . import errors
from .battery import BatterySpec, battery
from .inference import Feols, FeolsMulti, feols
from .inference.did.bacon import bacon
from .inference.did.cs import callaway_santanna, cs
from .inference.did.dcdh import twfe_weights
from .inference.did.event_study import EventStudyResult, event_study
from .inference.did.honest import honest
from .inference.distributed.partitions import repartition_by_unit
from .inference.regression.feiv import FeivResult, feiv
from .inference.resampling.placebo import PlaceboResult, placebo, placebo_timing
from .inference.resampling.split import split_difference
from .inference.resampling.wildboot import WildBootResult, wildboot
from .inference.selection.dml import DmlResult, dml
from .inference.selection.ebalance import EntropyBalanceResult, entropy_balance
from .inference.selection.entropy_index import EntropyIndexResult, entropy_index
from .inference.selection.heckman import HeckmanResult, heckman
from .inference.selection.psm import PsmDidResult, psm_did
from .inference.studies.montecarlo import MonteCarloResult, montecarlo
from .panels import Panel, read_panel, simulate

__version__ = "0.1.0"

__all__ = [
    "Panel",
    "read_panel",
    "simulate",
    "feols",
    "Feols",
    "FeolsMulti",
    "repartition_by_unit",
    "event_study",
    "EventStudyResult",
    "cs",
    "callaway_santanna",
    "bacon",
    "twfe_weights",
    "honest",
    "split_difference",
    "placebo",
    "placebo_timing",
    "PlaceboResult",
    "wildboot",
    "WildBootResult",
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
    "battery",
    "BatterySpec",
    "errors",
    "__version__",
]
