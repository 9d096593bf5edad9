"""Isotropic Laplace noise, 100,000 draws at d = 25: Numba, NumPy (vectorised), emcee.

Goal (kernel-facts.md): at most 25 ms per 100,000 draws with Numba. emcee, the paper's
prototype sampler (50 walkers on log p = -(eps/2)||z||), produces correlated samples: the
benchmark times a modest run of 2,000 samples, then estimates the chain's integrated
autocorrelation time tau (in steps) from a longer run, so that the summary can also print
the cost per *independent* sample (samples / tau).
"""

from __future__ import annotations

import logging

import emcee
import numpy as np
import pytest

from tormentor.engine import kernels

N, D, EPSILON, CLIP = 100_000, 25, 1.0, 1.0
GROUP = f"laplace_noise d={D} (items = samples)"
WALKERS = 50
EMCEE_SAMPLES = 2_000  # 40 steps of 50 walkers
TAU_STEPS = 4_000  # chain used to estimate tau (~250 steps): short, tau is approximate

IMPLS = {"numba": kernels.laplace_noise, "reference": kernels.reference("laplace_noise")}


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_exact_samplers(bench, benchmark, impl):
    benchmark.group = GROUP
    rng = np.random.default_rng(0)
    bench(impl, IMPLS[impl], N, D, EPSILON, CLIP, rng, items=N, rounds=10)


def log_density(z: np.ndarray) -> np.ndarray:
    """log p(z) = -(eps / (2 clip)) ||z||, vectorised over walkers."""
    return -(EPSILON / (2 * CLIP)) * np.linalg.norm(z, axis=1)


def run_emcee(start: np.ndarray, steps: int, seed: int) -> emcee.EnsembleSampler:
    sampler = emcee.EnsembleSampler(WALKERS, D, log_density, vectorize=True)
    sampler.random_state = np.random.RandomState(seed).get_state()  # reproducible
    sampler.run_mcmc(start, steps, progress=False)
    return sampler


def test_emcee(bench, benchmark):
    benchmark.group = GROUP
    # start in the stationary distribution (exact draws), so no burn-in is needed
    start = kernels.laplace_noise(WALKERS, D, EPSILON, CLIP, seed=1)
    bench("emcee", run_emcee, start, EMCEE_SAMPLES // WALKERS, 2, items=EMCEE_SAMPLES, rounds=5)
    if benchmark.disabled:
        return
    logging.getLogger("emcee").setLevel(logging.ERROR)  # "chain too short" is expected
    sampler = run_emcee(start, TAU_STEPS, 3)
    tau = float(np.mean(sampler.get_autocorr_time(quiet=True)))
    benchmark.extra_info["tau_steps"] = round(tau, 1)
    benchmark.extra_info["effective_items"] = EMCEE_SAMPLES / tau
