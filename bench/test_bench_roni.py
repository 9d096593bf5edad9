"""RONI scores of C candidate updates on a 9,000 x 24 validation set.

Numba (``roni_scores_prepared``, parallel from 128 models on) next to the NumPy reference
and the two plain NumPy formulations of kernel-facts.md: ``sign(X @ W.T) != y`` and
``(W @ (yX).T) <= 0`` (BLAS matrix products, summation order not fixed). Goal: 1,000
candidates in at most 15 ms on two threads.
"""

from __future__ import annotations

import numpy as np
import pytest

from tormentor.engine import kernels
from tormentor.engine.kernels import roni_reference

N, D = 9_000, 24

rng = np.random.default_rng(0)
X = rng.normal(size=(N, D))
Y = np.where(X @ rng.normal(size=D) + rng.normal(size=N) > 0, 1.0, -1.0)
YX = Y[:, None] * X
W_S = rng.normal(size=D) * 0.1
PREPARED = kernels.prepare_validation(X, Y)


def numpy_sign(w_s, deltas):
    W = np.vstack([w_s, w_s + deltas])
    errors = np.count_nonzero(np.sign(X @ W.T) != Y[:, None], axis=0)
    rates = errors / N
    return rates[0] - rates[1:]


def numpy_yx(w_s, deltas):
    W = np.vstack([w_s, w_s + deltas])
    errors = np.count_nonzero((W @ YX.T) <= 0, axis=1)
    rates = errors / N
    return rates[0] - rates[1:]


def numba_prepared(w_s, deltas):
    return kernels.roni_scores_prepared(w_s, deltas, PREPARED)


def reference_prepared(w_s, deltas):
    return roni_reference.roni_scores_prepared(w_s, deltas, PREPARED)


IMPLS = {
    "numba": numba_prepared,
    "reference": reference_prepared,
    "numpy-sign": numpy_sign,
    "numpy-yX": numpy_yx,
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("C", [10, 100, 1000])
def test_roni(bench, benchmark, impl, C):
    benchmark.group = f"roni_scores C={C} on {N} x {D}"
    deltas = np.random.default_rng(C).normal(size=(C, D)) * 0.05
    slow = C >= 1000 or (impl == "reference" and C >= 100)
    scores = bench(impl, IMPLS[impl], W_S, deltas, rounds=5 if slow else None)
    assert scores.shape == (C,)


@pytest.mark.skipif(kernels.BACKEND != "numba", reason="Numba is not active")
def test_roni_one_thread(bench, benchmark):
    """The 1,000-candidate case on one thread (the serial kernel), for the thread gain."""
    from tormentor.engine.kernels import roni

    benchmark.group = f"roni_scores C=1000 on {N} x {D}"
    deltas = np.random.default_rng(1000).normal(size=(1000, D)) * 0.05
    weights = roni_reference.candidate_weights(W_S, deltas, PREPARED)
    partial = np.empty(((N + roni._ROWS - 1) // roni._ROWS, weights.shape[0]), np.int64)
    bench("numba-1-thread", roni._error_counts_serial, weights, PREPARED.yxt, partial, rounds=5)
