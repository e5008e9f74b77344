"""The battery's report writer: Markdown, JSON and parquet from a ``BatteryResult``."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from .battery import BatteryResult, BatterySpec

__all__ = ["md_table", "write_report", "strict_json"]


def md_table(df: pl.DataFrame, floatfmt: str = "{:.4f}") -> str:
    """A polars frame as a Markdown table."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else floatfmt.format(v)
        return "" if v is None else str(v)

    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join([head, sep, *body])


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for p in ("staggerlab", "numpy", "numba", "polars", "scipy", "joblib", "pyfixest", "matplotlib"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "not installed"
    return out


def write_report(result: BatteryResult, frame: pl.DataFrame, source: str, seconds: float) -> None:
    """Write ``report.md``, ``results.json`` and one parquet file per table into ``result.out``."""
    spec, out = result.spec, result.out
    n_units = frame[spec.unit].n_unique()
    head = [
        "# staggerlab robustness battery",
        "",
        f"Data: {source}: {frame.height:,} rows, {n_units:,} units ({spec.unit}) x "
        f"{frame[spec.time].n_unique()} periods ({spec.time}). Outcomes: {', '.join(spec.outcomes)}. "
        f"Treatment: `{spec.treat or spec.cohort}`. Seed {spec.seed}. Total run time {seconds:.1f} s.",
        "",
    ]
    main = next((s.numbers.get("main") for s in result.sections if s.key == "baseline"), None)
    if main:
        # the yardstick the sections' own N (rows, units) are read against
        head += [f"Baseline sample (section 1, `{spec.outcomes[0]}` with the controls): {main['nobs']:,} rows; "
                 "sections that use another sample say so.", ""]
    if result.interrupted:
        head += [f"**Interrupted** (Ctrl-C) during section '{result.interrupted}': only the sections that "
                 "finished before it are below.", ""]
    failed = [s.title for s in result.sections if s.error]
    if failed:
        head += [f"**Sections that failed** (their error is in the section): {', '.join(failed)}.", ""]
    body = []
    for s in result.sections:
        body += [f"## {s.title}", "", s.text, ""]
        for fig in s.figures:
            body += [f"![{s.title}](figures/{fig})", ""]
        for name, tab in s.tables.items():
            tab.write_parquet(out / f"{name}.parquet")
    timing = result.timings().rename({"seconds": "wall seconds", "compile_seconds": "numba compile seconds"})
    tail = ["## Reproducibility", "", "Spec:", "", "```toml", _toml(spec), "```", "",
            "Timing (wall seconds per section, and the seconds of it numba spent compiling; near zero once "
            "the compiled kernels are cached; `second`: the section ran in the battery's second process, "
            "beside the others, so the sections' seconds add up to more than the run took):", "", md_table(timing, "{:.2f}"), "", "Versions:", "",
            md_table(pl.DataFrame({"package": list(_versions()), "version": list(_versions().values())})), ""]
    (out / "report.md").write_text("\n".join(head + body + tail))
    results = {
        "spec": asdict(spec),
        "versions": _versions(),
        "data": {"source": source, "rows": frame.height, "units": n_units},
        "sections": {s.key: {"title": s.title, "seconds": s.seconds, "compile_seconds": s.compile_seconds,
                             "process": s.process, **s.numbers} for s in result.sections},
    }
    # strict JSON: a number that could not be computed is null, never NaN/Infinity
    (out / "results.json").write_text(json.dumps(strict_json(results), indent=2, allow_nan=False))


def strict_json(o: Any) -> Any:
    """``o`` with numpy scalars/arrays and tuples as plain JSON values, and every
    non-finite float (NaN, +-inf) as ``None``, so ``json.dumps(..., allow_nan=False)`` holds."""
    if isinstance(o, dict):
        return {str(k): strict_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [strict_json(v) for v in o]
    if isinstance(o, np.ndarray):
        return strict_json(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not np.isfinite(o):
        return None
    if o is None or isinstance(o, (str, int, float, bool)):
        return o
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _toml(spec: BatterySpec) -> str:
    lines = ["[battery]"]
    for k, v in asdict(spec).items():
        if v is None:
            continue
        lines.append(f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}")
    return "\n".join(lines)
