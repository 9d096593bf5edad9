"""Logistic-regression kernels: the Numba backend against the NumPy reference, and the
reference against straightforward definitions (paper, Appendix A, eq. (1)-(2))."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tormentor.engine import kernels
from tormentor.engine.kernels import logistic_reference

NAMES = [
    "logistic_gradient",
    "logistic_gradient_into",
    "logistic_loss",
    "error_count",
    "error_rate",
    "sgd_steps",
]


def both(name: str) -> list:
    """The active backend's function and the reference, as pytest params."""
    return [
        pytest.param(getattr(kernels, name), id=f"{kernels.BACKEND}"),
        pytest.param(kernels.reference(name), id="reference"),
    ]


def random_problem(rng: np.random.Generator, b: int, d: int, scale: float = 1.0, *, wrong=False):
    """w (d,), X (b, d) of magnitude ``scale``, y (b,); ``wrong``: every row misclassified."""
    X = rng.normal(size=(b, d)) * scale
    w = rng.normal(size=d) * 1e-3
    y = np.where(rng.random(b) < 0.5, -1.0, 1.0)
    if wrong:
        y = np.where(X @ w > 0, -1.0, 1.0)
    return w, X, y


def gradient_via_into(impl_into, w, X, y, clip, lam):
    out = np.full(w.shape[0], 123.0)
    assert impl_into(w, X, y, clip, lam, out) is None
    return out


# ---------------------------------------------------------------------------------------
# straightforward definitions (pure Python, math module)
# ---------------------------------------------------------------------------------------


def sigmoid_def(t: float) -> float:
    if t >= 0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


def per_example_def(w, x, y, clip) -> np.ndarray:
    z = sum(float(wj) * float(xj) for wj, xj in zip(w, x, strict=True))
    c = -y * sigmoid_def(-y * z)
    g = np.array([c * float(xj) for xj in x])
    norm = math.sqrt(sum(v * v for v in g))
    return g * min(1.0, clip / norm) if norm > 0 else g


def gradient_def(w, X, y, clip, lam) -> np.ndarray:
    rows = [per_example_def(w, X[i], y[i], clip) for i in range(X.shape[0])]
    return np.mean(rows, axis=0) + lam * w


def loss_def(w, X, y) -> float:
    total = 0.0
    for x, label in zip(X, y, strict=True):
        m = -label * sum(float(a) * float(b) for a, b in zip(w, x, strict=True))
        total += math.log(1.0 + math.exp(m)) if m < 30 else m + math.log1p(math.exp(-m))
    return total / X.shape[0]


def error_count_def(w, X, y) -> int:
    return sum(1 for x, label in zip(X, y, strict=True) if not label * float(np.dot(w, x)) > 0)


# ---------------------------------------------------------------------------------------
# the reference alone
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", [0.05, 0.5, 1.0, math.inf])
def test_reference_per_example_gradients_match_definition(clip):
    rng = np.random.default_rng(1)
    w, X, y = random_problem(rng, 12, 7, scale=2.0)
    X[3] = 0.0
    got = logistic_reference.clipped_per_example_gradients(w, X, y, clip)
    want = np.array([per_example_def(w, X[i], y[i], clip) for i in range(12)])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("clip,lam", [(0.3, 0.0), (1.0, 0.01), (math.inf, 0.5)])
def test_reference_gradient_matches_definition(clip, lam):
    rng = np.random.default_rng(2)
    w, X, y = random_problem(rng, 9, 5, scale=3.0)
    want = gradient_def(w, X, y, clip, lam)
    np.testing.assert_allclose(
        kernels.reference("logistic_gradient")(w, X, y, clip, lam), want, rtol=1e-12, atol=1e-15
    )


def test_reference_loss_error_count_match_definitions():
    rng = np.random.default_rng(3)
    w, X, y = random_problem(rng, 50, 6, scale=4.0)
    X[0] = 0.0  # margin exactly 0: an error
    assert kernels.reference("logistic_loss")(w, X, y) == pytest.approx(loss_def(w, X, y), rel=1e-13)
    assert kernels.reference("error_count")(w, X, y) == error_count_def(w, X, y)


