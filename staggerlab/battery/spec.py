"""The battery's options (``BatterySpec``), its records (``Section``, ``BatteryResult``)
and the two helpers every section module uses (workers, figure files)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ..battery_checks import check_spec_types
from ..errors import SpecError
from ..panels.simulate import PAPER_CONTROLS, PAPER_OUTCOMES

__all__ = ["BatterySpec", "Section", "BatteryResult", "jobs_for", "save_figure"]


@dataclass
class BatterySpec:
    """Every option of a battery run (also readable from a TOML file).

    With ``data=None`` the built-in panel calibrated to the study
    (``simulate.paper_panel(seed)``) is used with its column names.
    """

    data: str | None = None
    unit: str = "firm"
    time: str = "year"
    outcomes: list[str] = field(default_factory=lambda: list(PAPER_OUTCOMES))
    treat: str | None = "IM"
    cohort: str | None = None
    controls: list[str] = field(default_factory=lambda: list(PAPER_CONTROLS))
    cluster: str | None = None
    draws: int = 1000
    boot_draws: int = 9999
    es_boot_draws: int = 1999
    seed: int = 0
    n_jobs: int = -1
    backend: str | None = None
    window: tuple[int, int] = (-5, 5)
    extra_controls: list[str] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    dml_learners: list[str] = field(default_factory=lambda: ["lasso", "ridge", "rf", "svm-nystroem"])
    alternatives: bool = True
    power_draws: int = 100
    out: str = "report"

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> "BatterySpec":
        """Read a spec file (keys = field names; ``[battery]`` table or top level).

        Raises
        ------
        SpecError
            No file at ``path``, or the file is not valid TOML, has a key that is not an option (the
            message lists the valid ones) or a value of the wrong type.
        """
        name = Path(path).name
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise SpecError(f"no such spec file: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"spec file {name} is not valid TOML: {e}; fix the file") from None
        raw = raw.get("battery", raw)
        if not isinstance(raw, dict):
            raise SpecError(f"spec file {name}: [battery] must be a table of options")
        unknown = [k for k in raw if k not in cls.__dataclass_fields__]
        if unknown:
            raise SpecError(f"unknown option {unknown[0]!r} in spec file {name}; valid options: "
                            f"{', '.join(cls.__dataclass_fields__)}")
        check_spec_types(raw, name, cls())
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if "window" in raw:
            raw["window"] = tuple(raw["window"])
        return cls(**raw)

    @property
    def cluster_col(self) -> str:
        """Cluster column (defaults to the unit)."""
        return self.cluster or self.unit


@dataclass
class Section:
    """One section of the report."""

    key: str
    title: str
    text: str
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the section
    compile_seconds: float = 0.0  # of which numba compiled (in this process; see timing.CompileClock)
    error: str | None = None  # "Type: message" when the section raised
    process: str = "main"  # "second" when it ran in the battery's second process (see offload)


@dataclass
class BatteryResult:
    """What a battery run produced (also written to ``out``)."""

    spec: BatterySpec
    sections: list[Section]
    out: Path
    interrupted: str | None = None  # title of the section a Ctrl-C stopped (the report then has the ones before it)

    def section(self, key: str) -> Section:
        """Look a section up by key."""
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(key)

    @property
    def failed(self) -> dict[str, str]:
        """The sections that raised: key -> ``"Type: message"``."""
        return {s.key: s.error for s in self.sections if s.error}

    def summary(self) -> str:
        """One line per section: its wall seconds and the numba compile seconds within them."""
        return "\n".join(f"{s.title}: " + (f"FAILED ({s.error})" if s.error else
                                            f"{s.seconds:.2f} s (compile {s.compile_seconds:.2f} s)")
                         for s in self.sections)

    def timings(self) -> pl.DataFrame:
        """The timing table: ``section, seconds, compile_seconds, process`` (wall seconds of each section
        and the numba compile seconds within them, in the process that ran it: ``"main"`` or ``"second"``,
        the battery's second process, which runs some sections beside the others), one row per section
        that ran."""
        return pl.DataFrame({"section": [s.title for s in self.sections],
                             "seconds": [s.seconds for s in self.sections],
                             "compile_seconds": [s.compile_seconds for s in self.sections],
                             "process": [s.process for s in self.sections]},
                            schema={"section": pl.String, "seconds": pl.Float64, "compile_seconds": pl.Float64,
                                    "process": pl.String})



def jobs_for(spec: BatterySpec) -> int:
    """Workers for the draw loops: starting a local process pool costs ~2 s, more
    than 10,000 placebo or permutation draws take, so small local runs stay
    in-process (an explicit ``backend``, e.g. a dask cluster, is always used)."""
    return 1 if spec.draws <= 10_000 and spec.backend is None else spec.n_jobs


def save_figure(fig: Any, out: Path, name: str) -> str:
    """Write ``fig`` to ``out/figures/name`` (130 dpi), close it, return ``name``."""
    from ..plots._figure import save_and_close

    save_and_close(fig, out / "figures" / name, dpi=130)
    return name
