"""The TWFE probability limit of a drawn panel: the fit behind
``Truth.twfe_plim``, kept here so that the data layer (``panels``) fits
nothing."""

from __future__ import annotations

import warnings

from ...panels.dgp import Truth
from ..regression.feols import feols
from ..regression.formula import Formula

__all__ = ["twfe_plim"]


def twfe_plim(truth: Truth) -> float:
    """``E[beta_TWFE | design]`` of a draw, computed once and recorded in ``truth``.

    ``tau`` regressed on ``treat`` (plus the draw's covariates) with unit and
    period fixed effects on the realized sample, singletons dropped as
    :func:`feols` does.

    Parameters
    ----------
    truth : Truth
        The truth of one draw (``DGP.draw``).

    Returns
    -------
    float
    """
    if truth.known_twfe_plim is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = feols(Formula.of("tau", ["treat", *truth.covariates], ["unit", "time"]), truth.frame)
        truth.record_twfe_plim(float(fit.coef()["treat"]))
    return truth.twfe_plim
