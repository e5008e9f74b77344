"""Turn a :class:`~.formula.Formula` into the column names the design fits.

Plain numeric columns are used as they are (no copy). Any other term is
materialized by formulaic with pyfixest's ``i()`` and ``log()`` (imported here
only when a formula needs them: they are heavy), on a frame of just the
columns those terms use; the generated columns (named as pyfixest names them,
e.g. ``C(g)[T.b]``, ``g::b``, ``x:z``, ``log(y)``) are added to a working frame.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl

from ...errors import FormulaError, MissingColumnError, MissingValueError
from .formula import Formula, Term, fe_source, quote

__all__ = ["Resolved", "resolve", "check_formula_columns"]


@dataclass(frozen=True)
class Resolved:
    """Column names of one formula on a working frame.

    Attributes
    ----------
    frame : polars.DataFrame
        The caller's frame plus any materialized term columns (the caller's
        columns are shared, not copied).
    depvars, regressors : list of str
        Columns of the outcomes and of the regressors (intercept excluded).
    fixef : list of str
        Columns of the fixed effects (an interaction ``a^b`` is a column of
        that name holding the combined levels).
    """

    frame: pl.DataFrame
    depvars: list[str]
    regressors: list[str]
    fixef: list[str]


def check_formula_columns(frame: pl.DataFrame, names: Sequence[str], fml: str, what: str) -> None:
    """Raise ``MissingColumnError`` naming the first absent column of ``names``,
    suggesting the backtick form when the formula holds an unquoted column name
    with spaces or symbols, or else the closest column names."""
    for c in names:
        if c in frame.columns:
            continue
        quoted = _unquoted(frame, fml)
        if quoted:
            hint = "; names with spaces or symbols must be quoted with backticks: " + ", ".join(
                f"`{n}`" for n in quoted)
        else:
            close = difflib.get_close_matches(c, [str(n) for n in frame.columns], n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(quote(n) for n in close)}?" if close else ""
        have = ", ".join(frame.columns[:12]) + (", ..." if frame.width > 12 else "")
        raise MissingColumnError(f"{what} {c!r} not found in the data (columns: {have}){hint} (formula {fml!r})")


def _unquoted(frame: pl.DataFrame, fml: str) -> list[str]:
    """Columns whose names need backticks and appear in ``fml`` without them."""
    return [n for n in frame.columns if quote(n) != n and n in fml and f"`{n}`" not in fml]


def resolve(f: Formula, frame: pl.DataFrame, fml: str) -> Resolved:
    """The working frame and column names of formula ``f`` (``fml`` its text, for messages)."""
    check_formula_columns(frame, [t.text for t in f.depvars if t.column], fml, "outcome")
    check_formula_columns(frame, [t.text for t in f.regressors if t.column], fml, "variable")
    check_formula_columns(frame, [c for fe in f.fixef for c in ((fe,) if isinstance(fe, str) else fe)], fml,
                          "fixed-effect column")
    frame, fixef = _fe_columns(frame, f, fml)
    both = {t.text for t in f.regressors if t.column} & {t.text for t in f.regressors if not t.column}
    if both:
        raise FormulaError(f"{sorted(both)} in {fml!r} is both a column (in backticks) and a term; rename the column")
    schema = frame.schema  # built per access: once, not per term
    numeric = {t.text for t in (*f.depvars, *f.regressors)
               if t.column and (schema[t.text].is_numeric() or schema[t.text] == pl.Boolean)}
    # a text column without a value (how CSV readers type an empty column) would become a factor with no
    # level and vanish from the model; numeric ones are caught where missing rows are dropped
    empty = [t.text for t in (*f.depvars, *f.regressors)
             if t.column and t.text not in numeric and frame[t.text].null_count() == frame.height > 0]
    if empty:
        raise MissingValueError(f"column {empty[0]!r} is all missing (every one of its {frame.height} values is "
                                "null); drop it from the formula or fill it")
    if all(t.column for t in f.depvars) and all(t.column and t.text in numeric for t in f.regressors):
        return Resolved(frame, [t.text for t in f.depvars], [t.text for t in f.regressors], fixef)
    new: dict[str, np.ndarray] = {}
    depvars = []
    for t in f.depvars:
        if t.column:
            depvars.append(t.text)
            continue
        cols, _ = _materialize(frame, [t], "0", fml)
        if len(cols) != 1:
            raise FormulaError(f"outcome {t.text!r} in {fml!r} gives {len(cols)} columns; it must be numeric")
        new.update(cols)
        depvars.append(next(iter(cols)))
    if all(t.column and t.text in numeric for t in f.regressors):
        regressors = [t.text for t in f.regressors]
    else:
        # the whole right-hand side together: a factor's coding (full or reduced
        # rank) depends on the other terms; an intercept (dropped below) makes
        # factors reduced-rank as in pyfixest, also when FEs are absorbed
        cols, used = _materialize(frame, list(f.regressors), "1" if (f.intercept or f.fixef) else "0", fml)
        cols.pop("Intercept", None)
        regressors = list(cols)
        # a numeric variable entering by itself is its column (not copied)
        schema = frame.schema
        same = {c for c in used if schema[c].is_numeric() or schema[c] == pl.Boolean}
        new.update({k: v for k, v in cols.items() if k not in same})
    clash = [c for c in new if c in frame.columns]
    if clash:
        raise FormulaError(
            f"term(s) {clash} of {fml!r} have the name of a column of the data; rename that column "
            "or write the term differently"
        )
    out = frame.with_columns([pl.Series(k, v) for k, v in new.items()]) if new else frame
    return Resolved(out, depvars, regressors, fixef)


def _fe_columns(frame: pl.DataFrame, f: Formula, fml: str) -> tuple[pl.DataFrame, list[str]]:
    """The frame with a column per interacted FE (``a^b``: the combined levels,
    null where a component is) and the FE column names."""
    names = [fe if isinstance(fe, str) else fe_source(fe) for fe in f.fixef]
    combos = {n: fe for n, fe in zip(names, f.fixef) if not isinstance(fe, str)}
    if not combos:
        return frame, names
    clash = [n for n in combos if n in frame.columns]
    if clash:
        raise FormulaError(f"the data has a column named {clash[0]!r}, like the interaction in {fml!r}; rename it")
    # unit separator: no level values join into the same key
    return frame.with_columns([pl.concat_str([pl.col(c).cast(pl.String) for c in fe], separator="\x1f").alias(n)
                               for n, fe in combos.items()]), names


def _context() -> dict[str, Any]:
    from pyfixest.estimation.formula.factor_interaction import factor_interaction
    from pyfixest.estimation.formula.utils import log

    return {"i": factor_interaction, "log": log}


def _materialize(frame: pl.DataFrame, terms: list[Term], head: str,
                 fml: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Model-matrix columns of ``head + terms`` on every row of ``frame`` (NaN
    where a used value is missing), keyed by pyfixest's names, and the columns
    of ``frame`` they use."""
    import formulaic
    from formulaic.parser import DefaultFormulaParser
    from pyfixest.estimation.formula import FORMULAIC_FEATURE_FLAG

    context = _context()
    text = " + ".join([head, *(t.source for t in terms)])
    try:
        spec = formulaic.Formula(text, _parser=DefaultFormulaParser(feature_flags=FORMULAIC_FEATURE_FLAG))
    except Exception as exc:  # formulaic's syntax errors have several classes
        quoted = _unquoted(frame, fml)
        if quoted:
            raise MissingColumnError(
                f"{quoted[0]!r} in formula {fml!r} is a column name with spaces or symbols; quote it "
                f"with backticks: `{quoted[0]}`"
            ) from None
        raise FormulaError(f"cannot parse {text!r} of formula {fml!r}: {exc}") from None
    needed = sorted(v for v in spec.required_variables if v not in context)
    check_formula_columns(frame, needed, fml, "variable")
    pdf = frame.select(needed).to_pandas()
    try:
        mm = spec.get_model_matrix(pdf, na_action="drop", output="pandas", ensure_full_rank=True,
                                   context=context)
    except Exception as exc:  # an evaluation error of the user's expression
        raise FormulaError(f"cannot evaluate {text!r} of formula {fml!r}: {exc}") from None
    kept = mm.index.to_numpy()
    out: dict[str, np.ndarray] = {}
    for name in mm.columns:
        v = np.full(frame.height, np.nan)
        v[kept] = mm[name].to_numpy(dtype=np.float64)
        out[str(name)] = v
    return out, needed
