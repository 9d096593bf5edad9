"""One broker per curated model: admission, the k gate, aggregation, validation, liveness, stopping.

The broker is honest but curious (paper 4): it sees anonymous tokens, never addresses or
data, and keeps no per-client record beyond what the protocol needs (k, the current
puzzle, a RONI total, a penalty count). It is transport-free and single-threaded: a
transport feeds it batches of decoded requests and sends back the replies it returns.

Each request handle is opaque (a reply subject, a future, a list index); the broker
returns :class:`Outgoing` items pairing a handle with its reply and the random delay the
latency defence asks for. In synchronous aggregation a reply may come out of a later
call, once the round it waits for is complete.

Time (``clock``, seconds) and randomness (``entropy`` for secrets and puzzles, ``rng``
for Bernoulli draws and latency) are injected so tests are deterministic.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .aggregator import make_aggregator
from .model import make_model
from .pow import DifficultyPolicy, Puzzle, new_puzzle
from .protocol import (
    Admitted,
    Challenge,
    Done,
    ErrorCode,
    Fetch,
    Final,
    Join,
    Leave,
    Progress,
    ProtocolError,
    Solve,
    Status,
    TaskSpec,
    Update,
    Wait,
    Work,
)
from .validator import RoniValidator

__all__ = ["Broker", "Outgoing"]

#: Seconds a client is told to wait while fewer clients than its k are active.
WAIT_RETRY_S = 0.5
#: Largest |Δ_i| accepted. An honest DP step is η(clipped gradient + Z/b); even at ε = 0.01,
#: d = 24, b = 1 its noise has E‖Z‖ ≈ 4,800, so 1e6 is generous, and it keeps a hostile
#: client from overflowing the model to infinity with finite but huge values.
MAX_DELTA_ABS = 1e6
#: Departed clients (left, timed out, evicted) remembered per model, so a returning
#: token gets ``EXPIRED``/``EVICTED`` rather than ``UNKNOWN_TOKEN``: at least this many,
#: and ten per ``max_clients``. Older ones are forgotten, which bounds the broker's memory
#: under churn (a forgotten token is still refused, as unknown).
DEPARTED_REMEMBERED = 100_000
#: Unsolved joins kept per model, as a multiple of ``max_clients``. Beyond it the oldest
#: pending join is forgotten: joins are free to send, so they must not fill the model.
PENDING_JOINS_PER_SLOT = 2


@dataclass(frozen=True)
class Outgoing:
    """A reply to send: the request's opaque ``handle``, the message, and a delay in seconds."""

    handle: Any
    reply: Any
    delay_s: float = 0.0


@dataclass
class _Client:
    number: int  # admission order; anonymous, never sent anywhere
    k: int
    puzzle: Puzzle
    sent_version: int  # model version of the outstanding work (staleness)
    sent_round: int | None  # validation round whose snapshot the outstanding work carries
    last_seen: float
    penalties: int = 0


@dataclass
class _PendingJoin:
    k: int
    puzzle: Puzzle
    expires_at: float


@dataclass
class _Stats:
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    penalties: int = 0
    evictions: int = 0
    validation_error: float = math.nan
    evaluated_version: int = -1
    next_evaluation: int = 0
    best_error: float = math.inf
    evaluations_since_best: int = 0


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


