"""staggerlab: fast, exact inference batteries for TWFE and staggered DID designs."""

from __future__ import annotations

from . import errors
from .battery import BatterySpec, battery
from .inference import Feols, FeolsMulti, feols
from .inference.bacon import bacon
from .inference.cs import callaway_santanna, cs
from .inference.dcdh import twfe_weights
from .inference.event_study import EventStudyResult, event_study
from .inference.heterogeneity import split_difference
from .inference.honest import honest
from .inference.montecarlo import MonteCarloResult, montecarlo
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
    "montecarlo",
    "MonteCarloResult",
    "battery",
    "BatterySpec",
    "errors",
    "__version__",
]
