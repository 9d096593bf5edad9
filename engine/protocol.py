"""Messages of the brokered-learning protocol (the paper's Table 1, section 5).

The broker's API is four calls: ``curate`` for the curator, and ``join``, ``solve`` and
``gradientUpdate`` for clients. This module defines them, their replies, the task a
curator defines, and the error codes, as frozen dataclasses with precise type
annotations. The engine's objects take and return these; ``tormentor.transport.codec``
derives the wire schema from the annotations, so a message is defined once, here.

Conversation of one client (arrows are request -> reply)::

    Join(model_id, n_features, k)            -> Challenge(join_id, puzzle, bits)
    Solve(model_id, join_id, nonce)          -> Admitted(token, weights, puzzle, bits)
    Update(model_id, token, base, nonce, Δ)  -> Work(weights, puzzle, bits)   (loop)
                                             |  Wait(retry_after_s, reason)  (k not met)
                                             |  Done(reason)                 (training over)
    Leave(model_id, token)                   -> Done("left")

``base`` is the puzzle prefix of the work the update answers. It doubles as an opaque
base-version handle: the broker remembers which model it sent with that puzzle (the
current model at some version, or a validation snapshot), so replies carry no version
number and a validation round is indistinguishable from a normal reply (Algorithm 2).
A puzzle is consumed when its update is processed, which makes every proof single-use.

Curator::

    Curate(task, validation_x, validation_y) -> Curated(model_id, secret)
    Status(model_id, secret)                 -> Progress(...)
    Fetch(model_id, secret)                  -> Final(weights, progress) | Wait(...)

Any request may instead get ``Error(code, message)``; the codes are :class:`ErrorCode`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, ClassVar

import numpy as np

__all__ = [
    "PROTOCOL_VERSION",
    "Admitted",
    "Challenge",
    "Curate",
    "Curated",
    "Defences",
    "Done",
    "Error",
    "ErrorCode",
    "Fetch",
    "Final",
    "Join",
    "Leave",
    "Matrix",
    "Progress",
    "ProtocolError",
    "REPLY_TYPES",
    "REQUEST_TYPES",
    "Solve",
    "Status",
    "StoppingRule",
    "TaskSpec",
    "Update",
    "Vector",
    "Wait",
    "Work",
]

#: Bumped on any incompatible change. New fields go at the end, with defaults.
PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class ArraySpec:
    """Marks an ndarray field for the codec: float64, ``ndim`` dimensions."""

    ndim: int


#: 1-D float64 array; on the wire raw little-endian float64 bytes.
Vector = Annotated[np.ndarray, ArraySpec(ndim=1)]
#: 2-D float64 array (rows x cols); on the wire its shape and raw little-endian bytes.
Matrix = Annotated[np.ndarray, ArraySpec(ndim=2)]


class ErrorCode(str, Enum):
    """Why a request was refused. Each is a distinct decision for the sender.

    Local codes (the message never reached the protocol logic): ``MALFORMED``,
    ``BAD_VERSION``, ``UNKNOWN_TYPE``, ``BAD_FIELD``, ``OVERSIZED``, ``NON_FINITE``.
    """

    MALFORMED = "malformed"  #: not a msgpack map, or undecodable bytes
    BAD_VERSION = "bad_version"  #: protocol version not supported
    UNKNOWN_TYPE = "unknown_type"  #: message type not known
    BAD_FIELD = "bad_field"  #: a field missing, extra, of the wrong type, or out of range
    OVERSIZED = "oversized"  #: message larger than the broker accepts
    NON_FINITE = "non_finite"  #: NaN or infinity in a vector
    UNKNOWN_MODEL = "unknown_model"  #: no model with that id
    SCHEMA_MISMATCH = "schema_mismatch"  #: the client's number of features is not the task's
    FULL = "full"  #: the task already has its maximum number of clients
    UNKNOWN_JOIN = "unknown_join"  #: join id unknown, already used, or expired
    WRONG_PROOF = "wrong_proof"  #: the nonce does not solve the puzzle
    STALE_PROOF = "stale_proof"  #: the update answers a puzzle that is not current (replay)
    UNKNOWN_TOKEN = "unknown_token"  #: no admitted client has this token
    NOT_ADMITTED = "not_admitted"  #: a join id used as a token: the admission puzzle is unsolved
    EXPIRED = "expired"  #: the client was dropped for silence or left; it must join again
    EVICTED = "evicted"  #: the client was evicted after repeated RONI penalties
    BAD_SHAPE = "bad_shape"  #: the update's vector does not have the model's length
    WRONG_SECRET = "wrong_secret"  #: the curator secret does not match the model
    INVALID_TASK = "invalid_task"  #: the curator's task definition is not acceptable
    INTERNAL = "internal"  #: the broker failed; the request had no effect


class ProtocolError(Exception):
    """A request refused with an :class:`ErrorCode`; becomes an :class:`Error` reply.

    The message names the field or rule, never a secret, token or vector value.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    def reply(self) -> Error:
        """Return the :class:`Error` reply that carries this refusal."""
        return Error(code=self.code.value, message=self.message)


