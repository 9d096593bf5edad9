"""RONI validation rounds with snapshots (paper 5.5, Algorithm 2, corrected).

Algorithm 2 as printed starts a round when a Bernoulli draw *exceeds* the rate and
penalises when a total *exceeds* the threshold; the prose and the prototype do the
opposite, and the prototype's "snapshot" aliased the live weights. Here:

1. After each accepted update, with probability ``rate`` and no round open, a round
   starts: the current model is copied into a true snapshot M_s, and every active
   client becomes a member of the round.
2. Each member's next reply carries M_s instead of the current model, in a message of
   the same type, so a client cannot tell a validation round from normal work.
3. A member's response Δ_c is scored against the curator's validation set::

       r_c = err(M_s) - err(M_s + Δ_c)           (0-1 error; positive = helped)

   in one batched :func:`~tormentor.engine.kernels.roni_scores_prepared` call for all
   responses that arrive together, and added to the client's running total.
4. A total below ``-threshold`` penalises the client (the broker raises its puzzle
   difficulty) and resets the total to zero.
5. The round closes once every member has responded, left or timed out.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import kernels

__all__ = ["RoniValidator", "ValidationRound", "Verdict"]


@dataclass
class ValidationRound:
    """An open round: the snapshot, who still gets it, and who still owes a response."""

    number: int
    snapshot: np.ndarray  # private, writable copy: Numba kernels take writable arrays
    to_send: set[Hashable] = field(default_factory=set)
    awaiting: set[Hashable] = field(default_factory=set)

    @property
    def closed(self) -> bool:
        return not self.to_send and not self.awaiting


@dataclass(frozen=True)
class Verdict:
    """The outcome of scoring one validation response."""

    score: float
    penalised: bool
    acceptable: bool  # the update alone did not cost more than the threshold


class RoniValidator:
    """Reject-on-negative-influence scoring of validation-round responses.

    Parameters
    ----------
    validation_x : ndarray, shape (n, d)
        The curator's validation features (bias column included).
    validation_y : ndarray, shape (n,)
        Labels in {-1, +1}.
    rate : float
        Probability per accepted update that a round starts (0..1).
    threshold : float
        Penalise when a client's running total falls below ``-threshold`` (0..1,
        in units of validation error: 0.02 = two percentage points).
    rng : numpy.random.Generator
        Source of the Bernoulli draws.
    """

    def __init__(
        self,
        validation_x: np.ndarray,
        validation_y: np.ndarray,
        *,
        rate: float,
        threshold: float,
        rng: np.random.Generator,
    ) -> None:
        if validation_x.ndim != 2 or validation_y.shape != (validation_x.shape[0],):
            raise ValueError("validation_x must be (n, d) and validation_y (n,)")
        if validation_x.shape[0] == 0:
            raise ValueError("the validation set is empty")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        x = np.ascontiguousarray(validation_x, dtype=np.float64)
        y = np.ascontiguousarray(validation_y, dtype=np.float64)
        self._prepared = kernels.prepare_validation(x, y)
        self.rate = rate
        self.threshold = threshold
        self._rng = rng
        self._totals: dict[Hashable, float] = {}
        self._rounds_started = 0
        self.round: ValidationRound | None = None

    @property
    def rounds_started(self) -> int:
        """Number of validation rounds started so far."""
        return self._rounds_started

    def maybe_start_round(self, weights: np.ndarray, members: Iterable[Hashable]) -> bool:
        """Draw the Bernoulli trial; on success open a round on a copy of ``weights``."""
        if self.round is not None or self._rng.random() >= self.rate:
            return False
        member_set = set(members)
        if not member_set:
            return False
        self._rounds_started += 1
        snapshot = np.array(weights, dtype=np.float64, copy=True)
        self.round = ValidationRound(
            number=self._rounds_started, snapshot=snapshot, to_send=member_set, awaiting=set()
        )
        return True

    def take_snapshot_for(self, client: Hashable) -> np.ndarray | None:
        """Return M_s if ``client``'s next reply must carry it (and mark it sent), else None."""
        current = self.round
        if current is None or client not in current.to_send:
            return None
        current.to_send.discard(client)
        current.awaiting.add(client)
        view = current.snapshot.view()
        view.flags.writeable = False
        return view

    def is_awaited(self, client: Hashable, round_number: int) -> bool:
        """Whether ``client`` owes a response to round ``round_number``."""
        current = self.round
        return current is not None and current.number == round_number and client in current.awaiting

    def score(self, responses: Sequence[tuple[Hashable, np.ndarray]]) -> list[Verdict]:
        """Score responses to the open round in one batched kernel call and update totals.

        Parameters
        ----------
        responses : sequence of (client, delta)
            Each client must be awaited by the open round; each delta has shape (d,).
        """
        current = self.round
        if not responses:
            return []
        if current is None:
            raise RuntimeError("score() called with no open validation round")
        deltas = np.stack([delta for _, delta in responses])
        scores = kernels.roni_scores_prepared(current.snapshot, deltas, self._prepared)
        verdicts = []
        for (client, _), score in zip(responses, scores, strict=True):
            current.awaiting.discard(client)
            total = self._totals.get(client, 0.0) + float(score)
            penalised = total < -self.threshold
            self._totals[client] = 0.0 if penalised else total
            verdicts.append(
                Verdict(score=float(score), penalised=penalised, acceptable=score >= -self.threshold)
            )
        self._close_if_done()
        return verdicts

    def forget(self, client: Hashable) -> None:
        """Remove a departed client from the open round and drop its total."""
        self._totals.pop(client, None)
        current = self.round
        if current is not None:
            current.to_send.discard(client)
            current.awaiting.discard(client)
            self._close_if_done()

    def total(self, client: Hashable) -> float:
        """The client's running RONI total since its last penalty."""
        return self._totals.get(client, 0.0)

    def _close_if_done(self) -> None:
        if self.round is not None and self.round.closed:
            self.round = None
