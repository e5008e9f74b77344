"""Kernels of the adoption-time pass: each unit's adoption period from a 0/1
treatment (its first treated period) or a unit-level cohort column, with
what breaks a staggered design (a value other than 0/1, a treatment that
switches off, a cohort that varies within a unit), in one O(N) pass.

Two traversals of the same rule: ``adoption_by_row`` for rows in any order
(needs a unit code per row), ``adoption_by_run`` for rows sorted by unit and
time (units are runs of rows: no N-sized unit code). Both return
``(g_U, bad_row, n_bad_units, first_bad_unit)``: ``g_U`` the adoption period
(0 = never), ``bad_row`` the first row whose treatment is not 0/1 (-1 if
none), and the number of units that switch off / whose cohort varies with
the first of them (-1 if none).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["adoption_by_row", "adoption_by_run"]


@jit
def adoption_by_row(unit_N, time_N, value_N, n_units, is_cohort):
    """Adoption period of every unit from rows in any order (see module)."""
    NEVER = np.iinfo(np.int64).max
    g = np.full(n_units, NEVER, dtype=np.int64)
    last0 = np.full(n_units, np.iinfo(np.int64).min, dtype=np.int64)
    bad_unit = np.zeros(n_units, dtype=np.bool_)
    bad_row = -1
    for r in range(unit_N.shape[0]):
        d = value_N[r]
        i = unit_N[r]
        if is_cohort:
            v = np.int64(d) if d == d else np.int64(0)  # NaN: never treated
            if g[i] == NEVER:
                g[i] = v
            elif g[i] != v:
                bad_unit[i] = True
        elif d == 1.0:
            if time_N[r] < g[i]:
                g[i] = time_N[r]
        elif d == 0.0:
            if time_N[r] > last0[i]:
                last0[i] = time_N[r]
        elif bad_row < 0:
            bad_row = r
    n_bad = 0
    first_bad = -1
    for i in range(n_units):
        if g[i] == NEVER:
            g[i] = 0
        elif not is_cohort and last0[i] > g[i]:
            bad_unit[i] = True
        if bad_unit[i]:
            n_bad += 1
            if first_bad < 0:
                first_bad = i
    return g, bad_row, n_bad, first_bad


@jit
def adoption_by_run(lens_U, time_N, value_N, is_cohort):
    """Adoption period of every unit from rows sorted by unit and time, unit
    ``u`` being the next ``lens_U[u]`` rows (see module)."""
    g = np.zeros(lens_U.size)
    bad_row = -1
    n_bad = 0
    first_bad = -1
    pos = 0
    for u in range(lens_U.size):
        broken = False
        if is_cohort:
            first = value_N[pos] if value_N[pos] == value_N[pos] else 0.0  # NaN: never treated
            for r in range(pos + 1, pos + lens_U[u]):
                v = value_N[r] if value_N[r] == value_N[r] else 0.0
                if v != first:
                    broken = True
                    break
        else:
            first = 0.0
            seen = False
            for r in range(pos, pos + lens_U[u]):
                d = value_N[r]
                if d == 1:
                    if not seen:
                        first = float(time_N[r])
                        seen = True
                elif d != 0:
                    if bad_row < 0:
                        bad_row = r
                elif seen:
                    broken = True
        if broken:
            n_bad += 1
            if first_bad < 0:
                first_bad = u
        g[u] = first
        pos += lens_U[u]
    return g.astype(np.int64), bad_row, n_bad, first_bad
