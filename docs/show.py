"""Helpers for the executed pages: embed a matplotlib figure, time a page."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import matplotlib.pyplot as plt

_START: dict[str, float] = {}


def figure(obj: Any) -> None:
    """Print ``obj`` (a Figure, or anything with ``.figure``) as an inline PNG."""
    fig = obj if hasattr(obj, "savefig") else obj.figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>')


def start(page: str) -> None:
    """Start the clock of ``page``."""
    _START[page] = time.perf_counter()


def elapsed(page: str) -> None:
    """Print how long ``page`` took to run, since :func:`start`."""
    print(f"*This page's code ran in {time.perf_counter() - _START[page]:.1f} s when the site was built.*")


def image(path: str) -> None:
    """Print a PNG file as an inline image."""
    with open(path, "rb") as fh:
        print(f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(fh.read()).decode()}"/>')
