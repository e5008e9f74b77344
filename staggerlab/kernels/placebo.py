"""Kernels of the placebo (randomization inference) battery.

Two families:

* the unit-table fast path for unit + period FEs (the algebra is
  in ARCHITECTURE.md, "The placebo fast path"): ``unit_tables`` builds, once per
  design, per-(unit, adoption time) suffix sums from the raw columns; the
  ``draw_thetas*`` kernels give every draw's coefficient, and ``gram_q0`` with
  ``draw_meats*`` (few treated clusters per draw) or ``dense_meats`` (many)
  its cluster-robust meat, without an N x B matrix; ``stream_thetas`` and
  ``stream_meats`` (:mod:`staggerlab.kernels.placebo_stream`) do the same
  without stored tables (huge panels);
* the general path: ``placebo_columns`` builds a block of placebo treatment
  columns (N x B) that the caller demeans and reduces; it and the sampler's
  kernels live in :mod:`staggerlab.kernels.placebo_draws` and are re-exported
  here.

A draw is sparse: ``pick_BK[b]`` lists the K entities (units, or clusters of
units under cluster-level assignment) treated in draw ``b`` and ``l_BK[b]``
the index of each one's adoption time; ``ent_ptr``/``ent_units`` (CSR) list
the units of every entity.

Shapes are suffixed: ``_N`` rows, ``_U`` units, ``_L`` candidate adoption
times, ``_M`` partialled-out columns (period dummies + controls), ``_P``
packed entries of a symmetric M x M matrix, ``_B`` draws in a block, ``_K``
treated entities of a draw, ``_C`` clusters. The controls are the
columns ``xc_K`` of one C-contiguous float64 block ``X_NX`` (not a tuple of
columns), so one compiled kernel serves any number of them.

Every public kernel is a plain function that allocates its outputs and hands a
serial ``*_chunks`` kernel to :func:`~staggerlab.kernels._jit.run_chunks`.
Chunks are either draws (each draw computed inside one chunk) or a fixed
number of unit/cluster ranges with private partial sums that the wrapper adds
in chunk order, so results do not depend on the thread count (dot products are
reassociated for SIMD, identically in every run). Inputs a kernel only reads
go through :func:`~staggerlab.kernels._jit.readonly` and index arrays are
int64, so each kernel compiles once. Kernels use explicit loops, not array
expressions: numba's broadcasting checks cost seconds to compile.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, readonly, run_chunks

# the sampler's and the general path's kernels (own module, re-exported here)
from .placebo_draws import adoption_times, partial_shuffle, placebo_columns
from .within import unit_block

__all__ = [
    "unit_tables",
    "always_treated",
    "residualize_tables",
    "draw_thetas",
    "draw_thetas_sparse",
    "draw_meats",
    "pack_outer",
    "partial_shuffle",
    "adoption_times",
    "draw_levels",
    "invert_draws",
    "draw_meats_by_unit",
    "gram_q0",
    "dense_meats",
    "placebo_columns",
    "solve_thetas",
    "treated_part",
    "SIMD",
]

#: reassociation and FMA contraction let the short dot products vectorize;
#: NaN/inf semantics are kept (collinear draws are NaN).
SIMD = {"reassoc", "contract"}

#: fixed number of unit chunks with private partial sums: the summation
#: order depends on this constant only, not on the number of threads
_UNIT_CHUNKS = 16
#: chunks of draws: every draw is computed inside one chunk, so this only
#: sets the grain of the work sharing (results do not depend on it)
_DRAW_CHUNKS = 16
#: fixed number of chunks of the matrix-product kernels (results depend on it,
#: not on the number of threads)
_PRODUCT_CHUNKS = 32
#: fixed row halves of a block's ``Z G`` product (:func:`gram_q0`)
_Q0_CHUNKS = 2


def _ro64(a: np.ndarray) -> np.ndarray:
    """``a`` as a read-only int64 array (no copy if it already is int64)."""
    return readonly(np.ascontiguousarray(a, dtype=np.int64))


def _i64(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous int64 array (no copy if it already is one).

    The per-draw kernels take the engine's own arrays, which are writable:
    they are passed without a read-only view, which costs more than the
    kernel call itself for the smallest kernels (a few microseconds each).
    """
    return np.ascontiguousarray(a, dtype=np.int64)


