"""The model a curator can ask for, behind one small interface.

Only logistic regression exists today (labels in {-1, +1}, a bias column in X). A
softmax regression needs the same five operations on a flattened weight vector, so
adding it touches this module and the kernels, not the broker or the client.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from . import kernels

__all__ = ["LogisticRegression", "Model", "make_model"]


class Model(Protocol):
    """The operations the engine performs on a model's flat weight vector (d,)."""

    name: str
    dimension: int

    def initial_weights(self) -> np.ndarray:
        """Return the starting weights, shape (d,)."""

    def gradient(self, w: np.ndarray, x: np.ndarray, y: np.ndarray, clip: float, lam: float) -> np.ndarray:
        """Mean of per-example gradients clipped to norm ``clip``, plus ``lam * w``; shape (d,)."""

    def loss(self, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        """Mean training loss on (x, y)."""

    def error_rate(self, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        """Fraction of rows of (x, y) misclassified (0-1 error)."""

    def predict(self, w: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Predicted labels for the rows of x, shape (n,)."""


class LogisticRegression:
    """Binary logistic regression: P(y | x) = σ(y wᵀx), y ∈ {-1, +1}.

    Parameters
    ----------
    dimension : int
        Number of weights d (features plus the bias column).
    """

    name = "logistic"

    def __init__(self, dimension: int) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        self.dimension = dimension

    def initial_weights(self) -> np.ndarray:
        return np.zeros(self.dimension, dtype=np.float64)

    def gradient(self, w: np.ndarray, x: np.ndarray, y: np.ndarray, clip: float, lam: float) -> np.ndarray:
        return kernels.logistic_gradient(w, x, y, clip, lam)

    def loss(self, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float(kernels.logistic_loss(w, x, y))

    def error_rate(self, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float(kernels.error_rate(w, x, y))

    def predict(self, w: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Return +1 where wᵀx > 0, else -1 (a score of exactly 0 is predicted -1)."""
        return np.where(x @ w > 0.0, 1.0, -1.0)


def make_model(model_type: str, dimension: int) -> Model:
    """Return the model named ``model_type`` with ``dimension`` weights."""
    if model_type == "logistic":
        return LogisticRegression(dimension)
    raise ValueError(f"unknown model type {model_type!r}; known: 'logistic'")
