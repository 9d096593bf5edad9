"""What one load run is: its settings, the task and validation set it curates, the machine caps on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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


def task_spec(settings: LoadSettings) -> Any:
    """The task a load run curates: async aggregation, every defence on, room for rejoins."""
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


def validation_set(settings: LoadSettings) -> tuple[np.ndarray, np.ndarray]:
    """The curator's synthetic validation set, ``validation_rows`` rows (seeded by ``seed``)."""
    from tormentor.transport.load_clients import synthetic_shard

    rng = np.random.default_rng(None if settings.seed is None else [settings.seed, 7])
    return synthetic_shard(settings.n_features, settings.validation_rows, rng)


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
