"""``tormentor-engine load``: drive one broker with many logical clients and measure it.

One run, on this machine (127.0.0.1 only)::

    nats-server (embedded, limits sized for the clients) + auth callout   [this process]
    generator processes (spawned), each hosting clients/processes logical clients
      connect   every connection (own: one per client; shared: a few per generator)
      join      broker started (this process), one model curated; Join + Solve each
      rounds    --rounds times, alternating, each slice --duration/--rounds seconds:
        echo    the transport ceiling: the same connections and client code against a
                responder that answers every request with one precomputed Work reply
        steady  the broker: closed loop of updates, validation rounds on
    status (curator) -> exact accounting of every update; everything stopped

The echo and the broker take turns on the client subject (only one answers at a time);
alternating short slices gives both the same background load on a shared machine.

The broker runs in this process and the load in the generators, so the broker's CPU and
memory are this process's (``psutil``), measured apart from nats-server's and the
generators'. What the run writes in ``--out``::

    summary.json   the numbers (keys listed in :func:`summarise`)
    timeline.csv   per second of every echo and steady slice: updates/s, RSS, CPU
    latency.csv    round-trip percentiles per phase (echo, join, steady)
    load.png       updates/s over time (broker vs echo), latency percentiles, memory

State per client: the broker process's RSS before the joins and after them, divided by
the clients admitted; and, independent of allocator noise, the Python heap the broker
keeps per client (``tracemalloc`` around admitting clients into a bare broker and one
update each), and that heap's growth over further rounds of updates (flat: bounded).

Machine caps: the open-file limit is raised to its hard limit here and in every
generator (nats-server inherits it). A run with own connections that needs more file
descriptors, local ports or memory than the machine has is not started: summary.json
says which cap and the command exits with status 2; ``--connections shared`` reaches the
same number of logical clients on a few connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gc
import json
import math
import multiprocessing
import os
import queue
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "traced_broker_growth",
    "LoadError",
    "LoadSettings",
    "connection_caps",
    "register",
    "run_load",
    "run_load_async",
    "traced_state_bytes_per_client",
]

#: Memory of one client connection on nats-server, callout grant and buffers included
#: (measured by this command here: 82-88 KB when opened, 895 MB for 10,000 under load).
SERVER_BYTES_PER_CONNECTION = 90_000
#: Memory of one nats-py connection in a generator (measured here: 30-32 KB).
CLIENT_BYTES_PER_CONNECTION = 35_000
#: Memory of one logical client in a generator (state machine, coroutine, slot).
CLIENT_BYTES_PER_LOGICAL = 6_000
#: File descriptors a process needs besides its connections.
FD_MARGIN = 200
#: Share of the available memory a run may plan to use.
MEMORY_SHARE = 0.7
NOISE_NOTE = (
    "2-core machine shared with other jobs; broker, nats-server and the load generators compete for "
    "the same cores: rates move by up to 2x between rounds, so compare the per-round shares"
)


class LoadError(RuntimeError):
    """A generator failed or did not answer in time."""


@dataclass(frozen=True)
class LoadSettings:
    """One load run.

    Attributes
    ----------
    clients : int
        Logical clients.
    connections : {"own", "shared"}
        One NATS connection per client, or ``connections_per_process`` per generator.
    connections_per_process : int
        Connections of each generator in shared mode.
    processes : int
        Generator processes.
    duration_s : float
        Length of the steady phase, and of the echo phase.
    client_work : {"fixed", "dp"}
        What a client computes per update (a fixed tiny delta, or one DP-SGD step).
    n_features : int
        Model dimension d, bias included (24 = the credit model).
    validation_rows : int
        Rows of the curator's synthetic validation set (RONI scores on it).
    admission_bits, update_bits : int
        Puzzle difficulties (low: the test measures the broker, not SHA-256).
    validation_rate : float
        Probability per accepted update that a RONI validation round starts.
    k : int
        Every client's k (the k gate is on).
    baseline : bool
        Run the echo phase.
    rounds : int
        Echo and steady phases alternate this many times, each slice ``duration_s /
        rounds`` long, so that both see the same background load on a shared machine.
    warmup_fraction : float
        Share of each slice before acks count toward the rates (every client starts at
        once: the first round trips of a slice are a burst, not the steady stream).
    think_s : float
        Client pause between work and update (0 = closed loop).
    request_timeout_s, connect_timeout_s : float
        Per request, per connection attempt.
    max_connect_s, max_join_s : float
        Time caps of the connect and join phases (what is not done by then is reported).
    connect_concurrency : int
        Connection attempts in flight per generator.
    seed : int or None
        Reproduces the data, deltas and draws of the generators (not the timings).
    """

    clients: int = 1000
    connections: str = "own"
    connections_per_process: int = 4
    processes: int = 2
    duration_s: float = 10.0
    client_work: str = "fixed"
    n_features: int = 24
    validation_rows: int = 2000
    admission_bits: int = 4
    update_bits: int = 2
    validation_rate: float = 0.1
    k: int = 2
    baseline: bool = True
    rounds: int = 2
    warmup_fraction: float = 0.2
    think_s: float = 0.0
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 20.0
    max_connect_s: float = 600.0
    max_join_s: float = 600.0
    connect_concurrency: int = 32
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "clients",
            "connections_per_process",
            "processes",
            "n_features",
            "validation_rows",
            "k",
            "connect_concurrency",
            "rounds",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.connections not in ("own", "shared"):
            raise ValueError(f"connections must be 'own' or 'shared', got {self.connections!r}")
        if self.client_work not in ("fixed", "dp"):
            raise ValueError(f"client_work must be 'fixed' or 'dp', got {self.client_work!r}")
        if self.processes > self.clients:
            raise ValueError("processes must not exceed clients")
        if self.k > self.clients:
            raise ValueError("k must not exceed clients (the k gate would never open)")
        if not 0 <= self.admission_bits <= 20 or not 0 <= self.update_bits <= 20:
            raise ValueError("admission_bits and update_bits must be in 0..20 for a load test")
        if not 0.0 <= self.validation_rate <= 1.0:
            raise ValueError(f"validation_rate must be in [0, 1], got {self.validation_rate}")
        for name in ("duration_s", "request_timeout_s", "connect_timeout_s", "max_connect_s", "max_join_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value <= 3600):
                raise ValueError(f"{name} must be in (0, 3600] seconds, got {value!r}")
        if self.rounds > 20 or self.duration_s / self.rounds < 1.0:
            raise ValueError("rounds must be at most 20 and leave slices of at least 1 s")
        if not 0.0 <= self.warmup_fraction <= 0.8:
            raise ValueError(f"warmup_fraction must be in [0, 0.8], got {self.warmup_fraction}")
        if not 0 <= self.think_s <= 60:
            raise ValueError(f"think_s must be in [0, 60], got {self.think_s}")

    @property
    def slice_s(self) -> float:
        """Length of one echo or steady slice."""
        return self.duration_s / self.rounds

    @property
    def measured_s(self) -> float:
        """Seconds of one slice whose acks count toward the rates (after the warm-up)."""
        return self.slice_s * (1.0 - self.warmup_fraction)

    @property
    def connections_total(self) -> int:
        """Client connections the run opens."""
        if self.connections == "own":
            return self.clients
        return sum(min(self.connections_per_process, n) for n in self.clients_per_process)

    @property
    def clients_per_process(self) -> list[int]:
        """Logical clients of each generator (as even as possible)."""
        base, extra = divmod(self.clients, self.processes)
        return [base + (1 if i < extra else 0) for i in range(self.processes)]


# ----------------------------------------------------------------------------- caps


def connection_caps(settings: LoadSettings, limits: Any) -> list[str]:
    """Return why this machine cannot run ``settings`` (empty when it can).

    Parameters
    ----------
    settings : LoadSettings
        The run to check.
    limits : MachineLimits
        From :func:`tormentor.transport.load_clients.machine_limits`, read after raising
        the open-file limit.

    Returns
    -------
    list of str
        One sentence per cap: file descriptors (nats-server holds one per connection,
        each generator one per connection it opens), local ports (one per connection to
        the one server address) and memory (an estimate from measured per-connection
        costs). Time is capped at run time (``max_connect_s``).
    """
    caps: list[str] = []
    total = settings.connections_total
    per_generator = (
        max(settings.clients_per_process)
        if settings.connections == "own"
        else settings.connections_per_process
    )
    if total + FD_MARGIN > limits.fd_hard:
        caps.append(
            f"file descriptors: nats-server needs {total + FD_MARGIN:,} for {total:,} connections, "
            f"the hard limit is {limits.fd_hard:,}"
        )
    if per_generator + FD_MARGIN > limits.fd_hard:
        caps.append(
            f"file descriptors: a generator needs {per_generator + FD_MARGIN:,}, "
            f"the hard limit is {limits.fd_hard:,} (use more --processes)"
        )
    if total + 100 > limits.ephemeral_ports:
        caps.append(
            f"local ports: {total:,} connections to one address, {limits.ephemeral_ports:,} "
            "ephemeral ports (net.ipv4.ip_local_port_range)"
        )
    estimate = (
        total * (SERVER_BYTES_PER_CONNECTION + CLIENT_BYTES_PER_CONNECTION)
        + settings.clients * CLIENT_BYTES_PER_LOGICAL
    )
    if limits.memory_available_bytes and estimate > MEMORY_SHARE * limits.memory_available_bytes:
        caps.append(
            f"memory: about {estimate / 2**30:.1f} GiB needed, "
            f"{limits.memory_available_bytes / 2**30:.1f} GiB available"
        )
    return caps


# ----------------------------------------------------------------------------- resources


class ResourceMonitor:
    """Samples RSS and CPU seconds of the broker, nats-server and the generators.

    Parameters
    ----------
    broker_pid, server_pid : int
        This process, and nats-server.
    every_s : float
        Sampling interval of :meth:`run`.
    """

    def __init__(self, broker_pid: int, server_pid: int, *, every_s: float = 1.0) -> None:
        import psutil

        self._psutil = psutil
        self.broker = psutil.Process(broker_pid)
        self.server = psutil.Process(server_pid)
        self.generators: list[Any] = []
        self.every_s = every_s
        self.started = time.monotonic()
        self.phase = "start"
        self.samples: list[dict[str, Any]] = []
        self.phases: dict[str, dict[str, float]] = {}
        #: The sample taken when each phase first started.
        self.boundaries: dict[str, dict[str, Any]] = {}
        self._phase_start: dict[str, Any] | None = None

    def add_generators(self, pids: list[int]) -> None:
        """Follow the generator processes too."""
        self.generators = [self._psutil.Process(pid) for pid in pids]

    @staticmethod
    def _cpu(process: Any) -> float:
        try:
            times = process.cpu_times()
            return float(times.user + times.system)
        except Exception:  # exited
            return 0.0

    @staticmethod
    def _rss(process: Any) -> int:
        try:
            return int(process.memory_info().rss)
        except Exception:
            return 0

    def sample(self) -> dict[str, Any]:
        """Take and keep one sample now."""
        row = {
            "t": time.monotonic(),
            "phase": self.phase,
            "broker_rss": self._rss(self.broker),
            "server_rss": self._rss(self.server),
            "generators_rss": sum(self._rss(p) for p in self.generators),
            "broker_cpu_s": self._cpu(self.broker),
            "server_cpu_s": self._cpu(self.server),
            "generators_cpu_s": sum(self._cpu(p) for p in self.generators),
        }
        self.samples.append(row)
        return row

    def mark(self, phase: str) -> dict[str, Any]:
        """End the current phase (its CPU use adds up per name) and start ``phase``; return the sample."""
        row = self.sample()
        if self._phase_start is not None:
            begin = self._phase_start
            usage = self.phases.setdefault(
                begin["phase_name"],
                dict.fromkeys(("wall_s", "broker_cpu_s", "server_cpu_s", "generators_cpu_s"), 0.0),
            )
            usage["wall_s"] += row["t"] - begin["t"]
            for key in ("broker_cpu_s", "server_cpu_s", "generators_cpu_s"):
                usage[key] += row[key] - begin[key]
        self.phase = phase
        self._phase_start = {**row, "phase_name": phase}
        self.boundaries.setdefault(phase, row)
        return row

    async def run(self, stop_after_s: float) -> None:
        """Sample every ``every_s`` until cancelled (or ``stop_after_s`` passed)."""
        deadline = time.monotonic() + stop_after_s
        while time.monotonic() < deadline:
            await asyncio.sleep(self.every_s)
            self.sample()

    def cpu_pct(self, phase: str, who: str) -> float | None:
        """CPU use of ``who`` (broker, server, generators) over ``phase``, in % of one core."""
        usage = self.phases.get(phase)
        if not usage or usage["wall_s"] <= 0:
            return None
        return 100.0 * usage[f"{who}_cpu_s"] / usage["wall_s"]

    def during(self, phase: str) -> list[dict[str, Any]]:
        """The samples taken during ``phase``."""
        return [row for row in self.samples if row["phase"] == phase]


# ----------------------------------------------------------------------------- generators


class _Generators:
    """The spawned generator processes and their queues."""

    def __init__(self, specs: list[Any]) -> None:
        from tormentor.transport.load_clients import generator_main

        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        self.commands = [context.Queue() for _ in specs]
        self.processes = [
            context.Process(
                target=generator_main,
                args=(spec, commands, self.results),
                daemon=True,
                name=f"load-generator-{spec.worker}",
            )
            for spec, commands in zip(specs, self.commands, strict=True)
        ]
        for process in self.processes:
            process.start()

    async def ask(self, command: tuple[Any, ...] | None, kind: str, timeout_s: float) -> list[Any]:
        """Send ``command`` to every generator (if given); return each one's ``kind`` answer, in order."""
        if command is not None:
            for commands in self.commands:
                commands.put(command)
        answers: dict[int, Any] = {}
        deadline = time.monotonic() + timeout_s
        while len(answers) < len(self.processes):
            if time.monotonic() > deadline:
                raise LoadError(
                    f"{len(self.processes) - len(answers)} generator(s) did not finish {kind!r} "
                    f"within {timeout_s:.0f} s"
                )
            try:
                worker, got, payload = await asyncio.to_thread(self.results.get, True, 0.5)
            except queue.Empty:
                dead = [p.name for i, p in enumerate(self.processes) if i not in answers and not p.is_alive()]
                if dead and kind != "exit":
                    raise LoadError(f"generator(s) exited during {kind!r}: {', '.join(dead)}") from None
                continue
            if got == "error":
                raise LoadError(f"generator {worker} failed during {kind!r}: {payload}")
            if got != kind:
                raise LoadError(f"generator {worker} answered {got!r} while {kind!r} was expected")
            answers[worker] = payload
        return [answers[i] for i in range(len(self.processes))]

    def stop(self) -> None:
        """Terminate whatever still runs (after a clean exit, nothing does)."""
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


