"""Shared fixtures: hypothesis profile, pyfixest's example data, simulated panels."""

from __future__ import annotations

import os
import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, settings

# numba's OpenMP threading layer spin-waits by default; on a shared or busy machine
# that makes each small parallel kernel call cost ~100 ms instead of ~0.5 ms (measured
# here: the suite took 98 s instead of 17 s). Must be set before libgomp loads.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

# Bounded example counts keep the default run fast; HYPOTHESIS_PROFILE=thorough digs deeper.
settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def pf_data():
    """pyfixest's example data (pandas; has missing values in Y, X1, f1)."""
    import pyfixest as pf

    return pf.get_data()


@pytest.fixture(scope="session")
def sim_panel() -> pl.DataFrame:
    """An unbalanced staggered panel with singletons, a third FE, weights and clusters."""
    import staggerlab as sl

    df = sl.simulate.staggered(300, 5, n_controls=3, drop_share=0.3, seed=11)
    rng = np.random.default_rng(5)
    return df.with_columns(
        region=pl.Series(rng.integers(0, 8, df.height)),
        w=pl.Series(rng.uniform(0.2, 5.0, df.height)),
        y2=df["y"] + pl.Series(rng.normal(size=df.height)),
    )


@pytest.fixture(scope="session")
def pf_feols():
    """pyfixest ``feols`` at fixef_tol=1e-13 (typed demeaner config), warnings silenced."""
    import pyfixest as pf

    demeaner = pf.MapDemeaner(fixef_tol=1e-13, fixef_maxiter=100_000)

    def fit(fml, data, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pf.feols(fml, data, demeaner=demeaner, **kw)

    return fit
