"""Every benchmark in one run, written to ``benchmarks/RESULTS.md``.

Run from the repository root::

    python benchmarks/run_all.py            # the figures of RESULTS.md (tens of minutes on 2 cores)
    python benchmarks/run_all.py --quick    # a smoke check with small arguments (a few minutes)
    python benchmarks/run_all.py --dask     # also the 100M-row dask benchmark (long)
    python benchmarks/run_all.py --coverage # also the event-study coverage Monte Carlo (long)
    python benchmarks/run_all.py --only placebo limits --out /tmp/R.md

Each benchmark script runs in its own child process with the command shown in
its section (the checkout first on ``PYTHONPATH``), so one script's threads,
caches and memory do not leak into the next; its Markdown tables (medians and
the ratios against the peers it times in the same process) are copied as they
are, its other output into a text block. ``limits.py --busy`` adds the hot
paths' bandwidth bounds and the busy-machine ratios (a CPU-bound competitor
process started and killed by that script). This script itself times the cold
and warm battery (``staggerlab battery`` in a child process; cold = a fresh,
empty ``NUMBA_CACHE_DIR``; warm = a second run on that cache) and ``import
staggerlab`` in a fresh interpreter.

RESULTS.md gets the machine (CPU model, cores, RAM from ``/proc``), the date,
the git commit, the package versions, and the load average before and after
every section. It is rewritten after every section, so an interrupted run
leaves the sections done so far. Text below the line ``KEEP_MARKER`` in the
previous RESULTS.md (sections no script produces) is carried over unchanged;
when the marker is missing, the whole previous file is carried over below it
for the maintainers to prune.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, git_commit, load, machine  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
KEEP_MARKER = "<!-- Below this line: not written by benchmarks/run_all.py (notes and studies it does not rerun). -->"
#: a benchmark that runs longer than this is stopped and reported as such
TIMEOUT_S = 3600.0


@dataclass
class Bench:
    """One benchmark script and its arguments in the full and quick runs."""

    key: str
    title: str
    script: str
    full: list[str]
    quick: list[str]
    note: str = ""


BENCHES = [
    Bench("limits", "Hot paths against the memory-bandwidth bound, and a busy machine", "limits.py",
          ["--busy"], ["--quick", "--busy"],
          "Targets of issue #20: placebo <= 10 ms, wild bootstrap with CI <= 0.1 s, feols at 170k rows <= "
          "15 ms, and with one competing CPU-bound process each at most 1.5x its quiet time."),
    Bench("feols", "feols and demeaning", "bench_feols.py", ["--reps", "7"],
          ["--sizes", "15k", "--no-cold"]),
    Bench("placebo", "Placebo / randomization inference", "bench_placebo.py", ["--reps", "7"],
          ["--reps", "2", "--skip-large", "--skip-memory"]),
    Bench("placebo_size", "Placebo size under the sharp null", "validate_placebo_size.py", [],
          ["--panels", "50"]),
    Bench("wildboot", "Wild cluster bootstrap", "bench_wildboot.py", ["--reps", "7"],
          ["--skip-large", "--skip-wbt"]),
    Bench("es_inference", "Event-study inference (speed)", "bench_es_inference.py",
          ["--reps", "7", "--skip-coverage"], ["--reps", "2", "--skip-coverage"]),
    Bench("estimators", "Staggered-DID estimators", "bench_estimators.py", ["--reps", "5"],
          ["--sizes", "15k", "--reps", "2"]),
    Bench("cs", "Callaway-Sant'Anna", "bench_cs.py", ["--reps", "7"], ["--sizes", "15000", "--reps", "2"]),
    Bench("cs_covariates", "Callaway-Sant'Anna with covariates", "bench_cs_covariates.py", ["--reps", "7"],
          ["--copies", "2", "--reps", "2"]),
    Bench("new_estimators", "LP-DiD, stacked DiD and extended TWFE", "bench_new_estimators.py",
          ["--reps", "7", "--mc-reps", "1000"], ["--reps", "2", "--skip-mc"]),
    Bench("honest", "HonestDiD", "bench_honest.py", ["--reps", "7"], ["--reps", "2"]),
    Bench("power", "Design power", "bench_power.py", ["--reps", "5", "--robust-reps", "1", "--loop-draws", "5"],
          ["--reps", "2", "--robust-reps", "1", "--loop-draws", "1"]),
    Bench("montecarlo", "Monte Carlo", "bench_montecarlo.py", ["--reps", "1000", "--pf-reps", "100"],
          ["--reps", "20", "--pf-reps", "4", "--skip-robust"]),
    Bench("scale", "Scale (small sizes)", "bench_scale.py", ["--quick", "--figure", "{tmp}/scale_figure.png"],
          ["--sizes", "15000", "--skip", "pyfixest", "montecarlo", "--figure", "{tmp}/scale_figure.png"],
          "Sizes up to 170k rows (`--quick`); the 10M-row tables come from the full `bench_scale.py` run "
          "(about 400 s) in SCALE.md. The figure goes to a temporary file, not benchmarks/scale_figure.png."),
]
DASK = Bench("dask", "dask, 100M rows", "bench_dask.py", ["--rows", "100000000"], ["--rows", "1000000"])
COVERAGE = Bench("es_coverage", "Event-study inference (coverage)", "bench_es_inference.py",
                 ["--skip-speed"], ["--skip-speed", "--mc-reps", "20"])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the children: this checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


def run_bench(b: Bench, quick: bool, tmp: Path) -> dict:
    """Run one script in a child process; returns its output and the load around it."""
    args = [a.replace("{tmp}", str(tmp)) for a in (b.quick if quick else b.full)]
    json_path = tmp / f"{b.key}.json"
    extra = ["--json", str(json_path)] if b.key == "limits" else []
    cmd = [sys.executable, str(HERE / b.script), *args, *extra]
    shown = " ".join(["python", f"benchmarks/{b.script}", *(shlex.quote(a) for a in args)])
    shown = shown.replace(str(tmp), "$TMPDIR")
    rec = {"key": b.key, "title": b.title, "command": shown, "note": b.note, "load_before": load()}
    print(f"[run_all] {shown}  (load {rec['load_before'][0]:.1f})", flush=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
        rec.update(stdout=p.stdout, stderr=p.stderr, returncode=p.returncode)
    except subprocess.TimeoutExpired as err:
        rec.update(stdout=(err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or ""),
                   stderr=f"stopped after {TIMEOUT_S:.0f} s", returncode=None)
    rec["seconds"] = time.perf_counter() - t0
    # the run's temporary folder means nothing in RESULTS.md (a figure path printed by a script)
    rec["stdout"] = rec["stdout"].replace(str(tmp), "$TMPDIR")
    rec["load_after"] = load()
    if json_path.exists():
        rec["json"] = json.loads(json_path.read_text())
    print(f"[run_all]   done in {rec['seconds']:.0f} s, exit {rec['returncode']}", flush=True)
    return rec


BATTERY_CODE = "import sys; from staggerlab.cli import main; sys.exit(main())"


def battery_runs(tmp: Path, cold: bool) -> dict:
    """Wall time of ``staggerlab battery`` in a child process.

    ``cold``: a cold run on a fresh, empty ``NUMBA_CACHE_DIR`` (it compiles every
    kernel into it), then a warm run on that cache. Otherwise one run on the
    default numba cache, as it is (the quick run's smoke check). The per-section
    times come from the report's ``results.json``.
    """
    out: dict = {"load_before": load(), "runs": []}
    if cold:
        cache = Path(tempfile.mkdtemp(prefix="numba-cache-", dir=tmp))
        env = child_env({"NUMBA_CACHE_DIR": str(cache)})
        labels = ["cold (empty NUMBA_CACHE_DIR)", "warm (second run, same cache)"]
    else:
        env, labels = child_env(), ["default numba cache, as it is (quick run)"]
    for i, label in enumerate(labels):
        rep = tmp / f"report{i + 1}"
        print(f"[run_all] battery, {label}  (load {load()[0]:.1f})", flush=True)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", BATTERY_CODE, "battery", "--quiet", "--out", str(rep)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        run = {"label": label, "seconds": time.perf_counter() - t0, "returncode": p.returncode,
               "stderr": p.stderr[-2000:], "load_after": load()}
        res_json = rep / "results.json"
        if res_json.exists():
            run["sections"] = section_times(json.loads(res_json.read_text()))
        out["runs"].append(run)
    out["load_after"] = load()
    return out


def section_times(res: dict) -> dict[str, float]:
    """``{section title: seconds}`` from a battery ``results.json`` (``sections.<key>.seconds``); a
    section the battery ran in its second process is titled so (``sections.<key>.process``)."""
    secs = res.get("sections", {}) if isinstance(res, dict) else {}
    return {str(v.get("title", k)) + (" (second process)" if v.get("process", "main") != "main" else ""):
            float(v["seconds"]) for k, v in secs.items()
            if isinstance(v, dict) and isinstance(v.get("seconds"), (int, float))}


def import_time(reps: int) -> dict:
    """Median wall time of a fresh interpreter running ``import staggerlab`` (and of ``pass``)."""
    def med(code: str) -> float:
        ts = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), check=True, capture_output=True)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts[1:])  # the first run fills the OS file cache
    return {"import": med("import staggerlab"), "bare": med("pass"), "reps": reps, "load": load()}


WORKERS_CODE = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import staggerlab as sl
from staggerlab.inference.studies.montecarlo import montecarlo
from staggerlab.panels.dgp import dgp
df = sl.simulate.paper_panel(seed=0)
fit = sl.feols("NQPF ~ IM + Size + Lev + Roa + Cash + Age + Mb + Top1 + Dual | firm + year", df,
               vcov={"CRV1": "firm"})
d = dgp("paper_panel")
calls = {
    "placebo": lambda n_jobs: sl.placebo(fit, param="IM", draws=1000, seed=1, n_jobs=n_jobs),
    "montecarlo": lambda n_jobs: montecarlo(d, ["twfe"], reps=50, seed=0, n_jobs=n_jobs, show_progress=False),
}
out = {}
for name, call in calls.items():
    call(1)  # compiled kernels loaded, data cached: only the workers are new below
    row = {}
    for label, n_jobs in (("serial", 1), ("first n_jobs=2", 2), ("second n_jobs=2", 2)):
        t0 = time.perf_counter()
        call(n_jobs)
        row[label] = time.perf_counter() - t0
    out[name] = row
print(json.dumps(out))
"""


def worker_start() -> dict:
    """The first ``n_jobs=2`` call against the second one, in a fresh process (issue #20: <= 2 s more)."""
    print(f"[run_all] first n_jobs=2 calls  (load {load()[0]:.1f})", flush=True)
    ld = load()
    p = subprocess.run([sys.executable, "-c", WORKERS_CODE], cwd=ROOT, env=child_env(), capture_output=True,
                       text=True, timeout=TIMEOUT_S)
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1:] or ["failed"], "load": ld}
    return {"calls": json.loads(p.stdout.strip().splitlines()[-1]), "load": ld, "load_after": load()}


