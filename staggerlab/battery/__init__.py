"""``staggerlab battery``: the reference study's robustness battery in one call.

Each section is a function of the validated options and the data; it returns
a ``Section`` (Markdown text, tables, figures, numbers for results.json). The
report is written as ``report.md`` + ``figures/*.png`` + ``results.json`` +
one parquet file per table. The sections live in the modules of this package
(``tables``: 1 and 6-8, ``dynamic``: 2-3, ``diagnostics``: 4-5,
``alternatives``: 9, ``power``: 10); this module runs them in order.
"""

from __future__ import annotations

import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import polars as pl

from ..battery_checks import helper_names, validate
from ..errors import ArgumentTypeError, StaggerlabWarning
from ..kernels._jit import limit_threads
from ..panels.io import read_frame
from ..panels.panel import to_polars
from ..panels.simulate import paper_panel
from ..report import write_report
from . import offload, warmup
from .alternatives import section_alternatives
from .diagnostics import section_diagnostics, section_inference
from .dynamic import section_event_study, section_robust
from .power import section_power
from .spec import BatteryResult, BatterySpec, Section
from .tables import (
    SharedFits,
    regression_table,
    section_baseline,
    section_extra_controls,
    section_heterogeneity,
    section_mechanisms,
)
from .timing import CompileClock, compile_clock

__all__ = ["BatterySpec", "battery", "BatteryResult", "Section", "SharedFits", "SECTIONS", "load_data",
           "regression_table", "validate", "section_baseline", "section_event_study", "section_robust",
           "section_diagnostics", "section_inference", "section_extra_controls", "section_mechanisms",
           "section_heterogeneity", "section_alternatives", "section_power", "run_one"]


SECTIONS: list[Callable[[pl.DataFrame, BatterySpec, str, Path, SharedFits], Section]] = [
    section_baseline,
    section_event_study,
    section_robust,
    section_diagnostics,
    section_inference,
    section_extra_controls,
    section_mechanisms,
    section_heterogeneity,
    section_alternatives,
    section_power,
]


_TITLES = {
    "baseline": "1. Baseline TWFE", "event_study": "2. Event study", "robust": "3. Heterogeneity-robust estimators",
    "diagnostics": "4. Diagnostics", "inference": "5. Placebo test and wild cluster bootstrap",
    "extra_controls": "6. Competing policies / extra controls", "mechanisms": "7. Mechanisms",
    "heterogeneity": "8. Heterogeneity", "alternatives": "9. Alternative estimators (Tables 5-6)",
    "power": "10. Design power",
}


def _section_key(fn: Callable[..., Section]) -> str:
    return fn.__name__.removeprefix("section_")


def _failed_section(fn: Callable[..., Section], e: Exception) -> Section:
    """The report entry of a section that raised: its error, in place of its results."""
    key = _section_key(fn)
    error = f"{type(e).__name__}: {e}"
    text = (f"**Failed**: {error}\n\nThe other sections ran; fix the cause and run the battery again to get "
            "this one.")
    return Section(key, _TITLES.get(key, key), text, numbers={"error": {"type": type(e).__name__,
                                                                          "message": str(e)}}, error=error)


def load_data(spec: BatterySpec) -> tuple[pl.DataFrame, str]:
    """The battery's data and a one-line description of where it came from."""
    if spec.data is None:
        return paper_panel(spec.seed), f"built-in synthetic panel calibrated to the study (seed {spec.seed})"
    return read_frame(spec.data), f"`{spec.data}`"


def battery(data: Any = None, *, spec: BatterySpec | None = None, verbose: bool = False, **options: Any) -> BatteryResult:
    """Run the robustness battery and write the report.

    Parameters
    ----------
    data : frame, Panel, path or None
        The panel; ``None`` uses the built-in synthetic panel (``spec.data``
        may also name a file).
    spec : BatterySpec, optional
        All options; keyword ``options`` override its fields.
    verbose : bool
        Print the timing table to stderr, a row per section as it finishes: its wall seconds and
        the seconds of them numba spent compiling (``BatteryResult.timings()`` returns the table).

    Returns
    -------
    BatteryResult
    """
    return _battery(data, spec or BatterySpec(), verbose, options)


