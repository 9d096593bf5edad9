r"""NumPy reference of the RONI scores (oracle, benchmark baseline, fallback).

RONI, reject on negative influence (paper, Algorithm 2): the broker snapshots the model
``w_s``, collects each client's update ``delta_c`` computed on that snapshot, and scores it

.. math::
    r_c = \mathrm{err}(w_s, X_{val}) - \mathrm{err}(w_s + \Delta_c, X_{val}),

with ``err`` the 0-1 error rate on the curator's validation set. Positive: the update helped.

Conventions shared with the Numba kernels in :mod:`.roni` (results are equal, not close):

* a row counts as an error unless its margin ``y w.x`` is > 0: a margin of exactly 0 is an
  error, and so is a NaN margin; a model with a non-finite weight (NaN or inf) counts as
  misclassifying every row, so a non-finite update can never look helpful;
* labels are folded into the rows (``yx = y x``, exact since ``y`` is +-1) and the
  validation set is stored transposed, ``yxt`` of shape (d, n): :func:`prepare_validation`;
* each margin is summed feature by feature in index order, candidates are ``w_s + delta_c``
  (one rounding per entry), and error rates are ``count / n`` computed once, then
  subtracted: the same float operations on both backends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import validate_array

__all__ = ["PreparedValidation", "prepare_validation", "roni_scores", "roni_scores_prepared"]

#: candidates per block in the reference (bounds its temporary to 64 x n floats)
_CANDIDATE_BLOCK = 64


@dataclass(frozen=True)
class PreparedValidation:
    """A validation set in the layout of the RONI kernels; build it with prepare_validation.

    Attributes
    ----------
    yxt : ndarray, shape (d, n), float64, C-contiguous, read-only
        ``yxt[j, r] = y_val[r] * X_val[r, j]``.
    """

    yxt: np.ndarray

    @property
    def n(self) -> int:
        """Number of validation rows."""
        return self.yxt.shape[1]

    @property
    def d(self) -> int:
        """Number of features."""
        return self.yxt.shape[0]

    def __repr__(self) -> str:  # never print the data
        return f"PreparedValidation(n={self.n}, d={self.d})"


def prepare_validation(X_val, y_val) -> PreparedValidation:
    """Fold the labels into the rows and store the validation set transposed, once.

    Parameters
    ----------
    X_val : ndarray, shape (n, d), float64
        Validation rows (any memory layout; copied), finite, n >= 1, d >= 1.
    y_val : ndarray, shape (n,), float64
        Labels, each exactly -1.0 or +1.0.

    Returns
    -------
    PreparedValidation
        Accepted by :func:`roni_scores_prepared` of either backend.

    Raises
    ------
    TypeError
        If an argument is not a float64 ndarray.
    ValueError
        On a wrong shape, a label other than +-1, or a non-finite feature.
    """
    validate_array("X_val", X_val, 2, contiguous=False)
    validate_array("y_val", y_val, 1, contiguous=False)
    n, d = X_val.shape
    if n < 1 or d < 1:
        raise ValueError(f"X_val must have at least one row and one column, got {X_val.shape}")
    if y_val.shape[0] != n:
        raise ValueError(f"y_val has {y_val.shape[0]} labels but X_val has {n} rows")
    if not np.all((y_val == 1.0) | (y_val == -1.0)):
        raise ValueError("y_val must hold only -1.0 and +1.0")
    if not np.all(np.isfinite(X_val)):
        raise ValueError("X_val must be finite")
    yxt = np.ascontiguousarray((X_val * y_val[:, None]).T)
    yxt.flags.writeable = False
    return PreparedValidation(yxt)


def candidate_weights(w_s, deltas, prepared) -> np.ndarray:
    """Check the arguments of :func:`roni_scores_prepared`; return the models to score.

    Returns
    -------
    ndarray, shape (C + 1, d), float64
        Row 0 is ``w_s``, row ``1 + c`` is ``w_s + deltas[c]``.
    """
    if not isinstance(prepared, PreparedValidation):
        raise TypeError(f"prepared must come from prepare_validation, got {type(prepared).__name__}")
    validate_array("w_s", w_s, 1, contiguous=False)
    validate_array("deltas", deltas, 2, contiguous=False)
    d = prepared.d
    if w_s.shape[0] != d:
        raise ValueError(f"w_s has {w_s.shape[0]} entries but the validation set has {d}")
    if deltas.shape[1] != d:
        raise ValueError(f"deltas has {deltas.shape[1]} columns but the validation set has {d}")
    weights = np.empty((deltas.shape[0] + 1, d))
    weights[0] = w_s
    with np.errstate(all="ignore"):
        np.add(w_s, deltas, out=weights[1:])
    return weights


def scores_from_counts(counts: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Turn error counts into RONI scores ``err_0 - err_c``, shape (C,).

    ``counts`` (C + 1,) belongs to ``weights`` (C + 1, d), row 0 the snapshot. A model with
    a non-finite weight is charged every row (its margins are meaningless), then every
    rate is ``count / n``, computed once.
    """
    counts = np.where(np.isfinite(weights).all(axis=1), counts, n)
    rates = counts / n
    return rates[0] - rates[1:]


def error_counts(weights: np.ndarray, yxt: np.ndarray) -> np.ndarray:
    """Count the validation errors of each model, int64 (m,).

    ``counts[i]`` is the number of columns ``r`` of ``yxt`` (d, n) where
    ``sum_j weights[i, j] * yxt[j, r] > 0`` fails, the sum taken in feature order.
    """
    m, d = weights.shape
    counts = np.empty(m, dtype=np.int64)
    with np.errstate(all="ignore"):
        for start in range(0, m, _CANDIDATE_BLOCK):
            block = weights[start : start + _CANDIDATE_BLOCK]
            margins = block[:, 0:1] * yxt[0]
            for j in range(1, d):
                margins += block[:, j : j + 1] * yxt[j]
            counts[start : start + block.shape[0]] = np.count_nonzero(~(margins > 0.0), axis=1)
    return counts


def roni_scores_prepared(w_s, deltas, prepared) -> np.ndarray:
    """Return the RONI score of every candidate update on a prepared validation set.

    ``score[c] = err(w_s) - err(w_s + deltas[c])`` (paper, Algorithm 2), ``err`` the 0-1
    error rate (a margin of 0 or NaN is an error; a model with a NaN or inf weight errs on
    every row). Positive: the update helped.

    Parameters
    ----------
    w_s : ndarray, shape (d,), float64
        The snapshot model every candidate update was computed on.
    deltas : ndarray, shape (C, d), float64
        One candidate update per row (C >= 0).
    prepared : PreparedValidation
        From :func:`prepare_validation`.

    Returns
    -------
    ndarray, shape (C,), float64
    """
    weights = candidate_weights(w_s, deltas, prepared)
    return scores_from_counts(error_counts(weights, prepared.yxt), weights, prepared.n)


def roni_scores(w_s, deltas, X_val, y_val) -> np.ndarray:
    """Return the RONI score of every candidate update, shape (C,) float64.

    Same as ``roni_scores_prepared(w_s, deltas, prepare_validation(X_val, y_val))``.
    """
    return roni_scores_prepared(w_s, deltas, prepare_validation(X_val, y_val))