def test_gradient_at_zero_weights_is_half_mean_of_minus_yx():
    """w = 0: sigmoid(0) = 1/2, so each unclipped gradient is -y x / 2."""
    rng = np.random.default_rng(4)
    _, X, y = random_problem(rng, 8, 4)
    X /= 10.0 * np.linalg.norm(X, axis=1, keepdims=True)  # norms 0.1: nothing is clipped
    want = np.mean(-0.5 * y[:, None] * X, axis=0)
    for impl in (kernels.logistic_gradient, kernels.reference("logistic_gradient")):
        np.testing.assert_allclose(impl(np.zeros(4), X, y, 1.0, 0.0), want, rtol=1e-14)


# ---------------------------------------------------------------------------------------
# clipping
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3, 1e200, 1e300])
@pytest.mark.parametrize("clip", [1e-3, 1.0, 7.0])
def test_every_clipped_per_example_gradient_has_norm_at_most_clip(scale, clip):
    rng = np.random.default_rng(5)
    w, X, y = random_problem(rng, 30, 25, scale=scale, wrong=True)
    G = logistic_reference.clipped_per_example_gradients(w, X, y, clip)
    norms = np.array([math.hypot(*row) for row in G])
    assert np.all(norms <= clip * (1 + 1e-12))
    if scale >= 1e3:  # large misclassified rows: clipped to exactly clip (not to 0)
        np.testing.assert_allclose(norms, clip, rtol=1e-12)


@pytest.mark.parametrize("impl", both("logistic_gradient"))
@pytest.mark.parametrize("scale", [1.0, 1e150, 1e300])
def test_one_example_gradient_is_clipped(impl, scale):
    """b = 1 and lam = 0: the kernel's output is one clipped gradient, norm <= clip."""
    rng = np.random.default_rng(6)
    for _ in range(20):
        w, X, y = random_problem(rng, 1, 25, scale=scale, wrong=True)
        g = impl(w, X, y, 0.5, 0.0)
        assert np.all(np.isfinite(g))
        assert 0.0 < math.hypot(*g) <= 0.5 * (1 + 1e-12)


# ---------------------------------------------------------------------------------------
# Numba against the reference
# ---------------------------------------------------------------------------------------


