"""A client of brokered learning as a transport-free state machine (paper 5.2, Algorithm 1).

The client turns each reply into its next request: join (schema and k), solve the
admission puzzle, then loop: take the model, compute one differentially private SGD
step on its own data, solve the per-update puzzle, push the delta. Its ε, batch size and
budget never leave it; only k does (paper 5.2).

A transport drives it::

    action = client.start()
    while isinstance(action, Send):
        reply = send(action.request) after action.after_s seconds
        action = client.on_reply(reply)
    # action is a Stop: why the client stopped

Attack clients (``tormentor.engine.attacks``) subclass it and override
:meth:`LearningClient.compute_delta` or :meth:`LearningClient.observe_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .dp_sgd import StepConfig, dp_step
from .pow import solve_puzzle
from .protocol import Admitted, Challenge, Done, Error, ErrorCode, Join, Leave, Solve, Update, Wait, Work

__all__ = ["Budget", "ClientStats", "LearningClient", "Send", "Stop"]

#: Error codes after which a client joins again (its token no longer works, or its
#: last update's reply was lost and the puzzle it holds is no longer current).
_REJOIN_CODES = frozenset({ErrorCode.EXPIRED.value, ErrorCode.STALE_PROOF.value})


@dataclass(frozen=True)
class Send:
    """Send ``request`` after ``after_s`` seconds."""

    request: Any
    after_s: float = 0.0


@dataclass(frozen=True)
class Stop:
    """The client is finished. ``ok`` is False when it stopped on an error."""

    reason: str
    ok: bool
    code: str = ""


class Budget(Protocol):
    """A client's privacy ledger as the client uses it (:class:`~tormentor.engine.ledger.PrivacyLedger`)."""

    def can_spend(self, *, epsilon: float, batch_size: int, shard_size: int) -> bool:
        """Whether one more step keeps the client within its (ε, δ) budget."""

    def record_step(self, *, epsilon: float, batch_size: int, shard_size: int) -> None:
        """Record one step."""


@dataclass
class ClientStats:
    """What the client did (its own view; never sent)."""

    updates_sent: int = 0
    waits: int = 0
    rejoins: int = 0
    pow_hashes_expected: float = 0.0


