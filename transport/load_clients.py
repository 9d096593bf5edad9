"""Load generation against a broker on NATS: many cheap logical clients per process, and an echo baseline.

A *generator* is one OS process hosting many logical clients on one asyncio loop. Each
logical client is the real protocol state machine
(:class:`~tormentor.engine.client.LearningClient`: join, admission puzzle, per-update
puzzle, Wait/Done/Error handling, rejoin after a lost reply) talking through
:class:`~tormentor.transport.client_runner.NatsRequester`, so a load test exercises the
same codec, puzzles and NATS path as a real client. What a client computes per update
is a choice (``client_work``)::

    fixed   a fixed tiny delta (1e-6 x a unit vector; RONI scores it 0): the client's cost
            is the protocol alone (encode, request, decode, puzzle)
    dp      one real DP-SGD step (:func:`~tormentor.engine.dp_sgd.dp_step`) on a small
            synthetic shard shared by the process's clients

Connections are ``own`` (one anonymous connection per logical client: its own secret,
token and inbox, as in production) or ``shared`` (``shared_connections`` per process,
logical clients spread over them round-robin; each client still has its own broker token).

The parent drives every generator through phases, one command at a time on the
generator's command queue; each phase answers with one result on the shared results
queue (``(worker, kind, payload)``)::

    ("connect", deadline)              -> ConnectReport
    ("join", model_id, deadline)       -> PhaseStats   Join + Solve for every client
    ("echo", t_start, t_end, t_measure, reply)  -> PhaseStats  closed loop against EchoResponder
    ("steady", t_start, t_end, t_measure)       -> PhaseStats  closed loop of updates to the broker
    ("exit",)                          -> None         connections closed, process ends

Acks count toward the rate from ``t_measure`` (after a warm-up: every client starts at
once, so the first round trips of a slice are a burst) until ``t_end``; latencies and
the timeline keep everything. ``echo`` and ``steady`` may repeat, alternating: the
echo's clients and the broker's are separate state machines on the same connections,
each resuming where it stopped.

Times are ``time.monotonic()`` values (CLOCK_MONOTONIC is system-wide on Linux, so the
parent's clock is the generators' clock). Latencies go into a :class:`LatencyHistogram`
(log bins 1 % wide: bounded memory, mergeable across processes), completions into a
per-second :class:`Timeline`. Every loop is bounded by a deadline.

The echo baseline (:class:`EchoResponder`) subscribes with the broker's identity and
answers every request with one precomputed, Work-shaped reply: the transport with a
responder that does nothing. The generators run the *same* client code against it (the
reply decodes as ``Work``; the client solves its puzzle and sends its next update), so
the only difference between the two phases is the responder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import queue
import resource
import secrets
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tormentor.engine.client import LearningClient, Send, Stop
from tormentor.engine.protocol import Admitted, Error, Update, Wait, Work

from .client_runner import NatsRequester, connect_client
from .codec import WireError, decode, encode
from .errors import ConnectionClosed, NoResponders, RequestTimeout, TransportError
from .subjects import CLIENT_REQUESTS

__all__ = [
    "CLIENT_WORK",
    "ConnectReport",
    "EchoResponder",
    "FixedDeltaClient",
    "GeneratorSpec",
    "LatencyHistogram",
    "MachineLimits",
    "PhaseStats",
    "Timeline",
    "echo_reply_payload",
    "generator_main",
    "machine_limits",
    "raise_open_file_limit",
]

log = logging.getLogger(__name__)

#: What a load client computes per update.
CLIENT_WORK = ("fixed", "dp")
#: Magnitude of the fixed delta: far below anything that changes a 0-1 validation error.
FIXED_DELTA_NORM = 1e-6
#: Rows of the synthetic shard a ``dp`` client trains on.
DP_SHARD_ROWS = 20
#: Longest a generator waits for its next command before it gives up and exits (s).
MAX_IDLE_S = 3600.0
#: Most requests one logical client makes in one join conversation (Join, Solve, rejoins).
MAX_JOIN_STEPS = 12


# --------------------------------------------------------------------------- machine limits


@dataclass(frozen=True)
class MachineLimits:
    """What caps the number of connections on this machine.

    Attributes
    ----------
    fd_soft, fd_hard : int
        RLIMIT_NOFILE of this process (soft after :func:`raise_open_file_limit`).
    ephemeral_ports : int
        Local ports the kernel hands out for outgoing connections (one per connection
        to one server address).
    memory_available_bytes : int
        Memory available to new processes (``MemAvailable``).
    """

    fd_soft: int
    fd_hard: int
    ephemeral_ports: int
    memory_available_bytes: int


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return ``(soft, hard)``.

    Child processes started afterwards (nats-server, generators) inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:  # a container may refuse; keep what we have
            log.warning("could not raise the open-file limit to %d: %s", target, error)
    return soft, hard


def machine_limits() -> MachineLimits:
    """Read the limits that cap a connection test (file descriptors, ports, memory)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ports = 28_232  # Linux default 32768..60999
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            low, high = (int(v) for v in handle.read().split())
        ports = high - low + 1
    available = 0
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except Exception:  # psutil is a dev dependency; the caps then ignore memory
        available = 0
    return MachineLimits(
        fd_soft=int(soft), fd_hard=int(hard), ephemeral_ports=ports, memory_available_bytes=available
    )