# ----------------------------------------------------------------------------- state per client


def _task_spec(settings: LoadSettings) -> Any:
    from tormentor.engine.protocol import Defences, StoppingRule, TaskSpec

    return TaskSpec(
        n_features=settings.n_features,
        min_clients=1,
        max_clients=2 * settings.clients + 16,  # room for rejoins after lost replies
        aggregation="async",
        client_timeout_s=max(600.0, settings.max_connect_s + settings.max_join_s + 2 * settings.duration_s),
        stopping=StoppingRule(max_updates=None, deadline_s=86_400.0),
        defences=Defences(
            admission_bits=settings.admission_bits,
            update_bits=settings.update_bits,
            adaptive_pow=True,
            penalty_bits=4,
            max_bits=settings.update_bits + 8,
            validator=settings.validation_rate > 0,
            validation_rate=settings.validation_rate,
            k_gate=True,
            max_latency_s=0.0,
        ),
    )


def _validation_set(settings: LoadSettings) -> tuple[np.ndarray, np.ndarray]:
    from tormentor.transport.load_clients import synthetic_shard

    rng = np.random.default_rng(None if settings.seed is None else [settings.seed, 7])
    return synthetic_shard(settings.n_features, settings.validation_rows, rng)


def _bare_broker(settings: LoadSettings, clients: int) -> tuple[Any, str]:
    """A transport-free brokerage with the run's task curated; returns it and the model id."""
    from tormentor.engine.brokerage import Brokerage
    from tormentor.engine.protocol import Curate

    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    sized = LoadSettings(**{**asdict(settings), "clients": max(clients, settings.k), "processes": 1})
    x, y = _validation_set(sized)
    brokerage = Brokerage(rng=np.random.default_rng(0))
    curated, _ = brokerage.curate(Curate(task=_task_spec(sized), validation_x=x, validation_y=y))
    return brokerage, curated.model_id