def workers_md(w: dict) -> str:
    lines = ["## The first call with workers", "",
             "A fresh process (`python -c \"$WORKERS_CODE\"` in `run_all.py`) warms each call serially, then times it "
             "serially, with `n_jobs=2` for the first time, and with `n_jobs=2` again; the overhead of starting "
             "the workers is the first `n_jobs=2` time minus the second. Issue #20: at most 2 s. "
             f"Load average {fmt_load(w['load'])} before."]
    if "error" in w:
        return "\n".join(lines + ["", f"**Failed**: {w['error'][0]}"])
    lines += ["", "| call | serial | first n_jobs=2 | second n_jobs=2 | overhead | target | status |",
              "|---|---:|---:|---:|---:|---:|---|"]
    labels = {"placebo": "`sl.placebo(fit, draws=1000)` (paper panel)",
              "montecarlo": "`montecarlo(dgp('paper_panel'), ['twfe'], reps=50)`"}
    for name, r in w["calls"].items():
        over = r["first n_jobs=2"] - r["second n_jobs=2"]
        lines.append(f"| {labels.get(name, name)} | {r['serial']:.2f} s | {r['first n_jobs=2']:.2f} s | "
                     f"{r['second n_jobs=2']:.2f} s | {over:.2f} s | <= 2 s | {'PASS' if over <= 2 else 'FAIL'} |")
    return "\n".join(lines)


