"""Logistic-gradient kernels: Numba next to the NumPy reference (d = 25).

Goals (kernel-facts.md): ``logistic_gradient_into`` under 1 us at b = 10 and 4 us at
b = 100, output preallocated; ``sgd_steps`` about 0.3-0.5 us per step at b = 10.
"""

from __future__ import annotations

import numpy as np
import pytest

from tormentor.engine import kernels

D = 25
IMPLS = {
    name: {"numba": getattr(kernels, name), "reference": kernels.reference(name)}
    for name in ("logistic_gradient_into", "logistic_gradient", "sgd_steps")
}


def problem(b: int, n: int | None = None):
    rng = np.random.default_rng(b)
    rows = n or b
    X = rng.normal(size=(rows, D))
    y = np.where(rng.random(rows) < 0.5, -1.0, 1.0)
    w = rng.normal(size=D) * 0.1
    return w, X, y


@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("b", [10, 100])
def test_gradient_into(bench, benchmark, impl, b):
    benchmark.group = f"logistic_gradient_into b={b} d={D}"
    w, X, y = problem(b)
    out = np.empty(D)
    bench(impl, IMPLS["logistic_gradient_into"][impl], w, X, y, 1.0, 0.01, out)


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_gradient_allocating(bench, benchmark, impl):
    benchmark.group = f"logistic_gradient (new array) b=10 d={D}"
    w, X, y = problem(10)
    bench(impl, IMPLS["logistic_gradient"][impl], w, X, y, 1.0, 0.01)


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_sgd_steps(bench, benchmark, impl):
    steps, b = 1000, 10
    benchmark.group = f"sgd_steps {steps} steps b={b} d={D} (items = steps)"
    w, X, y = problem(b, n=1000)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, X.shape[0], size=(steps, b))
    noise = rng.normal(size=(steps, D))
    lr = np.full(steps, 0.01)
    rounds = 5 if impl == "reference" else None
    bench(impl, IMPLS["sgd_steps"][impl], w, X, y, idx, lr, 1.0, 0.01, noise, items=steps, rounds=rounds)
