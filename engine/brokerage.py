"""All the models one broker process serves, routed by model id; handles ``curate``.

The paper runs one short-lived broker per curated model (section 3.2). A
:class:`Brokerage` holds those brokers side by side in one process, so one onion
address and one bus can serve several curators; each model keeps its own state,
clients, defences and stopping rule, and nothing is shared between models.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .broker import Broker, Outgoing
from .protocol import Curate, Curated, ErrorCode, ProtocolError

__all__ = ["Brokerage"]


class Brokerage:
    """Route requests to per-model brokers; create a broker for each ``Curate``.

    Parameters
    ----------
    clock : callable returning float seconds
        ``time.monotonic`` by default.
    entropy : callable(n) -> bytes
        ``secrets.token_bytes`` by default: model ids, curator secrets, tokens, puzzles.
    rng : numpy.random.Generator or None
        Validation draws and latencies; seeded from the OS when None.
    max_models : int
        Curated models kept at once (a bound on memory; a curator beyond it gets ``FULL``).
    max_validation_rows : int
        Largest validation set accepted from a curator.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        entropy: Callable[[int], bytes] = secrets.token_bytes,
        rng: np.random.Generator | None = None,
        max_models: int = 16,
        max_validation_rows: int = 1_000_000,
    ) -> None:
        if max_models < 1:
            raise ValueError(f"max_models must be >= 1, got {max_models}")
        self._clock = clock
        self._entropy = entropy
        self._rng = rng if rng is not None else np.random.default_rng()
        self._max_models = max_models
        self._max_validation_rows = max_validation_rows
        self.brokers: dict[str, Broker] = {}

    def curate(self, request: Curate) -> tuple[Curated, Broker]:
        """Create the broker for a new model; return the curator's reply and the broker."""
        if len(self.brokers) >= self._max_models:
            raise ProtocolError(ErrorCode.FULL, f"this broker serves at most {self._max_models} models")
        task = request.task
        x, y = request.validation_x, request.validation_y
        if x.ndim != 2 or x.shape[1] != task.n_features:
            raise ProtocolError(
                ErrorCode.INVALID_TASK,
                f"validation_x must have task.n_features={task.n_features} columns, got shape {x.shape}",
            )
        if not 1 <= x.shape[0] <= self._max_validation_rows:
            raise ProtocolError(
                ErrorCode.INVALID_TASK, f"validation set must have 1..{self._max_validation_rows} rows"
            )
        if y.shape != (x.shape[0],):
            raise ProtocolError(ErrorCode.INVALID_TASK, "validation_y must have one label per row")
        if not (np.isfinite(x).all() and np.isin(y, (-1.0, 1.0)).all()):
            raise ProtocolError(ErrorCode.INVALID_TASK, "validation data must be finite, labels in {-1, +1}")
        model_id = self._entropy(8).hex()
        secret = self._entropy(32)
        broker = Broker(
            model_id,
            task,
            x,
            y,
            curator_secret=secret,
            clock=self._clock,
            entropy=self._entropy,
            rng=self._rng,
        )
        self.brokers[model_id] = broker
        return Curated(model_id=model_id, secret=secret), broker

    def handle_batch(self, requests: Sequence[tuple[Any, Any]]) -> list[Outgoing]:
        """Process ``(handle, request)`` pairs; return the replies to send, in no promised order."""
        out: list[Outgoing] = []
        per_model: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
        for handle, request in requests:
            if isinstance(request, Curate):
                try:
                    reply, _ = self.curate(request)
                except ProtocolError as refusal:
                    reply = refusal.reply()
                out.append(Outgoing(handle, reply))
                continue
            model_id = getattr(request, "model_id", None)
            if model_id not in self.brokers:
                out.append(
                    Outgoing(handle, ProtocolError(ErrorCode.UNKNOWN_MODEL, "no model with that id").reply())
                )
                continue
            per_model[model_id].append((handle, request))
        for model_id, batch in per_model.items():
            out.extend(self.brokers[model_id].handle_batch(batch))
        return out

    def tick(self) -> list[Outgoing]:
        """Run every broker's housekeeping; return the replies it owes."""
        out: list[Outgoing] = []
        for broker in self.brokers.values():
            out.extend(broker.tick())
        return out

    def remove(self, model_id: str) -> None:
        """Forget a model (after its curator fetched the result)."""
        self.brokers.pop(model_id, None)
