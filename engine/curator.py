"""The curator's side of the protocol: define a task, watch progress, fetch the model.

The curator never talks to clients (paper 3.1); it sees aggregate statistics and, at
the end, the model. Its secret is the only thing that proves it owns the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .protocol import Curate, Curated, Fetch, Status, TaskSpec

__all__ = ["CuratorSession", "curate_request"]


def curate_request(task: TaskSpec, validation_x: np.ndarray, validation_y: np.ndarray) -> Curate:
    """Return the ``curate`` request for ``task`` with the curator's validation set.

    Parameters
    ----------
    task : TaskSpec
        The objective, limits, stopping rule and defences.
    validation_x : ndarray, shape (n, task.n_features)
        The curator's validation features (bias column included).
    validation_y : ndarray, shape (n,)
        Labels in {-1, +1}.
    """
    x = np.ascontiguousarray(validation_x, dtype=np.float64)
    y = np.ascontiguousarray(validation_y, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != task.n_features:
        raise ValueError(f"validation_x must be (n, {task.n_features}), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError("validation_y must have one label per row of validation_x")
    return Curate(task=task, validation_x=x, validation_y=y)


@dataclass(frozen=True)
class CuratorSession:
    """What a curator holds after ``curate``: the model id (public) and its secret."""

    model_id: str
    secret: bytes

    @classmethod
    def from_reply(cls, reply: Curated) -> CuratorSession:
        return cls(model_id=reply.model_id, secret=reply.secret)

    def status(self) -> Status:
        """Return the request for aggregate progress."""
        return Status(model_id=self.model_id, secret=self.secret)

    def fetch(self) -> Fetch:
        """Return the request for the final model."""
        return Fetch(model_id=self.model_id, secret=self.secret)
