"""Helpers for the executed pages: embed a matplotlib figure, time a page."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import matplotlib.pyplot as plt

_START: dict[str, float] = {}


def figure(obj: Any) -> str:
    """``obj`` (a Figure, or anything with ``.figure``) as an inline PNG (HTML).

    The helpers return text for the page's own ``print``: markdown-exec
    captures the ``print`` of the code block, not this module's.
    """
    fig = obj if hasattr(obj, "savefig") else obj.figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def start(page: str) -> None:
    """Start the clock of ``page``."""
    _START[page] = time.perf_counter()


def elapsed(page: str) -> str:
    """How long ``page`` took to run, since :func:`start`."""
    return f"*This page's code ran in {time.perf_counter() - _START[page]:.1f} s when the site was built.*"


def image(path: str) -> str:
    """A PNG file as an inline image (HTML)."""
    with open(path, "rb") as fh:
        return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(fh.read()).decode()}"/>'
