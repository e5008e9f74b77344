"""The ``staggerlab`` command."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .errors import StaggerlabError

__all__ = ["main"]


def _list(s: str | list[str] | None) -> list[str] | None:
    """Column names given comma-separated, space-separated (several words after
    the flag) or both: ``--controls Size,Lev`` = ``--controls Size Lev``."""
    if s is None:
        return None
    return [c.strip() for part in ([s] if isinstance(s, str) else s) for c in part.split(",") if c.strip()]


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="staggerlab", description="Fast, exact TWFE / staggered-DID inference batteries.")
    p.add_argument("--version", action="version", version=f"staggerlab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("battery", help="run the study's robustness battery and write a report",
                       description="Run the robustness battery of the reference study on a panel (default: the "
                                   "built-in synthetic panel calibrated to the study) and write report.md, "
                                   "figures/*.png, results.json and parquet tables to --out.")
    b.add_argument("--data", help="panel file (.parquet or .csv); default: built-in synthetic panel")
    b.add_argument("--spec", help="TOML file with any of these options (command-line flags override it)")
    b.add_argument("--unit", help="unit id column (default firm)")
    b.add_argument("--time", help="time column (default year)")
    b.add_argument("--outcome", action="append", help="outcome column (repeat for several; default: the study's 4)")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--treat", help="0/1 absorbing treatment column (default IM)")
    g.add_argument("--cohort", help="adoption-period column (0 or empty = never treated), instead of --treat")
    b.add_argument("--controls", nargs="+", help="control columns, comma- or space-separated")
    b.add_argument("--cluster", help="cluster column (default: the unit)")
    b.add_argument("--extra-controls", dest="extra_controls", nargs="+",
                   help="extra controls, comma- or space-separated, added one at a time")
    b.add_argument("--mechanisms", nargs="+", help="mechanism outcomes, comma- or space-separated")
    b.add_argument("--split", action="append", dest="splits", help="unit-level binary split variable (repeatable)")
    b.add_argument("--iv", action="append", dest="instruments",
                   help="instrument(s) for the treatment, e.g. 'z1' or 'z1+z2' (repeat for several IV regressions)")
    b.add_argument("--no-alternatives", action="store_true",
                   help="skip section 9 (PSM-DID, entropy balancing, IV, Heckman, DML)")
    b.add_argument("--draws", type=int, help="placebo / permutation draws (default 1000)")
    b.add_argument("--boot-draws", type=int, dest="boot_draws", help="wild bootstrap draws (default 9999)")
    b.add_argument("--power-draws", type=int, dest="power_draws",
                   help="re-assignments of the design power section's robust estimators (default 100)")
    b.add_argument("--seed", type=int, help="seed (default 0)")
    b.add_argument("--n-jobs", type=int, dest="n_jobs", help="parallel workers (default -1: all cores)")
    b.add_argument("--backend", help="joblib backend for the draw loops: loky, threading, dask (needs a running "
                   "dask.distributed scheduler: set DASK_SCHEDULER_ADDRESS) or ray")
    b.add_argument("--out", help="output directory (default report)")
    b.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return p


def _spec_from_args(a: argparse.Namespace):
    from .battery import BatterySpec

    over = {
        "data": a.data, "unit": a.unit, "time": a.time, "outcomes": a.outcome, "treat": a.treat,
        "cohort": a.cohort, "controls": _list(a.controls), "cluster": a.cluster,
        "extra_controls": _list(a.extra_controls), "mechanisms": _list(a.mechanisms), "splits": a.splits, "instruments": a.instruments,
        "draws": a.draws, "boot_draws": a.boot_draws, "power_draws": a.power_draws, "seed": a.seed, "n_jobs": a.n_jobs, "out": a.out,
        "backend": a.backend,
    }
    if a.cohort:
        over["treat"] = None
    spec = BatterySpec.from_toml(a.spec, **over) if a.spec else BatterySpec(**{k: v for k, v in over.items() if v is not None})
    if a.cohort:
        spec.treat = None
    if a.no_alternatives:
        spec.alternatives = False
    if spec.data is None:
        # the built-in panel carries a split variable and two competing policies: show every section
        if a.splits is None and not spec.splits:
            spec.splits = ["hightech"]
        if a.extra_controls is None and not spec.extra_controls:
            spec.extra_controls = ["smart_city", "lowcarbon_city"]
        if a.instruments is None and not spec.instruments:
            spec.instruments = ["iv_peer", "iv_synth"]
        if a.mechanisms is None and not spec.mechanisms:
            spec.mechanisms = ["Subsidy", "Patents", "FinConstraint"]
    elif not a.spec:
        if a.outcome is None:
            raise StaggerlabError("with --data, name the outcome(s) with --outcome COL")
        if a.controls is None:
            spec.controls = []  # the study's control names are defaults for the built-in panel only
    return spec


def _connect_backend(backend: str | None) -> Any:
    """Attach to (or start) the cluster an external joblib backend needs;
    returns the dask client to close (None otherwise)."""
    import os

    if backend == "dask":
        try:
            from distributed import Client
        except ImportError as e:
            raise StaggerlabError('--backend dask needs dask.distributed: pip install "staggerlab[dask]"') from e
        # an existing scheduler if DASK_SCHEDULER_ADDRESS is set, else a local cluster
        return Client(os.environ.get("DASK_SCHEDULER_ADDRESS"))
    elif backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError as e:
            raise StaggerlabError('--backend ray needs ray: pip install "staggerlab[ray]"') from e
        register_ray()
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``staggerlab`` console script.

    Exit status: 0 done; 1 the report was written but its baseline section
    failed; 2 bad input or options (one line says which and what to do);
    3 an internal error; 130 interrupted (Ctrl-C).
    """
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        # a report of dropped rows or a guessed separator is one line, not a source listing
        warnings.showwarning = _show_warning
        return _main(args)


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    print(f"staggerlab: warning: {message}", file=sys.stderr)


def _main(args: argparse.Namespace) -> int:
    try:
        from .battery import battery

        spec = _spec_from_args(args)
        client = _connect_backend(spec.backend)
        t0 = time.perf_counter()
        if not args.quiet:
            print(f"staggerlab battery -> {Path(spec.out).resolve()}", file=sys.stderr)
        try:
            res = battery(spec=spec, verbose=not args.quiet)
        finally:
            if client is not None:
                client.close()
    except KeyboardInterrupt as e:
        # a Ctrl-C is an answer, not a crash: say what was kept and how to go on
        what = str(e) or "interrupted before the first section finished; nothing was written; run the command again"
        print(f"staggerlab: {what}", file=sys.stderr)
        return 130
    except (StaggerlabError, FileNotFoundError) as e:
        print(f"staggerlab: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug, not bad input: one line, and where to report it
        print(f"staggerlab: internal error ({type(e).__name__}): {e}; please report it with the command you ran",
              file=sys.stderr)
        return 3
    report = res.out / "report.md"
    for key, error in res.failed.items():
        if key != "baseline":
            print(f"staggerlab: section {key!r} failed ({error}); the other sections are in {report}",
                  file=sys.stderr)
    if "baseline" in res.failed:
        print(f"staggerlab: error: the baseline section failed ({res.failed['baseline']}); the other sections "
              f"are in {report}", file=sys.stderr)
        return 1
    if not args.quiet:
        main_sec = res.section("baseline")
        print(main_sec.text.split("\n\n", 1)[1])
        print(f"\nreport: {report}  ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
