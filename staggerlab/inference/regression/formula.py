"""The fixest one-part-plus-FE formula subset: ``y1 + y2 ~ x1 + x2 | fe1 + fe2``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import FormulaError

__all__ = ["Formula", "parse_formula"]

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class Formula:
    """A parsed formula."""

    depvars: tuple[str, ...]
    regressors: tuple[str, ...]
    fixef: tuple[str, ...]
    intercept: bool

    def with_depvar(self, y: str) -> str:
        """The single-outcome formula string for outcome ``y``."""
        rhs = " + ".join(self.regressors) if self.regressors else "1"
        fe = f" | {' + '.join(self.fixef)}" if self.fixef else ""
        return f"{y} ~ {rhs}{fe}"


def _terms(part: str, where: str, fml: str) -> list[str]:
    terms = [t.strip() for t in part.split("+")]
    for t in terms:
        if not t:
            raise FormulaError(f"empty term in the {where} of {fml!r}")
        if t not in ("0", "1", "-1") and not _NAME.match(t):
            raise FormulaError(
                f"term {t!r} in {fml!r} is not a column name; staggerlab formulas take "
                "plain columns 'y ~ x1 + x2 | fe1 + fe2' (build interactions as columns)"
            )
    return terms


def parse_formula(fml: str) -> Formula:
    """Parse ``"y ~ x1 + x2 | fe1 + fe2"`` (several outcomes joined by ``+``).

    Raises
    ------
    FormulaError
        On anything outside that subset.
    """
    if not isinstance(fml, str) or fml.count("~") != 1:
        raise FormulaError(f"formula {fml!r} must have exactly one '~', as in 'y ~ x | fe1 + fe2'")
    lhs, rhs = fml.split("~")
    parts = rhs.split("|")
    if len(parts) > 2:
        raise FormulaError(f"formula {fml!r} has more than one '|'; IV parts are not supported by feols")
    depvars = _terms(lhs, "outcome", fml)
    regs = _terms(parts[0], "regressors", fml)
    fixef = _terms(parts[1], "fixed effects", fml) if len(parts) == 2 else []
    if any(t in ("0", "1", "-1") for t in fixef):
        raise FormulaError(f"fixed-effects part of {fml!r} must list columns")
    intercept = not fixef and "0" not in regs and "-1" not in regs
    regs = [r for r in regs if r not in ("0", "1", "-1")]
    for group, what in ((depvars, "outcome"), (regs, "regressor"), (fixef, "fixed effect")):
        if len(set(group)) != len(group):
            raise FormulaError(f"a {what} appears twice in {fml!r}")
    if not regs and not intercept:
        raise FormulaError(f"formula {fml!r} has no regressor to estimate")
    return Formula(tuple(depvars), tuple(regs), tuple(fixef), intercept)
