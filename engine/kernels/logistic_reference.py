r"""NumPy reference of the logistic-regression kernels (oracle, benchmark baseline, fallback).

The model is logistic regression on labels :math:`y \in \{-1, +1\}` with the loss
:math:`\ell(w, x, y) = \log(1 + e^{-y\,w^\top x})` and its gradient
:math:`\nabla \ell = -y\,\sigma(-y\,w^\top x)\,x` (paper, Appendix A, eq. (1)-(2)).
Every per-example gradient is clipped to L2 norm ``clip`` before the batch mean, which is
what makes the noisy step of Song, Chaudhuri and Sarwate (2013) epsilon-DP.

Numerical conventions shared with the Numba kernels in :mod:`.logistic`:

* error counts use margins :math:`w^\top x` summed feature by feature, in index order,
  on both backends, so they count exactly the same errors; gradients and losses agree to
  rounding (NumPy's ``exp`` and summation order differ from Numba's in the last bits);
* row norms are computed without overflow (rescaled when the sum of squares overflows);
* NaN propagates: a NaN in ``w``, a row of ``X`` or a label makes the affected results NaN
  (a NaN margin counts as an error), it is never clipped away or hidden; a model with a
  non-finite weight counts as misclassifying every row;
* ``out`` arguments must not overlap the inputs.

The ``validate_*`` functions are the input checks of both backends: the Numba module calls
them, so both raise the same errors with the same messages.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import validate_array

__all__ = [
    "clipped_per_example_gradients",
    "error_count",
    "error_rate",
    "logistic_gradient",
    "logistic_gradient_into",
    "logistic_loss",
    "sgd_steps",
]


# ---------------------------------------------------------------------------------------
# input checks (shared with the Numba backend)
# ---------------------------------------------------------------------------------------


def validate_model_data(w: object, X: object, y: object, *, min_rows: int) -> tuple[int, int]:
    """Check ``w`` (d,), ``X`` (n, d), ``y`` (n,) and return ``(n, d)``."""
    validate_array("w", w, 1)
    validate_array("X", X, 2)
    validate_array("y", y, 1)
    n, d = X.shape
    if d < 1:
        raise ValueError("X must have at least one column")
    if w.shape[0] != d:
        raise ValueError(f"w has {w.shape[0]} entries but X has {d} columns")
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} labels but X has {n} rows")
    if n < min_rows:
        raise ValueError(f"X must have at least {min_rows} row(s), got {n}")
    return n, d


def validate_clip_lam(clip: object, lam: object) -> tuple[float, float]:
    """Check ``clip > 0`` (``inf`` = no clipping) and ``0 <= lam < inf``; return floats."""
    clip = _as_float("clip", clip)
    lam = _as_float("lam", lam)
    if not clip > 0.0:
        raise ValueError(f"clip must be > 0 (inf disables clipping), got {clip}")
    if not 0.0 <= lam < np.inf:
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    return clip, lam


def validate_gradient_args(w, X, y, clip, lam, out) -> None:
    """Run every check of :func:`logistic_gradient_into` (raises on the first failure)."""
    validate_model_data(w, X, y, min_rows=1)
    validate_clip_lam(clip, lam)
    validate_array("out", out, 1)
    if out.shape[0] != w.shape[0]:
        raise ValueError(f"out has {out.shape[0]} entries but w has {w.shape[0]}")
    if not out.flags.writeable:
        raise ValueError("out must be writeable")


def validate_sgd_args(w, X, y, idx, lr, clip, lam, noise):
    """Check the arguments of :func:`sgd_steps`; return ``(lr, noise)`` normalised.

    ``lr`` comes back as a (K,) float64 array (a scalar is repeated), ``noise`` as the
    given (K, d) array or ``None``.
    """
    n, d = validate_model_data(w, X, y, min_rows=1)
    if not isinstance(idx, np.ndarray):
        raise TypeError(f"idx must be a numpy.ndarray, got {type(idx).__name__}")
    if idx.dtype != np.int64:
        raise TypeError(f"idx must have dtype int64, got {idx.dtype}")
    if idx.ndim != 2:
        raise ValueError(f"idx must be 2-D (steps, batch), got shape {idx.shape}")
    if not idx.flags.c_contiguous:
        raise ValueError("idx must be C-contiguous (use numpy.ascontiguousarray)")
    steps, batch = idx.shape
    if batch < 1:
        raise ValueError("idx must select at least one row per step")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"idx entries must lie in [0, {n})")
    validate_clip_lam(clip, lam)
    if isinstance(lr, np.ndarray):
        validate_array("lr", lr, 1)
        if lr.shape[0] != steps:
            raise ValueError(f"lr has {lr.shape[0]} entries but idx has {steps} steps")
        lr_steps = lr
    else:
        lr_steps = np.full(steps, _as_float("lr", lr))
    if not np.all((lr_steps >= 0.0) & (lr_steps < np.inf)):
        raise ValueError("lr must be finite and >= 0")
    if noise is not None:
        validate_array("noise", noise, 2)
        if noise.shape != (steps, d):
            raise ValueError(f"noise must have shape ({steps}, {d}), got {noise.shape}")
    return lr_steps, noise


def _as_float(name: str, value: object) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, np.complexfloating):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


# ---------------------------------------------------------------------------------------
# cores, vectorised over rows (callers silence floating-point warnings: inf and NaN are
# legitimate inputs whose propagation is part of the contract)
# ---------------------------------------------------------------------------------------


def margins_in_order(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Return :math:`X w` (n,), each dot product summed feature by feature in index order.

    This fixed order (no BLAS, no pairwise sum) is the one the Numba kernels use, so the
    signs of the margins, and hence error counts, agree exactly between the backends.
    """
    z = X[:, 0] * w[0]
    for j in range(1, X.shape[1]):
        z += X[:, j] * w[j]
    return z


