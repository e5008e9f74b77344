"""staggerlab: fast, exact inference batteries for TWFE and staggered DID designs."""

from __future__ import annotations

from . import errors
from .battery import BatterySpec, battery
from .inference import Feols, FeolsMulti, feols
from .inference.bacon import bacon
from .inference.cs import callaway_santanna, cs
from .inference.dcdh import twfe_weights
from .inference.dml import DmlResult, dml
from .inference.ebalance import EntropyBalanceResult, entropy_balance
from .inference.entropy_index import EntropyIndexResult, entropy_index
from .inference.event_study import EventStudyResult, event_study
from .inference.heterogeneity import split_difference
from .inference.heckman import HeckmanResult, heckman
from .inference.honest import honest
from .inference.iv import FeivResult, feiv
from .inference.matching import PsmDidResult, psm_did
from .inference.montecarlo import MonteCarloResult, montecarlo
from .inference.placebo import PlaceboResult, placebo, placebo_timing
from .inference.wildboot import WildBootResult, wildboot
from .panels import Panel, read_panel, simulate

__version__ = "0.1.0"

__all__ = [
    "Panel",
    "read_panel",
    "simulate",
    "feols",
    "Feols",
    "FeolsMulti",
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