# --------------------------------------------------------------------------- measurements


class LatencyHistogram:
    """Durations in log-spaced bins 1 % wide, from 1 µs to about 20 minutes.

    Bin 0 holds durations below ``LOWEST_S``; bin ``i >= 1`` holds
    ``[LOWEST_S * GROWTH**(i-1), LOWEST_S * GROWTH**i)``. A quantile is reported as the
    geometric middle of its bin, so it is within 0.5 % of an exact sample quantile.
    Histograms of several processes merge by adding counts.

    Parameters
    ----------
    counts : ndarray of int64, shape (BINS,), optional
        Counts to start from (copied).
    """

    LOWEST_S = 1e-6
    GROWTH = 1.01
    BINS = 2100
    _LOG_GROWTH = math.log(GROWTH)

    def __init__(self, counts: np.ndarray | None = None) -> None:
        if counts is None:
            self.counts = np.zeros(self.BINS, dtype=np.int64)
        else:
            counts = np.asarray(counts)
            if counts.shape != (self.BINS,):
                raise ValueError(f"counts must have shape ({self.BINS},), got {counts.shape}")
            self.counts = counts.astype(np.int64, copy=True)
        self.max_s = 0.0
        self.sum_s = 0.0

    @property
    def count(self) -> int:
        """Number of durations recorded."""
        return int(self.counts.sum())

    def record(self, seconds: float) -> None:
        """Add one duration in seconds (negative values count as 0)."""
        if seconds < self.LOWEST_S:
            index = 0
        else:
            index = min(int(math.log(seconds / self.LOWEST_S) / self._LOG_GROWTH) + 1, self.BINS - 1)
        self.counts[index] += 1
        if seconds > self.max_s:
            self.max_s = seconds
        self.sum_s += max(seconds, 0.0)

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s durations to this histogram."""
        self.counts += other.counts
        self.max_s = max(self.max_s, other.max_s)
        self.sum_s += other.sum_s

    def quantile(self, q: float) -> float:
        """Return the ``q`` quantile in seconds (NaN when empty).

        Parameters
        ----------
        q : float
            In [0, 1]; the sample of rank ``ceil(q * count)`` (at least 1) is reported.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        total = self.count
        if total == 0:
            return math.nan
        rank = max(1, math.ceil(q * total))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        if index == 0:
            return self.LOWEST_S / 2
        middle = self.LOWEST_S * self.GROWTH ** (index - 0.5)
        return min(middle, self.max_s) if self.max_s > 0 else middle

    def mean(self) -> float:
        """Mean duration in seconds (NaN when empty)."""
        total = self.count
        return self.sum_s / total if total else math.nan

    def summary_ms(self) -> dict[str, float | int]:
        """Count and p50/p90/p99/p99.9/max in milliseconds."""
        return {
            "count": self.count,
            "p50_ms": 1e3 * self.quantile(0.50),
            "p90_ms": 1e3 * self.quantile(0.90),
            "p99_ms": 1e3 * self.quantile(0.99),
            "p999_ms": 1e3 * self.quantile(0.999),
            "max_ms": 1e3 * self.max_s if self.count else math.nan,
            "mean_ms": 1e3 * self.mean(),
        }