def row_norms(X: np.ndarray) -> np.ndarray:
    """Return the L2 norm of every row of ``X`` (n,), without overflow.

    Rows whose sum of squares overflows are rescaled by their largest magnitude; a row
    holding ``inf`` has norm ``inf``, a row holding NaN has norm NaN.
    """
    sq = np.einsum("ij,ij->i", X, X)
    norms = np.sqrt(sq)
    for i in np.flatnonzero(sq == np.inf):
        norms[i] = _rescaled_norm(X[i])
    return norms


def _rescaled_norm(x: np.ndarray) -> float:
    biggest = float(np.max(np.abs(x)))
    if biggest == math.inf:
        return math.inf
    t = 0.0
    for v in x:
        q = float(v) / biggest
        t += q * q
    return biggest * math.sqrt(t)


def sigmoid(t: np.ndarray) -> np.ndarray:
    """Return the logistic function :math:`1 / (1 + e^{-t})` elementwise.

    Accurate for every ``t`` without a branch: for ``t < -709`` ``exp(-t)`` overflows to
    ``inf`` and the result is ``0`` (the true value is below 1e-308); NaN stays NaN.
    """
    return 1.0 / (1.0 + np.exp(-t))


def clipped_coefficients(z: np.ndarray, y: np.ndarray, norms: np.ndarray, clip: float):
    """Return the clipped per-example coefficients ``a`` (n,): the gradients are ``a_i x_i``.

    ``c_i = -y_i sigmoid(-y_i z_i)``; the unclipped gradient ``c_i x_i`` has norm
    ``|c_i| ||x_i||``, and ``c_i`` is multiplied by ``clip / (|c_i| ||x_i||)`` when that
    norm exceeds ``clip`` (a NaN norm is not clipped: the NaN carries through).
    """
    c = -y * sigmoid(-y * z)
    g = np.abs(c) * norms
    return np.where(g > clip, c * (clip / g), c)


def _clipped_gradient_mean(w, X, y, clip, lam) -> np.ndarray:
    a = clipped_coefficients(np.einsum("ij,j->i", X, w), y, row_norms(X), clip)
    # einsum, not BLAS: a zero coefficient times an inf entry must give NaN, not be skipped
    return np.einsum("i,ij->j", a, X) / X.shape[0] + lam * w


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------


def clipped_per_example_gradients(w: np.ndarray, X: np.ndarray, y: np.ndarray, clip: float):
    r"""Return every clipped per-example gradient of the logistic loss, shape (b, d).

    Row ``i`` is :math:`-y_i\sigma(-y_i w^\top x_i)\,x_i\cdot\min(1, C/\|g_i\|)`.
    Reference-only helper (the tests check that every row has norm <= clip with it).
    """
    validate_model_data(w, X, y, min_rows=0)
    clip, _ = validate_clip_lam(clip, 0.0)
    with np.errstate(all="ignore"):
        a = clipped_coefficients(np.einsum("ij,j->i", X, w), y, row_norms(X), clip)
        return a[:, None] * X


def logistic_gradient_into(w, X, y, clip, lam, out) -> None:
    r"""Write the clipped, regularised mini-batch gradient of the logistic loss into ``out``.

    .. math::
        out = \frac{1}{b}\sum_{i=1}^{b} \mathrm{clip}_C\big(-y_i\,\sigma(-y_i w^\top x_i)
        \,x_i\big) + \lambda w,
        \qquad \mathrm{clip}_C(g) = g \min(1, C / \|g\|_2)

    (paper, Appendix A, eq. (1)-(2), with per-example clipping; privacy-facts: Song et
    al. 2013). The norm of one example's gradient is ``|c_i| ||x_i||``, so clipping is exact.

    Parameters
    ----------
    w : ndarray, shape (d,), float64, C-contiguous
        Model weights.
    X : ndarray, shape (b, d), float64, C-contiguous
        Mini-batch rows, b >= 1.
    y : ndarray, shape (b,), float64
        Labels in {-1, +1} (not checked).
    clip : float
        Per-example L2 clipping bound C > 0 (``inf``: no clipping).
    lam : float
        L2 regularisation strength, 0 <= lam < inf.
    out : ndarray, shape (d,), float64, C-contiguous
        Receives the gradient; must not overlap the inputs.

    Raises
    ------
    TypeError, ValueError
        On a wrong type, dtype, layout or shape, or an out-of-range ``clip``/``lam``.
    """
    validate_gradient_args(w, X, y, clip, lam, out)
    with np.errstate(all="ignore"):
        out[:] = _clipped_gradient_mean(w, X, y, float(clip), float(lam))