def _admit(brokerage: Any, model: str, settings: LoadSettings, clients: int) -> list[Any]:
    """Join and solve ``clients`` clients; return the ``Admitted`` outgoing replies."""
    from tormentor.engine.pow import solve_puzzle
    from tormentor.engine.protocol import Join, Solve

    joins = [(i, Join(model_id=model, n_features=settings.n_features, k=settings.k)) for i in range(clients)]
    out = brokerage.handle_batch(joins)
    nonces = [solve_puzzle(o.reply.puzzle, o.reply.bits) for o in out]
    solves = [
        (o.handle, Solve(model_id=model, join_id=o.reply.join_id, nonce=n))
        for o, n in zip(out, nonces, strict=True)
    ]
    return brokerage.handle_batch(solves)


def _one_update_each(
    brokerage: Any, model: str, tokens: list[bytes], work: list[Any], delta: np.ndarray
) -> list[Any]:
    """Send one update per client (in one batch); return the outgoing replies."""
    from tormentor.engine.pow import solve_puzzle
    from tormentor.engine.protocol import Update

    updates = [
        (
            i,
            Update(
                model_id=model,
                token=tokens[i],
                base=w.puzzle,
                nonce=solve_puzzle(w.puzzle, w.bits),
                delta=delta,
            ),
        )
        for i, w in enumerate(work)
    ]
    return brokerage.handle_batch(updates)


def traced_state_bytes_per_client(settings: LoadSettings, clients: int = 2000) -> float:
    """Python heap the broker keeps per client: admit ``clients`` and take one update from each.

    A bare :class:`~tormentor.engine.brokerage.Brokerage` (no transport) curates the
    run's task; ``tracemalloc`` measures what admission (Join, Solve) and one update per
    client (validation round included) leave allocated once every reply is dropped.

    Parameters
    ----------
    settings : LoadSettings
        Its task and validation set size are used.
    clients : int
        Clients admitted (>= 1).

    Returns
    -------
    float
        Bytes per client.
    """
    delta = np.zeros(settings.n_features)
    # First use allocates once per process (code caches, kernel dispatch): not per client.
    warm, warm_model = _bare_broker(settings, min(clients, 50))
    warm_admitted = _admit(warm, warm_model, settings, min(clients, 50))
    _one_update_each(
        warm, warm_model, [o.reply.token for o in warm_admitted], [o.reply for o in warm_admitted], delta
    )
    del warm, warm_admitted
    brokerage, model = _bare_broker(settings, clients)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        admitted = _admit(brokerage, model, settings, clients)
        out = _one_update_each(
            brokerage, model, [o.reply.token for o in admitted], [o.reply for o in admitted], delta
        )
        replies = len(out)
        del admitted, out
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if replies != clients:
        raise RuntimeError(f"expected {clients} replies to the updates, got {replies}")
    return (after - before) / clients


def _handle(outgoing: Any) -> Any:
    return outgoing.handle


