"""Numba kernel of the isotropic L2-Laplace noise sampler.

Same name, signature and semantics as :mod:`.laplace_reference` (read its docstring for
the exact sampler and the draw order). The kernel loops over a NumPy ``Generator`` inside
compiled code; Numba's ``Generator`` methods run NumPy's algorithms on the same bit
generator, so for the same seed both backends return the same numbers. The kernel does
not take the generator's lock: do not share one generator between threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types

from . import laplace_reference as _ref
from ._jit import kernel

__all__ = ["laplace_noise"]

_GENERATOR = types.NumPyRandomGeneratorType("NumPyRandomGeneratorType")


@kernel(types.void(types.float64[:, ::1], _GENERATOR, types.float64))
def _fill_noise(out, rng, scale):
    """Fill ``out`` (n, d) with exact draws of scale ``scale = 2 clip / eps``."""
    n, d = out.shape
    for i in range(n):
        for j in range(d):
            out[i, j] = rng.standard_normal()
    shape = float(d)
    pending = np.empty(n)  # radius of a row still to be scaled, NaN once done
    zero_rows = 0
    for i in range(n):
        radius = rng.standard_gamma(shape) * scale
        sq = 0.0
        for j in range(d):
            sq += out[i, j] * out[i, j]
        if sq == 0.0:  # probability ~0: redrawn after every radius, as the reference does
            pending[i] = radius
            zero_rows += 1
            continue
        pending[i] = math.nan
        factor = radius / math.sqrt(sq)
        for j in range(d):
            out[i, j] = out[i, j] * factor
    if zero_rows == 0:
        return
    for i in range(n):
        if math.isnan(pending[i]):
            continue
        sq = 0.0
        while sq == 0.0:
            for j in range(d):
                out[i, j] = rng.standard_normal()
            sq = 0.0
            for j in range(d):
                sq += out[i, j] * out[i, j]
        factor = pending[i] / math.sqrt(sq)
        for j in range(d):
            out[i, j] = out[i, j] * factor


def laplace_noise(n, d, epsilon, clip, seed=None) -> np.ndarray:
    """Draw ``n`` i.i.d. vectors with density proportional to ``exp(-eps/(2 clip) ||z||_2)``.

    Numba version of :func:`.laplace_reference.laplace_noise` (same parameters, result
    and errors): radius ``~ Gamma(d, scale=2 clip/eps)`` times ``g / ||g||``,
    ``g ~ N(0, I_d)``; ``epsilon = inf`` returns zeros.
    """
    n, d, epsilon, clip = _ref.validate_noise_args(n, d, epsilon, clip)
    rng = _ref.as_generator(seed)
    if epsilon == math.inf:
        return np.zeros((n, d))
    out = np.empty((n, d))
    _fill_noise(out, rng, 2.0 * clip / epsilon)
    return out
