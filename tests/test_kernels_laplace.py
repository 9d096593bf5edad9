"""Isotropic L2-Laplace noise: exactness (KS tests of the radius and the direction),
seeding, and agreement between the Numba kernel and the NumPy reference."""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from tormentor.engine import kernels

#: KS tests run on fixed seeds, so they are deterministic; this threshold only has to
#: separate an exact sampler from a wrong one (a wrong scale or a non-uniform direction
#: gives p-values below 1e-10 at these sample sizes).
P_MIN = 1e-3
N_DRAWS = 20_000

BACKENDS = [
    pytest.param(lambda: kernels.laplace_noise, id=kernels.BACKEND),
    pytest.param(lambda: kernels.reference("laplace_noise"), id="reference"),
]


@pytest.fixture(params=BACKENDS)
def laplace_noise(request):
    return request.param()


@pytest.mark.parametrize("d", [1, 2, 25])
@pytest.mark.parametrize("epsilon,clip", [(1.0, 1.0), (0.5, 0.3), (5.0, 2.0)])
def test_radius_is_gamma_d_with_scale_2clip_over_epsilon(laplace_noise, d, epsilon, clip):
    z = laplace_noise(N_DRAWS, d, epsilon, clip, seed=1000 + d)
    radius = np.linalg.norm(z, axis=1)
    result = stats.kstest(radius, stats.gamma(a=d, scale=2 * clip / epsilon).cdf)
    assert result.pvalue > P_MIN
    assert radius.mean() == pytest.approx(2 * d * clip / epsilon, rel=0.03)


@pytest.mark.parametrize("d", [1, 2, 25])
def test_wrong_scale_is_rejected_by_the_same_ks_test(laplace_noise, d):
    """The KS test above has power: a 5% error in the scale fails it."""
    z = laplace_noise(N_DRAWS, d, 1.0, 1.0, seed=2000 + d)
    radius = np.linalg.norm(z, axis=1)
    assert stats.kstest(radius, stats.gamma(a=d, scale=2.0 * 1.05).cdf).pvalue < 1e-6


@pytest.mark.parametrize("epsilon,clip", [(1.0, 1.0), (0.2, 0.5)])
def test_d1_is_laplace(laplace_noise, epsilon, clip):
    z = laplace_noise(N_DRAWS, 1, epsilon, clip, seed=3)[:, 0]
    result = stats.kstest(z, stats.laplace(loc=0.0, scale=2 * clip / epsilon).cdf)
    assert result.pvalue > P_MIN


@pytest.mark.parametrize("d", [2, 3, 25])
def test_direction_is_uniform_on_the_sphere(laplace_noise, d):
    z = laplace_noise(N_DRAWS, d, 1.0, 1.0, seed=4 + d)
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    # mean direction ~ 0: each coordinate has variance 1/d, so the mean has sd 1/sqrt(d n)
    assert np.all(np.abs(u.mean(axis=0)) < 5 / math.sqrt(d * N_DRAWS))
    # any projection <u, v> on a fixed unit vector: (1 + <u, v>) / 2 ~ Beta((d-1)/2, (d-1)/2)
    reference = stats.beta((d - 1) / 2, (d - 1) / 2)
    rng = np.random.default_rng(5)
    for v in (np.eye(d)[0], np.eye(d)[-1], rng.normal(size=d)):
        proj = u @ (v / np.linalg.norm(v))
        assert stats.kstest((1 + proj) / 2, reference.cdf).pvalue > P_MIN


def test_direction_is_independent_of_the_radius(laplace_noise):
    d = 25
    z = laplace_noise(N_DRAWS, d, 1.0, 1.0, seed=6)
    radius = np.linalg.norm(z, axis=1)
    big = radius > np.median(radius)
    u1 = z[:, 0] / radius
    assert stats.ks_2samp(u1[big], u1[~big]).pvalue > P_MIN


def test_covariance_is_isotropic(laplace_noise):
    """Cov(Z) = E||Z||^2 / d * I = scale^2 (d + 1) I."""
    d, scale = 10, 2.0
    z = laplace_noise(50_000, d, 1.0, 1.0, seed=7)
    cov = np.cov(z, rowvar=False) / (scale**2 * (d + 1))
    np.testing.assert_allclose(np.diag(cov), 1.0, atol=0.05)
    assert np.max(np.abs(cov - np.diag(np.diag(cov)))) < 0.03


def test_a_non_isotropic_sampler_fails_the_direction_test():
    """The projection test has power: scaling one axis by 1.1 is detected."""
    d = 25
    z = kernels.reference("laplace_noise")(N_DRAWS, d, 1.0, 1.0, seed=8)
    z[:, 0] *= 1.1
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    reference = stats.beta((d - 1) / 2, (d - 1) / 2)
    assert stats.kstest((1 + u[:, 0]) / 2, reference.cdf).pvalue < 1e-6


# ---------------------------------------------------------------------------------------
# seeding
# ---------------------------------------------------------------------------------------


