"""Numba kernels of the RONI scores (paper, Algorithm 2): 0-1 errors of many candidates.

Same names, signatures and semantics as :mod:`.roni_reference` (read its docstring for
the conventions); the scores are equal to the reference's, not merely close, because
both sum every margin in feature order and share the code that turns counts into scores.

Layout (kernel-facts.md): the validation set is stored as ``yxt`` (d, n), labels folded
in, so a margin is ``sum_j w_j yxt[j, r]`` and is positive for a correct row. Rows go in
blocks of ``_ROWS`` (the block of ``yxt`` stays in cache while every candidate passes
over it), candidates four at a time (each load of ``yxt`` feeds four models), features
four at a time (each pass over the accumulators adds four products), and the innermost
loop runs over the rows of the block, which LLVM vectorises. The rows of a block are
read through 1-D slices indexed from 0: an index like ``r0 + r`` could be negative as far
as LLVM knows, so Numba's negative-index wraparound turned every load into a scalar
gather (1.7x slower at 1,000 candidates). Large candidate sets split the row blocks over
threads (``prange``); small ones stay on one thread, where starting the thread pool
would cost more than it saves.
"""

from __future__ import annotations

import numpy as np
from numba import prange, types

from . import roni_reference as _ref
from ._jit import kernel
from .roni_reference import PreparedValidation

__all__ = ["PreparedValidation", "prepare_validation", "roni_scores", "roni_scores_prepared"]

#: rows per block: the (d, 256) block of yxt (48 KiB at d = 24) and four accumulators
#: (8 KiB) stay in the core's caches while all candidates pass over them.
_ROWS = 256

#: from this many models to score (candidates + the snapshot) the row blocks are shared
#: between threads. Measured on 2 cores: parallel halves the time when the other core is
#: free, but when it is busy (other processes) a parallel call can stall for a scheduler
#: tick (~8 ms), so only calls long enough to amortise that go parallel (~2 ms serial).
_PARALLEL_FROM = 128

_F64_2D = types.float64[:, ::1]
_YXT = types.Array(types.float64, 2, "C", readonly=True)
_COUNTS = types.int64[:, ::1]


@kernel(types.void(_F64_2D, _YXT, types.int64, _F64_2D, _COUNTS))
def _count_block(weights, yxt, block, acc, partial):
    """Count, for every model, the errors on rows ``block * _ROWS ...``; into ``partial[block]``.

    ``acc`` (4, _ROWS) is scratch space. Each row's margin is
    ``(((0 + w_0 v_0) + w_1 v_1) + ...)``, the reference's order (four features per pass
    keep that order: each product is added to the running sum in turn).
    """
    m, d = weights.shape
    n = yxt.shape[1]
    r0 = block * _ROWS
    width = min(_ROWS, n - r0)
    acc0 = acc[0]
    acc1 = acc[1]
    acc2 = acc[2]
    acc3 = acc[3]
    for first in range(0, m, 4):
        # four models at a time; a short last group repeats its last model
        c0 = first
        c1 = min(first + 1, m - 1)
        c2 = min(first + 2, m - 1)
        c3 = min(first + 3, m - 1)
        for r in range(width):
            acc0[r] = 0.0
            acc1[r] = 0.0
            acc2[r] = 0.0
            acc3[r] = 0.0
        j = 0
        while j + 4 <= d:
            p0 = weights[c0, j]
            p1 = weights[c1, j]
            p2 = weights[c2, j]
            p3 = weights[c3, j]
            q0 = weights[c0, j + 1]
            q1 = weights[c1, j + 1]
            q2 = weights[c2, j + 1]
            q3 = weights[c3, j + 1]
            s0 = weights[c0, j + 2]
            s1 = weights[c1, j + 2]
            s2 = weights[c2, j + 2]
            s3 = weights[c3, j + 2]
            t0 = weights[c0, j + 3]
            t1 = weights[c1, j + 3]
            t2 = weights[c2, j + 3]
            t3 = weights[c3, j + 3]
            y0 = yxt[j, r0 : r0 + width]
            y1 = yxt[j + 1, r0 : r0 + width]
            y2 = yxt[j + 2, r0 : r0 + width]
            y3 = yxt[j + 3, r0 : r0 + width]
            for r in range(width):
                v0 = y0[r]
                v1 = y1[r]
                v2 = y2[r]
                v3 = y3[r]
                acc0[r] = (((acc0[r] + p0 * v0) + q0 * v1) + s0 * v2) + t0 * v3
                acc1[r] = (((acc1[r] + p1 * v0) + q1 * v1) + s1 * v2) + t1 * v3
                acc2[r] = (((acc2[r] + p2 * v0) + q2 * v1) + s2 * v2) + t2 * v3
                acc3[r] = (((acc3[r] + p3 * v0) + q3 * v1) + s3 * v2) + t3 * v3
            j += 4
        while j < d:
            p0 = weights[c0, j]
            p1 = weights[c1, j]
            p2 = weights[c2, j]
            p3 = weights[c3, j]
            y0 = yxt[j, r0 : r0 + width]
            for r in range(width):
                v0 = y0[r]
                acc0[r] += p0 * v0
                acc1[r] += p1 * v0
                acc2[r] += p2 * v0
                acc3[r] += p3 * v0
            j += 1
        e0 = 0
        e1 = 0
        e2 = 0
        e3 = 0
        for r in range(width):
            e0 += not (acc0[r] > 0.0)  # zero and NaN margins are errors
            e1 += not (acc1[r] > 0.0)
            e2 += not (acc2[r] > 0.0)
            e3 += not (acc3[r] > 0.0)
        partial[block, c3] = e3
        partial[block, c2] = e2
        partial[block, c1] = e1
        partial[block, c0] = e0


