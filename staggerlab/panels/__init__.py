"""Panels: validated frames with factorized ids, I/O, synthetic DGPs."""

from . import simulate
from .io import read_panel
from .panel import Panel

__all__ = ["Panel", "read_panel", "simulate"]