def test_int_seed_reproduces_and_seeds_differ(laplace_noise):
    a = laplace_noise(100, 25, 1.0, 1.0, seed=42)
    np.testing.assert_array_equal(a, laplace_noise(100, 25, 1.0, 1.0, seed=42))
    assert not np.array_equal(a, laplace_noise(100, 25, 1.0, 1.0, seed=43))
    assert a.dtype == np.float64 and a.shape == (100, 25) and a.flags.c_contiguous


def test_none_seed_draws_fresh_noise_every_call(laplace_noise):
    a = laplace_noise(5, 25, 1.0, 1.0)
    b = laplace_noise(5, 25, 1.0, 1.0, seed=None)
    assert not np.any(a == b)


def test_generator_is_used_and_advanced(laplace_noise):
    rng = np.random.default_rng(9)
    state = rng.bit_generator.state
    a = laplace_noise(10, 25, 1.0, 1.0, seed=rng)
    assert rng.bit_generator.state != state
    b = laplace_noise(10, 25, 1.0, 1.0, seed=rng)
    assert not np.any(a == b)
    np.testing.assert_array_equal(a, laplace_noise(10, 25, 1.0, 1.0, np.random.default_rng(9)))


@pytest.mark.skipif(kernels.BACKEND != "numba", reason="Numba is not active")
@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.Philox, np.random.MT19937])
@pytest.mark.parametrize("n,d", [(1, 1), (7, 2), (1000, 25), (3, 101)])
def test_both_backends_draw_the_same_numbers(bit_generator, n, d):
    got = kernels.laplace_noise(n, d, 0.7, 1.3, np.random.Generator(bit_generator(11)))
    want = kernels.reference("laplace_noise")(n, d, 0.7, 1.3, np.random.Generator(bit_generator(11)))
    np.testing.assert_array_equal(got, want)


def test_infinite_epsilon_gives_zeros_and_leaves_the_generator(laplace_noise):
    rng = np.random.default_rng(12)
    state = rng.bit_generator.state
    z = laplace_noise(4, 3, math.inf, 1.0, seed=rng)
    np.testing.assert_array_equal(z, np.zeros((4, 3)))
    assert rng.bit_generator.state == state


def test_zero_draws(laplace_noise):
    assert laplace_noise(0, 5, 1.0, 1.0, seed=0).shape == (0, 5)


# ---------------------------------------------------------------------------------------
# validation: same errors, same messages on both backends
# ---------------------------------------------------------------------------------------

BAD_CALLS = [
    ((-1, 3, 1.0, 1.0), ValueError, "n must be >= 0"),
    ((2, 0, 1.0, 1.0), ValueError, "d must be >= 1"),
    ((2.0, 3, 1.0, 1.0), TypeError, "n must be an integer"),
    ((True, 3, 1.0, 1.0), TypeError, "n must be an integer"),
    ((2, 3, 0.0, 1.0), ValueError, "epsilon must be > 0"),
    ((2, 3, -1.0, 1.0), ValueError, "epsilon must be > 0"),
    ((2, 3, math.nan, 1.0), ValueError, "epsilon must be > 0"),
    ((2, 3, "1", 1.0), TypeError, "epsilon must be a real number"),
    ((2, 3, 1.0, 0.0), ValueError, "clip must be finite"),
    ((2, 3, 1.0, math.inf), ValueError, "clip must be finite"),
    ((2, 3, 1.0, math.nan), ValueError, "clip must be finite"),
    ((2, 3, 1e-300, 1e300), ValueError, "overflows"),
    ((2, 3, 1.0, 1.0, -5), ValueError, "seed must be >= 0"),
    ((2, 3, 1.0, 1.0, 1.5), TypeError, "seed must be None"),
    ((2, 3, 1.0, 1.0, True), TypeError, "seed must be None"),
    ((2, 3, 1.0, 1.0, np.random.RandomState(0)), TypeError, "seed must be None"),
]


@pytest.mark.parametrize("args,error,message", BAD_CALLS)
def test_bad_input_raises_same_error_on_both_backends(args, error, message):
    with pytest.raises(error, match=message) as active:
        kernels.laplace_noise(*args)
    with pytest.raises(error, match=message) as reference:
        kernels.reference("laplace_noise")(*args)
    assert str(active.value) == str(reference.value)


@pytest.mark.skipif(kernels.BACKEND != "numba", reason="Numba is not active")
def test_same_signature_on_both_backends():
    from tormentor.engine.kernels import laplace, laplace_reference

    assert inspect.signature(laplace.laplace_noise) == inspect.signature(laplace_reference.laplace_noise)


def test_reference_backend_is_used_when_numba_is_disabled():
    code = """
import sys
import numpy as np
from tormentor.engine import kernels
assert kernels.BACKEND == "reference", kernels.BACKEND
z = kernels.laplace_noise(3, 25, 1.0, 1.0, seed=np.random.default_rng(0))
assert z.shape == (3, 25) and np.all(np.isfinite(z))
assert kernels.laplace_noise.__module__.endswith(".laplace_reference")
assert "numba" not in sys.modules, "the reference backend must not import numba"
print("ok")
"""
    env = {**os.environ, "TORMENTOR_NO_NUMBA": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