class Broker:
    """The broker of one curated model.

    Parameters
    ----------
    model_id : str
        The model's public id.
    task : TaskSpec
        The curator's objective, limits, stopping rule and defences.
    validation_x : ndarray, shape (n, d)
    validation_y : ndarray, shape (n,)
        The curator's validation set (labels in {-1, +1}); RONI and the stopping rule use it.
    curator_secret : bytes
        The secret the curator presents to read progress and fetch the result; only its
        SHA-256 is kept.
    clock : callable returning float seconds
    entropy : callable(n) -> n random bytes
        Tokens, join ids and puzzle prefixes (``secrets.token_bytes`` in production).
    rng : numpy.random.Generator
        Validation-round draws and reply latencies.
    """

    def __init__(
        self,
        model_id: str,
        task: TaskSpec,
        validation_x: np.ndarray,
        validation_y: np.ndarray,
        *,
        curator_secret: bytes,
        clock: Callable[[], float],
        entropy: Callable[[int], bytes],
        rng: np.random.Generator,
    ) -> None:
        if validation_x.ndim != 2 or validation_x.shape[1] != task.n_features:
            raise ValueError(
                f"validation_x must have {task.n_features} columns, got shape {validation_x.shape}"
            )
        if validation_y.shape != (validation_x.shape[0],):
            raise ValueError("validation_y must have one label per validation row")
        self.model_id = model_id
        self.task = task
        self._clock = clock
        self._entropy = entropy
        self._rng = rng
        self._secret_digest = _digest(curator_secret)
        self._model = make_model(task.model_type, task.n_features)
        self._aggregator = make_aggregator(task.aggregation, self._model.initial_weights())
        # Own writable copies: a decoded Curate holds read-only views of the message buffer.
        self._validation_x = np.array(validation_x, dtype=np.float64, order="C", copy=True)
        self._validation_y = np.array(validation_y, dtype=np.float64, order="C", copy=True)
        defences = task.defences
        self._difficulty = DifficultyPolicy(
            initial_bits=defences.update_bits,
            penalty_bits=defences.penalty_bits,
            max_bits=defences.max_bits,
            adaptive=defences.adaptive_pow,
        )
        self._validator = (
            RoniValidator(
                self._validation_x,
                self._validation_y,
                rate=defences.validation_rate,
                threshold=defences.roni_threshold,
                rng=rng,
            )
            if defences.validator and defences.validation_rate > 0
            else None
        )
        # Ordered by last contact, oldest first, so expiry scans only the expired.
        self._clients: OrderedDict[bytes, _Client] = OrderedDict()
        self._pending: OrderedDict[bytes, _PendingJoin] = OrderedDict()
        # token digest -> EXPIRED or EVICTED, oldest first; bounded (DEPARTED_REMEMBERED)
        self._departed: OrderedDict[bytes, ErrorCode] = OrderedDict()
        self._departed_limit = max(DEPARTED_REMEMBERED, 10 * task.max_clients)
        self._deferred: dict[bytes, Any] = {}  # sync mode: token digest -> handle
        self._admitted_total = 0
        self._stats = _Stats()
        self.started_at = clock()
        self.finished_at: float | None = None
        self.stop_reason = ""
        self._final_weights: np.ndarray | None = None

    # ------------------------------------------------------------------ properties

    @property
    def done(self) -> bool:
        """Whether training has ended."""
        return self._final_weights is not None

    @property
    def active_clients(self) -> int:
        """Number of admitted clients that have not left, timed out or been evicted."""
        return len(self._clients)

    @property
    def version(self) -> int:
        """Model version (accepted async updates, or sync rounds)."""
        return self._aggregator.version

    def weights(self) -> np.ndarray:
        """Read-only copy of the current (or final) model, shape (d,)."""
        return self._final_weights if self._final_weights is not None else self._aggregator.published()

    def penalties_of(self, token: bytes) -> int:
        """Number of penalties of the client holding ``token`` (for tests and the harness)."""
        client = self._clients.get(_digest(token))
        if client is None:
            raise KeyError("no active client with that token")
        return client.penalties

    def bits_of(self, token: bytes) -> int:
        """Current per-update difficulty of the client holding ``token``."""
        client = self._clients.get(_digest(token))
        if client is None:
            raise KeyError("no active client with that token")
        return client.puzzle.bits

    # ------------------------------------------------------------------ entry points

    def handle_batch(self, requests: Sequence[tuple[Any, Any]]) -> list[Outgoing]:
        """Process a batch of ``(handle, request)`` for this model; return the replies to send.

        Requests are checked one by one; accepted updates are then scored (RONI, one
        kernel call), applied (one vectorised sum) and answered together.
        """
        now = self._clock()
        out: list[Outgoing] = []
        updates: dict[bytes, tuple[Any, _Client, Update]] = {}
        for handle, request in requests:
            try:
                reply = self._dispatch(request, now, handle, updates)
            except ProtocolError as refusal:
                if isinstance(request, Update):
                    self._stats.rejected[refusal.code.value] += 1
                reply = refusal.reply()
            if reply is not None:
                out.append(Outgoing(handle, reply, self._delay(reply)))
        if updates:
            out.extend(self._process_updates(updates, now))
        self._check_deadline(now, out)
        return out

    def tick(self) -> list[Outgoing]:
        """Housekeeping: drop silent clients, expire joins, close rounds, check the deadline."""
        now = self._clock()
        out: list[Outgoing] = []
        if self.done:
            return out
        cutoff = now - self.task.client_timeout_s
        while self._clients:
            key, client = next(iter(self._clients.items()))
            if client.last_seen > cutoff:
                break
            self._drop(key, ErrorCode.EXPIRED)
        while self._pending:
            join_id, pending = next(iter(self._pending.items()))
            if pending.expires_at > now:
                break
            del self._pending[join_id]
        out.extend(self._release(self._aggregator.commit(self._clients.keys()), now))
        self._check_deadline(now, out)
        return out

    def progress(self) -> Progress:
        """Aggregate statistics: what the curator may see."""
        self._evaluate()
        end = self.finished_at if self.finished_at is not None else self._clock()
        return Progress(
            version=self._aggregator.version,
            updates_accepted=self._stats.accepted,
            updates_rejected=dict(sorted(self._stats.rejected.items())),
            validation_error=self._stats.validation_error,
            active_clients=len(self._clients),
            penalties=self._stats.penalties,
            evictions=self._stats.evictions,
            elapsed_s=end - self.started_at,
            done=self.done,
            stop_reason=self.stop_reason,
            validation_rounds=self._validator.rounds_started if self._validator is not None else 0,
        )

    def finish(self, reason: str) -> list[Outgoing]:
        """End training now (e.g. the operator stops the broker); returns replies owed."""
        out: list[Outgoing] = []
        self._finish(reason, out)
        return out

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, request: Any, now: float, handle: Any, updates: dict) -> Any:
        if isinstance(request, (Status, Fetch)):
            self._check_secret(request.secret)
            if isinstance(request, Status):
                return self.progress()
            if not self.done:
                return Wait(retry_after_s=1.0, reason="training")
            return Final(weights=self.weights(), progress=self.progress())
        if self.done:
            return Done(reason=self.stop_reason)
        if isinstance(request, Join):
            return self._join(request, now)
        if isinstance(request, Solve):
            return self._solve(request, now)
        if isinstance(request, Update):
            return self._check_update(request, now, handle, updates)
        if isinstance(request, Leave):
            key, _ = self._client_for(request.token)
            self._drop(key, ErrorCode.EXPIRED)
            return Done(reason="left")
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"{type(request).__name__} is not a broker request")

    def _check_secret(self, secret: bytes) -> None:
        if not hmac.compare_digest(_digest(secret), self._secret_digest):
            raise ProtocolError(ErrorCode.WRONG_SECRET, "the curator secret does not match this model")

    # ------------------------------------------------------------------ admission

    def _join(self, request: Join, now: float) -> Challenge:
        if request.n_features != self.task.n_features:
            raise ProtocolError(
                ErrorCode.SCHEMA_MISMATCH,
                f"this model has {self.task.n_features} features, the client has {request.n_features}",
            )
        if not 1 <= request.k <= self.task.max_clients:
            raise ProtocolError(
                ErrorCode.BAD_FIELD, f"k must be in 1..{self.task.max_clients} (the model's maximum)"
            )
        self._check_room()
        while len(self._pending) >= PENDING_JOINS_PER_SLOT * self.task.max_clients:
            self._pending.popitem(last=False)
        join_id = self._entropy(16)
        puzzle = new_puzzle(self.task.defences.admission_bits, self._entropy)
        self._pending[join_id] = _PendingJoin(
            k=request.k, puzzle=puzzle, expires_at=now + self.task.client_timeout_s
        )
        return Challenge(join_id=join_id, puzzle=puzzle.prefix, bits=puzzle.bits)

    def _solve(self, request: Solve, now: float) -> Admitted:
        pending = self._pending.get(request.join_id)
        if pending is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_JOIN, "no pending join with that id (unknown, used or expired)"
            )
        if not pending.puzzle.is_solved_by(request.nonce):
            raise ProtocolError(ErrorCode.WRONG_PROOF, "the nonce does not solve the admission puzzle")
        self._check_room()
        del self._pending[request.join_id]
        token = self._entropy(32)
        key = _digest(token)
        self._admitted_total += 1
        client = _Client(
            number=self._admitted_total,
            k=pending.k,
            puzzle=new_puzzle(self._difficulty.initial_bits, self._entropy),
            sent_version=self._aggregator.version,
            sent_round=None,
            last_seen=now,
        )
        self._clients[key] = client
        weights = self._next_weights(key, client)
        return Admitted(token=token, weights=weights, puzzle=client.puzzle.prefix, bits=client.puzzle.bits)

    def _check_room(self) -> None:
        if len(self._clients) >= self.task.max_clients:
            raise ProtocolError(
                ErrorCode.FULL, f"the model has its maximum of {self.task.max_clients} clients"
            )

    def _client_for(self, token: bytes) -> tuple[bytes, _Client]:
        key = _digest(token)
        client = self._clients.get(key)
        if client is not None:
            return key, client
        departed = self._departed.get(key)
        if departed is ErrorCode.EVICTED:
            raise ProtocolError(ErrorCode.EVICTED, "this client was evicted after repeated RONI penalties")
        if departed is ErrorCode.EXPIRED:
            raise ProtocolError(ErrorCode.EXPIRED, "this client left or was dropped for silence; join again")
        if token in self._pending:
            raise ProtocolError(ErrorCode.NOT_ADMITTED, "solve the admission puzzle before sending updates")
        raise ProtocolError(ErrorCode.UNKNOWN_TOKEN, "no admitted client has this token")

    # ------------------------------------------------------------------ updates

    def _check_update(self, request: Update, now: float, handle: Any, updates: dict) -> Wait | None:
        key, client = self._client_for(request.token)
        if request.base != client.puzzle.prefix:
            raise ProtocolError(
                ErrorCode.STALE_PROOF, "the update answers a puzzle that is not current (replayed or stale)"
            )
        delta = request.delta
        if not isinstance(delta, np.ndarray) or delta.shape != (self.task.n_features,):
            got = getattr(delta, "shape", type(delta).__name__)
            raise ProtocolError(
                ErrorCode.BAD_SHAPE, f"delta must have shape ({self.task.n_features},), got {got}"
            )
        if delta.dtype != np.float64:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"delta must be float64, got {delta.dtype}")
        if not np.isfinite(delta).all():
            raise ProtocolError(ErrorCode.NON_FINITE, "delta contains NaN or infinity")
        if np.abs(delta).max(initial=0.0) > MAX_DELTA_ABS:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"delta values must be within ±{MAX_DELTA_ABS:g}")
        if key in updates:
            raise ProtocolError(ErrorCode.STALE_PROOF, "a second update for the same puzzle in one batch")
        if not client.puzzle.is_solved_by(request.nonce):
            raise ProtocolError(ErrorCode.WRONG_PROOF, "the nonce does not solve this client's puzzle")
        self._touch(key, client, now)
        if self.task.defences.k_gate:
            required = max(self.task.min_clients, client.k)
            if len(self._clients) < required:
                self._stats.rejected["wait_k"] += 1
                return Wait(retry_after_s=WAIT_RETRY_S, reason="min_clients")
        updates[key] = (handle, client, request)
        return None

    def _process_updates(self, updates: dict, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        validation: list[tuple[Any, bytes, _Client, np.ndarray]] = []
        processed: list[tuple[Any, bytes, _Client]] = []
        # Async training stops at exactly max_updates: a batch that would pass it applies
        # only what fits (sync rounds are atomic and stop at the round that reaches it).
        limit = self.task.stopping.max_updates
        room = [
            math.inf if limit is None or self.task.aggregation == "sync" else limit - self._stats.accepted
        ]

        def take(key: bytes, delta: np.ndarray) -> None:
            if room[0] <= 0:
                self._stats.rejected["after_stop"] += 1
                return
            room[0] -= 1
            self._aggregator.submit(key, delta)

        for key, (handle, client, request) in updates.items():
            processed.append((handle, key, client))
            if (
                client.sent_round is not None
                and self._validator is not None
                and self._validator.is_awaited(key, client.sent_round)
            ):
                validation.append((handle, key, client, request.delta))
                continue
            staleness = self._aggregator.version - client.sent_version
            if self.task.max_staleness is not None and staleness > self.task.max_staleness:
                self._stats.rejected["stale"] += 1
                continue
            take(key, request.delta)
        evicted: set[bytes] = set()
        if validation:
            assert self._validator is not None
            verdicts = self._validator.score([(key, delta) for _, key, _, delta in validation])
            for (_, key, client, delta), verdict in zip(validation, verdicts, strict=True):
                if verdict.penalised:
                    self._penalise(key, client, evicted)
                if key in evicted:
                    self._stats.rejected["evicted"] += 1
                elif not verdict.acceptable:
                    self._stats.rejected["roni"] += 1
                elif self.task.defences.apply_validation_updates:
                    take(key, delta)
        # Every processed proof is consumed: the next update needs a fresh puzzle.
        for _, key, client in processed:
            if key not in evicted:
                client.puzzle = new_puzzle(client.puzzle.bits, self._entropy)
        applied = self._aggregator.commit(self._clients.keys())
        out.extend(self._release(applied, now))
        for handle, key, client in processed:
            if key in evicted:
                out.append(
                    Outgoing(
                        handle,
                        ProtocolError(ErrorCode.EVICTED, "evicted after repeated RONI penalties").reply(),
                    )
                )
            elif self.done:
                out.append(Outgoing(handle, Done(reason=self.stop_reason)))
            elif self._aggregator.holds(key):
                self._deferred[key] = handle
            else:
                out.append(self._work_reply(handle, key, client))
        return out

    def _release(self, applied: list[Hashable], now: float) -> list[Outgoing]:
        """Count applied updates, run the stopping rule, answer deferred (sync) requests."""
        out: list[Outgoing] = []
        if not applied:
            return out
        self._stats.accepted += len(applied)
        self._check_stopping(now, out)
        for key in applied:
            handle = self._deferred.pop(key, None)
            client = self._clients.get(key)
            if handle is None or client is None:
                continue
            if self.done:
                out.append(Outgoing(handle, Done(reason=self.stop_reason)))
            else:
                out.append(self._work_reply(handle, key, client))
        return out

    def _work_reply(self, handle: Any, key: bytes, client: _Client) -> Outgoing:
        if self._validator is not None:
            self._validator.maybe_start_round(self._aggregator.published(), self._clients.keys())
        weights = self._next_weights(key, client)
        reply = Work(weights=weights, puzzle=client.puzzle.prefix, bits=client.puzzle.bits)
        return Outgoing(handle, reply, self._delay(reply))

    def _next_weights(self, key: bytes, client: _Client) -> np.ndarray:
        """The model the client trains on next: the snapshot during its validation round."""
        client.sent_version = self._aggregator.version
        client.sent_round = None
        if self._validator is not None:
            snapshot = self._validator.take_snapshot_for(key)
            if snapshot is not None:
                assert self._validator.round is not None
                client.sent_round = self._validator.round.number
                return snapshot
        return self._aggregator.published()

    def _penalise(self, key: bytes, client: _Client, evicted: set[bytes]) -> None:
        client.penalties += 1
        self._stats.penalties += 1
        client.puzzle = Puzzle(
            prefix=client.puzzle.prefix, bits=self._difficulty.after_penalty(client.puzzle.bits)
        )
        limit = self.task.defences.evict_after
        if limit is not None and client.penalties >= limit:
            self._stats.evictions += 1
            evicted.add(key)
            self._drop(key, ErrorCode.EVICTED)

    # ------------------------------------------------------------------ liveness and stopping

    def _touch(self, key: bytes, client: _Client, now: float) -> None:
        client.last_seen = now
        self._clients.move_to_end(key)

    def _drop(self, key: bytes, why: ErrorCode) -> None:
        self._clients.pop(key, None)
        self._departed[key] = why
        while len(self._departed) > self._departed_limit:
            self._departed.popitem(last=False)
        self._deferred.pop(key, None)
        self._aggregator.forget(key)
        if self._validator is not None:
            self._validator.forget(key)

    def _evaluate(self) -> None:
        if self._stats.evaluated_version == self._aggregator.version:
            return
        weights = self._final_weights if self._final_weights is not None else self._aggregator.published()
        self._stats.validation_error = self._model.error_rate(weights, self._validation_x, self._validation_y)
        self._stats.evaluated_version = self._aggregator.version

    def _check_stopping(self, now: float, out: list[Outgoing]) -> None:
        rule = self.task.stopping
        if rule.max_updates is not None and self._stats.accepted >= rule.max_updates:
            self._finish("max_updates", out)
            return
        if rule.target_error is None and rule.plateau_patience is None:
            return
        if self._stats.accepted < self._stats.next_evaluation:
            return
        self._stats.next_evaluation = (self._stats.accepted // rule.eval_every + 1) * rule.eval_every
        self._evaluate()
        error = self._stats.validation_error
        if rule.target_error is not None and error <= rule.target_error:
            self._finish("target_error", out)
            return
        if rule.plateau_patience is not None:
            if error < self._stats.best_error - rule.plateau_min_delta:
                self._stats.best_error = error
                self._stats.evaluations_since_best = 0
            else:
                self._stats.evaluations_since_best += 1
                if self._stats.evaluations_since_best >= rule.plateau_patience:
                    self._finish("plateau", out)

    def _check_deadline(self, now: float, out: list[Outgoing]) -> None:
        deadline = self.task.stopping.deadline_s
        if not self.done and deadline is not None and now - self.started_at >= deadline:
            self._finish("deadline", out)

    def _finish(self, reason: str, out: list[Outgoing]) -> None:
        if self.done:
            return
        self._final_weights = self._aggregator.published()
        self.stop_reason = reason
        self.finished_at = self._clock()
        self._evaluate()
        for handle in self._deferred.values():
            out.append(Outgoing(handle, Done(reason=reason)))
        self._deferred.clear()

    def _delay(self, reply: Any) -> float:
        """Random reply latency (paper 7.4) for replies to clients; curator replies go at once."""
        limit = self.task.defences.max_latency_s
        if limit <= 0 or isinstance(reply, (Progress, Final)):
            return 0.0
        return float(self._rng.uniform(0.0, limit))