def traced_broker_growth(settings: LoadSettings, clients: int = 1000, rounds: int = 10) -> list[int]:
    """Heap growth of the broker over ``rounds`` rounds of one update per client (bytes).

    The clients are admitted and send two updates each before measuring starts (the
    broker's per-client state then exists); element ``r`` is the traced heap after round
    ``r + 1`` minus the heap before the first measured round. A broker whose memory is
    bounded shows a flat list (RONI rounds opening and closing make it alternate),
    whatever the number of updates.

    Parameters
    ----------
    settings : LoadSettings
        Its task and validation set size are used.
    clients : int
        Clients admitted (>= 1).
    rounds : int
        Measured rounds (>= 1).

    Returns
    -------
    list of int
        Growth after each round, in bytes.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    brokerage, model = _bare_broker(settings, clients)
    delta = np.zeros(settings.n_features)
    admitted = _admit(brokerage, model, settings, clients)
    tokens = [o.reply.token for o in admitted]
    work = [o.reply for o in _one_update_each(brokerage, model, tokens, [o.reply for o in admitted], delta)]
    del admitted
    growth = np.zeros(rounds, dtype=np.int64)  # preallocated: recording must not allocate
    tracemalloc.start()
    try:
        # One traced round first: what the harness holds (the last replies) is then traced too.
        work = [o.reply for o in sorted(_one_update_each(brokerage, model, tokens, work, delta), key=_handle)]
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for number in range(rounds):
            out = _one_update_each(brokerage, model, tokens, work, delta)
            work = [o.reply for o in sorted(out, key=_handle)]
            del out
            gc.collect()
            growth[number] = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return growth.tolist()


# ----------------------------------------------------------------------------- the run


@dataclass
class _Run:
    """What the phases produced (filled in as the run goes)."""

    settings: LoadSettings
    started: float = field(default_factory=time.monotonic)
    limits: Any = None
    connect: list[Any] = field(default_factory=list)
    echo_rounds: list[Any] = field(default_factory=list)  # PhaseStats of each slice, with its timeline
    steady_rounds: list[Any] = field(default_factory=list)
    echo_answered: int = 0
    join: Any = None
    progress: Any = None
    validation_rounds: int | None = None
    service_stats: dict[str, Any] = field(default_factory=dict)
    callout_refused: dict[str, int] = field(default_factory=dict)
    server_counters: dict[str, Any] = field(default_factory=dict)
    broker_connection_events: dict[str, int] = field(default_factory=dict)
    callout_granted: int = 0
    memory: dict[str, float] = field(default_factory=dict)
    server_version: str = ""
    generator_pids: list[int] = field(default_factory=list)
    status: str = "ok"
    failure: str = ""

    @property
    def echo(self) -> Any:
        """The echo slices together (None when the baseline did not run)."""
        return _merged("echo", self.echo_rounds) if self.echo_rounds else None

    @property
    def steady(self) -> Any:
        """The steady slices together."""
        return _merged("steady", self.steady_rounds) if self.steady_rounds else None

    def add_service_stats(self, stats: Any) -> None:
        """Add one BrokerService's counters (a new service serves each slice)."""
        totals = self.service_stats
        for name in ("requests", "batches", "no_reply_subject", "internal_errors", "busy_s"):
            totals[name] = totals.get(name, 0) + getattr(stats, name)
        totals["largest_batch"] = max(totals.get("largest_batch", 0), stats.largest_batch)
        decode = totals.setdefault("refused_on_decode", {})
        for code, count in stats.refused_on_decode.items():
            decode[code] = decode.get(code, 0) + count


def run_load(settings: LoadSettings, out_dir: Path) -> dict[str, Any]:
    """Run one load test and write its outputs into ``out_dir``; return the summary."""
    return asyncio.run(run_load_async(settings, out_dir))


async def run_load_async(settings: LoadSettings, out_dir: Path) -> dict[str, Any]:
    """Run one load test (see the module docstring); return the summary written to summary.json.

    Raises
    ------
    LoadError
        A generator failed or did not answer in time (summary.json says so first).
    """
    from tormentor.transport.load_clients import machine_limits, raise_open_file_limit

    from .outputs import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    raise_open_file_limit()
    run = _Run(settings, limits=machine_limits())
    caps = connection_caps(settings, run.limits)
    if caps:
        run.status = "capped"
        summary = summarise(run, None, caps=caps)
        write_json(out_dir / "summary.json", summary)
        return summary
    monitor: ResourceMonitor | None = None
    try:
        monitor = await _drive(run)
    except LoadError as error:
        run.status, run.failure = "failed", str(error)
        write_json(out_dir / "summary.json", summarise(run, monitor))
        raise
    summary = summarise(run, monitor)
    summary["broker_state_bytes_per_client_traced"] = traced_state_bytes_per_client(
        settings, min(settings.clients, 2000)
    )
    # Heap growth over 20 rounds of one update per client: flat when the broker's memory is bounded.
    summary["broker_traced_growth_bytes"] = traced_broker_growth(settings, min(settings.clients, 1000), 20)
    write_json(out_dir / "summary.json", summary)
    write_timeline(out_dir / "timeline.csv", run, monitor)
    write_latency(out_dir / "latency.csv", run)
    plot_load(out_dir / "load.png", run, monitor, summary)
    return summary


