"""``placebo`` and ``wildboot`` on a partitioned fit.

Placebo: the unit-table algebra of the in-memory fast engine (ARCHITECTURE.md,
"The placebo fast path"), with the tables kept in their partitions. Each
partition builds, once, the per-(unit, adoption time) tables of its units
(``SF``, ``Sy``, ``UU``) and, for a CRV1 t, the rows ``W_i = [P_i, packed G_i]``
with the engine's own kernels; dask keeps them on the workers (``persist``).
The draws are those of the in-memory ``placebo`` for the same seed (the same
:class:`Sampler`, the same seeded blocks and slabs). For each batch of draws
the client sends every partition only its own treated (draw, unit, adoption
time) entries; the partitions return their per-draw sums (``E = sum SF``,
``sum UU``, ``sum Sy``), added in partition order; the client solves each
draw's ``theta = C^-1 E`` and coefficient. A CRV1 t takes one more round: with
few treated units per draw the partitions return the treated units' change to
the untreated meat (a quadratic form in the summed Gram matrix of the
``W_i``), with many they return the whole meat of their units (one matrix
product), by the in-memory engine's rule (``PlaceboTuning.gram_ratio``).

Wild bootstrap: one pass sums, per cluster, what the in-memory algebra sums;
the draws then run on those G x k sums exactly as in memory.
"""

from __future__ import annotations

import dataclasses
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl

from ..._seed import SeedLike, as_seedsequence, block_generator
from ..._validate import check_alternative, check_draws, check_level
from ...errors import (
    ArgumentError,
    FormulaError,
    PartitionedDesignError,
    StaggerlabWarning,
    TreatmentError,
    VcovError,
)
from ...kernels import partitioned as kpart
from ...kernels import placebo as kp
from ...panels.adoption import adoption_times
from ..regression.rank import COLLIN_TOL, scaled_cholesky
from ..regression.vcov import ssc_factor
from .exact import check_same_fit, in_memory_fit, use_exact
from .feols import PartitionedDesign, PartitionedFeols
from .partitions import assign_workers, run_partitions

__all__ = ["placebo_partitioned", "wildboot_algebra_partitioned", "BATCH_ENTRIES"]

#: treated (draw, unit) entries routed to the partitions in one round
BATCH_ENTRIES = 1 << 22


def _adoption(pdf: Any, pd_: PartitionedDesign, param: str) -> tuple[np.ndarray, np.ndarray]:
    """The partition's unit ids and each one's adoption period (0 = never)."""
    r = pd_.rows(pdf)
    if r.n == 0:
        return r.unit_ids, np.zeros(0, dtype=np.int64)
    t = np.asarray(r.labels[pd_.period]).astype(np.int64)
    g = adoption_times(r.X[:, pd_.xs.index(param)], t, column=param, units=r.unit_ids, unit_codes=r.unit,
                       require_treated=False).g
    return r.unit_ids, np.asarray(g, dtype=np.int64)


def _tables(pdf: Any, pd_: PartitionedDesign, xc: list[int], theta_y: np.ndarray, thr_L: np.ndarray,
            with_w: bool) -> dict[str, Any]:
    """The partition's unit tables (kept on its worker): the in-memory fast
    engine's kernels on the partition's units."""
    r = pd_.rows(pdf)
    out: dict[str, Any] = dict(yy=0.0, gram=None, n_l=thr_L.size)
    if r.n == 0:
        return out
    wi = pd_.within(r, xc)
    tab, W = kp.unit_tables(*wi.cols, thr_L.astype(np.int64), wi.max_rows, with_w)
    kp.residualize_tables(tab, W, thr_L.size, theta_y)
    out.update(tab=tab, W=W, yy=wi.resid_ss(theta_y), gram=W.T @ W if with_w else None)
    return out


def _small_sums(tab: dict[str, Any]) -> tuple[float, np.ndarray | None]:
    """A partition's residual sum of squares and Gram matrix of its ``W`` rows."""
    return tab["yy"], tab["gram"]


