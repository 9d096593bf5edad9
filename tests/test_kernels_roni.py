"""RONI scores (paper, Algorithm 2): the Numba kernels equal the NumPy reference exactly,
and the reference equals the definition err(w_s) - err(w_s + delta)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tormentor.engine import kernels
from tormentor.engine.kernels.roni_reference import PreparedValidation


def get(backend: str, name: str):
    return getattr(kernels, name) if backend == "active" else kernels.reference(name)


def validation_set(rng: np.random.Generator, n: int, d: int):
    X = rng.normal(size=(n, d))
    w_true = rng.normal(size=d)
    y = np.where(X @ w_true + 0.5 * rng.normal(size=n) > 0, 1.0, -1.0)
    return X, y


def errors_def(w, X, y) -> int:
    """0-1 errors by definition: a row is correct only if y * w.x > 0."""
    errors = 0
    for x, label in zip(X, y, strict=True):
        margin = label * sum(a * b for a, b in zip(w, x, strict=True))
        errors += not margin > 0
    return errors


def scores_def(w_s, deltas, X, y) -> np.ndarray:
    n = X.shape[0]
    base = errors_def(w_s, X, y) / n
    return np.array([base - errors_def(w_s + delta, X, y) / n for delta in deltas])


# ---------------------------------------------------------------------------------------
# the reference against the definition (integer-valued data: every sum is exact)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["active", "reference"])
def test_scores_equal_the_definition_on_exact_integer_data(backend):
    rng = np.random.default_rng(1)
    n, d, C = 300, 6, 23
    X = rng.integers(-3, 4, size=(n, d)).astype(np.float64)  # many exact-zero margins
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    w_s = rng.integers(-2, 3, size=d).astype(np.float64)
    deltas = rng.integers(-2, 3, size=(C, d)).astype(np.float64)
    scores = get(backend, "roni_scores")(w_s, deltas, X, y)
    np.testing.assert_array_equal(scores, scores_def(w_s, deltas, X, y))
    assert scores.dtype == np.float64 and scores.shape == (C,)


def test_score_signs_follow_the_update():
    rng = np.random.default_rng(2)
    X, y = validation_set(rng, 2000, 5)
    w_good = np.linalg.lstsq(X, y, rcond=None)[0]
    w_s = np.zeros(5) + 1e-3
    deltas = np.stack([w_good - w_s, -w_good - w_s, np.zeros(5)])
    for backend in ("active", "reference"):
        helpful, harmful, nothing = get(backend, "roni_scores")(w_s, deltas, X, y)
        assert helpful > 0 > harmful
        assert nothing == 0.0


# ---------------------------------------------------------------------------------------
# Numba equals the reference, exactly
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("C", [1, 2, 3, 4, 5, 10, 101, 126, 127, 128, 1000])
@pytest.mark.parametrize("n,d", [(9000, 24), (9000, 25), (257, 3), (256, 1), (1, 2)])
def test_kernel_equals_reference(C, n, d):
    rng = np.random.default_rng(C * 1000 + d)
    X, y = validation_set(rng, n, d)
    prepared = kernels.prepare_validation(X, y)
    w_s = rng.normal(size=d)
    deltas = rng.normal(size=(C, d)) * rng.choice([0.01, 0.1, 1.0], size=(C, 1))
    got = kernels.roni_scores_prepared(w_s, deltas, prepared)
    want = kernels.reference("roni_scores_prepared")(w_s, deltas, prepared)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(kernels.roni_scores(w_s, deltas, X, y), want)


def test_kernel_equals_reference_where_summation_order_matters():
    """Margins that cancel catastrophically: only the same order gives the same signs."""
    rng = np.random.default_rng(3)
    n, d, C = 2000, 8, 64
    X = rng.choice([1e16, -1e16, 1.0, -1.0, 3.0, 0.5], size=(n, d))
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    w_s = rng.choice([1.0, -1.0, 0.5], size=d)
    deltas = rng.choice([0.0, 1.0, -1.0, 2.0**-30], size=(C, d))
    prepared = kernels.prepare_validation(X, y)
    got = kernels.roni_scores_prepared(w_s, deltas, prepared)
    want = kernels.reference("roni_scores_prepared")(w_s, deltas, prepared)
    np.testing.assert_array_equal(got, want)
    # the data does make the order matter: summing the features backwards disagrees
    from tormentor.engine.kernels import roni_reference

    W = roni_reference.candidate_weights(w_s, deltas, prepared)
    forwards = roni_reference.error_counts(W, prepared.yxt)
    backwards = roni_reference.error_counts(W[:, ::-1].copy(), prepared.yxt[::-1].copy())
    assert np.any(forwards != backwards)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 300),
    d=st.integers(1, 30),
    C=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
    integer_valued=st.booleans(),
    bad_fraction=st.sampled_from([0.0, 0.02, 0.5]),
)
def test_kernel_equals_reference_on_arbitrary_candidates(n, d, C, seed, integer_valued, bad_fraction):
    rng = np.random.default_rng(seed)

    def values(shape):  # small integers make exact-zero margins (ties) common
        return rng.integers(-3, 4, size=shape) * 1.0 if integer_valued else rng.normal(size=shape)

    X, w_s, deltas = values((n, d)), values(d), values((C, d))
    bad = rng.random((C, d)) < bad_fraction
    deltas[bad] = rng.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    prepared = kernels.reference("prepare_validation")(X, y)
    got = kernels.roni_scores_prepared(w_s, deltas, prepared)
    want = kernels.reference("roni_scores_prepared")(w_s, deltas, prepared)
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------
# poisoned updates
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["active", "reference"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_update_never_looks_helpful(backend, bad):
    rng = np.random.default_rng(4)
    X, y = validation_set(rng, 500, 5)
    w_s = np.linalg.lstsq(X, y, rcond=None)[0] * 0.1
    deltas = np.zeros((3, 5))
    deltas[1, 2] = bad
    deltas[2, :] = bad
    prepared = get(backend, "prepare_validation")(X, y)
    scores = get(backend, "roni_scores_prepared")(w_s, deltas, prepared)
    base = kernels.error_rate(w_s, X, y)
    assert scores[0] == 0.0
    assert scores[1] == scores[2] == base - 1.0  # every row is an error


@pytest.mark.parametrize("backend", ["active", "reference"])
def test_nan_snapshot_scores_every_update_as_harmless(backend):
    X, y = validation_set(np.random.default_rng(5), 50, 3)
    w_s = np.array([np.nan, 0.0, 0.0])
    scores = get(backend, "roni_scores")(w_s, np.ones((4, 3)), X, y)
    np.testing.assert_array_equal(scores, np.zeros(4))  # 1 - 1: everything is an error


# ---------------------------------------------------------------------------------------
# the prepared validation set
# ---------------------------------------------------------------------------------------


def test_prepared_layout_is_shared_by_both_backends():
    rng = np.random.default_rng(6)
    X, y = validation_set(rng, 100, 4)
    X_before, y_before = X.copy(), y.copy()
    a = kernels.prepare_validation(X, y)
    b = kernels.reference("prepare_validation")(X, y)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)
    assert isinstance(a, PreparedValidation) and isinstance(b, PreparedValidation)
    np.testing.assert_array_equal(a.yxt, (y[:, None] * X).T)
    assert a.yxt.flags.c_contiguous and not a.yxt.flags.writeable
    assert (a.n, a.d) == (100, 4)
    assert repr(a) == "PreparedValidation(n=100, d=4)"
    w_s, deltas = rng.normal(size=4), rng.normal(size=(9, 4))
    for prepared in (a, b):
        np.testing.assert_array_equal(
            kernels.roni_scores_prepared(w_s, deltas, prepared),
            kernels.reference("roni_scores_prepared")(w_s, deltas, prepared),
        )


def test_prepare_accepts_any_memory_layout():
    rng = np.random.default_rng(7)
    X, y = validation_set(rng, 60, 5)
    a = kernels.prepare_validation(np.asfortranarray(X), y)
    np.testing.assert_array_equal(a.yxt, kernels.prepare_validation(X, y).yxt)


@pytest.mark.parametrize("backend", ["active", "reference"])
def test_no_candidates_gives_empty_scores(backend):
    X, y = validation_set(np.random.default_rng(8), 10, 3)
    scores = get(backend, "roni_scores")(np.zeros(3), np.empty((0, 3)), X, y)
    assert scores.shape == (0,) and scores.dtype == np.float64


# ---------------------------------------------------------------------------------------
# validation: same errors, same messages on both backends
# ---------------------------------------------------------------------------------------

Xv, Yv = np.ones((5, 3)), np.array([1.0, -1.0, 1.0, 1.0, -1.0])

BAD_PREPARE = [
    ((Xv, np.array([1.0, -1.0, 0.0, 1.0, 1.0])), ValueError, "only -1.0 and"),
    ((Xv, np.ones(4)), ValueError, "y_val has 4"),
    ((np.where(np.eye(5, 3) > 0, np.nan, 1.0), Yv), ValueError, "finite"),
    ((np.where(np.eye(5, 3) > 0, np.inf, 1.0), Yv), ValueError, "finite"),
    ((np.ones((0, 3)), np.ones(0)), ValueError, "at least one row"),
    ((np.ones((5, 0)), Yv), ValueError, "at least one row"),
    ((Xv.astype(np.float32), Yv), TypeError, "float64"),
    ((Xv.tolist(), Yv), TypeError, "X_val must be"),
    ((Xv[0], Yv), ValueError, "X_val must be 2-D"),
]


@pytest.mark.parametrize("args,error,message", BAD_PREPARE)
def test_bad_validation_set_raises_same_error_on_both_backends(args, error, message):
    with pytest.raises(error, match=message) as active:
        kernels.prepare_validation(*args)
    with pytest.raises(error, match=message) as reference:
        kernels.reference("prepare_validation")(*args)
    assert str(active.value) == str(reference.value)


PREPARED = kernels.reference("prepare_validation")(Xv, Yv)

BAD_SCORE = [
    ((np.zeros(2), np.zeros((1, 3)), PREPARED), ValueError, "w_s has 2"),
    ((np.zeros(3), np.zeros((1, 4)), PREPARED), ValueError, "deltas has 4"),
    ((np.zeros(3), np.zeros(3), PREPARED), ValueError, "deltas must be 2-D"),
    ((np.zeros(3, np.int64), np.zeros((1, 3)), PREPARED), TypeError, "w_s must have"),
    ((np.zeros(3), np.zeros((1, 3)), (Xv, Yv)), TypeError, "prepare_validation"),
]


@pytest.mark.parametrize("args,error,message", BAD_SCORE)
def test_bad_scores_arguments_raise_same_error_on_both_backends(args, error, message):
    with pytest.raises(error, match=message) as active:
        kernels.roni_scores_prepared(*args)
    with pytest.raises(error, match=message) as reference:
        kernels.reference("roni_scores_prepared")(*args)
    assert str(active.value) == str(reference.value)


@pytest.mark.skipif(kernels.BACKEND != "numba", reason="Numba is not active")
def test_same_signatures_on_both_backends():
    from tormentor.engine.kernels import roni, roni_reference

    for name in ("prepare_validation", "roni_scores", "roni_scores_prepared"):
        assert inspect.signature(getattr(roni, name)) == inspect.signature(getattr(roni_reference, name))


def test_reference_backend_is_used_when_numba_is_disabled():
    code = """
import sys
import numpy as np
from tormentor.engine import kernels
assert kernels.BACKEND == "reference", kernels.BACKEND
X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]); y = np.array([1.0, 1.0, -1.0])
prepared = kernels.prepare_validation(X, y)
deltas = np.array([[0.0, 0.0], [-2.0, -2.0]])
s = kernels.roni_scores_prepared(np.array([1.0, 1.0]), deltas, prepared)
assert s.tolist() == [0.0, -1.0 / 3.0], s
assert kernels.roni_scores(np.array([1.0, 1.0]), deltas, X, y).tolist() == s.tolist()
for name in ("prepare_validation", "roni_scores", "roni_scores_prepared"):
    assert getattr(kernels, name).__module__.endswith(".roni_reference"), name
assert "numba" not in sys.modules, "the reference backend must not import numba"
print("ok")
"""
    env = {**os.environ, "TORMENTOR_NO_NUMBA": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