class Timeline:
    """Events per one-second bin from ``start`` (monotonic seconds); late events go in the last bin.

    Parameters
    ----------
    start : float
        ``time.monotonic()`` of the phase's start.
    seconds : int
        Number of one-second bins (the phase duration rounded up, plus one for late events).
    """

    def __init__(self, start: float, seconds: int) -> None:
        if seconds < 1:
            raise ValueError(f"seconds must be >= 1, got {seconds}")
        self.start = start
        self.counts = np.zeros(seconds, dtype=np.int64)

    def record(self, when: float) -> None:
        """Count one event at monotonic time ``when``."""
        index = int(when - self.start)
        self.counts[min(max(index, 0), self.counts.size - 1)] += 1

    def merge(self, other: Timeline) -> None:
        """Add ``other``'s counts (same start and length)."""
        if other.counts.size != self.counts.size:
            raise ValueError("timelines of different lengths")
        self.counts += other.counts


@dataclass
class PhaseStats:
    """What the clients of one or more generators saw during one phase.

    Attributes
    ----------
    phase : str
        ``echo``, ``join`` or ``steady``.
    clients : int
        Logical clients that took part.
    requests : int
        Requests sent (every type).
    replies : Counter
        Replies received, by message type (``Work``, ``Wait``, ``Error``...).
    errors : Counter
        Failures by kind: ``timeout``, ``connection_closed``, ``no_responders``,
        ``transport``, ``wire`` (undecodable reply), ``error:<code>`` (an Error reply).
    updates_sent : int
        Update requests sent.
    updates_acked : int
        Updates answered with ``Work`` (the broker took them: applied, or scored by RONI).
    updates_acked_in_window : int
        Of those, answered within ``window`` (what the rate counts).
    admitted : int
        Join phase: clients holding a token at the end.
    rejoins : int
        Times a client joined again (a lost reply, an expired token).
    waits : int
        ``Wait`` replies (the k gate).
    stops : Counter
        Clients that stopped for good, by reason.
    latency : LatencyHistogram
        Round trips: of updates (echo, steady) or of Join and Solve (join).
    timeline : Timeline or None
        Updates acked per second of the phase.
    wall_s : float
        Seconds from the phase's start until the last client finished.
    window : tuple of float or None
        Monotonic times between which acks count toward the rate (not merged).
    """

    phase: str
    clients: int = 0
    requests: int = 0
    replies: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    updates_sent: int = 0
    updates_acked: int = 0
    updates_acked_in_window: int = 0
    admitted: int = 0
    rejoins: int = 0
    waits: int = 0
    stops: Counter = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    timeline: Timeline | None = None
    wall_s: float = 0.0
    window: tuple[float, float] | None = None

    def merge(self, other: PhaseStats, *, timeline: bool = True) -> None:
        """Add another generator's stats of the same phase (``timeline=False``: not its timeline)."""
        if other.phase != self.phase:
            raise ValueError(f"cannot merge phase {other.phase!r} into {self.phase!r}")
        for name in (
            "clients",
            "requests",
            "updates_sent",
            "updates_acked",
            "updates_acked_in_window",
            "admitted",
            "rejoins",
            "waits",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.replies.update(other.replies)
        self.errors.update(other.errors)
        self.stops.update(other.stops)
        self.latency.merge(other.latency)
        if timeline and other.timeline is not None:
            if self.timeline is None:
                self.timeline = Timeline(other.timeline.start, other.timeline.counts.size)
            self.timeline.merge(other.timeline)
        self.wall_s = max(self.wall_s, other.wall_s)

    @property
    def error_count(self) -> int:
        """All failures together."""
        return int(sum(self.errors.values()))


@dataclass
class ConnectReport:
    """How a generator's connections went.

    Attributes
    ----------
    wanted, connected : int
        Connections asked for and made.
    failed : Counter
        Failures by kind (``ConnectError``, ``time_cap`` for those not tried before the
        deadline, ...).
    seconds : float
        Wall time of the connect phase in this generator.
    fd_soft, fd_hard : int
        The generator's open-file limits (after raising the soft one).
    clients_connected : int
        Logical clients that have a connection to use.
    """

    wanted: int
    connected: int = 0
    failed: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    fd_soft: int = 0
    fd_hard: int = 0
    clients_connected: int = 0


# --------------------------------------------------------------------------- the clients


class FixedDeltaClient(LearningClient):
    """A :class:`LearningClient` whose update is always the same fixed, tiny delta.

    Parameters
    ----------
    delta : ndarray, shape (d,)
        The update to send (kept as a read-only reference, never copied).
    *args, **kwargs
        As :class:`LearningClient`.
    """

    def __init__(self, *args: Any, delta: np.ndarray, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if delta.shape != (self.n_features,) or delta.dtype != np.float64:
            raise ValueError(f"delta must be float64 with shape ({self.n_features},)")
        self._delta = delta

    def compute_delta(self, weights: np.ndarray) -> np.ndarray:
        """Return the fixed delta (whatever the model)."""
        return self._delta


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything one generator process needs (picklable).

    Attributes
    ----------
    url : str
        ``nats://127.0.0.1:PORT``.
    worker : int
        This generator's number.
    clients : int
        Logical clients it hosts.
    connections : {"own", "shared"}
        One connection per client, or ``shared_connections`` for all of them.
    shared_connections : int
        Connections per generator in shared mode.
    n_features : int
        Model dimension d (bias included).
    k : int
        The k every client asks for.
    update_bits : int
        Difficulty of the echo's (fixed) puzzle: the broker's initial per-update bits.
    client_work : {"fixed", "dp"}
        What a client computes per update.
    epsilon : float
        DP-SGD epsilon per step (``dp`` clients).
    request_timeout_s, connect_timeout_s : float
        Per request and per connection attempt.
    connect_concurrency : int
        Connection attempts in flight at once (the auth callout serves them one by one).
    join_concurrency : int
        Join conversations in flight at once.
    think_s : float
        Pause of a client between receiving work and sending its update (0: closed loop).
    max_rejoins : int
        Rejoins a client may make after lost replies.
    seed : int or None
        Seeds the shard, the fixed delta and the clients' randomness.
    """

    url: str
    worker: int
    clients: int
    connections: str = "own"
    shared_connections: int = 4
    n_features: int = 24
    k: int = 2
    update_bits: int = 2
    client_work: str = "fixed"
    epsilon: float = 1.0
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 20.0
    connect_concurrency: int = 32
    join_concurrency: int = 256
    think_s: float = 0.0
    max_rejoins: int = 3
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.connections not in ("own", "shared"):
            raise ValueError(f"connections must be 'own' or 'shared', got {self.connections!r}")
        if self.client_work not in CLIENT_WORK:
            raise ValueError(f"client_work must be one of {CLIENT_WORK}, got {self.client_work!r}")
        for name in (
            "clients",
            "shared_connections",
            "n_features",
            "k",
            "connect_concurrency",
            "join_concurrency",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0 <= self.update_bits <= 24:
            raise ValueError(f"update_bits must be in 0..24 for a load test, got {self.update_bits}")
        if not (self.request_timeout_s > 0 and self.connect_timeout_s > 0 and self.think_s >= 0):
            raise ValueError("request_timeout_s and connect_timeout_s must be > 0, think_s >= 0")

    @property
    def connection_count(self) -> int:
        """Connections this generator opens."""
        return self.clients if self.connections == "own" else min(self.shared_connections, self.clients)


def synthetic_shard(n_features: int, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return a small labelled shard: standard normal features with a bias column, labels in {-1, +1}.

    Parameters
    ----------
    n_features : int
        d, the bias column included.
    rows : int
        Number of rows.
    rng : numpy.random.Generator
        Source of the features, the true weights and the label noise.

    Returns
    -------
    x : ndarray, shape (rows, n_features)
    y : ndarray, shape (rows,)
    """
    x = rng.standard_normal((rows, n_features))
    x[:, -1] = 1.0
    w = rng.standard_normal(n_features)
    y = np.where(x @ w + 0.5 * rng.standard_normal(rows) >= 0.0, 1.0, -1.0)
    return x, y


def echo_reply_payload(n_features: int, bits: int) -> bytes:
    """Return the echo responder's reply: an encoded ``Work`` of the model's size.

    Parameters
    ----------
    n_features : int
        d: the reply carries d float64 weights, as the broker's does.
    bits : int
        Difficulty of the (fixed) puzzle it carries.
    """
    weights = np.zeros(n_features)
    weights.flags.writeable = False
    return encode(Work(weights=weights, puzzle=secrets.token_bytes(32), bits=bits))


class EchoResponder:
    """The transport ceiling: answer every client request with one precomputed reply.

    Subscribes on the client subject with the connection it is given (the broker's
    identity, which may publish replies) and publishes ``reply`` to each request's
    reply subject from the subscription callback, without decoding anything.

    Parameters
    ----------
    reply : bytes
        What to answer (see :func:`echo_reply_payload`).
    """

    def __init__(self, reply: bytes) -> None:
        if not isinstance(reply, bytes) or not reply:
            raise ValueError("reply must be non-empty bytes")
        self.reply = reply
        self.answered = 0
        self.no_reply_subject = 0
        self._sub: Any = None
        self._nc: Any = None

    async def start(self, nc: Any) -> None:
        """Subscribe on ``nc`` and start answering."""
        self._nc = nc
        self._sub = await nc.subscribe(
            CLIENT_REQUESTS,
            cb=self._on_request,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=512 * 1024 * 1024,
        )
        await nc.flush()

    async def stop(self) -> None:
        """Stop answering (unsubscribe) and flush what was published."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._nc is not None and self._nc.is_connected:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=10)

    async def _on_request(self, msg: Any) -> None:
        if not msg.reply:
            self.no_reply_subject += 1
            return
        await self._nc.publish(msg.reply, self.reply)
        self.answered += 1


@dataclass
class _Slot:
    """One logical client: its state machine, its requester and its next action."""

    client: LearningClient | None = None
    requester: NatsRequester | None = None
    action: Send | Stop | None = None


class LoadGenerator:
    """The logical clients of one generator process and their phases.

    Parameters
    ----------
    spec : GeneratorSpec
        The clients it hosts and how they connect.
    """

    def __init__(self, spec: GeneratorSpec) -> None:
        self.spec = spec
        self._rng = np.random.default_rng(None if spec.seed is None else [spec.seed, spec.worker])
        self._x, self._y = synthetic_shard(spec.n_features, DP_SHARD_ROWS, self._rng)
        direction = self._rng.standard_normal(spec.n_features)
        delta = FIXED_DELTA_NORM * direction / np.linalg.norm(direction)
        delta.flags.writeable = False
        self._delta = delta
        self._connections: list[Any] = []
        self._slots = [_Slot() for _ in range(spec.clients)]  # the broker's clients
        self._echo_slots: list[_Slot] = []  # the echo baseline's clients (same connections)
        self.connection_errors: Counter = Counter()

    # ------------------------------------------------------------------ connections

    async def _on_connection_error(self, error: Exception) -> None:
        self.connection_errors[type(error).__name__] += 1

    async def connect(self, deadline: float) -> ConnectReport:
        """Open the connections (bounded concurrency), stopping at ``deadline``."""
        spec = self.spec
        started = time.monotonic()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = spec.connection_count
        report = ConnectReport(wanted=wanted, fd_soft=int(soft), fd_hard=int(hard))
        results: list[Any] = [None] * wanted
        gate = asyncio.Semaphore(spec.connect_concurrency)

        async def one(index: int) -> None:
            async with gate:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    report.failed["time_cap"] += 1
                    return
                try:
                    results[index] = await connect_client(
                        spec.url,
                        connect_timeout_s=min(spec.connect_timeout_s, remaining),
                        name=f"load-{spec.worker}-{index}",
                        error_cb=self._on_connection_error,
                    )
                except TransportError as error:
                    report.failed[type(error).__name__] += 1
                except OSError as error:  # EMFILE and friends, should they escape nats-py
                    report.failed[f"OSError:{error.errno}"] += 1

        await asyncio.gather(*(one(i) for i in range(wanted)))
        self._connections = [nc for nc in results if nc is not None]
        report.connected = len(self._connections)
        requesters = [
            NatsRequester(nc, timeout_s=spec.request_timeout_s) if nc is not None else None for nc in results
        ]
        if spec.connections == "own":
            for slot, requester in zip(self._slots, requesters, strict=True):
                slot.requester = requester  # None: this client could not connect
        else:  # round-robin over the connections that opened
            usable = [r for r in requesters if r is not None]
            for index, slot in enumerate(self._slots):
                slot.requester = usable[index % len(usable)] if usable else None
        report.clients_connected = sum(slot.requester is not None for slot in self._slots)
        report.seconds = time.monotonic() - started
        return report

    async def close(self, timeout_s: float = 60.0) -> None:
        """Close every connection (bounded in time)."""
        gate = asyncio.Semaphore(256)

        async def one(nc: Any) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await nc.close()

        connections, self._connections = self._connections, []
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(one(nc) for nc in connections)), timeout_s)

    # ------------------------------------------------------------------ clients

    def _new_client(self, model_id: str) -> LearningClient:
        spec = self.spec
        common = {
            "model_id": model_id,
            "k": spec.k,
            "rng": self._rng,
            "pow_threads": 1,
            "max_rejoins": spec.max_rejoins,
        }
        if spec.client_work == "fixed":
            return FixedDeltaClient(self._x, self._y, delta=self._delta, **common)
        from tormentor.engine.dp_sgd import StepConfig

        return LearningClient(self._x, self._y, step=StepConfig(batch=10, epsilon=spec.epsilon), **common)

    # ------------------------------------------------------------------ phases

    async def echo(self, t_start: float, t_end: float, t_measure: float, reply: bytes) -> PhaseStats:
        """Closed loop of updates against the echo responder from ``t_start`` to ``t_end``.

        The echo clients are separate from the broker's (they keep their own state across
        rounds): each gets a locally made ``Admitted`` (a random token, the echo's puzzle)
        and then runs exactly the steady-phase code.
        """
        if not self._echo_slots:
            work = decode(reply, accept=(Work,), max_bytes=len(reply))
            for slot in self._slots:
                echo_slot = _Slot(requester=slot.requester)
                if slot.requester is not None:
                    echo_slot.client = self._new_client("echo")
                    echo_slot.action = echo_slot.client.on_reply(
                        Admitted(
                            token=secrets.token_bytes(32),
                            weights=work.weights,
                            puzzle=work.puzzle,
                            bits=work.bits,
                        )
                    )
                self._echo_slots.append(echo_slot)
        stats = PhaseStats(
            "echo", timeline=Timeline(t_start, math.ceil(t_end - t_start) + 1), window=(t_measure, t_end)
        )
        await self._run_loops(self._echo_slots, stats, t_start, t_end)
        return stats

    async def join(self, model_id: str, deadline: float) -> PhaseStats:
        """Join every connected client (Join, admission puzzle, Solve) before ``deadline``."""
        stats = PhaseStats("join")
        gate = asyncio.Semaphore(self.spec.join_concurrency)
        started = time.monotonic()

        async def one(slot: _Slot) -> None:
            async with gate:
                await self._join_one(slot, stats, deadline)

        slots = [slot for slot in self._slots if slot.requester is not None]
        stats.clients = len(slots)
        for slot in slots:
            slot.client = self._new_client(model_id)
            slot.action = slot.client.start()
        await asyncio.gather(*(one(slot) for slot in slots))
        stats.admitted = sum(
            1
            for slot in slots
            if slot.client is not None
            and slot.client.token is not None
            and isinstance(slot.action, Send)
            and isinstance(slot.action.request, Update)
        )
        stats.wall_s = time.monotonic() - started
        return stats

    async def _join_one(self, slot: _Slot, stats: PhaseStats, deadline: float) -> None:
        assert slot.client is not None and slot.requester is not None
        for _ in range(MAX_JOIN_STEPS):
            action = slot.action
            if not isinstance(action, Send) or isinstance(action.request, Update):
                return  # admitted (holding its first update) or stopped
            if time.monotonic() >= deadline:
                stats.errors["join_time_cap"] += 1
                slot.action = Stop("join deadline", ok=False, code="time_cap")
                return
            if action.after_s > 0:
                await asyncio.sleep(min(action.after_s, max(0.0, deadline - time.monotonic())))
            slot.action = await self._exchange(slot, action.request, stats, latency=True)
        if isinstance(slot.action, Send) and not isinstance(slot.action.request, Update):
            stats.errors["join_steps_cap"] += 1
            slot.action = Stop("too many join steps", ok=False, code="steps_cap")

    async def steady(self, t_start: float, t_end: float, t_measure: float) -> PhaseStats:
        """Closed loop of updates against the broker from ``t_start`` to ``t_end``."""
        stats = PhaseStats(
            "steady", timeline=Timeline(t_start, math.ceil(t_end - t_start) + 1), window=(t_measure, t_end)
        )
        await self._run_loops(self._slots, stats, t_start, t_end)
        return stats

    async def _run_loops(self, slots: list[_Slot], stats: PhaseStats, t_start: float, t_end: float) -> None:
        slots = [slot for slot in slots if isinstance(slot.action, Send) and slot.requester is not None]
        stats.clients = len(slots)
        await asyncio.sleep(max(0.0, t_start - time.monotonic()))
        await asyncio.gather(*(self._loop(slot, stats, t_end) for slot in slots))
        stats.wall_s = time.monotonic() - t_start

    async def _loop(self, slot: _Slot, stats: PhaseStats, t_end: float) -> None:
        think = self.spec.think_s
        while isinstance(slot.action, Send):
            now = time.monotonic()
            if now >= t_end:
                return
            if slot.action.after_s > 0:
                await asyncio.sleep(min(slot.action.after_s, t_end - now))
                if time.monotonic() >= t_end:
                    return
            slot.action = await self._exchange(
                slot, slot.action.request, stats, latency=isinstance(slot.action.request, Update), t_end=t_end
            )
            if think > 0 and isinstance(slot.action, Send):
                await asyncio.sleep(min(think, max(0.0, t_end - time.monotonic())))
        if isinstance(slot.action, Stop):
            stats.stops[slot.action.code or slot.action.reason] += 1

    async def _exchange(
        self, slot: _Slot, request: Any, stats: PhaseStats, *, latency: bool, t_end: float | None = None
    ) -> Send | Stop:
        """Send one request, record what happened, return the client's next action."""
        client, requester = slot.client, slot.requester
        assert client is not None and requester is not None
        is_update = isinstance(request, Update)
        stats.requests += 1
        if is_update:
            stats.updates_sent += 1
        sent = time.monotonic()
        try:
            reply = await requester.request(request)
        except RequestTimeout:
            stats.errors["timeout"] += 1
            return self._rejoin(client, stats, "timeout")
        except NoResponders:
            stats.errors["no_responders"] += 1
            return self._rejoin(client, stats, "no_responders")
        except ConnectionClosed:
            stats.errors["connection_closed"] += 1
            return self._rejoin(client, stats, "connection_closed")
        except TransportError as error:
            stats.errors[f"transport:{type(error).__name__}"] += 1
            return Stop(f"transport: {type(error).__name__}", ok=False, code="transport")
        except WireError as error:
            stats.errors[f"wire:{error.code.value}"] += 1
            return Stop("undecodable reply", ok=False, code="wire")
        now = time.monotonic()
        if latency:
            stats.latency.record(now - sent)
        stats.replies[type(reply).__name__] += 1
        if is_update and isinstance(reply, Work):
            stats.updates_acked += 1
            if stats.window is None or stats.window[0] <= now <= stats.window[1]:
                stats.updates_acked_in_window += 1
            if stats.timeline is not None:
                stats.timeline.record(now)
        elif isinstance(reply, Wait):
            stats.waits += 1
        elif isinstance(reply, Error):
            stats.errors[f"error:{reply.code}"] += 1
        rejoins_before = client.stats.rejoins
        action = client.on_reply(reply)
        stats.rejoins += client.stats.rejoins - rejoins_before
        return action

    @staticmethod
    def _rejoin(client: LearningClient, stats: PhaseStats, why: str) -> Send | Stop:
        before = client.stats.rejoins
        action = client.rejoin(why)
        stats.rejoins += client.stats.rejoins - before
        return action


# --------------------------------------------------------------------------- process entry


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)


async def _serve_commands(spec: GeneratorSpec, commands: Any, results: Any) -> None:
    from tormentor.engine.pow import solve_puzzle

    solve_puzzle(secrets.token_bytes(32), 1)  # load the SHA-256 kernel before any phase
    generator = LoadGenerator(spec)
    results.put((spec.worker, "ready", os.getpid()))
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < MAX_IDLE_S:
            try:
                command = await asyncio.to_thread(commands.get, True, 1.0)
            except queue.Empty:
                continue
            kind = command[0]
            if kind == "connect":
                payload: Any = await generator.connect(command[1])
                payload.failed.update({f"after:{k}": v for k, v in generator.connection_errors.items()})
            elif kind == "echo":
                payload = await generator.echo(command[1], command[2], command[3], command[4])
            elif kind == "join":
                payload = await generator.join(command[1], command[2])
            elif kind == "steady":
                payload = await generator.steady(command[1], command[2], command[3])
            elif kind == "exit":
                await generator.close()
                results.put((spec.worker, "exit", None))
                return
            else:
                raise ValueError(f"unknown command {kind!r}")
            results.put((spec.worker, kind, payload))
            idle_since = time.monotonic()
    finally:
        await generator.close()


def generator_main(spec: GeneratorSpec, commands: Any, results: Any) -> None:
    """Process entry point: raise the file limit, then serve the parent's commands.

    Parameters
    ----------
    spec : GeneratorSpec
        The clients this process hosts.
    commands : multiprocessing.Queue
        This generator's commands (see the module docstring).
    results : multiprocessing.Queue
        Shared by all generators: ``(worker, kind, payload)``; ``kind == "error"`` carries
        a one-line description when the generator failed.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _die_with_parent()
    raise_open_file_limit()
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # counted via error_cb instead
    try:
        asyncio.run(_serve_commands(spec, commands, results))
    except BaseException as error:  # report, never leave the parent waiting
        results.put((spec.worker, "error", f"{type(error).__name__}: {error}"))
