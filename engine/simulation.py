"""In-process brokered learning on a virtual clock: the real broker and clients, no network.

Every message goes through the same :class:`~tormentor.engine.brokerage.Brokerage` and
:class:`~tormentor.engine.client.LearningClient` objects a networked run uses; clients
really compute their DP steps and really solve their puzzles. Only time is simulated:
a discrete-event queue orders requests and replies by virtual time, where a client's
update takes ``compute_s`` (with jitter) plus the expected puzzle work
``2**bits / hash_rate``, and each reply takes the broker's random latency. That keeps
what the defences depend on (asynchrony, the order of updates, the cost of penalised
puzzles) while a run of thousands of updates takes seconds and is reproducible from a
seed.

Used by the engine's tests and by experiments whose x-axis is updates rather than
wall-clock time; experiments about wall time run over the real transport.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .broker import Broker
from .brokerage import Brokerage
from .client import LearningClient, Send, Stop
from .curator import CuratorSession
from .protocol import Curate, Final

__all__ = ["SimulationResult", "SimulationSettings", "TracePoint", "VirtualClock", "simulate"]


class VirtualClock:
    """A clock the simulation advances; pass it as the brokerage's ``clock``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class SimulationSettings:
    """Virtual costs of a simulated run.

    Attributes
    ----------
    compute_s : float
        Virtual seconds a client spends on one step, besides the puzzle.
    jitter : float
        Relative spread of ``compute_s``: each step takes compute_s * U(1 - jitter, 1 + jitter).
    hash_rate : float
        Virtual SHA-256 hashes per second of one client (puzzle cost = 2**bits / hash_rate).
    network_s : float
        One-way network delay of every message.
    tick_every_s : float
        Interval of the broker's housekeeping (timeouts, deadlines).
    trace_every : int
        Record a trace point every this many model versions.
    max_time_s : float
        Stop the simulation at this virtual time even if clients are still running.
    """

    compute_s: float = 0.002
    jitter: float = 0.5
    hash_rate: float = 5e6
    network_s: float = 0.0
    tick_every_s: float = 1.0
    trace_every: int = 100
    max_time_s: float = 1e6

    def __post_init__(self) -> None:
        if not self.compute_s >= 0 or not 0 <= self.jitter < 1:
            raise ValueError("compute_s must be >= 0 and jitter in [0, 1)")
        if not self.hash_rate > 0 or not self.network_s >= 0 or not self.tick_every_s > 0:
            raise ValueError("hash_rate and tick_every_s must be > 0, network_s >= 0")
        if self.trace_every < 1:
            raise ValueError(f"trace_every must be >= 1, got {self.trace_every}")


@dataclass(frozen=True)
class TracePoint:
    """The global model at one moment of a run."""

    time_s: float
    version: int
    weights: np.ndarray
    active_clients: int


@dataclass
class SimulationResult:
    """What a simulated run produced."""

    model_id: str
    final: Final | None
    trace: list[TracePoint]
    stops: list[Stop | None]
    time_s: float
    broker: Broker
    clients: Sequence[LearningClient] = field(default_factory=list)


def simulate(
    curate: Curate,
    make_clients: Callable[[str], Sequence[LearningClient]],
    *,
    settings: SimulationSettings | None = None,
    seed: int | None = None,
    start_times: Sequence[float] | None = None,
) -> SimulationResult:
    """Run one curated task to completion in process, on virtual time.

    Parameters
    ----------
    curate : Curate
        The curator's request.
    make_clients : callable(model_id) -> sequence of LearningClient
        Builds the clients once the model id exists.
    settings : SimulationSettings or None
        Virtual costs (defaults when None).
    seed : int or None
        Seeds the broker's and the scheduler's randomness (None = from the OS). Clients
        carry their own generators.
    start_times : sequence of float or None
        Virtual time at which each client sends its join (default: all at 0).
    """
    settings = settings or SimulationSettings()
    seeds = np.random.SeedSequence(seed)
    broker_seed, schedule_seed, entropy_seed = seeds.spawn(3)
    schedule_rng = np.random.default_rng(schedule_seed)
    entropy_rng = np.random.default_rng(entropy_seed)
    clock = VirtualClock()
    brokerage = Brokerage(clock=clock, entropy=entropy_rng.bytes, rng=np.random.default_rng(broker_seed))
    curated, broker = brokerage.curate(curate)
    clients = list(make_clients(curated.model_id))
    stops: list[Stop | None] = [None] * len(clients)
    trace: list[TracePoint] = []
    queue: list[tuple[float, int, str, int, Any]] = []
    sequence = itertools.count()

    def schedule(at: float, kind: str, index: int, payload: Any) -> None:
        heapq.heappush(queue, (at, next(sequence), kind, index, payload))

    def step_cost(client: LearningClient, hashes_before: float) -> float:
        spread = schedule_rng.uniform(1.0 - settings.jitter, 1.0 + settings.jitter)
        work = client.stats.pow_hashes_expected - hashes_before
        return settings.compute_s * spread + work / settings.hash_rate

    def record() -> None:
        trace.append(TracePoint(clock.now, broker.version, np.array(broker.weights()), broker.active_clients))

    starts = list(start_times) if start_times is not None else [0.0] * len(clients)
    if len(starts) != len(clients):
        raise ValueError("start_times must have one entry per client")
    for index, client in enumerate(clients):
        schedule(starts[index], "send", index, client.start().request)
    schedule(settings.tick_every_s, "tick", -1, None)
    record()
    next_trace = settings.trace_every
    running = len(clients)

    while queue and running > 0:
        at, _, kind, index, payload = heapq.heappop(queue)
        if at > settings.max_time_s:
            clock.now = settings.max_time_s
            break
        clock.now = at
        if kind == "tick":
            outgoing = brokerage.tick()
            schedule(at + settings.tick_every_s, "tick", -1, None)
        elif kind == "send":
            outgoing = brokerage.handle_batch([(index, payload)])
        else:  # a reply reaches client `index`
            client = clients[index]
            hashes_before = client.stats.pow_hashes_expected
            action = client.on_reply(payload)
            if isinstance(action, Stop):
                stops[index] = action
                running -= 1
            else:
                assert isinstance(action, Send)
                delay = action.after_s + step_cost(client, hashes_before) + settings.network_s
                schedule(at + delay, "send", index, action.request)
            outgoing = []
        for item in outgoing:
            schedule(at + item.delay_s + settings.network_s, "reply", item.handle, item.reply)
        if broker.version >= next_trace:
            record()
            next_trace = (broker.version // settings.trace_every + 1) * settings.trace_every

    if not broker.done:
        broker.finish("simulation_ended")
    if trace[-1].version != broker.version:
        record()
    fetched = brokerage.handle_batch([(None, CuratorSession.from_reply(curated).fetch())])
    final = fetched[0].reply if fetched and isinstance(fetched[0].reply, Final) else None
    return SimulationResult(
        model_id=curated.model_id,
        final=final,
        trace=trace,
        stops=stops,
        time_s=clock.now if math.isfinite(clock.now) else settings.max_time_s,
        broker=broker,
        clients=clients,
    )