# --------------------------------------------------------------------------- task


@dataclass(frozen=True)
class StoppingRule:
    """When the broker ends training. At least one of ``max_updates``/``deadline_s`` is set.

    Attributes
    ----------
    max_updates : int or None
        Stop after this many accepted updates.
    deadline_s : float or None
        Stop this many seconds after the task was curated.
    target_error : float or None
        Stop once the validation error (0-1, on the curator's validation set) is at or
        below this.
    plateau_patience : int or None
        Stop after this many validation evaluations without an improvement of at least
        ``plateau_min_delta`` over the best seen.
    eval_every : int
        Accepted updates between two validation-error evaluations (>= 1).
    plateau_min_delta : float
        Improvement in validation error that resets the plateau count.
    """

    max_updates: int | None = 10_000
    deadline_s: float | None = None
    target_error: float | None = None
    plateau_patience: int | None = None
    eval_every: int = 100
    plateau_min_delta: float = 0.001

    def __post_init__(self) -> None:
        if self.max_updates is None and self.deadline_s is None:
            raise ValueError("stopping: set max_updates or deadline_s, or training never ends")
        if self.max_updates is not None and self.max_updates < 1:
            raise ValueError(f"stopping.max_updates must be >= 1, got {self.max_updates}")
        if self.deadline_s is not None and not (self.deadline_s > 0 and math.isfinite(self.deadline_s)):
            raise ValueError(f"stopping.deadline_s must be a positive number, got {self.deadline_s}")
        if self.target_error is not None and not 0.0 <= self.target_error <= 1.0:
            raise ValueError(f"stopping.target_error must be in [0, 1], got {self.target_error}")
        if self.plateau_patience is not None and self.plateau_patience < 1:
            raise ValueError(f"stopping.plateau_patience must be >= 1, got {self.plateau_patience}")
        if self.eval_every < 1:
            raise ValueError(f"stopping.eval_every must be >= 1, got {self.eval_every}")
        if not self.plateau_min_delta >= 0.0:
            raise ValueError(f"stopping.plateau_min_delta must be >= 0, got {self.plateau_min_delta}")