def _in_order(part: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """``start + part[0] + part[1] + ...``, added in chunk order."""
    out = part[0].copy() if start is None else start + part[0]
    for ch in range(1, part.shape[0]):
        out += part[ch]
    return out


@jit
def always_treated(unit_N, time_N, g_U):
    """True if every row is treated (every unit treated from its first row)."""
    for r in range(unit_N.shape[0]):
        if time_N[r] < g_U[unit_N[r]]:
            return False
    return True


# ------------------------------------------------------------ unit tables


@jit
def _unit_tables_chunks(lo, hi, n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, thr_L, max_rows,
                        with_w, tab_RQ, W_UP):
    U = row_ptr.shape[0] - 1
    M = tab_RQ.shape[1] - 2
    L = thr_L.shape[0]
    F_TM = np.empty((max_rows, M))
    y_T = np.empty(max_rows)
    cnt_L = np.empty(L)
    # G_i accumulated as a full M x M square (contiguous inner loops that
    # vectorize), packed once per unit: each entry is the same in-order sum
    # over the unit's rows as a packed accumulation, at half the time
    G_MM = np.empty((M, M))
    for ch in range(lo, hi):
        for i in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            n = unit_block(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, F_TM, y_T)
            for l in range(L):
                cnt_L[l] = 0.0
            for a in range(M):
                for b in range(M):
                    G_MM[a, b] = 0.0
            for j in range(n):
                per = per_N[rows[row_ptr[i] + j]]
                yj = y_T[j]
                for l in range(L):
                    if per >= thr_L[l]:
                        t = tab_RQ[i * L + l]
                        for m in range(M):
                            t[m] += F_TM[j, m]
                        t[M] += yj
                        cnt_L[l] += 1.0
                if with_w:
                    for a in range(M):
                        fa = F_TM[j, a]
                        W_UP[i, a] += yj * fa
                        for b in range(M):
                            G_MM[a, b] += fa * F_TM[j, b]
            for l in range(L):
                tab_RQ[i * L + l, M + 1] = cnt_L[l] - cnt_L[l] * cnt_L[l] / n
            if with_w:
                p = M
                for a in range(M):
                    for b in range(a, M):
                        W_UP[i, p] = G_MM[a, b]
                        p += 1


def unit_tables(row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, thr_L, max_rows, with_w):
    """Per-(unit, adoption time) tables of the fast path, from the raw columns.

    With ``F = M_u [period dummies 2..T, X]`` and ``yu = M_u y`` (M_u: unit
    demeaning), returns ``tab_RQ[i * L + l] = [SF_il, Sy_il, UU_il]``
    (suffix sums from threshold l of the rows of F and of yu, and
    ``n_il - n_il^2 / T_i``), ``W_UP = [P_i, packed G_i]`` with ``P_i =
    sum_t yu_it F_it`` and ``G_i = sum_t F_it F_it'`` packed upper-
    triangularly (only if ``with_w``). The tables of the
    fully residualized outcome follow with :func:`residualize_tables`.
    """
    U = row_ptr.shape[0] - 1
    M = n_periods - 1 + xc_K.shape[0]
    L = thr_L.shape[0]
    P = M + M * (M + 1) // 2
    tab_RQ = np.zeros((U * L, M + 2))
    W_UP = np.zeros((U if with_w else 0, P))
    n_chunks = min(U, 64)
    args = (n_chunks, _ro64(row_ptr), readonly(rows), readonly(per_N), readonly(X_NX), _ro64(xc_K), readonly(y_N),
            int(n_periods), _ro64(thr_L), int(max_rows), bool(with_w), tab_RQ, W_UP)
    run_chunks(_unit_tables_chunks, n_chunks, args, work=rows.shape[0] * (L * (M + 1) + (P if with_w else M)))
    return tab_RQ, W_UP


@jit
def _residualize_chunks(lo, hi, n_chunks, tab_RQ, W_UP, theta_M):
    R = tab_RQ.shape[0]
    U = W_UP.shape[0]
    M = theta_M.shape[0]
    for ch in range(lo, hi):
        for r in range(ch * R // n_chunks, (ch + 1) * R // n_chunks):
            s = 0.0
            for m in range(M):
                s += tab_RQ[r, m] * theta_M[m]
            tab_RQ[r, M] -= s
        for i in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            p = M
            for a in range(M):
                for b in range(a, M):
                    g = W_UP[i, p]
                    W_UP[i, a] -= g * theta_M[b]
                    if b != a:
                        W_UP[i, b] -= g * theta_M[a]
                    p += 1


def residualize_tables(tab_RQ, W_UP, n_l, theta_M):
    """Replace ``yu`` by ``yy = yu - F theta`` in the tables, in place:
    ``Sy -= SF' theta`` and ``P_i -= G_i theta``."""
    M = theta_M.shape[0]
    n_chunks = _UNIT_CHUNKS
    run_chunks(_residualize_chunks, n_chunks, (n_chunks, tab_RQ, W_UP, readonly(theta_M)),
               work=tab_RQ.shape[0] * M + W_UP.shape[0] * M * (M + 1))


# ------------------------------------------------------------- per draw


@jit
def _pack_outer_chunks(lo, hi, n_chunks, theta_BM, beta_B, Z_BP):
    B, M = theta_BM.shape
    for ch in range(lo, hi):
        for b in range(ch * B // n_chunks, (ch + 1) * B // n_chunks):
            for a in range(M):
                Z_BP[b, a] = theta_BM[b, a]
            p = M
            for a in range(M):
                ta = theta_BM[b, a] * beta_B[b]
                Z_BP[b, p] = ta * theta_BM[b, a]
                p += 1
                for c in range(a + 1, M):
                    Z_BP[b, p] = 2.0 * ta * theta_BM[b, c]
                    p += 1


def pack_outer(theta_BM, beta_B):
    """``[theta, beta * packed(theta theta')]`` (off-diagonal terms doubled),
    laid out like the rows of ``W_UP`` so that ``Z_BP @ W_UP.T`` gives every
    unit's ``P_i theta + beta theta' G_i theta``."""
    B, M = theta_BM.shape
    P = M + M * (M + 1) // 2
    Z_BP = np.empty((B, P))
    n_chunks = min(B, _DRAW_CHUNKS)
    run_chunks(_pack_outer_chunks, n_chunks, (n_chunks, theta_BM, beta_B, Z_BP), work=B * P)
    return Z_BP


@jit
def _scatter_levels_chunks(lo, hi, n_chunks, pick_BK, l_BK, ent_ptr, ent_units, lev_BU):
    B, K = pick_BK.shape
    for ch in range(lo, hi):
        for b in range(ch * B // n_chunks, (ch + 1) * B // n_chunks):
            for k in range(K):
                e = pick_BK[b, k]
                for q in range(ent_ptr[e], ent_ptr[e + 1]):
                    lev_BU[b, ent_units[q]] = l_BK[b, k]


@jit
def _transpose_levels_chunks(lo, hi, n_chunks, lev_BU, out_UB, offset):
    B, n_units = lev_BU.shape
    n_tiles = (n_units + 63) // 64
    for ch in range(lo, hi):
        for t in range(ch * n_tiles // n_chunks, (ch + 1) * n_tiles // n_chunks):
            for b in range(B):
                for i in range(t * 64, min(n_units, t * 64 + 64)):
                    out_UB[i, offset + b] = lev_BU[b, i]


def draw_levels(pick_BK, l_BK, ent_ptr, ent_units, out_UB, offset):
    """Write the adoption indices of sparse draws into columns ``offset..``
    of the dense ``U x B`` level matrix ``out_UB`` (-1: untreated).

    The per-draw kernels below walk units in order, so the per-unit tables
    stream through memory once per slab of draws instead of being gathered
    at random (a draw treating half of 10,000 units would otherwise make
    5,000 random reads into a table larger than the cache).
    """
    B, K = pick_BK.shape
    n_units = out_UB.shape[0]
    lev_BU = np.full((B, n_units), -1, dtype=out_UB.dtype)
    n_chunks = min(B, _DRAW_CHUNKS)
    run_chunks(_scatter_levels_chunks, n_chunks,
               (n_chunks, _i64(pick_BK), _i64(l_BK), _i64(ent_ptr), _i64(ent_units), lev_BU),
               work=B * K * max(1, ent_units.shape[0] // max(1, ent_ptr.shape[0] - 1)))
    # scattered by draw (cache-friendly), read by unit: transpose in tiles
    n_chunks = min((n_units + 63) // 64, _UNIT_CHUNKS)
    run_chunks(_transpose_levels_chunks, n_chunks, (n_chunks, lev_BU, out_UB, int(offset)),
               work=B * n_units)


@jit(fastmath=SIMD)
def _draw_thetas_chunks(lo, hi, n_chunks, lev_UB, tab_RQ, n_l, part):
    U, B = lev_UB.shape
    Q = tab_RQ.shape[1]
    for ch in range(lo, hi):
        for i in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            base = i * n_l
            for b in range(B):
                # many draws treat a unit, at random, so a branch would
                # mispredict often: add every row, weighted 0 or 1
                l = lev_UB[i, b]
                w = 1.0 if l >= 0 else 0.0
                r = base + max(l, 0)
                for q in range(Q):
                    part[ch, b, q] += w * tab_RQ[r, q]


def draw_thetas(lev_UB, tab_RQ, n_l, Cinv_MM):
    """Per draw: ``theta = C^-1 sum_S SF``, ``D'MD``, ``D'My`` and ``sum_S UU``.

    ``tab_RQ[i * n_l + l] = [SF_il (M), Sy_il, UU_il]``, ``lev_UB`` from
    :func:`draw_levels`. For draws that treat a large share of the units.
    """
    U, B = lev_UB.shape
    Q = tab_RQ.shape[1]
    part = np.zeros((_UNIT_CHUNKS, B, Q))
    run_chunks(_draw_thetas_chunks, _UNIT_CHUNKS, (_UNIT_CHUNKS, lev_UB, tab_RQ, int(n_l), part),
               work=U * B * Q)
    return solve_thetas(part, Cinv_MM)


@jit(fastmath=SIMD)
def _sparse_thetas_chunks(lo, hi, n_chunks, pick_BK, l_BK, ent_ptr, ent_units, tab_RQ, n_l, Cinv_MM, theta_BM,
                          dmd_B, dmy_B, uu_B):
    B, K = pick_BK.shape
    Q = tab_RQ.shape[1]
    acc = np.empty(Q)
    for ch in range(lo, hi):
        for b in range(ch * B // n_chunks, (ch + 1) * B // n_chunks):
            for q in range(Q):
                acc[q] = 0.0
            for k in range(K):
                e = pick_BK[b, k]
                l = l_BK[b, k]
                for u in range(ent_ptr[e], ent_ptr[e + 1]):
                    r = ent_units[u] * n_l + l
                    for q in range(Q):
                        acc[q] += tab_RQ[r, q]
            _solve_theta(acc, Cinv_MM, b, theta_BM, dmd_B, dmy_B, uu_B)


def draw_thetas_sparse(pick_BK, l_BK, ent_ptr, ent_units, tab_RQ, n_l, Cinv_MM):
    """:func:`draw_thetas` for draws that treat few units: gather each
    draw's table rows (cheaper than walking every unit)."""
    B, K = pick_BK.shape
    M = Cinv_MM.shape[0]
    out = (np.empty((B, M)), np.empty(B), np.empty(B), np.empty(B))
    n_chunks = min(B, _DRAW_CHUNKS)
    args = (n_chunks, _i64(pick_BK), _i64(l_BK), _i64(ent_ptr), _i64(ent_units), tab_RQ, int(n_l),
            Cinv_MM, *out)
    run_chunks(_sparse_thetas_chunks, n_chunks, args, work=B * K * tab_RQ.shape[1])
    return out


@jit(fastmath=SIMD)
def _solve_chunks(lo, hi, n_chunks, part_CBQ, Cinv_MM, theta_BM, dmd_B, dmy_B, uu_B):
    n_parts, B, Q = part_CBQ.shape
    acc = np.empty(Q)
    for ch in range(lo, hi):
        for b in range(ch * B // n_chunks, (ch + 1) * B // n_chunks):
            for q in range(Q):
                acc[q] = part_CBQ[0, b, q]
            for c in range(1, n_parts):
                for q in range(Q):
                    acc[q] += part_CBQ[c, b, q]
            _solve_theta(acc, Cinv_MM, b, theta_BM, dmd_B, dmy_B, uu_B)


def solve_thetas(part_CBQ, Cinv_MM):
    """Add the chunks' partial ``[sum SF, sum Sy, sum UU]`` (in chunk order)
    and solve every draw's theta, D'MD, D'My."""
    n_parts, B, Q = part_CBQ.shape
    M = Cinv_MM.shape[0]
    out = (np.empty((B, M)), np.empty(B), np.empty(B), np.empty(B))
    n_chunks = min(B, _DRAW_CHUNKS)
    run_chunks(_solve_chunks, n_chunks, (n_chunks, part_CBQ, Cinv_MM, *out),
               work=B * (n_parts * Q + M * M))
    return out


@jit(fastmath=SIMD, inline="always")
def _solve_theta(acc, Cinv_MM, b, theta_BM, dmd_B, dmy_B, uu_B):
    """From ``acc = [sum_S SF, sum_S Sy, sum_S UU]``: theta, D'MD, D'My."""
    M = Cinv_MM.shape[0]
    et = 0.0
    for m in range(M):
        s = 0.0
        for j in range(M):
            s += Cinv_MM[m, j] * acc[j]
        theta_BM[b, m] = s
        et += acc[m] * s
    uu = acc[M + 1]
    dmd_B[b] = uu - et
    dmy_B[b] = acc[M]
    uu_B[b] = uu


@jit(fastmath=SIMD, inline="always")
def treated_part(row, theta, beta):
    """What treating a unit adds to its score, from its table row."""
    M = theta.shape[0]
    sft = 0.0
    for m in range(M):
        sft += row[m] * theta[m]
    return row[M] - beta * (row[M + 1] - 2.0 * sft)


@jit(fastmath=SIMD, inline="always")
def _dot(a, b):
    s = 0.0
    for p in range(a.shape[0]):
        s += a[p] * b[p]
    return s


@jit
def _invert_draws(pick_BK, l_BK, ent_ptr, ent_units, n_units):
    B, K = pick_BK.shape
    ptr = np.zeros(n_units + 1, dtype=np.int64)
    for b in range(B):
        for k in range(K):
            e = pick_BK[b, k]
            for q in range(ent_ptr[e], ent_ptr[e + 1]):
                ptr[ent_units[q] + 1] += 1
    for i in range(n_units):
        ptr[i + 1] += ptr[i]
    fill = np.empty(n_units, dtype=np.int64)
    for i in range(n_units):
        fill[i] = ptr[i]
    draw_b = np.empty(ptr[n_units], dtype=np.int64)
    draw_l = np.empty(ptr[n_units], dtype=np.int64)
    for b in range(B):
        for k in range(K):
            e = pick_BK[b, k]
            for q in range(ent_ptr[e], ent_ptr[e + 1]):
                i = ent_units[q]
                draw_b[fill[i]] = b
                draw_l[fill[i]] = l_BK[b, k]
                fill[i] += 1
    return ptr, draw_b, draw_l


def invert_draws(pick_BK, l_BK, ent_ptr, ent_units, n_units):
    """For every unit, the draws that treat it and its adoption index in each
    (CSR: ``draw_b[ptr[i]:ptr[i + 1]]``, ``draw_l`` alike, in draw order)."""
    return _invert_draws(_i64(pick_BK), _i64(l_BK), _i64(ent_ptr), _i64(ent_units), int(n_units))


@jit(fastmath=SIMD)
def _meats_by_unit_chunks(lo, hi, n_chunks, ptr, draw_b, draw_l, tab_RQ, n_l, theta_BM, beta_B, Z_BP, W_UP, part):
    U = ptr.shape[0] - 1
    for ch in range(lo, hi):
        for i in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            w = W_UP[i]
            for q in range(ptr[i], ptr[i + 1]):
                b = draw_b[q]
                c = treated_part(tab_RQ[i * n_l + draw_l[q]], theta_BM[b], beta_B[b])
                part[ch, b] += c * (c - 2.0 * _dot(w, Z_BP[b]))


def draw_meats_by_unit(ptr, draw_b, draw_l, tab_RQ, n_l, theta_BM, beta_B, Z_BP, W_UP, q0_B):
    """:func:`draw_meats` when the clusters are the units, unit by unit: each
    unit's W row is read once per slab of draws (draw by draw, the treated
    units' rows are gathered from all over the table)."""
    U = ptr.shape[0] - 1
    B = q0_B.shape[0]
    n_chunks = max(1, min(U, _UNIT_CHUNKS))
    part = np.zeros((n_chunks, B))
    args = (n_chunks, _i64(ptr), _i64(draw_b), _i64(draw_l), tab_RQ, int(n_l), theta_BM,
            beta_B, Z_BP, W_UP, part)
    run_chunks(_meats_by_unit_chunks, n_chunks, args, work=draw_b.shape[0] * (Z_BP.shape[1] + theta_BM.shape[1]))
    return _in_order(part, q0_B)


@jit(fastmath=SIMD)
def _meats_chunks(lo, hi, n_chunks, pick_BK, l_BK, ent_ptr, ent_units, cl_U, n_clusters, tab_RQ, n_l, theta_BM,
                  beta_B, Z_BP, Wc_CP, q0_B, meat_B):
    B, K = pick_BK.shape
    # scratch of this call (one thread), reset after every draw (the touched entries only)
    delta_C = np.zeros(n_clusters)
    seen_C = np.zeros(n_clusters, dtype=np.bool_)
    touched = np.empty(K * 4 + 16, dtype=np.int64)
    for ch in range(lo, hi):
        for b in range(ch * B // n_chunks, (ch + 1) * B // n_chunks):
            n_t = 0
            for k in range(K):
                e = pick_BK[b, k]
                l = l_BK[b, k]
                for q in range(ent_ptr[e], ent_ptr[e + 1]):
                    i = ent_units[q]
                    g = cl_U[i]
                    if not seen_C[g]:
                        seen_C[g] = True
                        if n_t == touched.shape[0]:
                            grown = np.empty(2 * n_t, dtype=np.int64)
                            for t in range(n_t):
                                grown[t] = touched[t]
                            touched = grown
                        touched[n_t] = g
                        n_t += 1
                    delta_C[g] += treated_part(tab_RQ[i * n_l + l], theta_BM[b], beta_B[b])
            acc = q0_B[b]
            for t in range(n_t):
                g = touched[t]
                d = delta_C[g]
                acc += d * (d - 2.0 * _dot(Wc_CP[g], Z_BP[b]))
                delta_C[g] = 0.0
                seen_C[g] = False
            meat_B[b] = acc


def draw_meats(pick_BK, l_BK, ent_ptr, ent_units, cl_U, n_clusters, tab_RQ, n_l, theta_BM, beta_B, Z_BP, Wc_CP,
               q0_B):
    """CRV1 meat per draw, ``sum_c (s0_c + delta_c)^2``, for clusters that
    group units (clusters = units: :func:`draw_meats_by_unit`), touching
    only the clusters of treated units.

    ``s0_c = -Wc_c . z_b`` is cluster c's score if none of its units were
    treated; ``q0_B`` is ``sum_c s0_c^2`` over all clusters (a quadratic
    form in ``z``, computed by the caller); ``delta_c`` sums the treated
    units' parts.
    """
    B, K = pick_BK.shape
    meat_B = np.empty(B)
    n_chunks = min(B, _DRAW_CHUNKS)
    args = (n_chunks, _i64(pick_BK), _i64(l_BK), _i64(ent_ptr), _i64(ent_units), _i64(cl_U), int(n_clusters),
            tab_RQ, int(n_l), theta_BM, beta_B, Z_BP, Wc_CP,
            q0_B, meat_B)
    run_chunks(_meats_chunks, n_chunks, args, work=B * K * (theta_BM.shape[1] + Z_BP.shape[1]))
    return meat_B


def _gram_chunks(lo, hi, n_chunks, W_CP, part):
    C = W_CP.shape[0]
    for ch in range(lo, hi):
        a, b = ch * C // n_chunks, (ch + 1) * C // n_chunks
        part[ch] = W_CP[a:b].T @ W_CP[a:b]


def gram(W_CP):
    """``W' W``: the products of fixed row halves (on two threads when the
    work is large enough), added in order. The caller limits BLAS to one
    thread (see :func:`gram_q0`)."""
    C, P = W_CP.shape
    n_chunks = min(max(C, 1), _Q0_CHUNKS)
    part = np.empty((n_chunks, P, P))
    run_chunks(_gram_chunks, n_chunks, (n_chunks, W_CP, part), work=C * P * P / 8)
    return _in_order(part)


def _q0_chunks(lo, hi, n_chunks, Z_BP, G_PP, q0_B):
    B = Z_BP.shape[0]
    for ch in range(lo, hi):
        a, b = ch * B // n_chunks, (ch + 1) * B // n_chunks
        q0_B[a:b] = np.einsum("bp,bp->b", Z_BP[a:b] @ G_PP, Z_BP[a:b])


def gram_q0(Z_BP, G_PP):
    """``z_b' G z_b`` per draw: one matrix product per half of the block of
    draws (the halves on two threads when the work is large enough), then a
    row-wise dot product.

    The caller limits BLAS to one thread: a product split across BLAS threads
    can round differently from a serial one, and the fixed halves give the
    same bits whichever threads compute them. One product per half-block runs
    at BLAS speed (many small products ran at half of it).
    """
    B, P = Z_BP.shape
    q0_B = np.empty(B)
    n_chunks = min(B, _Q0_CHUNKS)
    run_chunks(_q0_chunks, n_chunks, (n_chunks, Z_BP, G_PP, q0_B), work=B * P * P / 8)
    return q0_B


@jit(fastmath=SIMD)
def _dense_meats_chunks(lo, hi, n_chunks, lev_UB, tab_RQ, n_l, theta_BM, beta_B, Zt_PB, Wc_CP, cl_order, cl_starts,
                        width, part):
    B = lev_UB.shape[1]
    C = Wc_CP.shape[0]
    for ch in range(lo, hi):
        c_end = (ch + 1) * C // n_chunks
        for a in range(ch * C // n_chunks, c_end, width):
            a1 = min(a + width, c_end)
            negs = np.dot(Wc_CP[a:a1], Zt_PB)
            for c in range(a, a1):
                row = negs[c - a]
                for q in range(cl_starts[c], cl_starts[c + 1]):
                    i = cl_order[q]
                    for b in range(B):
                        l = lev_UB[i, b]
                        w = 1.0 if l >= 0 else 0.0
                        row[b] -= w * treated_part(tab_RQ[i * n_l + max(l, 0)], theta_BM[b], beta_B[b])
                for b in range(B):
                    part[ch, b] += row[b] * row[b]


def dense_meats(lev_UB, tab_RQ, n_l, theta_BM, beta_B, Zt_PB, Wc_CP, cl_order, cl_starts, width):
    """CRV1 meat per draw for draws that treat a large share of the units:
    every cluster's untreated score from one matrix product per chunk of
    clusters (``Wc Z'``), minus the treated units' parts, squared and summed.

    Units of cluster c are ``cl_order[cl_starts[c]:cl_starts[c + 1]]``. The
    caller limits BLAS to one thread (see :func:`gram_q0`).
    """
    U, B = lev_UB.shape
    C, P = Wc_CP.shape
    n_chunks = max(1, min(C, _PRODUCT_CHUNKS))
    part = np.zeros((n_chunks, B))
    args = (n_chunks, readonly(lev_UB), readonly(tab_RQ), int(n_l), readonly(theta_BM), readonly(beta_B),
            readonly(Zt_PB), readonly(Wc_CP), _ro64(cl_order), _ro64(cl_starts), int(width), part)
    run_chunks(_dense_meats_chunks, n_chunks, args, work=B * (C * P + U * theta_BM.shape[1]))
    return _in_order(part)
