"""Entropy-weight composite index: a hand-derived example and properties."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from staggerlab.errors import MissingValueError
from staggerlab.inference.selection.entropy_index import EntropyIndexError, entropy_index

#: float round-off of a handful of sums and logs
EXACT_TOL = 1e-12


def _by_hand(x: np.ndarray, direction: int, shift: float = 0.0) -> tuple[np.ndarray, float]:
    """One indicator's normalised values and entropy, written out step by step."""
    n = x.size
    if direction == 1:
        z = np.array([(v - x.min()) / (x.max() - x.min()) for v in x])
    else:
        z = np.array([(x.max() - v) / (x.max() - x.min()) for v in x])
    zs = z + shift
    p = zs / zs.sum()
    terms = [pi * np.log(pi) if pi > 0 else 0.0 for pi in p]
    e = -sum(terms) / np.log(n)
    return z, e


def test_hand_computed_example():
    # 5 firms, three indicators: R&D (benefit), patents (benefit), energy use (cost)
    rd = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    pat = np.array([10.0, 10.0, 40.0, 20.0, 30.0])
    energy = np.array([7.0, 2.0, 5.0, 9.0, 1.0])
    df = pl.DataFrame({"rd": rd, "pat": pat, "energy": energy})
    res = entropy_index(df, ["rd", "pat", "energy"], [1, 1, -1])

    z1, e1 = _by_hand(rd, 1)
    z2, e2 = _by_hand(pat, 1)
    z3, e3 = _by_hand(energy, -1)
    # rd: z = (0, .5, .25, 1, .75); p = z / 2.5
    np.testing.assert_allclose(z1, [0, 0.5, 0.25, 1, 0.75], atol=EXACT_TOL)
    p1 = np.array([0, 0.2, 0.1, 0.4, 0.3])
    e1_closed = -(0.2 * np.log(0.2) + 0.1 * np.log(0.1) + 0.4 * np.log(0.4) + 0.3 * np.log(0.3)) / np.log(5)
    np.testing.assert_allclose(e1, e1_closed, atol=EXACT_TOL)
    np.testing.assert_allclose(z1 / z1.sum(), p1, atol=EXACT_TOL)
    d = 1 - np.array([e1, e2, e3])
    w = d / d.sum()
    index = w[0] * z1 + w[1] * z2 + w[2] * z3

    got = res.weights
    np.testing.assert_allclose(got["entropy"].to_numpy(), [e1, e2, e3], atol=EXACT_TOL)
    np.testing.assert_allclose(got["redundancy"].to_numpy(), d, atol=EXACT_TOL)
    np.testing.assert_allclose(got["weight"].to_numpy(), w, atol=EXACT_TOL)
    np.testing.assert_allclose(res.index.to_numpy(), index, atol=EXACT_TOL)
    np.testing.assert_allclose(res.normalised["energy"].to_numpy(), z3, atol=EXACT_TOL)
    assert res.tidy().columns == ["column", "direction", "entropy", "redundancy", "weight"]
    assert "energy" in res.summary()


def test_shift_variant():
    x = np.array([[1.0, 4.0], [2.0, 1.0], [6.0, 3.0], [3.0, 3.5]])
    res = entropy_index(pl.DataFrame({"a": x[:, 0], "b": x[:, 1]}), ["a", "b"], [1, -1], shift=1e-4)
    za, ea = _by_hand(x[:, 0], 1, 1e-4)
    zb, eb = _by_hand(x[:, 1], -1, 1e-4)
    d = 1 - np.array([ea, eb])
    w = d / d.sum()
    np.testing.assert_allclose(res.weights["weight"].to_numpy(), w, atol=EXACT_TOL)
    # the index uses the unshifted normalised values
    np.testing.assert_allclose(res.index.to_numpy(), w[0] * za + w[1] * zb, atol=EXACT_TOL)


matrices = arrays(
    np.float64,
    st.tuples(st.integers(3, 12), st.integers(2, 4)),
    elements=st.floats(-50, 50, allow_nan=False, width=32),
)


