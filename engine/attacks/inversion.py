"""The inversion attacker of paper 5.4 (Figure 4).

The attacker A alternates updates with the victim V. It knows the model M_t it trained
on and its own delta Δ_a,t; when its next work arrives with model M_{t'}, every change
it did not make itself is attributed to the victim::

    Δ̂_v = M_{t'} - M_t - Δ_a,t                      (paper: Δ_{v,t+1} = M_{t+1} - M_t - Δ_{a,t})

and added to a shadow model, which approximates M_V, the model trained on the victim's
data alone. Bystanders, random reply latency and the victim's differential privacy all
corrupt Δ̂_v; the reconstruction error measures by how much.

The estimate assumes each work it receives is the current model: a validation-round
snapshot (the validator on) or a rejoin (a new token, a model from before its last
update) makes one estimate wrong. That is part of the defence, not a bug, but the
paper's Figures 8 and 9 measure the attack with the validator off.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..client import LearningClient

__all__ = ["InversionAttacker", "reconstruction_error"]


def reconstruction_error(shadow: np.ndarray, victim: np.ndarray, x: np.ndarray) -> float:
    """Fraction of rows of ``x`` on which the shadow and the true victim model disagree.

    Predictions are sign(wᵀx) with 0 mapped to -1, as everywhere in the engine.

    Parameters
    ----------
    shadow : ndarray, shape (d,)
        The attacker's reconstruction of the victim's model.
    victim : ndarray, shape (d,)
        The model trained on the victim's data alone.
    x : ndarray, shape (n, d)
        The test shard (paper 7.4).
    """
    if shadow.shape != victim.shape or x.ndim != 2 or x.shape[1] != shadow.shape[0] or x.shape[0] == 0:
        raise ValueError("need shadow and victim of shape (d,) and x of shape (n, d), n >= 1")
    shadow_says = x @ shadow > 0.0
    victim_says = x @ victim > 0.0
    return float(np.mean(shadow_says != victim_says))


class InversionAttacker(LearningClient):
    """A client that reconstructs the victim's model from global-model differences.

    Parameters
    ----------
    x, y : ndarray
        The attacker's own shard (used when it sends real gradients).
    sends : {"gradients", "zeros"}
        ``"gradients"``: participate honestly (harder to spot); ``"zeros"``: send zero
        deltas, which isolates the victim's updates (the paper's strongest variant).
    **kwargs
        As for :class:`~tormentor.engine.client.LearningClient`.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, *, sends: str = "gradients", **kwargs: Any) -> None:
        if sends not in ("gradients", "zeros"):
            raise ValueError(f"sends must be 'gradients' or 'zeros', got {sends!r}")
        super().__init__(x, y, **kwargs)
        self.sends = sends
        self.shadow = np.zeros(self.n_features)
        self.estimates = 0
        self._base: np.ndarray | None = None
        self._own: np.ndarray | None = None

    def observe_model(self, weights: np.ndarray) -> None:
        current = np.array(weights, dtype=np.float64)
        if self._base is not None and self._own is not None:
            self.shadow += current - self._base - self._own
            self.estimates += 1
        self._base = current

    def compute_delta(self, weights: np.ndarray) -> np.ndarray:
        if self.sends == "zeros":
            delta = np.zeros(self.n_features)
        else:
            delta = super().compute_delta(weights)
        self._own = delta
        return delta