def versions() -> str:
    """Versions of Python and the libraries, from a child process on this checkout."""
    code = ("import importlib, platform\n"
            "out = ['Python ' + platform.python_version()]\n"
            "for m in ('staggerlab', 'numpy', 'numba', 'polars', 'pyfixest', 'scipy'):\n"
            "    try:\n"
            "        out.append(m + ' ' + importlib.import_module(m).__version__)\n"
            "    except Exception:\n"
            "        pass\n"
            "print(', '.join(out))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True)
    return p.stdout.strip() or "unknown"


# ------------------------------------------------------------------ writing
def split_output(text: str) -> tuple[list[list[str]], list[str]]:
    """Markdown tables (runs of lines starting with ``|``) and the other non-empty lines."""
    tables, other, cur = [], [], []
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            cur.append(line.strip())
            continue
        if cur:
            tables.append(cur)
            cur = []
        if line.strip():
            other.append(line.rstrip())
    if cur:
        tables.append(cur)
    return tables, other


#: lines of a script's other output kept at each end (peers such as csdid print whole summaries)
OTHER_LINES = 12


def elide(lines: list[str], keep: int = OTHER_LINES) -> list[str]:
    """The first and last ``keep`` lines, with a line saying how many were left out."""
    if len(lines) <= 2 * keep + 1:
        return lines
    return [*lines[:keep], f"... ({len(lines) - 2 * keep} lines left out) ...", *lines[-keep:]]


def fmt_load(ld: tuple) -> str:
    return f"{ld[0]:.2f}"


def section_md(rec: dict) -> str:
    """One benchmark's section of RESULTS.md."""
    lines = [f"## {rec['title']}", "", f"`{rec['command']}`  ", f"load average (1 min) {fmt_load(rec['load_before'])} "
             f"before, {fmt_load(rec['load_after'])} after; {rec['seconds']:.0f} s."]
    if rec.get("note"):
        lines += ["", rec["note"]]
    if rec["returncode"] != 0:
        lines += ["", f"**The script failed** (exit status {rec['returncode']}); the end of its error output:", "",
                  "```text", *rec["stderr"].strip().splitlines()[-15:], "```"]
    tables, other = split_output(rec["stdout"])
    for t in tables:
        lines += ["", *t]
    if other:
        lines += ["", "Other output of the script:", "", "```text", *elide(other), "```"]
    return "\n".join(lines)


def battery_md(bat: dict, imp: dict | None) -> str:
    lines = ["## The battery: cold and warm", "",
             "`NUMBA_CACHE_DIR=$(mktemp -d) staggerlab battery --quiet --out $(mktemp -d)`, then the same "
             "command again with the same cache (this script runs "
             f"`python -c \"{BATTERY_CODE}\" battery ...` so that the checkout is imported). Wall time of the "
             f"child process. Load average {fmt_load(bat['load_before'])} before, {fmt_load(bat['load_after'])} "
             "after. Targets of issue #20: cold at most 12 s, warm at most 4 s.", "",
             "| run | wall time | target | status | load after |", "|---|---:|---:|---|---:|"]
    for r in bat["runs"]:
        target = 12.0 if r["label"].startswith("cold") else 4.0
        ok = r["returncode"] in (0, 1) and r["seconds"] <= target
        failed = "" if r["returncode"] == 0 else f" (exit {r['returncode']})"
        lines.append(f"| {r['label']}{failed} | {r['seconds']:.1f} s | <= {target:.0f} s | "
                     f"{'PASS' if ok else 'FAIL'} | {fmt_load((r['load_after'][0],))} |")
    secs = [r for r in bat["runs"] if r.get("sections")]
    if secs:
        names = list(secs[0]["sections"])
        lines += ["", "| section | " + " | ".join(r["label"] for r in secs) + " |",
                  "|---|" + "---:|" * len(secs)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(f"{r['sections'].get(n, float('nan')):.2f} s" for r in secs) + " |")
        if any("(second process)" in n for n in names):
            lines += ["", "Sections marked *second process* ran in the battery's second process beside the "
                      "others (`battery/offload.py`), so the sections' seconds add up to more than the wall time."]
    if imp is not None:
        ok = imp["import"] <= 0.5
        lines += ["", "`python -c \"import staggerlab\"` (fresh interpreter, median of "
                  f"{imp['reps']}; load {fmt_load(imp['load'])}):", "",
                  "| command | wall time | target | status |", "|---|---:|---:|---|",
                  f"| `python -c \"import staggerlab\"` | {imp['import']:.2f} s | <= 0.5 s (issue #20) | "
                  f"{'PASS' if ok else 'FAIL'} |",
                  f"| `python -c \"pass\"` (the interpreter alone) | {imp['bare']:.2f} s | | |"]
    return "\n".join(lines)


def header_md(meta: dict) -> str:
    m = meta["machine"]
    return "\n".join([
        "# Benchmark results", "",
        "Written by `python benchmarks/run_all.py" + (" --quick" if meta["quick"] else "") + "`: every table "
        "below comes from one run of the scripts in this folder, each in its own process, each timing "
        "staggerlab and its peers in the same process after warming the numba kernels; the command of each "
        "section reproduces it. On this 2-core machine a 1-minute load average above ~1 means the timings "
        "include waiting for a core: compare ratios from the same section rather than absolute times "
        "across runs.", "",
        f"**Machine.** {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['system']}; "
        f"{meta['versions']}.  ",
        f"**Run.** {meta['date']}, commit `{meta['commit']}`; load average (1, 5, 15 min) "
        f"{', '.join(f'{x:.2f}' for x in meta['load_before'])} before, "
        f"{', '.join(f'{x:.2f}' for x in meta['load_after'])} after; {meta['seconds'] / 60:.1f} min in all"
        + (f" (**stopped after {meta['done']} of {meta['steps']} sections**)" if meta.get("stopped") else "")
        + (" (**quick run: smoke-check arguments, not the figures**)" if meta["quick"] else "") + ".",
    ])


def kept_text(previous: str) -> str:
    """What follows the keep marker in the previous RESULTS.md (all of it if there is no marker)."""
    if KEEP_MARKER in previous:
        return previous.split(KEEP_MARKER, 1)[1].strip("\n")
    if not previous.strip():
        return ""
    body = previous.split("\n", 1)[1] if previous.startswith("# ") else previous
    return ("## Notes and studies run_all.py does not rerun\n\n"
            "Text of the previous RESULTS.md that no script here writes; keep what describes the "
            "current code, delete the rest.\n\n"
            + body.replace("\n## ", "\n### ").strip("\n"))


def write_results(path: Path, meta: dict, sections: list[str], kept: str) -> None:
    text = "\n\n".join([header_md(meta), *sections])
    if kept:
        text += "\n\n" + KEEP_MARKER + "\n\n" + kept
    path.write_text(text.rstrip("\n") + "\n")


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: the running child is killed and the file says where the run stopped."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small arguments: a smoke check in a few minutes")
    ap.add_argument("--dask", action="store_true", help="also the 100M-row dask benchmark")
    ap.add_argument("--coverage", action="store_true", help="also the event-study coverage Monte Carlo")
    ap.add_argument("--only", nargs="*", default=None,
                    help="keys to run: " + " ".join(b.key for b in BENCHES) + " battery workers dask es_coverage")
    ap.add_argument("--out", type=Path, default=RESULTS, help="file to write (default benchmarks/RESULTS.md)")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    # the figures first (hot paths, battery, workers), so that an interrupted run has them
    steps: list[Bench | str] = [BENCHES[0], "battery", "workers", *BENCHES[1:]]
    steps += ([COVERAGE] if a.coverage else []) + ([DASK] if a.dask else [])
    if a.only is not None:
        by_key = {(s if isinstance(s, str) else s.key): s for s in [*steps, COVERAGE, DASK]}
        steps = [s for k, s in by_key.items() if k in a.only]
    previous = a.out.read_text() if a.out.exists() else ""
    kept = kept_text(previous)
    t_start = time.perf_counter()
    meta = {"machine": machine(), "commit": git_commit(), "quick": a.quick, "versions": versions(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "load_before": load()}
    sections: list[str] = []
    failed: list[str] = []
    meta["steps"], meta["done"] = len(steps), 0

    def flush() -> None:
        meta["load_after"], meta["seconds"] = load(), time.perf_counter() - t_start
        write_results(a.out, meta, sections, kept)

    with tempfile.TemporaryDirectory(prefix="staggerlab-run-all-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            for step in steps:
                if step == "battery":
                    bat = battery_runs(tmp, cold=not a.quick)
                    sections.append(battery_md(bat, import_time(3 if a.quick else 7)))
                    if any(r["returncode"] not in (0, 1) for r in bat["runs"]):
                        failed.append("battery")
                elif step == "workers":
                    sections.append(workers_md(worker_start()))
                else:
                    rec = run_bench(step, a.quick, tmp)
                    if rec["returncode"] != 0:
                        failed.append(step.key)
                    sections.append(section_md(rec))
                meta["done"] += 1
                print(sections[-1], flush=True)
                flush()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the sections done so far, say so
            meta["stopped"] = True
    flush()
    print(f"[run_all] wrote {a.out} in {meta['seconds'] / 60:.1f} min"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 130 if meta.get("stopped") else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