@given(X=matrices, flips=st.lists(st.sampled_from([1, -1]), min_size=4, max_size=4))
def test_properties(X, flips):
    m = X.shape[1]
    dirs = flips[:m]
    X = X.copy()
    X[:, 0] = 7.0  # a constant column
    if np.ptp(X[:, 1:], axis=0).max() == 0:
        X[0, 1] += 1.0
    cols = [f"c{j}" for j in range(m)]
    df = pl.DataFrame({c: X[:, j] for j, c in enumerate(cols)})
    res = entropy_index(df, cols, dirs)
    w = res.weights["weight"].to_numpy()
    assert abs(w.sum() - 1) < EXACT_TOL
    assert (w >= -EXACT_TOL).all()
    assert w[0] == 0.0
    ix = res.index.to_numpy()
    assert (ix >= -EXACT_TOL).all() and (ix <= 1 + EXACT_TOL).all()
    # flipping a direction is the same as negating the column
    flipped = df.with_columns(-pl.col("c1"))
    res2 = entropy_index(flipped, cols, [dirs[0], -dirs[1], *dirs[2:]])
    np.testing.assert_allclose(res2.normalised["c1"].to_numpy(), res.normalised["c1"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(res2.weights["weight"].to_numpy(), w, atol=1e-12)
    # and a benefit column's normalisation is one minus its cost normalisation
    res3 = entropy_index(df, cols, [dirs[0], -dirs[1], *dirs[2:]])
    z1, z3 = res.normalised["c1"].to_numpy(), res3.normalised["c1"].to_numpy()
    if np.ptp(X[:, 1]) > 0:
        np.testing.assert_allclose(z1 + z3, 1.0, atol=1e-12)


def test_by_group_equals_separate_fits():
    rng = np.random.default_rng(4)
    df = pl.DataFrame(
        {"year": np.repeat([2019, 2020, 2021], 6), "a": rng.normal(size=18), "b": rng.gamma(2, size=18)}
    )
    res = entropy_index(df, ["a", "b"], {"a": 1, "b": -1}, by="year")
    assert res.weights.height == 6
    for yr in (2019, 2020, 2021):
        part = df.filter(pl.col("year") == yr)
        sep = entropy_index(part, ["a", "b"], [1, -1])
        mask = (df["year"] == yr).to_numpy()
        np.testing.assert_allclose(res.index.to_numpy()[mask], sep.index.to_numpy(), atol=EXACT_TOL)
        np.testing.assert_allclose(
            res.weights.filter(pl.col("year") == yr)["weight"].to_numpy(), sep.weights["weight"].to_numpy(),
            atol=EXACT_TOL,
        )


def test_bad_input():
    df = pl.DataFrame({"a": [1.0, None, 3.0], "b": [1.0, 2.0, 3.0], "c": [2.0, 2.0, 2.0]})
    with pytest.raises(MissingValueError, match="missing"):
        entropy_index(df, ["a", "b"])
    with pytest.raises(EntropyIndexError, match="constant"):
        entropy_index(df, ["c"])
    with pytest.raises(EntropyIndexError, match="at least 2 rows"):
        entropy_index(df.head(1), ["b"])
    with pytest.raises(ValueError, match="directions"):
        entropy_index(df, ["b", "c"], [1, 0])
    with pytest.raises(TypeError, match="direction"):
        entropy_index(df, ["b", "c"], [1])


# ------------------------------------------------------- user labels only (#23)
def test_messages_name_user_labels_only():
    df = pl.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [3.0, 1.0, 2.0, 4.0, 6.0], "year": [1, 1, 1, 2, 3]})
    with pytest.raises(EntropyIndexError, match=r"in group \{'year': 2\}$") as err:
        entropy_index(df, ["a", "b"], by="year")
    assert "_g" not in str(err.value)
    # missing values: only the columns that have them, each once
    holes = df.with_columns(b=pl.Series([3.0, None, 2.0, np.nan, 6.0]))
    with pytest.raises(MissingValueError) as err:
        entropy_index(holes, ["a", "b"], by=["year", "year"])
    msg = str(err.value)
    assert msg.startswith("2 row(s)") and msg.count("'b'") == 1 and "'a'" not in msg and "year" not in msg
    with pytest.raises(ValueError, match="'b' listed more than once"):
        entropy_index(df, ["a", "b", "b"])


def test_group_column_named_like_a_helper_is_kept():
    """A user's group column may carry any name (the groups used to be keyed by a helper column '_g')."""
    x = np.array([[1.0, 3.0], [2.0, 1.0], [3.0, 2.0], [4.0, 5.0], [5.0, 5.0], [6.0, 4.0]])
    df = pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "_g": [7, 7, 7, 9, 9, 9]})
    res = entropy_index(df, ["a", "b"], by="_g")
    assert res.weights["_g"].to_list() == [7, 7, 9, 9]
    for g, rows in ((7, slice(0, 3)), (9, slice(3, 6))):
        ref = entropy_index(pl.DataFrame({"a": x[rows, 0], "b": x[rows, 1]}), ["a", "b"])
        np.testing.assert_allclose(res.weights.filter(pl.col("_g") == g)["weight"].to_numpy(),
                                   ref.weights["weight"].to_numpy(), atol=EXACT_TOL)
