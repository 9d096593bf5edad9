"""One differentially private SGD step on a client's own data (paper Algorithm 1, Appendix A).

Song, Chaudhuri and Sarwate (2013), with per-example clipping::

    Δ = -η_t [ λw + (1/b) Σ_{i∈B} clip_C(∇ℓ_i(w)) + Z/b ],   ρ(Z) ∝ exp(-(ε / 2C) ‖Z‖₂)

Replacing one example of the batch moves the clipped sum by at most 2C, so the step is
ε-differentially private with respect to the batch; the isotropic Laplace draw Z is exact
(Gamma(d, 2C/ε) radius, uniform direction). Without privacy (ε = ∞) Z = 0.

The client sends Δ and the broker adds it: w ← w + Δ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import kernels

__all__ = ["LearningRate", "StepConfig", "dp_step"]


@dataclass(frozen=True)
class LearningRate:
    """Step size η_t = initial / (1 + t / decay_steps)^power (constant when ``power`` is 0).

    Attributes
    ----------
    initial : float
        η_0 (> 0).
    decay_steps : float
        Steps over which the rate falls by the factor 2^power (> 0).
    power : float
        0 = constant (the prototype used 0.01 constant); 0.5 = 1/√t decay.
    """

    initial: float = 0.01
    decay_steps: float = 1000.0
    power: float = 0.0

    def __post_init__(self) -> None:
        if not (self.initial > 0 and math.isfinite(self.initial)):
            raise ValueError(f"learning_rate.initial must be > 0, got {self.initial}")
        if not self.decay_steps > 0:
            raise ValueError(f"learning_rate.decay_steps must be > 0, got {self.decay_steps}")
        if not 0 <= self.power <= 2:
            raise ValueError(f"learning_rate.power must be in [0, 2], got {self.power}")

    def at(self, step: int) -> float:
        """Return η at the client's ``step``-th update (0-based)."""
        if self.power == 0:
            return self.initial
        return self.initial / (1.0 + step / self.decay_steps) ** self.power


@dataclass(frozen=True)
class StepConfig:
    """A client's private training settings; none of them leave the client.

    Attributes
    ----------
    batch : int
        b, rows sampled without replacement per step.
    epsilon : float
        ε per step (``math.inf`` = no noise, no privacy).
    clip : float
        C, bound on each per-example gradient's L2 norm.
    lam : float
        λ, L2 regularisation.
    learning_rate : LearningRate
    """

    batch: int = 10
    epsilon: float = math.inf
    clip: float = 1.0
    lam: float = 0.01
    learning_rate: LearningRate = LearningRate()

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be > 0 (math.inf for no privacy), got {self.epsilon}")
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise ValueError(f"clip must be > 0, got {self.clip}")
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be >= 0, got {self.lam}")

    @property
    def private(self) -> bool:
        """Whether the step adds noise."""
        return math.isfinite(self.epsilon)


def dp_step(
    w: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    config: StepConfig,
    step: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return the delta Δ (d,) of one DP-SGD step from model ``w`` on shard (x, y).

    Parameters
    ----------
    w : ndarray, shape (d,)
        The model the broker sent.
    x, y : ndarray, shapes (n, d) and (n,)
        The client's shard; labels in {-1, +1}.
    config : StepConfig
        The client's batch size, ε, clipping, λ and learning rate.
    step : int
        The client's own step count (for the learning-rate schedule).
    rng : numpy.random.Generator
        Draws the batch and the noise; a client seeds it from the OS once.
    """
    n = x.shape[0]
    b = min(config.batch, n)
    rows = rng.choice(n, size=b, replace=False) if b < n else np.arange(n)
    gradient = kernels.logistic_gradient(w, x[rows], y[rows], config.clip, config.lam)
    if config.private:
        noise = kernels.laplace_noise(1, w.shape[0], config.epsilon, config.clip, rng)[0]
        gradient = gradient + noise / b
    return -config.learning_rate.at(step) * gradient