def logistic_gradient(w, X, y, clip, lam) -> np.ndarray:
    """Return the clipped, regularised mini-batch gradient, shape (d,) float64.

    Same as :func:`logistic_gradient_into` but allocates the result.
    """
    validate_model_data(w, X, y, min_rows=1)
    clip, lam = validate_clip_lam(clip, lam)
    with np.errstate(all="ignore"):
        return _clipped_gradient_mean(w, X, y, clip, lam)


def logistic_loss(w, X, y) -> float:
    r"""Return the mean logistic loss :math:`\frac1n\sum_i \log(1 + e^{-y_i w^\top x_i})`.

    Computed without overflow: ``m + log1p(exp(-m))`` for ``m > 0``, else ``log1p(exp(m))``,
    with ``m = -y w.x``. Shapes: ``w`` (d,), ``X`` (n, d) with n >= 1, ``y`` (n,).
    """
    validate_model_data(w, X, y, min_rows=1)
    with np.errstate(all="ignore"):
        m = -y * np.einsum("ij,j->i", X, w)
        softplus = np.where(m > 0.0, m, 0.0) + np.log1p(np.exp(-np.abs(m)))
        return float(np.sum(softplus)) / X.shape[0]


def error_count(w, X, y) -> int:
    """Return the number of rows misclassified by ``w``: rows where ``y w.x > 0`` fails.

    A margin of exactly 0 counts as an error, and so does a NaN margin; a model with a NaN
    or inf weight misclassifies every row (a poisoned model never looks accurate).
    Shapes: ``w`` (d,), ``X`` (n, d), ``y`` (n,); n may be 0.
    """
    validate_model_data(w, X, y, min_rows=0)
    if X.shape[0] == 0:
        return 0
    if not np.all(np.isfinite(w)):
        return X.shape[0]
    with np.errstate(all="ignore"):
        return int(np.count_nonzero(~(y * margins_in_order(w, X) > 0.0)))


def error_rate(w, X, y) -> float:
    """Return the 0-1 error rate ``error_count(w, X, y) / n`` (n >= 1)."""
    validate_model_data(w, X, y, min_rows=1)
    return error_count(w, X, y) / X.shape[0]


def sgd_steps(w, X, y, idx, lr, clip, lam, noise=None) -> np.ndarray:
    r"""Run K (DP-)SGD steps and return the final weights, shape (d,); ``w`` is not modified.

    Step ``k`` uses the batch ``B_k = idx[k, :]`` of ``b`` rows (paper, Appendix A,
    eq. (1); privacy-facts: Song et al. 2013):

    .. math::
        w \leftarrow w - \eta_k \Big( \lambda w + \frac{1}{b}\sum_{i \in B_k}
        \mathrm{clip}_C(\nabla \ell_i) + \frac{Z_k}{b} \Big)

    that is ``w = w - lr[k] * (logistic_gradient(w, X[idx[k]], y[idx[k]], clip, lam)
    + noise[k] / b)``, exactly (the ``noise`` term is left out when ``noise`` is None).

    Parameters
    ----------
    w : ndarray, shape (d,), float64
        Starting weights.
    X : ndarray, shape (n, d), float64, C-contiguous
        Training rows (the client's shard), n >= 1.
    y : ndarray, shape (n,), float64
        Labels in {-1, +1}.
    idx : ndarray, shape (K, b), int64, C-contiguous
        Row indices of each step's batch, in [0, n); b >= 1, K may be 0.
    lr : float or ndarray, shape (K,), float64
        Learning rate of each step (a float is used for every step), finite and >= 0.
    clip : float
        Per-example L2 clipping bound C > 0.
    lam : float
        L2 regularisation strength, 0 <= lam < inf.
    noise : ndarray, shape (K, d), float64, or None
        The noise vector ``Z_k`` of each step (e.g. ``laplace_noise(K, d, eps, clip)``);
        ``None`` for non-private SGD.

    Returns
    -------
    ndarray, shape (d,), float64
        The weights after the K steps.
    """
    lr_steps, noise = validate_sgd_args(w, X, y, idx, lr, clip, lam, noise)
    clip, lam = float(clip), float(lam)
    batch = idx.shape[1]
    current = w.copy()
    with np.errstate(all="ignore"):
        for k in range(idx.shape[0]):
            rows = idx[k]
            grad = _clipped_gradient_mean(current, X[rows], y[rows], clip, lam)
            if noise is not None:
                grad = grad + noise[k] / batch
            current = current - lr_steps[k] * grad
    return current