def margin_rounding(w, X):
    """Bound on the rounding error of each margin ``w . x_i`` (n,), capped at the largest double.

    The backends sum a margin in different orders (NumPy's einsum picks its SIMD order by
    CPU), so a margin may differ by up to ``d eps sum_j |x_ij w_j|`` between them: far more
    than the margin itself when its terms cancel.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        spread = (np.abs(X) * np.abs(w)).sum(axis=1)
    return np.minimum(2.0 * X.shape[1] * np.finfo(np.float64).eps * spread, np.finfo(np.float64).max)


def assert_gradients_close(got, want, w, X, y, clip, lam):
    """Equal up to rounding: tolerance from the size of the summed terms and their margins.

    A margin error ``delta`` moves ``sigmoid(-y z)`` relatively by ``sigmoid(y z) |delta|``
    (its logarithmic derivative), so each per-example term may differ relatively by that
    much, capped at 1; everything else is rounding of the sums (``1e-13``).
    """
    G = logistic_reference.clipped_per_example_gradients(w, X, y, clip)
    with np.errstate(over="ignore", invalid="ignore"):
        margins = y * np.einsum("ij,j->i", X, w)
        moved = np.fmin(logistic_reference.sigmoid(margins) * margin_rounding(w, X), 1.0)
        magnitude = (np.abs(G) * (1e-13 + moved)[:, None]).sum(axis=0) / X.shape[0]
        magnitude += 1e-13 * lam * np.abs(w)
    assert np.all(np.abs(got - want) <= magnitude + 1e-320), (got, want)


finite_rows = st.integers(1, 40).flatmap(
    lambda b: st.integers(1, 30).flatmap(
        lambda d: st.tuples(
            hnp.arrays(np.float64, d, elements=st.floats(-2, 2)),
            hnp.arrays(np.float64, (b, d), elements=st.floats(-3, 3) | st.floats(-1e3, 1e3)),
            hnp.arrays(np.float64, b, elements=st.sampled_from([-1.0, 1.0])),
        )
    )
)


@settings(max_examples=150, deadline=None)
@given(
    problem=finite_rows,
    clip=st.sampled_from([1e-2, 0.3, 1.0, 3.0, math.inf]),
    lam=st.sampled_from([0.0, 0.01, 1.0]),
)
def test_gradient_matches_reference(problem, clip, lam):
    w, X, y = problem
    want = kernels.reference("logistic_gradient")(w, X, y, clip, lam)
    got = kernels.logistic_gradient(w, X, y, clip, lam)
    assert_gradients_close(got, want, w, X, y, clip, lam)
    into = gradient_via_into(kernels.logistic_gradient_into, w, X, y, clip, lam)
    np.testing.assert_array_equal(into, got)
    ref_into = gradient_via_into(kernels.reference("logistic_gradient_into"), w, X, y, clip, lam)
    np.testing.assert_array_equal(ref_into, want)


@settings(max_examples=150, deadline=None)
@given(problem=finite_rows)
def test_loss_and_errors_match_reference(problem):
    w, X, y = problem
    X[::3] = 0.0  # zero margins: errors on both backends
    want = kernels.reference("logistic_loss")(w, X, y)
    with np.errstate(over="ignore"):  # d loss_i / d margin_i = sigmoid(-y_i z_i) <= 1
        slack = np.sum(logistic_reference.sigmoid(-y * (X @ w)) * margin_rounding(w, X)) / X.shape[0]
    assert kernels.logistic_loss(w, X, y) == pytest.approx(want, rel=1e-12, abs=slack + 1e-300)
    count = kernels.error_count(w, X, y)
    assert isinstance(count, int)
    assert count == kernels.reference("error_count")(w, X, y) == error_count_def(w, X, y)
    rate = kernels.error_rate(w, X, y)
    assert rate == kernels.reference("error_rate")(w, X, y) == count / X.shape[0]


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1e150, 1e200, 1e300, "max"])
def test_gradient_matches_reference_on_extreme_magnitudes(scale):
    rng = np.random.default_rng(7)
    if scale == "max":  # entries up to the largest double
        w, X, y = random_problem(rng, 16, 25)
        X = rng.uniform(-1.0, 1.0, size=X.shape) * np.finfo(np.float64).max
    else:
        w, X, y = random_problem(rng, 16, 25, scale=scale)
    X[2] = 0.0
    y[:8] = np.where(X[:8] @ w > 0, -1.0, 1.0)  # half misclassified: not all gradients vanish
    for clip, lam in [(1.0, 0.01), (math.inf, 0.0)]:
        want = kernels.reference("logistic_gradient")(w, X, y, clip, lam)
        got = kernels.logistic_gradient(w, X, y, clip, lam)
        if clip == math.inf and not np.all(np.isfinite(want)):  # the unclipped sum overflows
            np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
            continue
        assert np.all(np.isfinite(got))
        assert_gradients_close(got, want, w, X, y, clip, lam)


@pytest.mark.parametrize("impl", both("logistic_gradient"))
@pytest.mark.parametrize("quantile", [0.1, 0.5, 0.9])
def test_gradient_matches_definition_when_some_rows_are_clipped(impl, quantile):
    rng = np.random.default_rng(14)
    w, X, y = random_problem(rng, 40, 25)
    w *= 300.0
    X[7] = 0.0
    unclipped = [np.linalg.norm(per_example_def(w, X[i], y[i], math.inf)) for i in range(40)]
    clip = float(np.quantile(unclipped, quantile))  # clips a fraction 1 - quantile of rows
    np.testing.assert_allclose(
        impl(w, X, y, clip, 0.01), gradient_def(w, X, y, clip, 0.01), rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("impl", both("logistic_gradient"))
def test_all_zero_rows_give_zero_data_gradient(impl):
    w = np.linspace(-1, 1, 6)
    X = np.zeros((5, 6))
    y = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    np.testing.assert_array_equal(impl(w, X, y, 1.0, 0.0), np.zeros(6))
    np.testing.assert_allclose(impl(w, X, y, 1.0, 0.25), 0.25 * w, rtol=1e-15)


@pytest.mark.parametrize("impl", both("logistic_gradient"))
@pytest.mark.parametrize("where", ["X", "w", "y"])
def test_nan_propagates_into_the_gradient(impl, where):
    rng = np.random.default_rng(8)
    w, X, y = random_problem(rng, 10, 25)
    if where == "X":
        X[4, 7] = np.nan
    elif where == "w":
        w[3] = np.nan
    else:
        y[2] = np.nan
    g = impl(w, X, y, 1.0, 0.01)
    assert np.all(np.isnan(g)), "a NaN input must not be hidden by the clipping"


@pytest.mark.parametrize("impl", both("logistic_gradient"))
def test_inf_in_a_row_is_not_hidden(impl):
    rng = np.random.default_rng(9)
    w, X, y = random_problem(rng, 10, 25)
    X[1, 5] = np.inf
    assert not np.all(np.isfinite(impl(w, X, y, 1.0, 0.01)))


@pytest.mark.parametrize("backend", ["active", "reference"])
def test_nan_margin_counts_as_error_and_poisons_loss(backend):
    get = (lambda n: getattr(kernels, n)) if backend == "active" else kernels.reference
    rng = np.random.default_rng(10)
    w, X, y = random_problem(rng, 20, 4)
    clean = get("error_count")(w, np.delete(X, 5, 0), np.delete(y, 5))
    X[5, 0] = np.nan
    assert get("error_count")(w, X, y) == clean + 1
    assert math.isnan(get("logistic_loss")(w, X, y))
    w[0] = np.nan
    assert get("error_count")(w, X, y) == 20  # a NaN model never looks accurate
    assert get("error_rate")(w, X, y) == 1.0
    w[0] = -np.inf  # an inf weight: some margins are +inf, still every row counts
    assert get("error_count")(w, X, y) == 20


@pytest.mark.parametrize("impl", both("logistic_loss"))
def test_loss_is_stable_for_huge_margins(impl):
    X = np.array([[1.0], [1.0], [-1.0]])
    y = np.array([1.0, -1.0, 1.0])
    w = np.array([1e5])
    # margins y w x = 1e5, -1e5, -1e5: losses ~0, 1e5, 1e5
    assert impl(w, X, y) == pytest.approx(2e5 / 3, rel=1e-15)
    assert impl(np.array([1e307]), X, y) == pytest.approx(2e307 / 3, rel=1e-15)


@pytest.mark.parametrize("impl", both("error_count"))
def test_zero_score_counts_as_error(impl):
    X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    y = np.array([1.0, 1.0, -1.0])
    w = np.array([1.0, 0.0])  # scores 1, 0, -2
    assert impl(w, X, y) == 2
    assert impl(np.zeros(2), X, y) == 3
    assert impl(w, np.empty((0, 2)), np.empty(0)) == 0


# ---------------------------------------------------------------------------------------
# sgd_steps
# ---------------------------------------------------------------------------------------


def looped_steps(gradient, w, X, y, idx, lr, clip, lam, noise):
    b = idx.shape[1]
    for k in range(idx.shape[0]):
        g = gradient(w, X[idx[k]], y[idx[k]], clip, lam)
        w = w - lr[k] * (g + noise[k] / b) if noise is not None else w - lr[k] * g
    return w


@pytest.mark.parametrize("backend", ["active", "reference"])
@pytest.mark.parametrize("with_noise", [False, True])
@pytest.mark.parametrize("steps,b", [(1, 1), (7, 10), (60, 3), (40, 50)])
def test_sgd_steps_equals_looping_logistic_gradient(backend, with_noise, steps, b):
    get = (lambda n: getattr(kernels, n)) if backend == "active" else kernels.reference
    rng = np.random.default_rng(11)
    w, X, y = random_problem(rng, 30, 25, scale=2.0)
    idx = rng.integers(0, 30, size=(steps, b))
    lr = rng.uniform(0.001, 0.1, size=steps)
    noise = rng.normal(size=(steps, 25)) if with_noise else None
    w_before = w.copy()
    got = get("sgd_steps")(w, X, y, idx, lr, 1.0, 0.01, noise)
    np.testing.assert_array_equal(w, w_before)  # input not mutated
    want = looped_steps(get("logistic_gradient"), w, X, y, idx, lr, 1.0, 0.01, noise)
    np.testing.assert_array_equal(got, want)


def test_sgd_steps_matches_reference_and_accepts_scalar_lr():
    rng = np.random.default_rng(12)
    w, X, y = random_problem(rng, 200, 25)
    idx = rng.integers(0, 200, size=(50, 10))
    noise = rng.normal(size=(50, 25))
    got = kernels.sgd_steps(w, X, y, idx, 0.05, 1.0, 0.01, noise)
    want = kernels.reference("sgd_steps")(w, X, y, idx, np.full(50, 0.05), 1.0, 0.01, noise)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("impl", both("sgd_steps"))
def test_sgd_steps_zero_steps_returns_a_copy(impl):
    w = np.arange(3.0)
    out = impl(w, np.ones((2, 3)), np.ones(2), np.empty((0, 4), np.int64), 0.1, 1.0, 0.0)
    np.testing.assert_array_equal(out, w)
    assert out is not w


@pytest.mark.parametrize("impl", both("sgd_steps"))
def test_sgd_steps_reduces_the_loss(impl):
    rng = np.random.default_rng(13)
    X = rng.normal(size=(500, 5))
    y = np.where(X @ np.array([2.0, -1.0, 0.5, 0.0, 1.0]) > 0, 1.0, -1.0)
    idx = rng.integers(0, 500, size=(300, 10))
    w = impl(np.zeros(5), X, y, idx, 0.5, 1.0, 0.0)
    assert kernels.logistic_loss(w, X, y) < 0.5 * math.log(2)
    assert kernels.error_rate(w, X, y) < 0.1


# ---------------------------------------------------------------------------------------
# input validation: same errors, same messages on both backends
# ---------------------------------------------------------------------------------------

W, XX, Y = np.zeros(3), np.zeros((4, 3)), np.ones(4)
IDX = np.zeros((2, 2), np.int64)

BAD_CALLS = [
    ("logistic_gradient", (np.zeros(2), XX, Y, 1.0, 0.0), ValueError, "w has 2"),
    ("logistic_gradient", (W, XX, np.ones(3), 1.0, 0.0), ValueError, "y has 3"),
    ("logistic_gradient", (W, np.zeros((0, 3)), np.ones(0), 1.0, 0.0), ValueError, "at least 1"),
    ("logistic_gradient", (W, XX.ravel(), Y, 1.0, 0.0), ValueError, "X must be 2-D"),
    ("logistic_gradient", (W, XX.astype(np.float32), Y, 1.0, 0.0), TypeError, "float64"),
    ("logistic_gradient", (W, np.zeros((3, 4)).T, Y, 1.0, 0.0), ValueError, "C-contiguous"),
    ("logistic_gradient", (list(W), XX, Y, 1.0, 0.0), TypeError, "w must be"),
    ("logistic_gradient", (W, XX, Y, 0.0, 0.0), ValueError, "clip"),
    ("logistic_gradient", (W, XX, Y, math.nan, 0.0), ValueError, "clip"),
    ("logistic_gradient", (W, XX, Y, 1.0, -0.1), ValueError, "lam"),
    ("logistic_gradient", (W, XX, Y, 1.0, math.inf), ValueError, "lam"),
    ("logistic_gradient", (W, XX, Y, "1", 0.0), TypeError, "clip"),
    ("logistic_gradient_into", (W, XX, Y, 1.0, 0.0, np.zeros(2)), ValueError, "out has 2"),
    ("logistic_gradient_into", (np.zeros(2), XX, Y, 1.0, 0.0, np.zeros(3)), ValueError, "w has"),
    ("logistic_gradient_into", (W, XX, Y, -1.0, 0.0, np.zeros(3)), ValueError, "clip"),
    ("logistic_gradient_into", (W, XX, Y, 1.0, 0.0, np.zeros(3, np.float32)), TypeError, "out"),
    ("logistic_gradient_into", (W, XX, Y, 1.0, 0.0, None), TypeError, "out"),
    ("logistic_loss", (W, XX, np.ones(5)), ValueError, "y has 5"),
    ("logistic_loss", (W, np.zeros((0, 3)), np.ones(0)), ValueError, "at least 1"),
    ("error_count", (W, np.zeros((4, 2)), Y), ValueError, "columns"),
    ("error_rate", (W, np.zeros((0, 3)), np.ones(0)), ValueError, "at least 1"),
    ("sgd_steps", (W, XX, Y, IDX + 4, 0.1, 1.0, 0.0), ValueError, "idx entries"),
    ("sgd_steps", (W, XX, Y, IDX - 1, 0.1, 1.0, 0.0), ValueError, "idx entries"),
    ("sgd_steps", (W, XX, Y, IDX.astype(np.int32), 0.1, 1.0, 0.0), TypeError, "int64"),
    ("sgd_steps", (W, XX, Y, np.zeros((2, 0), np.int64), 0.1, 1.0, 0.0), ValueError, "one row"),
    ("sgd_steps", (W, XX, Y, IDX, np.ones(3), 1.0, 0.0), ValueError, "lr has 3"),
    ("sgd_steps", (W, XX, Y, IDX, -0.1, 1.0, 0.0), ValueError, "lr must"),
    ("sgd_steps", (W, XX, Y, IDX, 0.1, 1.0, 0.0, np.zeros((2, 2))), ValueError, "noise"),
]


@pytest.mark.parametrize("name,args,error,message", BAD_CALLS)
def test_bad_input_raises_same_error_on_both_backends(name, args, error, message):
    with pytest.raises(error, match=message) as active:
        getattr(kernels, name)(*args)
    with pytest.raises(error, match=message) as reference:
        kernels.reference(name)(*args)
    assert str(active.value) == str(reference.value)


def test_reference_backend_is_used_when_numba_is_disabled():
    code = """