async def _drive(run: _Run) -> ResourceMonitor:
    """Start everything, run the phases, stop everything; return the resource samples."""
    import nats

    from tormentor.engine.brokerage import Brokerage
    from tormentor.engine.curator import CuratorSession, curate_request
    from tormentor.engine.protocol import Curated, Progress
    from tormentor.transport.auth_callout import AuthCalloutService
    from tormentor.transport.broker_service import BrokerService
    from tormentor.transport.client_runner import NatsRequester
    from tormentor.transport.load_clients import EchoResponder, GeneratorSpec, echo_reply_payload
    from tormentor.transport.nats_server import NatsServer, ServerLimits
    from tormentor.transport.subjects import CURATOR_REQUESTS

    settings = run.settings
    total = settings.connections_total
    limits = ServerLimits(
        client_max_payload_bytes=max(4096, 16 * settings.n_features + 1024),
        client_max_connections=max(100, total + 64),
        max_connections=max(200, total + 164),
        auth_timeout_s=10.0,
    )
    async with contextlib.AsyncExitStack() as stack:
        server = NatsServer(limits)
        server.start()
        stack.callback(server.stop)
        run.server_version = server.version or "unknown"
        assert server.pid is not None
        monitor = ResourceMonitor(os.getpid(), server.pid)
        callout = AuthCalloutService(server.url, server.callout, server.callout_issuer_seed)
        await stack.enter_async_context(callout)

        specs = [
            GeneratorSpec(
                url=server.url,
                worker=i,
                clients=n,
                connections=settings.connections,
                shared_connections=settings.connections_per_process,
                n_features=settings.n_features,
                k=settings.k,
                update_bits=settings.update_bits,
                client_work=settings.client_work,
                request_timeout_s=settings.request_timeout_s,
                connect_timeout_s=settings.connect_timeout_s,
                connect_concurrency=settings.connect_concurrency,
                think_s=settings.think_s,
                seed=None if settings.seed is None else settings.seed + i,
            )
            for i, n in enumerate(settings.clients_per_process)
        ]
        generators = _Generators(specs)
        stack.callback(generators.stop)
        run.generator_pids = await generators.ask(None, "ready", timeout_s=120)
        monitor.add_generators(run.generator_pids)
        sampler = asyncio.create_task(monitor.run(stop_after_s=4 * 3600))
        stack.callback(sampler.cancel)
        grace = settings.request_timeout_s + 60

        monitor.mark("connect")
        deadline = time.monotonic() + settings.max_connect_s
        run.connect = await generators.ask(("connect", deadline), "connect", settings.max_connect_s + grace)

        monitor.mark("curate")
        broker_events: Counter[str] = Counter()

        async def on_broker_event(error: Exception | None = None) -> None:
            broker_events[type(error).__name__ if error is not None else "disconnected"] += 1

        broker_nc = await nats.connect(
            server.url,
            **{**server.broker.connect_options(), "name": "broker"},
            error_cb=on_broker_event,
            disconnected_cb=on_broker_event,
        )
        stack.push_async_callback(broker_nc.close)
        brokerage = Brokerage()
        service = BrokerService(brokerage)
        await service.start(broker_nc)
        curator_nc = await nats.connect(server.url, **{**server.curator.connect_options(), "name": "curator"})
        stack.push_async_callback(curator_nc.close)
        curator = NatsRequester(curator_nc, timeout_s=60.0, subject=CURATOR_REQUESTS)
        x, y = _validation_set(settings)
        reply = await curator.request(curate_request(_task_spec(settings), x, y))
        if not isinstance(reply, Curated):
            raise LoadError(f"curate was refused: {reply}")
        session = CuratorSession.from_reply(reply)
        # Load the broker's kernels and code paths (puzzles, RONI) before measuring memory.
        traced_state_bytes_per_client(settings, min(settings.clients, 100))

        gc.collect()
        run.memory["broker_rss_before_joins"] = monitor.mark("join")["broker_rss"]
        deadline = time.monotonic() + settings.max_join_s
        joins = await generators.ask(
            ("join", session.model_id, deadline), "join", settings.max_join_s + grace
        )
        run.join = _merged("join", joins)
        gc.collect()
        run.memory["broker_rss_after_joins"] = monitor.mark("between")["broker_rss"]
        await service.stop()  # the echo and the broker take turns on the client subject
        run.add_service_stats(service.stats)

        echo_nc = await nats.connect(server.url, **{**server.broker.connect_options(), "name": "echo"})
        stack.push_async_callback(echo_nc.close)
        responder = EchoResponder(echo_reply_payload(settings.n_features, settings.update_bits))
        for _ in range(settings.rounds):
            if settings.baseline:
                monitor.mark("echo")
                await responder.start(echo_nc)
                window = _window(settings)
                parts = await generators.ask(
                    ("echo", *window, responder.reply), "echo", settings.slice_s + grace
                )
                run.echo_rounds.append(_merged("echo", parts))
                await responder.stop()
                monitor.mark("between")
            service = BrokerService(brokerage)
            await service.start(broker_nc)
            monitor.mark("steady")
            window = _window(settings)
            parts = await generators.ask(("steady", *window), "steady", settings.slice_s + grace)
            run.steady_rounds.append(_merged("steady", parts))
            monitor.mark("between")
            await service.stop()
            run.add_service_stats(service.stats)
        run.echo_answered = responder.answered
        gc.collect()
        run.memory["broker_rss_end"] = monitor.mark("close")["broker_rss"]

        service = BrokerService(brokerage)  # to answer the curator
        await service.start(broker_nc)
        stack.push_async_callback(service.stop)
        status = await _status(curator, session)
        if not isinstance(status, Progress):
            raise LoadError(f"status was refused: {status}")
        run.progress = status
        # Not in Progress (the curator does not need it); read from the broker to show RONI ran.
        validator = getattr(brokerage.brokers[session.model_id], "_validator", None)
        run.validation_rounds = None if validator is None else validator.rounds_started
        run.server_counters = await asyncio.to_thread(_server_counters, server.monitor_url)
        run.broker_connection_events = dict(broker_events)
        run.callout_refused = dict(callout.refused)
        run.callout_granted = callout.granted
        await generators.ask(("exit",), "exit", timeout_s=120)
        monitor.mark("done")
    return monitor


async def _status(curator: Any, session: Any) -> Any:
    """Ask for the broker's progress, a few times if its connection is just reconnecting."""
    from tormentor.transport.errors import NoResponders, RequestTimeout

    for attempt in range(5):
        try:
            return await curator.request(session.status())
        except (NoResponders, RequestTimeout):
            if attempt == 4:
                raise
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


def _server_counters(monitor_url: str | None) -> dict[str, Any]:
    """nats-server's own counters (``/varz``): slow consumers, messages, connections."""
    if monitor_url is None:
        return {}
    import urllib.request

    try:
        with urllib.request.urlopen(f"{monitor_url}/varz", timeout=5.0) as response:
            varz = json.loads(response.read())
    except (OSError, ValueError):
        return {}
    keys = (
        "slow_consumers",
        "in_msgs",
        "out_msgs",
        "in_bytes",
        "out_bytes",
        "total_connections",
        "connections",
    )
    return {key: varz.get(key) for key in keys}


def _window(settings: LoadSettings) -> tuple[float, float, float]:
    """A slice starting shortly (the command must reach every generator first).

    Returns its start, its end and when acks start counting (after the warm-up).
    """
    start = time.monotonic() + 0.5
    return start, start + settings.slice_s, start + settings.slice_s * settings.warmup_fraction


def _merged(phase: str, parts: list[Any]) -> Any:
    """Merge generators' stats of one slice (timelines too) or slices (not their timelines)."""
    from tormentor.transport.load_clients import PhaseStats

    total = PhaseStats(phase)
    same_slice = len({None if p.timeline is None else p.timeline.start for p in parts}) == 1
    for part in parts:
        total.merge(part, timeline=same_slice)
    return total


# ----------------------------------------------------------------------------- summary


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 2**20


def _slope_mb_per_min(rows: list[dict[str, Any]], key: str) -> float | None:
    if len(rows) < 3:
        return None
    t = np.array([r["t"] for r in rows])
    v = np.array([r[key] for r in rows], dtype=np.float64) / 2**20
    if np.ptp(t) <= 0:
        return None
    return float(np.polyfit(t - t[0], v, 1)[0] * 60.0)


def _update_accounting(run: _Run) -> dict[str, int]:
    """Every update the clients saw acked, against what the broker counted."""
    rejected = dict(run.progress.updates_rejected) if run.progress is not None else {}
    accepted = run.progress.updates_accepted if run.progress is not None else 0
    counted = accepted + sum(rejected.get(reason, 0) for reason in ("roni", "stale", "after_stop"))
    acked = run.steady.updates_acked if run.steady is not None else 0
    timeouts = run.steady.errors.get("timeout", 0) if run.steady is not None else 0
    return {
        "client_updates_sent": run.steady.updates_sent if run.steady is not None else 0,
        "client_work_replies": acked,
        "broker_accepted": accepted,
        "broker_roni_rejected": rejected.get("roni", 0),
        "broker_stale_rejected": rejected.get("stale", 0),
        "broker_after_stop": rejected.get("after_stop", 0),
        "broker_counted": counted,
        "lost": max(0, acked - counted),
        "counted_but_reply_lost": max(0, counted - acked),
        "client_timeouts": timeouts,
    }


