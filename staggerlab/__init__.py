"""staggerlab: fast, exact inference batteries for TWFE and staggered DID designs."""

from __future__ import annotations

from . import errors
from .inference import Feols, FeolsMulti, feols
from .panels import Panel, read_panel, simulate

__version__ = "0.1.0"

__all__ = ["Panel", "read_panel", "simulate", "feols", "Feols", "FeolsMulti", "errors", "__version__"]
