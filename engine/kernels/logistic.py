"""Numba kernels for logistic regression: clipped gradients, loss, 0-1 error, SGD steps.

Same names, signatures and semantics as :mod:`.logistic_reference` (read its module
docstring for the numerical conventions: in-order margins for error counts, overflow-free norms,
NaN propagation, a NaN or zero margin counts as an error). Every public function checks
its input with the reference's ``validate_*`` functions, so both backends raise the same
errors; the hot path :func:`logistic_gradient_into` only runs those checks after the
compiled kernel rejected its arguments, so a call costs little more than Numba's dispatch.
"""

from __future__ import annotations

import math

import numpy as np

from . import logistic_reference as _ref
from ._jit import kernel

__all__ = [
    "error_count",
    "error_rate",
    "logistic_gradient",
    "logistic_gradient_into",
    "logistic_loss",
    "sgd_steps",
]


# ---------------------------------------------------------------------------------------
# scalar cores (inlined by LLVM into the array loops below)
# ---------------------------------------------------------------------------------------


@kernel("float64(float64[::1], float64[:, ::1], int64)")
def _row_dot(w, X, i):
    """Return ``w . X[i]``, summed in feature order."""
    z = 0.0
    for j in range(X.shape[1]):
        z += w[j] * X[i, j]
    return z


@kernel("float64(float64[:, ::1], int64)")
def _row_norm(X, i):
    """Return ``||X[i]||_2``, rescaled when the sum of squares overflows."""
    d = X.shape[1]
    s = 0.0
    for j in range(d):
        s += X[i, j] * X[i, j]
    if s != math.inf:
        return math.sqrt(s)
    biggest = 0.0
    for j in range(d):
        biggest = max(biggest, abs(X[i, j]))
    if biggest == math.inf:
        return math.inf
    t = 0.0
    for j in range(d):
        q = X[i, j] / biggest
        t += q * q
    return biggest * math.sqrt(t)


@kernel("float64(float64)")
def _sigmoid(t):
    """Return ``1 / (1 + exp(-t))`` (``exp`` may overflow to inf: the result is then 0)."""
    return 1.0 / (1.0 + math.exp(-t))


@kernel("float64(float64, float64, float64, float64)")
def _clipped_coefficient(z, y, norm, clip):
    """Return ``a`` with ``a x`` the clipped gradient of one example (``z = w.x``)."""
    c = -y * _sigmoid(-y * z)
    g = abs(c) * norm
    if g > clip:  # False for NaN: a NaN coefficient stays NaN
        c = c * (clip / g)
    return c


@kernel("float64(float64, float64, float64, float64[:, ::1], int64, float64)")
def _row_coefficient(z, sq, y, X, i, clip):
    """Return the clipped coefficient of row ``i`` from its margin ``z`` and ``sq = ||x||^2``.

    ``sq`` is the in-order sum of squares; when it overflowed the norm is recomputed
    rescaled by :func:`_row_norm` (same value as the reference's ``row_norms``).
    """
    norm = math.sqrt(sq) if sq != math.inf else _row_norm(X, i)
    return _clipped_coefficient(z, y, norm, clip)


# ---------------------------------------------------------------------------------------
# array kernels
# ---------------------------------------------------------------------------------------


@kernel("void(float64[::1], float64[:, ::1], float64[::1], float64, float64, float64[::1])")
def _gradient_core(w, X, y, clip, lam, out):
    """``out = mean_i clip(grad_i) + lam w`` over all rows of ``X`` (shapes already checked).

    Rows go four at a time so that eight in-order sums (four margins, four squared
    norms) run side by side; each sum keeps the reference's feature order, and the
    batch sum adds the rows one after the other, so the result does not depend on the
    blocking.
    """
    b, d = X.shape
    for j in range(d):
        out[j] = 0.0
    i = 0
    while i + 4 <= b:
        z0 = z1 = z2 = z3 = 0.0
        s0 = s1 = s2 = s3 = 0.0
        for j in range(d):
            wj = w[j]
            x0 = X[i, j]
            x1 = X[i + 1, j]
            x2 = X[i + 2, j]
            x3 = X[i + 3, j]
            z0 += wj * x0
            z1 += wj * x1
            z2 += wj * x2
            z3 += wj * x3
            s0 += x0 * x0
            s1 += x1 * x1
            s2 += x2 * x2
            s3 += x3 * x3
        a0 = _row_coefficient(z0, s0, y[i], X, i, clip)
        a1 = _row_coefficient(z1, s1, y[i + 1], X, i + 1, clip)
        a2 = _row_coefficient(z2, s2, y[i + 2], X, i + 2, clip)
        a3 = _row_coefficient(z3, s3, y[i + 3], X, i + 3, clip)
        for j in range(d):
            out[j] = (((out[j] + a0 * X[i, j]) + a1 * X[i + 1, j]) + a2 * X[i + 2, j]) + a3 * X[i + 3, j]
        i += 4
    while i < b:
        z0 = 0.0
        s0 = 0.0
        for j in range(d):
            x0 = X[i, j]
            z0 += w[j] * x0
            s0 += x0 * x0
        a0 = _row_coefficient(z0, s0, y[i], X, i, clip)
        for j in range(d):
            out[j] += a0 * X[i, j]
        i += 1
    for j in range(d):
        out[j] = out[j] / b + lam * w[j]