import sys
import numpy as np
from tormentor.engine import kernels
assert kernels.BACKEND == "reference", kernels.BACKEND
w, X, y = np.zeros(3), np.eye(3), np.array([1.0, -1.0, 1.0])
out = np.empty(3)
kernels.logistic_gradient_into(w, X, y, 1.0, 0.1, out)
assert np.allclose(kernels.logistic_gradient(w, X, y, 1.0, 0.1), out)
assert abs(kernels.logistic_loss(w, X, y) - np.log(2)) < 1e-15
assert kernels.error_count(w, X, y) == 3 and kernels.error_rate(w, X, y) == 1.0
kernels.sgd_steps(w, X, y, np.zeros((2, 2), np.int64), 0.1, 1.0, 0.0)
for name in ("logistic_gradient", "logistic_gradient_into", "logistic_loss",
             "error_count", "error_rate", "sgd_steps"):
    assert getattr(kernels, name).__module__.endswith(".logistic_reference"), name
assert "numba" not in sys.modules, "the reference backend must not import numba"
print("ok")
"""
    env = {**os.environ, "TORMENTOR_NO_NUMBA": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.skipif(kernels.BACKEND != "numba", reason="Numba is not active")
def test_every_name_exists_on_both_backends_with_the_same_signature():
    import inspect

    from tormentor.engine.kernels import logistic

    for name in NAMES:
        assert inspect.signature(getattr(logistic, name)) == inspect.signature(
            getattr(logistic_reference, name)
        )


def test_read_only_inputs_are_accepted_by_every_backend():
    """Models arrive read-only (decoded messages, published copies); kernels must take them."""
    from tormentor.engine import kernels

    rng = np.random.default_rng(5)
    w = rng.normal(size=6)
    X = np.ascontiguousarray(rng.normal(size=(12, 6)))
    y = np.where(rng.random(12) < 0.5, -1.0, 1.0)
    frozen = [a.copy() for a in (w, X, y)]
    for a in frozen:
        a.flags.writeable = False
    fw, fX, fy = frozen
    for impl in (kernels, _ReferenceKernels()):
        np.testing.assert_array_equal(
            impl.logistic_gradient(fw, fX, fy, 1.0, 0.1), impl.logistic_gradient(w, X, y, 1.0, 0.1)
        )
        out_frozen, out = np.empty(6), np.empty(6)
        impl.logistic_gradient_into(fw, fX, fy, 1.0, 0.1, out_frozen)
        impl.logistic_gradient_into(w, X, y, 1.0, 0.1, out)
        np.testing.assert_array_equal(out_frozen, out)
        assert impl.logistic_loss(fw, fX, fy) == impl.logistic_loss(w, X, y)
        assert impl.error_rate(fw, fX, fy) == impl.error_rate(w, X, y)
        assert impl.error_count(fw, fX, fy) == impl.error_count(w, X, y)
    assert not fw.flags.writeable  # inputs untouched


class _ReferenceKernels:
    def __getattr__(self, name):
        from tormentor.engine import kernels

        return kernels.reference(name)
