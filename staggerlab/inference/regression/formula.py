"""The fixest formula front end: ``y1 + y2 ~ x1 + C(g) + i(e, ref=-1) | fe1 + fe2``.

The top level (outcomes, ``~``, ``|``, ``+``, the intercept, backtick-quoted
names and the multiple-estimation calls ``sw``/``csw``/``sw0``/``csw0``) is split
here. Terms that are plain column names stay column names (the design reads them
from the frame without copying); every other term (``C(x)``, ``i(x, ref=)``,
``x1:x2``, ``x1*x2``, ``log(y)``, ``I(x**2)``, a string column) is materialized by
formulaic with pyfixest's ``i()`` and ``log()``, so coefficient names equal
pyfixest's (:mod:`.terms`).

Code that knows its columns builds a :class:`Formula` with :meth:`Formula.of`
instead of writing a formula string, so any column name works.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from ...errors import FormulaError

__all__ = ["Term", "Formula", "parse_formula", "parse_formulas", "quote", "unquote", "fe_source", "split_top"]

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_MULTI = re.compile(r"\b(csw0|sw0|csw|sw)\s*\(")
_OPEN, _CLOSE = "([{", ")]}"


def fe_source(fe: str | tuple[str, ...]) -> str:
    """A fixed effect as written in a formula (``fe1^fe2`` for an interaction)."""
    return quote(fe) if isinstance(fe, str) else "^".join(quote(c) for c in fe)


def quote(name: str) -> str:
    """``name`` as it is written in a formula: bare if it is a plain identifier,
    backtick-quoted otherwise."""
    return name if _NAME.match(name) else f"`{name}`"


@dataclass(frozen=True)
class Term:
    """One term of a formula.

    Attributes
    ----------
    text : str
        The column name (``column=True``) or the term's source text.
    column : bool
        Whether the term names one column.
    """

    text: str
    column: bool = True

    @property
    def source(self) -> str:
        """The term written in a formula (column names quoted when needed)."""
        return quote(self.text) if self.column else self.text


@dataclass(frozen=True)
class Formula:
    """A parsed (or programmatically built) single-estimation formula.

    Attributes
    ----------
    depvars, regressors : tuple of Term
        Outcomes and right-hand-side terms, in formula order.
    fixef : tuple of str or tuple of str
        Fixed-effect column names; a tuple of names is their interaction
        (fixest's ``fe1^fe2``).
    intercept : bool
        Whether an intercept is estimated (no FEs and no ``0``/``-1``).
    """

    depvars: tuple[Term, ...]
    regressors: tuple[Term, ...]
    fixef: tuple[str | tuple[str, ...], ...]
    intercept: bool

    @classmethod
    def of(cls, y: str | list[str] | tuple[str, ...], x: list[str] | tuple[str, ...] = (),
           fe: list[str] | tuple[str, ...] = (), *, intercept: bool | None = None) -> "Formula":
        """The formula of columns ``y ~ x | fe`` (names taken verbatim, any characters).

        ``intercept`` defaults to True without FEs and False with them.
        """
        ys = (y,) if isinstance(y, str) else tuple(y)
        f = cls(tuple(Term(c) for c in ys), tuple(Term(c) for c in x), tuple(fe),
                not fe if intercept is None else intercept)
        _check_unique(f, str(f))
        return f

    @property
    def plain(self) -> bool:
        """Whether every outcome and regressor is a column name."""
        return all(t.column for t in (*self.depvars, *self.regressors))

    def with_depvar(self, y: Term | str) -> str:
        """The single-outcome formula string for outcome ``y``."""
        t = y if isinstance(y, Term) else Term(y)
        return f"{t.source} ~ {self._rhs()}"

    def _rhs(self) -> str:
        rhs = " + ".join(t.source for t in self.regressors) if self.regressors else "1"
        if not self.intercept and not self.fixef:
            rhs += " - 1"
        fe = f" | {' + '.join(fe_source(f) for f in self.fixef)}" if self.fixef else ""
        return rhs + fe

    def __str__(self) -> str:
        return f"{' + '.join(t.source for t in self.depvars)} ~ {self._rhs()}"


def split_top(s: str, seps: str) -> list[tuple[str, str]]:
    """Split ``s`` on the characters ``seps`` outside brackets, quotes and backticks.

    Returns ``(separator before the piece, piece)`` pairs (the first separator is '').
    """
    out: list[tuple[str, str]] = []
    depth, quote_ch, start, sep = 0, "", 0, ""
    for i, ch in enumerate(s):
        if quote_ch:
            if ch == quote_ch:
                quote_ch = ""
        elif ch in "`'\"":
            quote_ch = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                raise FormulaError(f"unbalanced ')' in {s!r}")
        elif ch in seps and depth == 0:
            out.append((sep, s[start:i].strip()))
            sep, start = ch, i + 1
    if quote_ch:
        raise FormulaError(f"unclosed {quote_ch} in {s!r}")
    if depth:
        raise FormulaError(f"unbalanced '(' in {s!r}")
    out.append((sep, s[start:].strip()))
    return out


def unquote(name: str) -> str:
    """``name`` without its enclosing backticks, if it has them."""
    name = name.strip()
    if len(name) > 2 and name[0] == name[-1] == "`" and "`" not in name[1:-1]:
        return name[1:-1]
    return name


def _term(t: str) -> Term:
    name = unquote(t)
    return Term(name) if name != t or _NAME.match(t) else Term(t, column=False)


def _terms(part: str, where: str, fml: str) -> tuple[list[Term], bool | None]:
    """Terms of ``part`` and its intercept marker (True: ``1``, False: ``0``/``-1``, None: none)."""
    terms: list[Term] = []
    marker: bool | None = None
    for sep, t in split_top(part, "+-"):
        if not t:
            if sep == "" and part.strip().startswith("-"):
                continue  # a leading '-1'
            raise FormulaError(f"empty term in the {where} of {fml!r}")
        if sep == "-":
            if t != "1":
                raise FormulaError(
                    f"'- {t}' in {fml!r}: only the intercept can be removed ('- 1'); "
                    f"write a name with '-' in backticks"
                )
            marker = False
        elif t in ("0", "1"):
            marker = t == "1" if marker is not False else False
        else:
            terms.append(_term(t))
    return terms, marker


def _check_unique(f: Formula, fml: str) -> None:
    for group, what in ((f.depvars, "outcome"), (f.regressors, "regressor"), (f.fixef, "fixed effect")):
        if len(set(group)) != len(group):
            raise FormulaError(f"a {what} appears twice in {fml!r}")


def parse_formula(fml: str) -> Formula:
    """Parse one formula ``"y ~ x1 + x2 | fe1 + fe2"`` (several outcomes joined by ``+``).

    Raises
    ------
    FormulaError
        On a syntax error, an IV part, or multiple-estimation calls (use
        :func:`parse_formulas`).
    """
    if not isinstance(fml, str):
        raise FormulaError(f"formula {fml!r} must be a string such as 'y ~ x | fe1 + fe2'")
    parts = [p for _, p in split_top(fml, "|")]
    tilde = [len(split_top(p, "~")) - 1 for p in parts]
    if tilde[0] != 1 or any(tilde[1:]):
        if len(parts) > 1 and any(tilde[1:]):
            raise FormulaError(f"formula {fml!r} has an IV part ('| d ~ z'); use feiv for IV")
        raise FormulaError(f"formula {fml!r} must have exactly one '~', as in 'y ~ x | fe1 + fe2'")
    if len(parts) > 2:
        raise FormulaError(f"formula {fml!r} has more than one '|'")
    if _MULTI.search(_outside_backticks(fml)):
        raise FormulaError(f"formula {fml!r} has multiple-estimation calls; parse it with parse_formulas")
    (_, lhs), (_, rhs) = split_top(parts[0], "~")
    depvars, ymark = _terms(lhs, "outcome", fml)
    if ymark is not None or not depvars:
        raise FormulaError(f"the outcome of {fml!r} must be one or more columns or expressions")
    regs, marker = _terms(rhs, "regressors", fml)
    fixef: list[str | tuple[str, ...]] = []
    if len(parts) == 2:
        fe_terms, _ = _terms(parts[1], "fixed effects", fml)  # a '0'/'1' alone means no FE
        for t in fe_terms:
            combo = [_term(p) for _, p in split_top(t.text, "^")] if not t.column else [t]
            if not all(c.column for c in combo):
                raise FormulaError(
                    f"fixed effect {t.text!r} in {fml!r} must be a column name or an interaction "
                    "'fe1^fe2' of columns (quote names with spaces or symbols in backticks)"
                )
            fixef.append(combo[0].text if len(combo) == 1 else tuple(c.text for c in combo))
    intercept = not fixef and marker is not False
    f = Formula(tuple(depvars), tuple(regs), tuple(fixef), intercept)
    _check_unique(f, fml)
    if not regs and not intercept:
        raise FormulaError(f"formula {fml!r} has no regressor to estimate")
    return f


def _outside_backticks(s: str) -> str:
    return re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), s)


def _expand_once(fml: str) -> list[str] | None:
    m = _MULTI.search(_outside_backticks(fml))
    if m is None:
        return None
    kind = m.group(1)
    start = m.end()
    depth, i = 1, start
    masked = _outside_backticks(fml)
    while i < len(fml) and depth:
        depth += {"(": 1, ")": -1}.get(masked[i], 0)
        i += 1
    if depth:
        raise FormulaError(f"unbalanced '(' in {kind}() of {fml!r}")
    args = [a for _, a in split_top(fml[start:i - 1], ",")]
    if any(not a for a in args):
        raise FormulaError(f"empty argument in {kind}() of {fml!r}")
    steps = list(itertools.accumulate(args, lambda a, b: f"{a} + {b}")) if kind.startswith("csw") else args
    if kind.endswith("0"):
        steps = ["1", *steps]
    return [fml[:m.start()] + s + fml[i:] for s in steps]


def parse_formulas(fml: str) -> list[Formula]:
    """Parse a formula with fixest's multiple-estimation calls into its models.

    ``sw(a, b)`` gives one model per argument, ``csw(a, b)`` the cumulative
    models ``a`` and ``a + b``; ``sw0``/``csw0`` add the model without them.
    Calls may appear in the outcome, regressors and fixed effects; several
    calls give every combination, grouped by fixed effects (pyfixest's order).
    """
    if not isinstance(fml, str):
        raise FormulaError(f"formula {fml!r} must be a string such as 'y ~ x | fe1 + fe2'")
    todo, done = [fml], []
    while todo:
        f = todo.pop(0)
        more = _expand_once(f)
        if more is None:
            done.append(f)
        else:
            todo = more + todo
    models = [parse_formula(f) for f in done]
    # fixest's order: models grouped by their fixed effects, in order of appearance
    first = {fe: i for i, fe in reversed(list(enumerate(m.fixef for m in models)))}
    return sorted(models, key=lambda m: first[m.fixef])