@kernel("void(float64[::1], float64[:, ::1], float64[::1], float64, float64, float64[::1])")
def _gradient_into(w, X, y, clip, lam, out):
    b, d = X.shape
    if w.shape[0] != d or y.shape[0] != b or out.shape[0] != d or b < 1:
        raise ValueError("logistic_gradient_into: shape mismatch")
    if not (clip > 0.0) or not (0.0 <= lam < math.inf):
        raise ValueError("logistic_gradient_into: clip or lam out of range")
    _gradient_core(w, X, y, clip, lam, out)


@kernel("float64(float64[::1], float64[:, ::1], float64[::1])")
def _loss(w, X, y):
    n = X.shape[0]
    total = 0.0
    for i in range(n):
        m = -y[i] * _row_dot(w, X, i)
        softplus = math.log1p(math.exp(-abs(m)))
        if m > 0.0:
            softplus = m + softplus
        total += softplus
    return total / n


@kernel("int64(float64[::1], float64[:, ::1], float64[::1])")
def _error_count(w, X, y):
    for j in range(w.shape[0]):
        if not math.isfinite(w[j]):
            return X.shape[0]  # a non-finite model misclassifies every row
    errors = 0
    for i in range(X.shape[0]):
        if not (y[i] * _row_dot(w, X, i) > 0.0):
            errors += 1
    return errors


@kernel(
    "void(float64[:, ::1], float64[::1], int64[:, ::1], float64[::1], float64, float64,"
    " float64[:, ::1], float64[::1])"
)
def _sgd_steps(X, y, idx, lr, clip, lam, noise, w):
    """Run ``idx.shape[0]`` steps on ``w`` in place; ``noise`` of shape (0, d) means none.

    Each step gathers its batch and calls the same core as :func:`_gradient_into`, so
    the result equals looping ``logistic_gradient`` bit for bit.
    """
    d = X.shape[1]
    steps, b = idx.shape
    has_noise = noise.shape[0] > 0
    X_batch = np.empty((b, d))
    y_batch = np.empty(b)
    grad = np.empty(d)
    for k in range(steps):
        for t in range(b):
            i = idx[k, t]
            y_batch[t] = y[i]
            for j in range(d):
                X_batch[t, j] = X[i, j]
        _gradient_core(w, X_batch, y_batch, clip, lam, grad)
        rate = lr[k]
        for j in range(d):
            g = grad[j]
            if has_noise:
                g = g + noise[k, j] / b
            w[j] = w[j] - rate * g


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------


def _writable(a):
    """Return ``a``, or a copy of it when it is a read-only array.

    The kernels' explicit signatures take writable arrays, while models arrive read-only
    (decoded messages are zero-copy views, the broker publishes frozen copies). Copying
    a model vector costs a fraction of a microsecond, and only read-only inputs pay it.
    """
    return a.copy() if isinstance(a, np.ndarray) and not a.flags.writeable else a


def logistic_gradient_into(w, X, y, clip, lam, out) -> None:
    """Write the clipped, regularised mini-batch gradient into ``out`` (Numba).

    See :func:`.logistic_reference.logistic_gradient_into` for the formula, shapes and
    errors. Inputs are checked in full only when the compiled kernel refuses them.
    """
    try:
        _gradient_into(w, X, y, clip, lam, out)
    except (TypeError, ValueError):
        _ref.validate_gradient_args(w, X, y, clip, lam, out)  # the precise error
        if any(isinstance(a, np.ndarray) and not a.flags.writeable for a in (w, X, y)):
            _gradient_into(_writable(w), _writable(X), _writable(y), clip, lam, out)
            return
        raise


def logistic_gradient(w, X, y, clip, lam) -> np.ndarray:
    """Return the clipped, regularised mini-batch gradient, shape (d,) float64 (Numba)."""
    _ref.validate_model_data(w, X, y, min_rows=1)
    _ref.validate_clip_lam(clip, lam)
    out = np.empty(w.shape[0])
    _gradient_into(_writable(w), _writable(X), _writable(y), clip, lam, out)
    return out


def logistic_loss(w, X, y) -> float:
    """Return the mean logistic loss, computed without overflow (Numba).

    See :func:`.logistic_reference.logistic_loss`.
    """
    _ref.validate_model_data(w, X, y, min_rows=1)
    return float(_loss(_writable(w), _writable(X), _writable(y)))


def error_count(w, X, y) -> int:
    """Return the number of rows where ``y w.x > 0`` fails (Numba).

    Zero and NaN margins count; a model with a NaN or inf weight errs on every row.
    """
    _ref.validate_model_data(w, X, y, min_rows=0)
    return int(_error_count(_writable(w), _writable(X), _writable(y)))


def error_rate(w, X, y) -> float:
    """Return the 0-1 error rate ``error_count / n`` (n >= 1) (Numba)."""
    _ref.validate_model_data(w, X, y, min_rows=1)
    return int(_error_count(_writable(w), _writable(X), _writable(y))) / X.shape[0]


def sgd_steps(w, X, y, idx, lr, clip, lam, noise=None) -> np.ndarray:
    """Run K (DP-)SGD steps in one call and return the final weights (Numba).

    See :func:`.logistic_reference.sgd_steps` for the update, shapes and errors; the result
    equals looping :func:`logistic_gradient` exactly. ``w`` is not modified.
    """
    lr_steps, noise = _ref.validate_sgd_args(w, X, y, idx, lr, clip, lam, noise)
    if noise is None:
        noise = np.empty((0, w.shape[0]))
    out = w.copy()
    X, y, idx, noise = _writable(X), _writable(y), _writable(idx), _writable(noise)
    _sgd_steps(X, y, idx, lr_steps, float(clip), float(lam), noise, out)
    return out
