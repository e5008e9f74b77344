"""Estimators and inference procedures built on the shared fitted design."""

from .regression.feols import Feols, FeolsMulti, feols

__all__ = ["feols", "Feols", "FeolsMulti"]
