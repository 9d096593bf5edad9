"""The label-flipping poisoner (paper 4 "Poisoning attacks", 7.5)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..client import LearningClient

__all__ = ["LabelFlippingPoisoner"]


class LabelFlippingPoisoner(LearningClient):
    """A client whose shard has every label negated; everything else is honest.

    It joins, pays its puzzles (so adaptive proof of work slows it once RONI penalises
    it) and sends ordinary DP-SGD steps, computed on flipped labels: each step pushes
    the model away from the curator's objective.

    Parameters
    ----------
    x, y : ndarray, shapes (n, d) and (n,)
        The poisoner's shard with its *true* labels; they are flipped here.
    **kwargs
        As for :class:`~tormentor.engine.client.LearningClient`.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> None:
        super().__init__(x, -np.asarray(y, dtype=np.float64), **kwargs)
