"""Validation of the options several inference procedures share.

``alternative``, ``level`` and ``draws`` mean the same thing in every procedure,
so one check (one error class, one wording) serves them all; ``seed`` is checked
where it is resolved, in :mod:`staggerlab._seed`.
"""

from __future__ import annotations

import numbers

from .errors import ArgumentError

ALTERNATIVES = ("two-sided", "greater", "less")


def check_alternative(alternative: str, allowed: tuple[str, ...] = ALTERNATIVES) -> str:
    """Return ``alternative`` if it is one of ``allowed``, else raise :class:`ArgumentError`."""
    if alternative not in allowed:
        raise ArgumentError(f"alternative must be one of {allowed}, got {alternative!r}")
    return alternative


def check_level(level: float) -> float:
    """Return ``level`` as a float if it lies in (0, 1), else raise :class:`ArgumentError`."""
    if not (isinstance(level, numbers.Real) and 0.0 < level < 1.0):
        raise ArgumentError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def check_draws(draws: int, name: str = "draws") -> int:
    """Return ``draws`` as an int if it is a positive integer, else raise :class:`ArgumentError`."""
    if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
        raise ArgumentError(f"{name} must be a positive integer, got {draws!r}")
    return int(draws)


def alpha_of(level: float) -> float:
    """``1 - level`` for the procedures whose algebra is written in the test size.

    Rounded to 12 decimals so that ``level=0.95`` gives exactly the ``0.05``
    that p-values (ratios of counts) are compared with: ``1 - 0.95`` is
    ``0.05000000000000004`` in binary floating point.
    """
    return round(1.0 - check_level(level), 12)