def summarise(run: _Run, monitor: ResourceMonitor | None, *, caps: list[str] | None = None) -> dict[str, Any]:
    """Return the run's summary (what summary.json holds).

    Keys: ``clients``, ``updates_per_s`` (updates the clients saw acked with Work during
    the measured part of the steady slices, per second), ``baseline_updates_per_s`` (the same against the
    echo), ``broker_share_of_ceiling`` (their ratio), ``joins_per_s``, ``p50_ms``,
    ``p99_ms``, ``p999_ms`` (steady update round trips), ``broker_rss_mb`` and
    ``server_rss_mb`` (peak during the steady phase), ``broker_state_bytes_per_client``,
    ``errors`` (transport failures and Error replies of connect, join and steady),
    ``lost_updates``, ``rejected_by_reason`` and more, each named for what it is.
    """
    settings = run.settings
    summary: dict[str, Any] = {
        "status": run.status,
        "clients": settings.clients,
        "connections": settings.connections,
        "connections_total": settings.connections_total,
        "generator_processes": settings.processes,
        "client_work": settings.client_work,
        "duration_s": settings.duration_s,
        "rounds": settings.rounds,
        "measured_s": settings.measured_s * settings.rounds,
        "settings": asdict(settings),
        "fd_limit": None if run.limits is None else {"soft": run.limits.fd_soft, "hard": run.limits.fd_hard},
        "machine": None
        if run.limits is None
        else {
            "cpus": os.cpu_count(),
            "ephemeral_ports": run.limits.ephemeral_ports,
            "memory_available_gb": run.limits.memory_available_bytes / 2**30,
        },
        "caps": caps or [],
        "noise": NOISE_NOTE,
    }
    if run.failure:
        summary["failure"] = run.failure
    if caps:
        summary["message"] = (
            "not run: this machine caps the test (" + "; ".join(caps) + "). "
            "Use --connections shared to reach this many logical clients."
        )
        return summary
    connected = sum(r.connected for r in run.connect)
    connect_failed: dict[str, int] = {}
    for report in run.connect:
        for kind, count in report.failed.items():
            connect_failed[kind] = connect_failed.get(kind, 0) + count
    connect_s = max((r.seconds for r in run.connect), default=0.0)
    summary.update(
        {
            "connections_made": connected,
            "clients_connected": sum(r.clients_connected for r in run.connect),
            "connect_seconds": connect_s,
            "connects_per_s": connected / connect_s if connect_s > 0 else None,
            "connect_failures": connect_failed,
        }
    )
    steady, echo, join = run.steady, run.echo, run.join
    measured = settings.measured_s * settings.rounds  # each slice after its warm-up
    updates_per_s = steady.updates_acked_in_window / measured if steady is not None else None
    baseline = echo.updates_acked_in_window / measured if echo is not None else None
    latency = steady.latency.summary_ms() if steady is not None else {}
    errors: dict[str, int] = {}
    for kind, count in connect_failed.items():
        if not kind.startswith("after:"):
            errors[f"connect:{kind}"] = count
    for stats in (join, steady):
        if stats is not None:
            for kind, count in stats.errors.items():
                errors[f"{stats.phase}:{kind}"] = errors.get(f"{stats.phase}:{kind}", 0) + count
    for kind, count in run.broker_connection_events.items():
        errors[f"broker_connection:{kind}"] = count
    if run.server_counters.get("slow_consumers"):
        errors["server:slow_consumers"] = int(run.server_counters["slow_consumers"])
    accounting = _update_accounting(run)
    memory = run.memory
    admitted = join.admitted if join is not None else 0
    state = None
    if admitted and "broker_rss_after_joins" in memory:
        state = (memory["broker_rss_after_joins"] - memory["broker_rss_before_joins"]) / admitted
    state_after_updates = None
    if admitted and "broker_rss_end" in memory:
        state_after_updates = (memory["broker_rss_end"] - memory["broker_rss_before_joins"]) / admitted
    steady_rows = monitor.during("steady") if monitor is not None else []
    per_connection: dict[str, float | None] = {"server": None, "generators": None}
    marks = monitor.boundaries if monitor is not None else {}
    after_connect = marks.get("echo") or marks.get("curate")
    if "connect" in marks and after_connect is not None and connected >= 100:  # fewer: noise
        for who in per_connection:
            per_connection[who] = (after_connect[f"{who}_rss"] - marks["connect"][f"{who}_rss"]) / connected
    rejected: dict[str, Any] = {
        "updates": dict(run.progress.updates_rejected) if run.progress is not None else {},
        "client_error_replies": {
            k: v
            for s in (join, steady)
            if s is not None
            for k, v in s.errors.items()
            if k.startswith("error:")
        },
        "decode": dict(run.service_stats.get("refused_on_decode", {})),
        "auth_callout": run.callout_refused,
    }
    summary.update(
        {
            "updates_per_s": updates_per_s,
            "baseline_updates_per_s": baseline,
            "broker_share_of_ceiling": (updates_per_s / baseline)
            if updates_per_s is not None and baseline
            else None,
            "rounds_updates_per_s": [
                {
                    "round": i + 1,
                    "baseline_updates_per_s": e.updates_acked_in_window / settings.measured_s
                    if e is not None
                    else None,
                    "updates_per_s": b.updates_acked_in_window / settings.measured_s,
                    "broker_share_of_ceiling": (
                        b.updates_acked_in_window / e.updates_acked_in_window
                        if e is not None and e.updates_acked_in_window
                        else None
                    ),
                }
                for i, (b, e) in enumerate(
                    zip(run.steady_rounds, run.echo_rounds or [None] * len(run.steady_rounds), strict=False)
                )
            ],
            "joins_per_s": (join.admitted / join.wall_s) if join is not None and join.wall_s > 0 else None,
            "clients_admitted": admitted,
            "join_seconds": join.wall_s if join is not None else None,
            "p50_ms": latency.get("p50_ms"),
            "p90_ms": latency.get("p90_ms"),
            "p99_ms": latency.get("p99_ms"),
            "p999_ms": latency.get("p999_ms"),
            "max_ms": latency.get("max_ms"),
            "latency_ms": {
                name: s.latency.summary_ms()
                for name, s in (("echo", echo), ("join", join), ("steady", steady))
                if s is not None
            },
            "broker_rss_mb": _mb(max((r["broker_rss"] for r in steady_rows), default=None)),
            "server_rss_mb": _mb(max((r["server_rss"] for r in steady_rows), default=None)),
            "generators_rss_mb": _mb(max((r["generators_rss"] for r in steady_rows), default=None)),
            "broker_rss_mb_before_joins": _mb(memory.get("broker_rss_before_joins")),
            "broker_rss_mb_after_joins": _mb(memory.get("broker_rss_after_joins")),
            "broker_rss_mb_end": _mb(memory.get("broker_rss_end")),
            "broker_state_bytes_per_client": state,
            "broker_state_bytes_per_client_after_updates": state_after_updates,
            "broker_rss_slope_mb_per_min_steady": _slope_mb_per_min(steady_rows, "broker_rss"),
            "server_rss_slope_mb_per_min_steady": _slope_mb_per_min(steady_rows, "server_rss"),
            "server_bytes_per_connection": per_connection["server"],
            "generator_bytes_per_connection": per_connection["generators"],
            "broker_cpu_pct": monitor.cpu_pct("steady", "broker") if monitor else None,
            "server_cpu_pct": monitor.cpu_pct("steady", "server") if monitor else None,
            "generators_cpu_pct": monitor.cpu_pct("steady", "generators") if monitor else None,
            "baseline_server_cpu_pct": monitor.cpu_pct("echo", "server") if monitor else None,
            "baseline_generators_cpu_pct": monitor.cpu_pct("echo", "generators") if monitor else None,
            "cpu_by_phase": monitor.phases if monitor else {},
            "errors": int(sum(errors.values())),
            "errors_by_kind": errors,
            "baseline_errors": echo.error_count if echo is not None else None,
            "baseline_errors_by_kind": dict(echo.errors) if echo is not None else None,
            "echo_answered": run.echo_answered,
            "lost_updates": accounting["lost"],
            "update_accounting": accounting,
            "rejected_by_reason": rejected,
            "validation_rounds_started": run.validation_rounds,
            "waits": steady.waits if steady is not None else None,
            "rejoins": (join.rejoins if join else 0) + (steady.rejoins if steady else 0),
            "progress": None
            if run.progress is None
            else {
                "updates_accepted": run.progress.updates_accepted,
                "version": run.progress.version,
                "active_clients": run.progress.active_clients,
                "penalties": run.progress.penalties,
                "evictions": run.progress.evictions,
                "validation_error": run.progress.validation_error,
            },
            "broker_service": run.service_stats,
            "auth_callout_granted": run.callout_granted,
            "server_counters": run.server_counters,
            "broker_connection_events": run.broker_connection_events,
            "nats_server_version": run.server_version,
        }
    )
    return summary