@dataclass(frozen=True)
class Defences:
    """The broker's defences (paper 5.6); each can be switched off on its own.

    Attributes
    ----------
    admission_bits : int
        Difficulty of the admission puzzle in trailing zero bits of SHA-256 (0 = off).
        The paper's prototype used 16 (four hex zeros).
    update_bits : int
        Initial difficulty of the per-update puzzle (0 = free until penalised).
    adaptive_pow : bool
        Raise a client's per-update difficulty when RONI penalises it.
    penalty_bits : int
        Bits added per penalty (4 = the paper's one hex digit, 16x the work).
    max_bits : int
        Ceiling of the per-update difficulty.
    validator : bool
        Run RONI validation rounds (Algorithm 2).
    validation_rate : float
        Probability, drawn per accepted update, that a validation round starts.
    roni_threshold : float
        A client whose running RONI total falls below ``-roni_threshold`` is penalised
        and its total reset (0.02 = two percentage points of validation error).
    evict_after : int or None
        Evict a client at this many penalties (None = never).
    apply_validation_updates : bool
        Apply a validation-round update to the model when its own RONI score is at or
        above ``-roni_threshold``. The update was computed on the snapshot, a model at
        most one round old, so for an honest client it is an ordinary, slightly stale
        step: dropping it would waste the client's work and privacy budget. An update
        scoring below ``-roni_threshold`` is refused outright.
    k_gate : bool
        Take updates only while the number of active clients is at least
        max(curator minimum, the sender's k) (paper 5.4).
    max_latency_s : float
        Random delay, uniform in [0, max_latency_s], before each reply to a client
        (paper 7.4 used 0.5 s; 0 = off).
    """

    admission_bits: int = 16
    update_bits: int = 4
    adaptive_pow: bool = True
    penalty_bits: int = 4
    max_bits: int = 32
    validator: bool = True
    validation_rate: float = 0.1
    roni_threshold: float = 0.02
    evict_after: int | None = None
    apply_validation_updates: bool = True
    k_gate: bool = True
    max_latency_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("admission_bits", "update_bits", "penalty_bits", "max_bits"):
            value = getattr(self, name)
            if not 0 <= value <= 64:
                raise ValueError(f"defences.{name} must be in 0..64, got {value}")
        if self.update_bits > self.max_bits:
            raise ValueError("defences.update_bits must not exceed defences.max_bits")
        if not 0.0 <= self.validation_rate <= 1.0:
            raise ValueError(f"defences.validation_rate must be in [0, 1], got {self.validation_rate}")
        if not 0.0 <= self.roni_threshold <= 1.0:
            raise ValueError(f"defences.roni_threshold must be in [0, 1], got {self.roni_threshold}")
        if self.evict_after is not None and self.evict_after < 1:
            raise ValueError(f"defences.evict_after must be >= 1 or None, got {self.evict_after}")
        if not (0.0 <= self.max_latency_s <= 60.0):
            raise ValueError(f"defences.max_latency_s must be in [0, 60], got {self.max_latency_s}")


@dataclass(frozen=True)
class TaskSpec:
    """A curator's learning objective (the ``curate`` call, paper 5.1).

    Attributes
    ----------
    n_features : int
        Number of model weights d, the bias column included (24 for the credit data).
        A client joins only if its data has exactly this many columns.
    model_type : str
        ``"logistic"`` (labels in {-1, +1}); see :mod:`tormentor.engine.model`.
    min_clients : int
        The curator's minimum number of active clients before updates are taken.
    max_clients : int
        Maximum number of admitted clients (pending joins count against it).
    aggregation : str
        ``"async"``: every update is applied at once (lock-free, single writer);
        ``"sync"``: one update per active client per round, averaged.
    max_staleness : int or None
        Async only: refuse an update computed on a model more than this many versions
        old (None = any).
    client_timeout_s : float
        A client silent this long is dropped and k is re-checked.
    stopping : StoppingRule
    defences : Defences
    """

    n_features: int
    model_type: str = "logistic"
    min_clients: int = 1
    max_clients: int = 1_000
    aggregation: str = "async"
    max_staleness: int | None = None
    client_timeout_s: float = 30.0
    stopping: StoppingRule = field(default_factory=StoppingRule)
    defences: Defences = field(default_factory=Defences)

    def __post_init__(self) -> None:
        if not 1 <= self.n_features <= 1_000_000:
            raise ValueError(f"task.n_features must be in 1..1000000, got {self.n_features}")
        if self.model_type != "logistic":
            raise ValueError(f"task.model_type must be 'logistic', got {self.model_type!r}")
        if self.min_clients < 1:
            raise ValueError(f"task.min_clients must be >= 1, got {self.min_clients}")
        if self.max_clients < self.min_clients:
            raise ValueError("task.max_clients must be >= task.min_clients")
        if self.aggregation not in ("async", "sync"):
            raise ValueError(f"task.aggregation must be 'async' or 'sync', got {self.aggregation!r}")
        if self.max_staleness is not None and self.max_staleness < 0:
            raise ValueError(f"task.max_staleness must be >= 0 or None, got {self.max_staleness}")
        if not (self.client_timeout_s > 0 and math.isfinite(self.client_timeout_s)):
            raise ValueError(f"task.client_timeout_s must be > 0, got {self.client_timeout_s}")


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Curate:
    """Define a model (curator). The validation set is the curator's; the broker scores RONI on it.

    Attributes
    ----------
    task : TaskSpec
        The learning objective, limits, stopping rule and defences.
    validation_x : Matrix
        Validation features, shape (n, task.n_features), bias column included.
    validation_y : Vector
        Validation labels in {-1, +1}, shape (n,).
    """

    TYPE: ClassVar[str] = "curate"
    task: TaskSpec
    validation_x: Matrix
    validation_y: Vector