def _battery(data: Any, spec: BatterySpec, verbose: bool, options: dict[str, Any]) -> BatteryResult:
    for k, v in options.items():
        if k not in BatterySpec.__dataclass_fields__:
            raise ArgumentTypeError(f"unknown battery option {k!r}")
        setattr(spec, k, v)
    if isinstance(data, (str, Path)):
        spec.data = str(data)
        data = None
    if data is None:
        frame, source = load_data(spec)
    else:
        frame, source = to_polars(data), "the frame passed to `battery()`"
    cohort_col, treat_col = helper_names(frame.columns)  # before validate() adds them
    frame = validate(frame, spec)
    treat = spec.treat if spec.treat and spec.treat in frame.columns else treat_col
    out = Path(spec.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    sections: list[Section] = []
    shared = SharedFits(frame, spec, treat, cohort_col)
    t_all = time.perf_counter()
    child = offload.start(frame, spec, treat, out, cohort_col, SECTIONS)
    # with a second process running sections, a warm-up child would be a third on two cores
    warmer = warmup.start() if child is None else None
    try:
        # while the child runs, each process keeps its kernels to one thread
        with compile_clock() as clock, limit_threads(1) if child else nullcontext():
            if verbose:
                print(f"  {'section':<45} {'seconds':>9} {'compile':>10}", file=sys.stderr)
            # this process's sections first, then the child's (done by then, or nearly)
            here = [i for i, fn in enumerate(SECTIONS) if child is None or _section_key(fn) not in child.futures]
            for i in here + [i for i in range(len(SECTIONS)) if i not in here]:
                if warmer is not None:
                    warmer.at(i)
                _run_section(SECTIONS[i], frame, spec, treat, out, shared, sections, clock, source, t_all,
                             verbose, child)
    finally:
        if warmer is not None:
            warmer.stop()
        if child is not None:
            child.stop()
    result = BatteryResult(spec, _in_order(sections), out)
    write_report(result, frame, source, time.perf_counter() - t_all)
    return result


def _in_order(sections: list[Section]) -> list[Section]:
    """``sections`` in the battery's order (the second process's sections arrive last)."""
    rank = {_section_key(fn): i for i, fn in enumerate(SECTIONS)}
    return sorted(sections, key=lambda s: rank.get(s.key, len(rank)))


def run_one(fn: Callable[..., Section], frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path,
            shared: SharedFits, clock: CompileClock) -> Section:
    """Run one section and time it (wall and numba compile seconds); a section
    that raises gives its failure entry; the package's warnings become its notes."""
    t0, c0 = time.perf_counter(), clock.seconds
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StaggerlabWarning)
        try:
            sec = fn(frame, spec, treat, out, shared)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one section's failure is reported, the others still run
            sec = _failed_section(fn, e)
    sec.seconds = time.perf_counter() - t0
    sec.compile_seconds = clock.seconds - c0
    notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, StaggerlabWarning)))
    if notes:
        sec.text += "\n\nNotes (rows dropped or terms removed):\n\n" + "\n".join(f"- {n}" for n in notes)
        sec.numbers["notes"] = notes
    return sec


def _run_section(fn: Callable[..., Section], frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path,
                 shared: SharedFits, sections: list[Section], clock: CompileClock, source: str, t_all: float,
                 verbose: bool, child: offload.Offload | None) -> None:
    """Run one section here (or take it from the child), append it to ``sections``."""
    key = _section_key(fn)
    try:
        if child is not None and key in child.futures:
            try:
                sec = child.result(key)
            except KeyboardInterrupt:
                raise
            except Exception:  # the child died: run the section here
                sec = run_one(fn, frame, spec, treat, out, shared, clock)
        else:
            sec = run_one(fn, frame, spec, treat, out, shared, clock)
    except KeyboardInterrupt:
        # what finished is worth keeping (the second process's finished sections too): the report of
        # the finished sections, then stop
        if child is not None:
            sections.extend(child.finished())
        write_report(BatteryResult(spec, _in_order(sections), out, _TITLES.get(key, key)), frame, source,
                     time.perf_counter() - t_all)
        raise KeyboardInterrupt(
            f"battery interrupted during section {_TITLES.get(key, key)!r}; the {len(sections)} finished "
            f"section(s) are in {out / 'report.md'}; run the same command again to redo the battery "
            f"(seed {spec.seed} gives the same numbers; fewer --draws / --boot-draws / --power-draws make it shorter)"
        ) from None
    sections.append(sec)
    if verbose:
        status = f"FAILED ({sec.error})" if sec.error else f"{sec.seconds:7.2f} s {sec.compile_seconds:8.2f} s"
        where = "  (second process)" if sec.process != "main" else ""
        print(f"  {sec.title:<45} {status}{where}", file=sys.stderr)
