"""Compile (or load from the cache) every kernel family once, timing each.

A cold Numba compile of everything takes tens of seconds; ``tormentor-engine warmup``
pays it once so that tests, runs and clients later load the cached machine code.
"""

from __future__ import annotations

import time

import numpy as np

from . import BACKEND

__all__ = ["FAMILIES", "warm"]

#: Family name -> one call that exercises every kernel in it.
FAMILIES = ("logistic", "laplace", "roni", "sha256", "sha256_parallel")


def _exercise(family: str) -> None:
    from tormentor.engine import kernels

    rng = np.random.default_rng(0)
    w = np.zeros(4)
    x = np.ascontiguousarray(rng.normal(size=(8, 4)))
    y = np.where(rng.random(8) < 0.5, -1.0, 1.0)
    if family == "logistic":
        kernels.logistic_gradient(w, x, y, 1.0, 0.01)
        kernels.logistic_gradient_into(w, x, y, 1.0, 0.01, np.empty(4))
        kernels.logistic_loss(w, x, y)
        kernels.error_rate(w, x, y)
        kernels.sgd_steps(
            w, x, y, np.zeros((2, 3), dtype=np.int64), np.full(2, 0.1), 1.0, 0.01, np.zeros((2, 4))
        )
    elif family == "laplace":
        kernels.laplace_noise(2, 4, 1.0, 1.0, 0)
    elif family == "roni":
        prepared = kernels.prepare_validation(x, y)
        kernels.roni_scores_prepared(w, np.ascontiguousarray(rng.normal(size=(3, 4))), prepared)
        kernels.roni_scores_prepared(w, np.ascontiguousarray(rng.normal(size=(300, 4))), prepared)
    elif family == "sha256":
        kernels.sha256(b"warm")
        kernels.pow_search(b"\x00" * 32, 4, 0, threads=1)
    elif family == "sha256_parallel":
        kernels.pow_search(b"\x00" * 32, 4, 0, threads=None)
    else:
        raise ValueError(f"unknown kernel family {family!r}; known: {', '.join(FAMILIES)}")


def warm(families: tuple[str, ...] = FAMILIES) -> dict[str, float]:
    """Exercise each family once; return seconds per family (compile or cache load)."""
    timings = {}
    for family in families:
        start = time.perf_counter()
        _exercise(family)
        timings[family] = time.perf_counter() - start
    return timings


if __name__ == "__main__":  # pragma: no cover - convenience
    for name, seconds in warm().items():
        print(f"{name:16s} {seconds:6.2f} s  ({BACKEND})")
