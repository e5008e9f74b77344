"""MkDocs hooks: the API reference lists every public ``staggerlab`` name
(``staggerlab.__all__``), so a new public function appears without editing
the page; worked studies import :mod:`docs.show` to embed figures."""

from __future__ import annotations

import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- api-reference -->"


def on_startup(**kwargs):
    # the studies run in-process (markdown-exec): make `docs.show` and the
    # package in this checkout importable, and keep figures off any display
    sys.path.insert(0, str(ROOT))
    import matplotlib

    matplotlib.use("Agg")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARK not in markdown:
        return markdown
    import staggerlab

    blocks = []
    for name in staggerlab.__all__:
        if name == "__version__":
            continue
        obj = getattr(staggerlab, name)
        # the defining module's path: the package's public names are loaded lazily
        path = obj.__name__ if isinstance(obj, types.ModuleType) else f"{obj.__module__}.{obj.__qualname__}"
        blocks.append(f"::: {path}")
    return markdown.replace(MARK, "\n\n".join(blocks))