class LearningClient:
    """One honest data provider.

    Parameters
    ----------
    x, y : ndarray, shapes (n, d) and (n,)
        The client's own shard; labels in {-1, +1}. Never leaves the client.
    model_id : str
        The curated model to join (learned out of band, paper footnote 4).
    k : int
        The minimum number of clients this client requires (paper 5.4).
    step : StepConfig
        ε, batch size, clipping, λ and learning rate.
    rng : numpy.random.Generator or None
        Batches and noise; seeded from the OS when None.
    budget : Budget or None
        The privacy ledger; the client leaves once one more step would exceed it.
    max_updates : int or None
        Leave after this many updates (None = until the broker says done).
    pow_threads : int or None
        Threads for puzzle search (1 on small devices; None = all).
    max_rejoins : int
        How many times to join again after losing the token (timeouts, lost replies).
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        model_id: str,
        k: int = 1,
        step: StepConfig | None = None,
        rng: np.random.Generator | None = None,
        budget: Budget | None = None,
        max_updates: int | None = None,
        pow_threads: int | None = 1,
        max_rejoins: int = 3,
    ) -> None:
        if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
            raise ValueError("x must be (n, d) with n >= 1 and y (n,)")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if max_updates is not None and max_updates < 0:
            raise ValueError(f"max_updates must be >= 0, got {max_updates}")
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.model_id = model_id
        self.k = k
        self.step = step if step is not None else StepConfig()
        self.rng = rng if rng is not None else np.random.default_rng()
        self.budget = budget
        self.max_updates = max_updates
        self.pow_threads = pow_threads
        self.max_rejoins = max_rejoins
        self.stats = ClientStats()
        self.token: bytes | None = None
        #: Why the client left of its own accord ("budget", "max_updates"), else "".
        self.stopped_for = ""
        self._last_request: Any = None
        self._counted_rejoins = 0

    @property
    def n_features(self) -> int:
        """Number of columns of the client's data (the schema it joins with)."""
        return self.x.shape[1]

    # ---------------------------------------------------------------- hooks for attacks

    def compute_delta(self, weights: np.ndarray) -> np.ndarray:
        """Return the update Δ for ``weights``: one DP-SGD step on the client's data."""
        return dp_step(weights, self.x, self.y, self.step, self.stats.updates_sent, self.rng)

    def observe_model(self, weights: np.ndarray) -> None:
        """Called with every model the broker sends (honest clients ignore it)."""

    # ---------------------------------------------------------------- state machine

    def start(self) -> Send:
        """Return the first request: join with the schema and k."""
        return self._send(Join(model_id=self.model_id, n_features=self.n_features, k=self.k))

    def on_reply(self, reply: Any) -> Send | Stop:
        """Return what to do after ``reply`` to the last request."""
        if isinstance(reply, Challenge):
            self.stats.pow_hashes_expected += 2.0**reply.bits
            nonce = solve_puzzle(reply.puzzle, reply.bits, threads=self.pow_threads)
            return self._send(Solve(model_id=self.model_id, join_id=reply.join_id, nonce=nonce))
        if isinstance(reply, Admitted):
            self.token = reply.token
            return self._train(reply.weights, reply.puzzle, reply.bits)
        if isinstance(reply, Work):
            return self._train(reply.weights, reply.puzzle, reply.bits)
        if isinstance(reply, Wait):
            self.stats.waits += 1
            return Send(self._last_request, after_s=reply.retry_after_s)
        if isinstance(reply, Done):
            return Stop(reason=reply.reason, ok=True)
        if isinstance(reply, Error):
            if reply.code in _REJOIN_CODES:
                return self.rejoin(reply.code)
            return Stop(reason=reply.message, ok=False, code=reply.code)
        return Stop(reason=f"unexpected reply {type(reply).__name__}", ok=False, code="protocol")

    def rejoin(self, why: str = "lost", *, counted: bool = True) -> Send | Stop:
        """Join again (after a lost reply or an expired token).

        Parameters
        ----------
        why : str
            The reason, kept in the :class:`Stop` if the client gives up.
        counted : bool
            Whether this rejoin uses up one of ``max_rejoins`` (protocol trouble, like a
            repeatedly expired token). A transport that lost a reply passes False: it
            bounds its retries itself, by time.
        """
        if counted and self._counted_rejoins >= self.max_rejoins:
            return Stop(reason=f"gave up after {self.max_rejoins} rejoins ({why})", ok=False, code=why)
        self.stats.rejoins += 1
        self._counted_rejoins += int(counted)
        self.token = None
        return self.start()

    def _train(self, weights: np.ndarray, puzzle: bytes, bits: int) -> Send:
        self.observe_model(weights)
        assert self.token is not None
        out_of_updates = self.max_updates is not None and self.stats.updates_sent >= self.max_updates
        if out_of_updates or not self._budget_allows_step():
            self.stopped_for = "max_updates" if out_of_updates else "budget"
            return self._send(Leave(model_id=self.model_id, token=self.token))
        delta = self.compute_delta(weights)
        if self.budget is not None and self.step.private:
            self.budget.record_step(**self._step_cost())
        self.stats.pow_hashes_expected += 2.0**bits
        nonce = solve_puzzle(puzzle, bits, threads=self.pow_threads)
        self.stats.updates_sent += 1
        return self._send(
            Update(model_id=self.model_id, token=self.token, base=puzzle, nonce=nonce, delta=delta)
        )

    def _step_cost(self) -> dict[str, Any]:
        return {
            "epsilon": self.step.epsilon,
            "batch_size": min(self.step.batch, self.x.shape[0]),
            "shard_size": self.x.shape[0],
        }

    def _budget_allows_step(self) -> bool:
        if self.budget is None or not self.step.private:
            return True
        return bool(self.budget.can_spend(**self._step_cost()))

    def _send(self, request: Any) -> Send:
        self._last_request = request
        return Send(request)