def _route(pick: np.ndarray, lidx: np.ndarray, owner: np.ndarray, local: np.ndarray, n_parts: int) -> list[tuple]:
    """Split a batch's treated entries by partition: per partition ``(draw, local unit, level)``.

    One stable sort of the entries by their unit's partition (a radix sort of
    the narrow partition index), three gathers for the whole batch, then
    views per partition: each partition receives (and scans) only its own
    treated units, with the draws in increasing order; narrow integer types
    halve what is shipped.
    """
    flat = pick.ravel()
    order = np.argsort(owner[flat], kind="stable")
    bounds = np.searchsorted(owner[flat[order]], np.arange(n_parts + 1), side="left")
    K = max(pick.shape[1], 1)
    b = (order // K).astype(np.int32)
    i = local[flat[order]]
    lv = lidx.ravel()[order].astype(np.int16)
    return [(b[lo:hi], i[lo:hi], lv[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _placement(units: list[int]) -> tuple[Any, list[str]] | None:
    """Each partition's worker (:func:`assign_workers` by units) when a
    ``dask.distributed`` client is active; None with dask's local scheduler."""
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return None
    workers = sorted(client.scheduler_info()["workers"])
    return (client, assign_workers(units, workers)) if workers else None


def _draw_sums(tab: dict[str, Any], entries: tuple, B: int, M: int) -> np.ndarray:
    """Per draw: ``[E (M), sum UU, sum Sy]`` over this partition's treated units."""
    if entries[0].size == 0:
        return np.zeros((B, M + 2))
    return kpart.entry_sums(*entries, tab["tab"], tab["n_l"], B)


def _draw_meat(tab: dict[str, Any], entries: tuple, theta: np.ndarray, beta: np.ndarray, z: np.ndarray,
               dense: bool) -> np.ndarray:
    """Per draw: the partition's part of the CRV1 meat by unit.

    ``s_i = s0_i + 1[i treated] c_i`` with ``s0_i = -W_i . z``. Dense: every
    local unit's ``s0`` by one matrix product, and the full ``sum s_i^2``
    (many treated units per draw); else only the treated units' ``s_i^2 -
    s0_i^2`` (the client adds the untreated quadratic form).
    """
    B = theta.shape[0]
    out = np.zeros(B)
    if "tab" not in tab:
        return out
    S0 = np.empty((0, 0))
    if dense:
        S0 = np.ascontiguousarray(-(tab["W"] @ z.T))
        out += np.einsum("ub,ub->b", S0, S0)
    if entries[0].size:
        out += kpart.entry_meat(*entries, tab["tab"], tab["n_l"], tab["W"], np.ascontiguousarray(theta), beta,
                                np.ascontiguousarray(z), S0, dense)
    return out


def placebo_partitioned(fit: PartitionedFeols, param: str, draws: int, scheme: str, stat: str,
                        strata: Any, cluster: Any, cohort: Any, alternative: str, seed: SeedLike, level: float,
                        tuning: Any) -> Any:
    """:func:`staggerlab.placebo` of a partitioned fit (see there); unit + period FEs, iid or CRV1 by unit."""
    import dask

    from ..resampling.placebo import PlaceboResult, clopper_pearson, tie_count
    from ..resampling.placebo_blocks import Context, blocks
    from ..resampling.placebo_sampler import Sampler

    if param not in fit.coefnames:
        raise FormulaError(f"{param!r} is not a coefficient of the fit (coefficients: {fit.coefnames})")
    if scheme not in ("units", "timing", "units+timing"):
        raise PartitionedDesignError(f"scheme {scheme!r} is not available on partitioned panels; use 'units', "
                                     "'timing' or 'units+timing'")
    if strata is not None or cluster is not None or cohort is not None:
        raise PartitionedDesignError("strata=, cluster= and cohort= are not available on partitioned panels yet")
    if stat not in ("t", "coef"):
        raise ArgumentError(f"stat must be 't' or 'coef', got {stat!r}")
    check_alternative(alternative)
    check_level(level)
    draws = check_draws(int(draws))
    spec, pd_ = fit.vcov_spec, fit.design
    by_unit = spec.kind == "CRV1" and spec.clusters == (pd_.unit,)
    if stat == "t" and not (spec.kind == "iid" or by_unit):
        raise PartitionedDesignError(
            f"partitioned placebo t statistics use iid or CRV1 by the unit {pd_.unit!r}; the fit has {spec.label} "
            "(refit with fit.with_vcov, or stat='coef')")
    if use_exact(fit, "placebo"):
        # the in-memory engine on the gathered rows: bit-identical (see .exact)
        from ..resampling.placebo import placebo

        mem = in_memory_fit(fit)
        check_same_fit(fit, mem)
        res = placebo(mem, param=param, draws=draws, scheme=scheme, stat=stat, alternative=alternative, seed=seed,
                      level=level, tuning=tuning)
        return dataclasses.replace(res, method="partitioned-exact")
    # the sample's adoption times, unit by unit in the fit's (sorted) unit order
    ad = run_partitions(fit.ddf, _adoption, pd_, param)
    codes = [np.searchsorted(fit.unit_ids, u) for u, _ in ad]
    g_U = np.zeros(fit.n_units, dtype=np.int64)
    # the narrowest type: argsort sorts int16 keys by radix, the batches' main client cost
    owner = np.zeros(fit.n_units, dtype=np.min_scalar_type(len(ad)))
    local = np.zeros(fit.n_units, dtype=np.int32)  # a unit's row in its partition's tables
    for p, (c, (_, g)) in enumerate(zip(codes, ad)):
        g_U[c] = g
        owner[c] = p
        local[c] = np.arange(c.size)
    if not (g_U > 0).any():
        raise TreatmentError(f"treatment {param!r} is never 1; nothing to permute")
    tvals = pd_.periods.astype(np.int64)
    gvals = np.unique(g_U[g_U != 0])
    sampler = Sampler(scheme, g_U, np.zeros(fit.n_units, dtype=np.int64), np.arange(fit.n_units), gvals, tuning)
    # controls: the fit's columns of F without the treatment
    T = tvals.size
    j = fit.coefnames.index(param)
    keep_c = [m for m in range(fit.C.shape[0]) if m != T - 1 + j]
    C = fit.C[np.ix_(keep_c, keep_c)]
    if scaled_cholesky(C) is None:  # the package's rank rule, as the fast engine
        raise PartitionedDesignError("period dummies + controls are rank deficient after unit demeaning")
    Cinv = np.linalg.inv(C)
    theta_y = np.linalg.solve(C, fit.Fy[keep_c])
    xc = [fit.kept[m] for m in range(len(fit.kept)) if m != j]
    thr_L = np.searchsorted(tvals, gvals)
    with_w = stat == "t" and by_unit
    call = dask.delayed(_tables, pure=True)
    tasks = [call(p, pd_, xc, theta_y, thr_L, with_w) for p in fit.ddf.to_delayed()]
    # tables stay on the worker that built them: balance them by units
    placed = _placement([u.size for u, _ in ad])
    if placed is None:
        tabs = list(dask.persist(*tasks))
    else:
        client, where = placed
        tabs = [client.persist(t, workers=[w], allow_other_workers=False) for t, w in zip(tasks, where)]
    # each partition's (yy, gram) is taken where its tables are: only those
    # small sums travel (a task taking every table would copy them all to one worker)
    small = dask.compute(*[dask.delayed(_small_sums)(t) for t in tabs])
    yy = sum(y for y, _ in small)
    gram = sum(g for _, g in small if g is not None)
    M = C.shape[0]
    # many treated units per draw: every unit's untreated score by one matrix
    # product in its partition (the in-memory engine's rule, PlaceboTuning.gram_ratio)
    dense = tuning.gram_ratio * sampler.units_per_draw() >= fit.n_units
    adj = ssc_factor("CRV1", fit.nobs, fit.df_k, fit.n_units) if with_w else 1.0
    df_resid = fit.nobs - fit.df_k

    def run(pick: np.ndarray, lidx: np.ndarray) -> np.ndarray:
        """The statistics of a batch of draws: one or two rounds over the partitions."""
        routed = _route(pick, lidx, owner, local, len(tabs))
        B = pick.shape[0]
        sums = sum(dask.compute(*[dask.delayed(_draw_sums)(t, e, B, M) for t, e in zip(tabs, routed)]))
        E, uu, dy = sums[:, :M], sums[:, M], sums[:, M + 1]
        theta = E @ Cinv
        dmd = uu - np.einsum("bm,bm->b", E, theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(dmd > COLLIN_TOL * uu, dy / dmd, np.nan)
            if stat == "coef":
                return beta
            if not with_w:
                return beta / np.sqrt((yy - beta**2 * dmd) / df_resid / dmd)
            bz = np.where(np.isfinite(beta), beta, 0.0)
            z = kp.pack_outer(np.ascontiguousarray(theta), bz)
            q0 = 0.0 if dense else np.einsum("bj,jk,bk->b", z, gram, z)
            th, bd, zd = dask.delayed(theta), dask.delayed(bz), dask.delayed(z)
            meat = sum(dask.compute(*[dask.delayed(_draw_meat)(t, e, th, bd, zd, dense)
                                      for t, e in zip(tabs, routed)]))
            return beta / np.sqrt(adj * (q0 + meat) / dmd**2)

    # the sampler's slabs, in order, batched so that a round over the
    # partitions carries about BATCH_ENTRIES treated entries; the client
    # draws the next batch while the workers sum this one (a batch's
    # statistics do not depend on when it runs)
    ss = as_seedsequence(seed)
    futures: list[Future] = []
    picks: list[np.ndarray] = []
    lidxs: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="staggerlab-placebo") as pool:
        def submit() -> None:
            if futures:
                futures[-1].result()  # at most one batch in flight bounds the client's memory
            futures.append(pool.submit(run, np.vstack(picks), np.vstack(lidxs)))

        for index, size in blocks(draws):
            for _, pick, lidx in sampler.slabs(block_generator(ss, index), size):
                picks.append(pick)
                lidxs.append(lidx)
                if sum(q.size for q in picks) >= BATCH_ENTRIES:
                    submit()
                    picks, lidxs = [], []
        if picks:
            submit()
        statistics = np.concatenate([f.result() for f in futures])
    tabs.clear()  # release the workers' tables
    observed = float(fit.coef()[param] if stat == "coef" else fit.tstat()[param])
    valid = np.isfinite(statistics)
    n_valid = int(valid.sum())
    if n_valid < draws:
        warnings.warn(f"{draws - n_valid} placebo draw(s) gave a treatment collinear with the fixed effects/controls "
                      "and were left out of the p-value", StaggerlabWarning, stacklevel=3)
    count = tie_count(statistics[valid], observed, alternative)
    ci = clopper_pearson(count, n_valid, level) if n_valid else (np.nan, np.nan)
    ctx = Context(ss, scheme, sampler, None, True, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    return PlaceboResult(
        param=param, stat=stat, scheme=scheme, alternative=alternative, observed=observed, statistics=statistics,
        units=fit.unit_ids, pvalue=(1 + count) / (1 + n_valid), pvalue_ci=ci, count=count, n_valid=n_valid,
        level=level, method="partitioned", _ctx=ctx, _draws=draws)


# ------------------------------------------------------------ wild bootstrap
def _boot_sums(pdf: Any, pd_: PartitionedDesign, xc: list[int], theta: np.ndarray, order: np.ndarray,
               a: np.ndarray, cl: str) -> tuple[Any, np.ndarray]:
    """Per-cluster ``[sum x u, sum x r, sum r u, sum r r]`` of this partition
    (x: the bootstrap design's row, the controls then the period dummies)."""
    r = pd_.rows(pdf)
    M = a.size
    if r.n == 0:
        return None, np.empty((0, 2 * M + 2))
    F, yu = pd_.dense(r, xc)
    u = yu - F @ theta
    Xb = F[:, order]
    rr = Xb @ a
    vals = np.column_stack([Xb * u[:, None], Xb * rr[:, None], rr * u, rr * rr])
    if cl == pd_.unit:
        out = np.empty((r.unit_ids.size, vals.shape[1]))
        for j in range(vals.shape[1]):
            out[:, j] = np.bincount(r.unit, weights=vals[:, j], minlength=r.unit_ids.size)
        return r.unit_ids, out
    lab = r.labels[cl]
    first = np.empty(r.unit_ids.size, dtype=lab.dtype)
    first[r.unit] = lab
    if (first[r.unit] != lab).any():
        raise PartitionedDesignError(f"the partitioned wild bootstrap needs clusters {cl!r} that contain whole units")
    frame = pl.DataFrame({cl: lab, **{f"v{j}": vals[:, j] for j in range(vals.shape[1])}})
    g = frame.group_by(cl).sum()
    return g[cl].to_numpy(), g.drop(cl).to_numpy()


def wildboot_algebra_partitioned(fit: PartitionedFeols, param: str, cluster: Any, bootcluster: Any,
                                 impose_null: bool, notes: list[str]) -> tuple[Any, list[str], str, int, int, float]:
    """The wild bootstrap algebra of a partitioned fit (``alg, names, bootcluster, G, n_boot, adj``).

    One pass over the partitions sums, per cluster, what
    :func:`~staggerlab.inference.resampling.wildboot_algebra.algebra` sums
    per cluster in memory; the bootstrap design is ``[X_u, D_u]`` (controls
    and period dummies, unit-demeaned), which spans the in-memory ``[Xw, D_u]``
    (the year FE is not nested in clusters of units, so its dummies are
    regressors of the bootstrap), with the same tested coefficient, residuals
    and ``r``; clusters are put in sorted order of their ids, as in memory.
    """
    from ...errors import WildBootError
    from ..regression.vcov import parse_clusters
    from ..resampling.wildboot_algebra import from_cluster_sums

    spec, pd_ = fit.vcov_spec, fit.design
    if param not in fit.coefnames:
        raise WildBootError(f"param {param!r} is not a coefficient of the model; coefficients: {fit.coefnames}")
    names = list(parse_clusters(cluster)) if cluster is not None else list(spec.clusters)
    if spec.kind != "CRV1" or tuple(names) != spec.clusters or len(names) != 1 or bootcluster not in (None, names[0]):
        raise PartitionedDesignError(
            "the partitioned wild bootstrap uses the fit's one-way CRV1 clustering (by a column containing the "
            f"units) as variance and bootstrap clusters; the fit has {spec.label}")
    cl = names[0]
    if use_exact(fit, "wildboot"):
        return _wildboot_exact(fit, param, cluster, bootcluster, impose_null, notes)
    notes.append("partitioned algebra: statistics equal to the in-memory ones at about 1e-15 of their scale, not "
                 "bit-identical (the rows exceed the fit's client_budget for the bit-identical route)")
    T, k = pd_.periods.size, len(fit.kept)
    p = fit.coefnames.index(param)
    order = np.r_[np.arange(T - 1, T - 1 + k), np.arange(T - 1)]  # [X, D]: the tested column first block
    Cb = fit.C[np.ix_(order, order)]
    A = np.linalg.inv(Cb)
    A = (A + A.T) / 2
    a = np.ascontiguousarray(A[:, p])
    res = run_partitions(fit.ddf, _boot_sums, pd_, fit.kept, fit.theta, order, a, cl)
    res = [x for x in res if x[0] is not None]
    M = a.size
    if cl == pd_.unit:
        ids = np.concatenate([x[0] for x in res])
        sums = np.vstack([x[1] for x in res])
    else:
        frame = pl.concat([pl.DataFrame({cl: x[0], **{f"v{j}": x[1][:, j] for j in range(x[1].shape[1])}})
                           for x in res]).group_by(cl).sum()
        ids, sums = frame[cl].to_numpy(), frame.drop(cl).to_numpy()
    srt = np.argsort(ids, kind="stable")  # cluster codes follow the sorted ids, as in memory
    sums = sums[srt]
    G = sums.shape[0]
    if G < 2:
        raise VcovError(f"the wild cluster bootstrap needs at least 2 clusters, found {G}")
    S = np.ascontiguousarray(np.stack([sums[:, :M], sums[:, M:2 * M]]))
    ru = np.ascontiguousarray(sums[:, 2 * M:].T)
    adj = ssc_factor("CRV1", fit.nobs, fit.df_k, G)
    notes.append(f"fixed effect(s) {[pd_.period]} are not nested in the bootstrap clusters; they enter the "
                 "bootstrap as regressors (exact, as with dummies)")
    alg = from_cluster_sums(A, p, S, ru, adj, float(fit.beta[p]), impose_null)
    return alg, names, cl, G, G, adj


def _wildboot_exact(fit: PartitionedFeols, param: str, cluster: Any, bootcluster: Any, impose_null: bool,
                    notes: list[str]) -> tuple[Any, list[str], str, int, int, float]:
    """The in-memory bootstrap algebra of the gathered rows (bit-identical, see :mod:`.exact`)."""
    from ..resampling.wildboot import WildBootTuning
    from ..resampling.wildboot_algebra import algebra
    from ..resampling.wildboot_design import boot_clusters, boot_design

    mem = in_memory_fit(fit)
    check_same_fit(fit, mem)
    # the steps of wildboot's in-memory algebra, on the in-memory fit
    bc = boot_clusters(mem, cluster, bootcluster, notes)
    bd = boot_design(mem, mem.design.regressors.index(param), bc.boot, WildBootTuning().chunk_rows)
    if bd.explicit_fe:
        notes.append(f"fixed effect(s) {bd.explicit_fe} are not nested in the bootstrap clusters; they enter the "
                     "bootstrap as regressors (exact, as with dummies)")
    notes.append("rows gathered to the client: bit-identical to the in-memory fit of the rows sorted by unit and "
                 "period")
    alg = algebra(bd, bc.boot, bc.n_boot, [(c, sign) for c, sign, _ in bc.parts], bc.adj, impose_null)
    return alg, bc.names, bc.bname, bc.G, bc.n_boot, bc.adj
