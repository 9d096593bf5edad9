"""The parameter server's model state: asynchronous (lock-free) and synchronous aggregation.

Both aggregators are single-writer by construction: only the broker's one event loop
calls them, so there is nothing to lock. Readers never see the live array: every
model handed out is :meth:`Aggregator.published`, a read-only copy made once per version.

Asynchronous (paper 5.3, Hogwild-style parameter server, Appendix A eq. 2)::

    w_{t+m} = w_t + Σ_{i=1..m} Δ_i          version += m

where the m deltas are the updates accepted in one batch (one vectorised sum).

Synchronous: one update per active client per round, averaged::

    w_{r+1} = w_r + (1/|A|) Σ_{c∈A} Δ_c     version += 1

The round closes when every active client has contributed; clients that leave or time
out are no longer waited for.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Protocol

import numpy as np

__all__ = ["Aggregator", "AsyncAggregator", "SyncAggregator", "make_aggregator"]


class Aggregator(Protocol):
    """What the broker needs from a model store."""

    @property
    def version(self) -> int:
        """Number of model versions so far (async: accepted updates; sync: rounds)."""

    def published(self) -> np.ndarray:
        """Return a read-only copy of the current weights, shape (d,)."""

    def submit(self, client: Hashable, delta: np.ndarray) -> None:
        """Queue one accepted update Δ (d,) from ``client``."""

    def commit(self, active: Collection[Hashable]) -> list[Hashable]:
        """Apply what can be applied; return the clients whose updates were applied."""

    def forget(self, client: Hashable) -> None:
        """Drop a departed client's queued update, if any."""

    def holds(self, client: Hashable) -> bool:
        """Whether an update of ``client`` is queued and not yet applied."""


class _ModelStore:
    def __init__(self, initial: np.ndarray) -> None:
        weights = np.array(initial, dtype=np.float64, copy=True)
        if weights.ndim != 1:
            raise ValueError(f"initial weights must be 1-D, got shape {weights.shape}")
        self._weights = weights
        self._version = 0
        self._published: np.ndarray | None = None

    @property
    def version(self) -> int:
        return self._version

    @property
    def dimension(self) -> int:
        return self._weights.shape[0]

    def published(self) -> np.ndarray:
        if self._published is None:
            copy = self._weights.copy()
            copy.flags.writeable = False
            self._published = copy
        return self._published

    def _add(self, step: np.ndarray, versions: int) -> None:
        self._weights += step
        self._version += versions
        self._published = None


class AsyncAggregator(_ModelStore):
    """Apply every accepted update at once: w += ΣΔ over a batch, version += batch size."""

    def __init__(self, initial: np.ndarray) -> None:
        super().__init__(initial)
        self._clients: list[Hashable] = []
        self._deltas: list[np.ndarray] = []

    def submit(self, client: Hashable, delta: np.ndarray) -> None:
        self._clients.append(client)
        self._deltas.append(delta)

    def commit(self, active: Collection[Hashable]) -> list[Hashable]:
        if not self._deltas:
            return []
        if len(self._deltas) == 1:
            step = self._deltas[0]
        else:
            step = np.sum(np.stack(self._deltas), axis=0)
        self._add(step, len(self._deltas))
        applied, self._clients, self._deltas = self._clients, [], []
        return applied

    def forget(self, client: Hashable) -> None:
        # Async updates are applied within the batch that accepted them: nothing waits.
        return None

    def holds(self, client: Hashable) -> bool:
        return client in self._clients


class SyncAggregator(_ModelStore):
    """Average one update per active client per round: w += mean(Δ), version += 1."""

    def __init__(self, initial: np.ndarray) -> None:
        super().__init__(initial)
        self._round: dict[Hashable, np.ndarray] = {}

    def submit(self, client: Hashable, delta: np.ndarray) -> None:
        # A client waits for its reply before sending again, so it has at most one
        # update in a round; a second one (a misbehaving peer) replaces the first.
        self._round[client] = delta

    def commit(self, active: Collection[Hashable]) -> list[Hashable]:
        if not self._round or any(client not in self._round for client in active):
            return []
        step = np.mean(np.stack(list(self._round.values())), axis=0)
        self._add(step, 1)
        applied = list(self._round)
        self._round = {}
        return applied

    def forget(self, client: Hashable) -> None:
        self._round.pop(client, None)

    def holds(self, client: Hashable) -> bool:
        return client in self._round

    @property
    def waiting(self) -> int:
        """Number of updates queued in the open round."""
        return len(self._round)


def make_aggregator(mode: str, initial: np.ndarray) -> AsyncAggregator | SyncAggregator:
    """Return the aggregator for ``mode`` (``"async"`` or ``"sync"``)."""
    if mode == "async":
        return AsyncAggregator(initial)
    if mode == "sync":
        return SyncAggregator(initial)
    raise ValueError(f"aggregation mode must be 'async' or 'sync', got {mode!r}")