@dataclass(frozen=True)
class Status:
    """Ask for aggregate progress (curator).

    Attributes
    ----------
    model_id : str
        The model's id.
    secret : bytes
        The curator secret from ``Curated``.
    """

    TYPE: ClassVar[str] = "status"
    model_id: str
    secret: bytes


@dataclass(frozen=True)
class Fetch:
    """Ask for the final model (curator); ``Wait`` until training is over.

    Attributes
    ----------
    model_id : str
        The model's id.
    secret : bytes
        The curator secret from ``Curated``.
    """

    TYPE: ClassVar[str] = "fetch"
    model_id: str
    secret: bytes


@dataclass(frozen=True)
class Join:
    """Ask to join a model: schema check (number of features) and the client's k.

    Attributes
    ----------
    model_id : str
        The model to join (learned out of band).
    n_features : int
        Columns of the client's data, bias included; must equal the task's.
    k : int
        The minimum number of active clients this client requires (1..max_clients).
    """

    TYPE: ClassVar[str] = "join"
    model_id: str
    n_features: int
    k: int


@dataclass(frozen=True)
class Solve:
    """Answer the admission puzzle of a join.

    Attributes
    ----------
    model_id : str
        The model.
    join_id : bytes
        From ``Challenge``.
    nonce : int
        Solves the admission puzzle: 0 <= nonce < 2**64.
    """

    TYPE: ClassVar[str] = "solve"
    model_id: str
    join_id: bytes
    nonce: int


@dataclass(frozen=True)
class Update:
    """``gradientUpdate``: a model delta Δ (the broker adds it: w += Δ) with its proof of work.

    ``base`` is the puzzle prefix of the work this update answers; ``nonce`` solves it.

    Attributes
    ----------
    model_id : str
        The model.
    token : bytes
        The client's secret token from ``Admitted``.
    base : bytes
        The puzzle of the work this update answers (opaque base-version handle).
    nonce : int
        Solves that puzzle: 0 <= nonce < 2**64.
    delta : Vector
        Δ, shape (n_features,), finite float64.
    """

    TYPE: ClassVar[str] = "update"
    model_id: str
    token: bytes
    base: bytes
    nonce: int
    delta: Vector


@dataclass(frozen=True)
class Leave:
    """Leave training (client); the token stops working.

    Attributes
    ----------
    model_id : str
        The model.
    token : bytes
        The client's token.
    """

    TYPE: ClassVar[str] = "leave"
    model_id: str
    token: bytes


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Curated:
    """The model's id (to give to clients out of band) and the curator's secret.

    Attributes
    ----------
    model_id : str
        Public id of the new model.
    secret : bytes
        Proves ownership; only its SHA-256 is kept.
    """

    TYPE: ClassVar[str] = "curated"
    model_id: str
    secret: bytes


