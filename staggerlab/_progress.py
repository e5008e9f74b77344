"""Progress bars on interactive terminals only (quiet in CI and pipes)."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")

__all__ = ["progress"]


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str | None = None, enabled: bool | None = None
) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar (elapsed/remaining time) when ``enabled``.

    ``enabled=None`` means: only if stderr is a terminal.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)
