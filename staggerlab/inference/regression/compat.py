"""Accept pyfixest ``Feols`` fits wherever a staggerlab fit is expected."""

from __future__ import annotations

from typing import Any

from ...errors import ArgumentTypeError
from .feols import Feols, feols

__all__ = ["as_feols"]


def as_feols(fit: Any) -> Feols:
    """Return ``fit`` as a staggerlab :class:`Feols`.

    A pyfixest ``Feols`` is refitted by staggerlab from its formula, data,
    weights and vcov (the numbers agree to machine precision); a staggerlab fit
    is returned as is.
    """
    if isinstance(fit, Feols):
        return fit
    mod = type(fit).__module__
    if mod.startswith("pyfixest") and hasattr(fit, "_fml"):
        detail = getattr(fit, "_vcov_type_detail", "iid")
        if detail in ("CRV1", "CRV3"):
            cl = fit._clustervar
            cl = cl if isinstance(cl, str) else "+".join(cl)
            vcov: Any = {detail: cl}
        elif detail in ("hetero", "HC1"):
            vcov = "hetero"
        else:
            vcov = "iid"
        out = feols(fit._fml, fit._data, vcov=vcov, weights=getattr(fit, "_weights_name", None))
        if not isinstance(out, Feols):  # pragma: no cover - one formula, one outcome
            raise ArgumentTypeError("expected a single-outcome pyfixest fit")
        return out
    raise ArgumentTypeError(f"expected a staggerlab or pyfixest Feols fit, got {type(fit).__name__}")