# ----------------------------------------------------------------------------- outputs

TIMELINE_COLUMNS = (
    "phase",
    "round",
    "second",
    "updates_per_s",
    "broker_rss_mb",
    "server_rss_mb",
    "broker_cpu_pct",
    "server_cpu_pct",
    "generators_cpu_pct",
)


def _timeline_rows(run: _Run, monitor: ResourceMonitor) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number in range(max(len(run.echo_rounds), len(run.steady_rounds))):
        for name, rounds in (("echo", run.echo_rounds), ("broker", run.steady_rounds)):
            if number >= len(rounds) or rounds[number].timeline is None:
                continue
            timeline = rounds[number].timeline
            t_start, length = timeline.start, run.settings.slice_s
            samples = [s for s in monitor.samples if t_start - 1.0 <= s["t"] <= t_start + length + 1.0]
            for second in range(math.ceil(length)):
                width = min(1.0, length - second)
                row: dict[str, Any] = {
                    "phase": name,
                    "round": number + 1,
                    "second": second,
                    "updates_per_s": timeline.counts[second] / width,
                }
                begin = [s for s in samples if s["t"] <= t_start + second]
                end = [s for s in samples if s["t"] <= t_start + second + width]
                if end:
                    row["broker_rss_mb"] = end[-1]["broker_rss"] / 2**20
                    row["server_rss_mb"] = end[-1]["server_rss"] / 2**20
                if begin and end and end[-1]["t"] > begin[-1]["t"]:
                    dt = end[-1]["t"] - begin[-1]["t"]
                    for who in ("broker", "server", "generators"):
                        row[f"{who}_cpu_pct"] = (
                            100 * (end[-1][f"{who}_cpu_s"] - begin[-1][f"{who}_cpu_s"]) / dt
                        )
                rows.append(row)
    return rows


def write_timeline(path: Path, run: _Run, monitor: ResourceMonitor) -> None:
    """Write per-second updates/s of each echo ("echo") and steady ("broker") slice, with resources.

    RSS and CPU come from the 1 s samples around each second, so a row's CPU may be blank
    when no two samples bracket it.
    """
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=TIMELINE_COLUMNS)
        writer.writeheader()
        for row in _timeline_rows(run, monitor):
            writer.writerow({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in row.items()})


