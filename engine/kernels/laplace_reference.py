r"""NumPy reference of the isotropic L2-Laplace noise sampler (oracle, baseline, fallback).

The DP-SGD step of Song, Chaudhuri and Sarwate (2013) adds noise ``Z`` with density
:math:`\rho(z) \propto \exp(-\frac{\varepsilon}{2C}\|z\|_2)` in :math:`R^d` (C: the
per-example clipping bound; privacy-facts.md). The sampler is exact: in polar form the
radius :math:`\|Z\|` has density :math:`\propto r^{d-1} e^{-\varepsilon r / (2C)}`, i.e.
``Gamma(shape=d, scale=2C/eps)``, and the direction is uniform on the sphere, drawn as
``g / ||g||`` with ``g ~ N(0, I_d)``, independent of the radius. For ``d = 1`` this is
``Laplace(0, 2C/eps)``. (The paper's prototype drew a fixed pool of emcee MCMC samples and
reused them: neither exact nor independent.)

Draw order, shared with the Numba kernel in :mod:`.laplace` so that both backends return
the same numbers for the same seed (Numba's ``Generator`` runs NumPy's algorithms on the
same bit generator): first the ``n * d`` normals in row-major order, then ``n`` gamma
variates, then, for each row whose normal vector is exactly zero (probability ~0), ``d``
fresh normals until it is not.
"""

from __future__ import annotations

import math
import operator

import numpy as np

__all__ = ["laplace_noise"]


def as_generator(seed: object) -> np.random.Generator:
    """Return the generator a sampler draws from.

    ``None``: a new generator seeded from the OS with full entropy; an ``int`` >= 0: a new
    generator seeded with it (reproducible); a :class:`numpy.random.Generator`: that
    generator itself, which the draw advances (fresh noise on every call).

    Raises
    ------
    TypeError
        For any other type (``bool`` included).
    ValueError
        For a negative integer seed.
    """
    if seed is None:
        return np.random.default_rng(None)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be None, an int or a numpy.random.Generator, got bool")
    try:
        value = operator.index(seed)
    except TypeError:
        raise TypeError(
            f"seed must be None, an int or a numpy.random.Generator, got {type(seed).__name__}"
        ) from None
    if value < 0:
        raise ValueError("seed must be >= 0")
    return np.random.default_rng(value)


def validate_noise_args(n: object, d: object, epsilon: object, clip: object):
    """Check the arguments of :func:`laplace_noise`; return ``(n, d, epsilon, clip)``.

    Raises
    ------
    TypeError
        If ``n``/``d`` are not integers or ``epsilon``/``clip`` not real numbers.
    ValueError
        Unless ``n >= 0``, ``d >= 1``, ``epsilon > 0`` (``inf`` allowed), ``clip > 0``
        finite, and the scale ``2 clip / epsilon`` is finite.
    """
    n = _as_int("n", n)
    d = _as_int("d", d)
    epsilon = _as_float("epsilon", epsilon)
    clip = _as_float("clip", clip)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if d < 1:
        raise ValueError(f"d must be >= 1, got {d}")
    if not epsilon > 0.0:
        raise ValueError(f"epsilon must be > 0 (inf: no noise), got {epsilon}")
    if not 0.0 < clip < math.inf:
        raise ValueError(f"clip must be finite and > 0, got {clip}")
    if not math.isfinite(2.0 * clip / epsilon):
        raise ValueError("the noise scale 2 * clip / epsilon overflows")
    return n, d, epsilon, clip


def _as_int(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _as_float(name: str, value: object) -> float:
    if isinstance(value, (bool, np.bool_, np.complexfloating)) or not isinstance(
        value, (int, float, np.number)
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def laplace_noise(n, d, epsilon, clip, seed=None) -> np.ndarray:
    """Draw ``n`` i.i.d. vectors with density proportional to ``exp(-eps/(2 clip) ||z||_2)``.

    Exact sampler: radius ``~ Gamma(shape=d, scale=2 clip/eps)`` times a uniform direction
    ``g / ||g||`` with ``g ~ N(0, I_d)`` (see the module docstring). ``E||Z|| = 2 d clip/eps``.

    Parameters
    ----------
    n : int
        Number of draws, n >= 0.
    d : int
        Dimension, d >= 1.
    epsilon : float
        Privacy parameter of one step, > 0. ``inf`` returns zeros (no noise) and leaves
        the generator untouched.
    clip : float
        The per-example L2 clipping bound C (the sensitivity of the batch sum is 2C),
        finite and > 0.
    seed : None, int or numpy.random.Generator
        ``None`` seeds from the OS (full entropy), an int reproduces, a ``Generator`` is
        used and advanced (how a client draws fresh noise every step).

    Returns
    -------
    ndarray, shape (n, d), float64, C-contiguous
        One draw per row.
    """
    n, d, epsilon, clip = validate_noise_args(n, d, epsilon, clip)
    rng = as_generator(seed)
    if epsilon == math.inf:
        return np.zeros((n, d))
    scale = 2.0 * clip / epsilon
    out = rng.standard_normal((n, d))
    radius = rng.standard_gamma(float(d), size=n) * scale
    norms = _in_order_norms(out)
    for i in np.flatnonzero(norms == 0.0):
        while norms[i] == 0.0:
            out[i] = rng.standard_normal(d)
            norms[i] = _in_order_norms(out[i : i + 1])[0]
    out *= (radius / norms)[:, None]
    return out


def _in_order_norms(g: np.ndarray) -> np.ndarray:
    """Row norms summed in column order, as the Numba kernel sums them."""
    sq = g[:, 0] * g[:, 0]
    for j in range(1, g.shape[1]):
        sq += g[:, j] * g[:, j]
    return np.sqrt(sq)