@kernel(types.void(_F64_2D, _YXT, _COUNTS))
def _error_counts_serial(weights, yxt, partial):
    """Fill ``partial`` (blocks, m) with each row block's error counts, one thread."""
    acc = np.empty((4, _ROWS))
    for block in range(partial.shape[0]):
        _count_block(weights, yxt, block, acc, partial)


@kernel(types.void(_F64_2D, _YXT, _COUNTS), parallel=True)
def _error_counts_parallel(weights, yxt, partial):
    """Fill ``partial`` (blocks, m) with each row block's error counts, row blocks in parallel."""
    for block in prange(partial.shape[0]):
        acc = np.empty((4, _ROWS))
        _count_block(weights, yxt, block, acc, partial)


def prepare_validation(X_val, y_val) -> PreparedValidation:
    """Fold the labels into the rows and store the validation set transposed, once.

    The reference's :func:`.roni_reference.prepare_validation` (the layout is shared).
    """
    return _ref.prepare_validation(X_val, y_val)


def roni_scores_prepared(w_s, deltas, prepared) -> np.ndarray:
    """Return ``err(w_s) - err(w_s + deltas[c])`` for every candidate, shape (C,) (Numba).

    See :func:`.roni_reference.roni_scores_prepared`; the result is equal to it.
    """
    weights = _ref.candidate_weights(w_s, deltas, prepared)
    m = weights.shape[0]
    if m == 1:
        return np.empty(0)
    partial = np.empty(((prepared.n + _ROWS - 1) // _ROWS, m), dtype=np.int64)
    if m >= _PARALLEL_FROM:
        _error_counts_parallel(weights, prepared.yxt, partial)
    else:
        _error_counts_serial(weights, prepared.yxt, partial)
    return _ref.scores_from_counts(partial.sum(axis=0), weights, prepared.n)


def roni_scores(w_s, deltas, X_val, y_val) -> np.ndarray:
    """Return the RONI score of every candidate update, shape (C,) float64 (Numba).

    Same as ``roni_scores_prepared(w_s, deltas, prepare_validation(X_val, y_val))``.
    """
    return roni_scores_prepared(w_s, deltas, prepare_validation(X_val, y_val))