def write_latency(path: Path, run: _Run) -> None:
    """Write round-trip percentiles (ms) of the echo, join and steady phases."""
    columns = ("phase", "count", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for name, stats in (("echo", run.echo), ("join", run.join), ("steady", run.steady)):
            if stats is None:
                continue
            values = stats.latency.summary_ms()
            writer.writerow([name, values["count"], *(f"{values[c]:.3f}" for c in columns[2:])])


def plot_load(path: Path, run: _Run, monitor: ResourceMonitor, summary: dict[str, Any]) -> None:
    """Plot updates/s over time (broker vs echo), latency percentiles and memory (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_lat, ax_mem) = plt.subplots(1, 3, figsize=(15, 4.2), dpi=110)
    per_slice = math.ceil(run.settings.slice_s)
    for rounds, label in ((run.echo_rounds, "echo baseline"), (run.steady_rounds, "broker")):
        counts = [r.timeline.counts[:per_slice] for r in rounds if r.timeline is not None]
        if counts:
            values = np.concatenate(counts)
            ax_rate.plot(np.arange(values.size) + 0.5, values, marker=".", label=label)
    for number in range(1, run.settings.rounds):
        ax_rate.axvline(number * per_slice, color="grey", linewidth=0.5)
    ax_rate.set_xlabel("second of the phase (the rounds' slices in order)")
    ax_rate.set_ylabel("updates acked per second")
    share = summary.get("broker_share_of_ceiling")
    ax_rate.set_title(
        f"{run.settings.clients:,} clients, {run.settings.connections} connections"
        + (f": broker {100 * share:.0f}% of echo" if share else ""),
        fontsize=9,
    )
    ax_rate.set_ylim(bottom=0)
    ax_rate.grid(alpha=0.3)
    ax_rate.legend(fontsize=8)

    names = ("p50_ms", "p90_ms", "p99_ms", "p999_ms")
    phases = [
        (n, s) for n, s in (("echo", run.echo), ("join", run.join), ("broker", run.steady)) if s is not None
    ]
    width = 0.8 / max(len(phases), 1)
    for i, (name, stats) in enumerate(phases):
        values = stats.latency.summary_ms()
        ax_lat.bar(np.arange(len(names)) + i * width, [values[n] for n in names], width, label=name)
    ax_lat.set_xticks(np.arange(len(names)) + width * (len(phases) - 1) / 2)
    ax_lat.set_xticklabels([n.removesuffix("_ms") for n in names])
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("round trip (ms)")
    ax_lat.set_title("request latency percentiles", fontsize=9)
    ax_lat.grid(alpha=0.3, axis="y")
    ax_lat.legend(fontsize=8)

    t0 = monitor.samples[0]["t"] if monitor.samples else 0.0
    times = [s["t"] - t0 for s in monitor.samples]
    ax_mem.plot(times, [s["broker_rss"] / 2**20 for s in monitor.samples], label="broker process")
    ax_mem.plot(times, [s["server_rss"] / 2**20 for s in monitor.samples], label="nats-server")
    previous = None
    for sample, t in zip(monitor.samples, times, strict=True):
        if sample["phase"] != previous and sample["phase"] != "between":
            ax_mem.axvline(t, color="grey", linewidth=0.5)
            ax_mem.text(t, 0, sample["phase"], rotation=90, fontsize=6, va="bottom")
        previous = sample["phase"]
    ax_mem.set_xlabel("seconds since start")
    ax_mem.set_ylabel("RSS (MB)")
    ax_mem.set_title("memory", fontsize=9)
    ax_mem.grid(alpha=0.3)
    ax_mem.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_scaling(path: Path, summaries: list[dict[str, Any]]) -> None:
    """Write one row per run of a multi-size invocation."""
    columns = (
        "clients",
        "status",
        "connections",
        "updates_per_s",
        "baseline_updates_per_s",
        "broker_share_of_ceiling",
        "joins_per_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "broker_rss_mb",
        "server_rss_mb",
        "broker_state_bytes_per_client",
        "errors",
        "lost_updates",
    )
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for summary in summaries:
            writer.writerow([summary.get(c) for c in columns])


# ----------------------------------------------------------------------------- command line


def _client_counts(text: str) -> list[int]:
    try:
        counts = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError("client counts must be positive")
    return counts


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``load`` subcommand to ``sub``."""
    p = sub.add_parser("load", help="load-test one broker with many logical clients against an echo baseline")
    p.add_argument(
        "--clients",
        type=_client_counts,
        default=[1000],
        help="logical clients; several sizes separated by commas run one after the other (default 1000)",
    )
    p.add_argument(
        "--connections",
        choices=("own", "shared"),
        default="own",
        help="one NATS connection per client (default), or a few shared per generator process",
    )
    p.add_argument(
        "--connections-per-process", type=int, default=4, help="shared mode: connections per generator"
    )
    p.add_argument("--processes", type=int, default=2, help="generator processes (default 2)")
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of broker load and of echo load, each split over --rounds slices (default 10)",
    )
    p.add_argument(
        "--client-work",
        choices=("fixed", "dp"),
        default="fixed",
        help="per update: a fixed tiny delta (default) or one DP-SGD step on a small shard",
    )
    p.add_argument(
        "--features", type=int, default=24, help="model dimension d (default 24, the credit model)"
    )
    p.add_argument("--validation-rows", type=int, default=2000, help="rows of the synthetic validation set")
    p.add_argument("--admission-bits", type=int, default=4, help="admission puzzle difficulty (default 4)")
    p.add_argument("--update-bits", type=int, default=2, help="per-update puzzle difficulty (default 2)")
    p.add_argument(
        "--validation-rate", type=float, default=0.1, help="RONI round rate (0 turns validation off)"
    )
    p.add_argument("--k", type=int, default=2, help="every client's k (the k gate is on)")
    p.add_argument("--no-baseline", action="store_true", help="skip the echo baseline")
    p.add_argument(
        "--rounds", type=int, default=2, help="echo and broker slices alternate this many times (default 2)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=0.2,
        help="share of each slice before acks count toward the rates (default 0.2)",
    )
    p.add_argument("--think", type=float, default=0.0, help="seconds a client pauses before each update")
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--max-connect-s", type=float, default=600.0, help="time cap of the connect phase")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", help="output folder (default runs/load-<timestamp>)")
    p.set_defaults(handler=_load)


def _load(args: argparse.Namespace) -> int:
    from .exit_codes import ExitCode
    from .outputs import write_json

    out = Path(args.out) if args.out else Path("runs") / datetime.now().strftime("load-%Y%m%d-%H%M%S")
    summaries = []
    status = ExitCode.OK
    for clients in args.clients:
        try:
            settings = LoadSettings(
                clients=clients,
                connections=args.connections,
                connections_per_process=args.connections_per_process,
                processes=min(args.processes, clients),
                duration_s=args.duration,
                client_work=args.client_work,
                n_features=args.features,
                validation_rows=args.validation_rows,
                admission_bits=args.admission_bits,
                update_bits=args.update_bits,
                validation_rate=args.validation_rate,
                k=min(args.k, clients),
                baseline=not args.no_baseline,
                rounds=args.rounds,
                warmup_fraction=args.warmup,
                think_s=args.think,
                request_timeout_s=args.request_timeout,
                max_connect_s=args.max_connect_s,
                seed=args.seed,
            )
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return ExitCode.USAGE
        folder = out if len(args.clients) == 1 else out / f"clients-{clients}"
        try:
            summary = run_load(settings, folder)
        except LoadError as error:
            print(f"error: {clients:,} clients: {error} (partial summary in {folder})", file=sys.stderr)
            return ExitCode.INTERNAL
        summaries.append(summary)
        print(_one_line(summary, folder))
        if summary["status"] == "capped":
            status = ExitCode.USAGE
    if len(args.clients) > 1:
        write_scaling(out / "scaling.csv", summaries)
        write_json(out / "summaries.json", summaries)
    return status


def _one_line(summary: dict[str, Any], folder: Path) -> str:
    if summary["status"] == "capped":
        return f"{summary['clients']:,} clients: {summary['message']}"

    def num(key: str, fmt: str = ",.0f") -> str:
        value = summary.get(key)
        return "n/a" if value is None else format(value, fmt)

    share = summary.get("broker_share_of_ceiling")
    return (
        f"{summary['clients']:,} clients ({summary['connections']} connections): "
        f"{num('updates_per_s')} updates/s, echo {num('baseline_updates_per_s')}/s"
        f"{'' if share is None else f' (broker {100 * share:.0f}%)'}, joins {num('joins_per_s')}/s, "
        f"p50 {num('p50_ms', '.1f')} ms, p99 {num('p99_ms', '.1f')} ms; "
        f"broker RSS {num('broker_rss_mb', '.0f')} MB, "
        f"nats-server {num('server_rss_mb', '.0f')} MB; {summary['errors']} errors, "
        f"{summary['lost_updates']} lost; outputs in {folder}"
    )