@dataclass(frozen=True)
class Progress:
    """Aggregate training statistics (never per-client data).

    Attributes
    ----------
    version : int
        Model version (accepted async updates, or sync rounds).
    updates_accepted : int
        Updates applied to the model.
    updates_rejected : dict
        Refused updates by reason (error codes, ``roni``, ``stale``, ``wait_k``).
    validation_error : float
        0-1 error of the current model on the curator's validation set.
    active_clients : int
        Admitted clients that have not left, timed out or been evicted.
    penalties : int
        RONI penalties so far (all clients together).
    evictions : int
        Clients evicted so far.
    elapsed_s : float
        Seconds since curate (until the end, once done).
    done : bool
        Whether training has ended.
    stop_reason : str
        Which stopping rule ended training ("" while running).
    validation_rounds : int
        RONI validation rounds started so far.
    """

    TYPE: ClassVar[str] = "progress"
    version: int
    updates_accepted: int
    updates_rejected: dict[str, int]
    validation_error: float
    active_clients: int
    penalties: int
    evictions: int
    elapsed_s: float
    done: bool
    stop_reason: str
    validation_rounds: int = 0


@dataclass(frozen=True)
class Final:
    """The trained model and the aggregate statistics, for the curator.

    Attributes
    ----------
    weights : Vector
        The final model, shape (n_features,).
    progress : Progress
        Aggregate statistics at the end.
    """

    TYPE: ClassVar[str] = "final"
    weights: Vector
    progress: Progress


@dataclass(frozen=True)
class Challenge:
    """The admission puzzle: find a nonce so SHA-256(puzzle ‖ nonce) ends in ``bits`` zero bits.

    Attributes
    ----------
    join_id : bytes
        Names this pending join in ``Solve``.
    puzzle : bytes
        32 fresh random bytes.
    bits : int
        Difficulty: trailing zero bits required (0 = no work).
    """

    TYPE: ClassVar[str] = "challenge"
    join_id: bytes
    puzzle: bytes
    bits: int


@dataclass(frozen=True)
class Admitted:
    """Admission: the client's secret token and its first work (model and puzzle).

    Attributes
    ----------
    token : bytes
        32 random bytes; the broker keeps only their SHA-256.
    weights : Vector
        The model to train on.
    puzzle : bytes
        The puzzle the first update must solve.
    bits : int
        Its difficulty.
    """

    TYPE: ClassVar[str] = "admitted"
    token: bytes
    weights: Vector
    puzzle: bytes
    bits: int


@dataclass(frozen=True)
class Work:
    """The model to train on next and the puzzle the next update must solve.

    Attributes
    ----------
    weights : Vector
        The model to train on (the current model, or a validation snapshot: the same message).
    puzzle : bytes
        32 fresh random bytes; echoed back as the update's ``base``.
    bits : int
        Difficulty of this client's puzzle (rises with RONI penalties).
    """

    TYPE: ClassVar[str] = "work"
    weights: Vector
    puzzle: bytes
    bits: int


@dataclass(frozen=True)
class Wait:
    """Try the same request again after ``retry_after_s`` (nothing was consumed).

    Attributes
    ----------
    retry_after_s : float
        Seconds to wait.
    reason : str
        ``min_clients`` (the k gate) or ``training`` (fetch before the end).
    """

    TYPE: ClassVar[str] = "wait"
    retry_after_s: float
    reason: str


@dataclass(frozen=True)
class Done:
    """Training is over (or the client left); stop sending.

    Attributes
    ----------
    reason : str
        The stopping rule, or ``left``.
    """

    TYPE: ClassVar[str] = "done"
    reason: str


@dataclass(frozen=True)
class Error:
    """A refused request: ``code`` is an :class:`ErrorCode` value; state is unchanged.

    Attributes
    ----------
    code : str
        An ``ErrorCode`` value.
    message : str
        What was wrong, naming the field; never a secret or a vector.
    """

    TYPE: ClassVar[str] = "error"
    code: str
    message: str


REQUEST_TYPES: tuple[type, ...] = (Curate, Status, Fetch, Join, Solve, Update, Leave)
REPLY_TYPES: tuple[type, ...] = (Curated, Progress, Final, Challenge, Admitted, Work, Wait, Done, Error)
