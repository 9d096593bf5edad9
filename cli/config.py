"""The run configuration: YAML, validated whole before anything starts.

A config file is a mapping whose sections mirror :class:`RunConfig`. Loading checks every
key against the schema (the dataclasses below and the engine's :class:`StoppingRule` and
:class:`Defences`) and collects *every* problem with its path before failing, e.g.::

    clients.epsilon: expected a number or null, got 'five'
    defences.roni_treshold: unknown key; allowed: admission_bits, adaptive_pow, ...
    task.aggregation: must be one of 'async', 'sync', got 'asynch'

``--set key.path=value`` overrides are applied to the raw mapping first; values are
parsed as YAML scalars (``0.5``, ``null``, ``true``, ``private``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tormentor.engine.protocol import Defences, StoppingRule

from .schema import ConfigError, from_mapping, to_mapping

__all__ = [
    "AttackersConfig",
    "ClientsConfig",
    "ConfigError",
    "DataConfig",
    "LearningRateConfig",
    "OutputConfig",
    "RunConfig",
    "TaskConfig",
    "TorConfig",
    "TransportConfig",
    "apply_overrides",
    "config_from_mapping",
    "config_to_mapping",
    "load_config",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the credit-card data is and how clients get their shares.

    path: folder holding creditcard.csv (or the file); null = $TORMENTOR_DATA, then the
    user cache filled by ``tormentor-engine data fetch``.
    """

    path: str | None = None
    train_fraction: float = 0.7
    shards: Literal["bootstrap", "disjoint"] = "disjoint"
    shard_size: int | None = None

    def __post_init__(self) -> None:
        if not 0.05 <= self.train_fraction <= 0.95:
            raise ValueError(f"data.train_fraction must be in [0.05, 0.95], got {self.train_fraction}")
        if self.shard_size is not None and self.shard_size < 1:
            raise ValueError(f"data.shard_size must be >= 1, got {self.shard_size}")


@dataclass(frozen=True)
class TaskConfig:
    """The curator's task, apart from the data schema (taken from the data)."""

    model: Literal["logistic"] = "logistic"
    min_clients: int = 1
    max_clients: int = 1000
    aggregation: Literal["async", "sync"] = "async"
    max_staleness: int | None = None
    client_timeout_s: float = 30.0


@dataclass(frozen=True)
class LearningRateConfig:
    """η_t = initial / (1 + t / decay_steps) ** power."""

    initial: float = 0.05
    decay_steps: float = 1000.0
    power: float = 0.5


@dataclass(frozen=True)
class ClientsConfig:
    """Honest clients: how many, and each one's private settings (all the same here)."""

    count: int = 10
    k: int = 1
    epsilon: float | None = None
    batch: int = 10
    clip: float = 1.0
    lam: float = 0.001
    learning_rate: LearningRateConfig = field(default_factory=LearningRateConfig)
    budget_epsilon: float | None = None
    budget_delta: float = 1e-5
    accounting: Literal["pld", "amplified", "basic"] = "pld"
    max_updates: int | None = None
    pow_threads: int = 1
    processes: int = 1
    connections: Literal["own", "shared"] = "own"
    start_spread_s: float = 0.0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"clients.count must be >= 0, got {self.count}")
        if self.k < 1:
            raise ValueError(f"clients.k must be >= 1, got {self.k}")
        if self.epsilon is not None and not self.epsilon > 0:
            raise ValueError(f"clients.epsilon must be > 0 or null (no privacy), got {self.epsilon}")
        if self.batch < 1:
            raise ValueError(f"clients.batch must be >= 1, got {self.batch}")
        if self.budget_epsilon is not None and self.epsilon is None:
            raise ValueError(
                "clients.budget_epsilon needs clients.epsilon (a budget without DP means nothing)"
            )
        if not 0 < self.budget_delta < 1:
            raise ValueError(f"clients.budget_delta must be in (0, 1), got {self.budget_delta}")
        if self.processes < 1 or self.pow_threads < 1:
            raise ValueError("clients.processes and clients.pow_threads must be >= 1")
        if self.start_spread_s < 0:
            raise ValueError("clients.start_spread_s must be >= 0")


@dataclass(frozen=True)
class AttackersConfig:
    """Adversarial clients that run beside the honest ones (label-flipping poisoners)."""

    poisoners: int = 0

    def __post_init__(self) -> None:
        if self.poisoners < 0:
            raise ValueError(f"attackers.poisoners must be >= 0, got {self.poisoners}")


@dataclass(frozen=True)
class TransportConfig:
    """The NATS bus: an embedded nats-server (url null) or an existing server or cluster."""

    nats_url: str | None = None
    request_timeout_s: float = 10.0
    max_batch: int = 1024
    max_payload_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.request_timeout_s > 0:
            raise ValueError("transport.request_timeout_s must be > 0")
        if self.max_batch < 1:
            raise ValueError("transport.max_batch must be >= 1")


@dataclass(frozen=True)
class TorConfig:
    """Tor in front of the broker: off, a private Tor network on 127.0.0.1, or a system tor."""

    mode: Literal["off", "private", "system"] = "off"
    control_port: int | None = None
    socks_port: int | None = None
    relays: int = 2
    authorities: int = 3
    bootstrap_timeout_s: float = 180.0
    connect_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.mode == "system" and (self.control_port is None or self.socks_port is None):
            raise ValueError("tor.mode 'system' needs tor.control_port and tor.socks_port")
        if self.relays + self.authorities < 4:
            raise ValueError("tor.relays + tor.authorities must be >= 4 (onion services need 4 relays)")


@dataclass(frozen=True)
class OutputConfig:
    """What the run writes and shows."""

    dir: str | None = None
    target_error: float | None = None
    trace_every_s: float = 0.5
    progress: Literal["auto", "on", "off"] = "auto"

    def __post_init__(self) -> None:
        if self.target_error is not None and not 0 < self.target_error < 1:
            raise ValueError("output.target_error must be in (0, 1) or null")
        if not self.trace_every_s > 0:
            raise ValueError("output.trace_every_s must be > 0")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``tormentor-engine run`` needs."""

    seed: int | None = None
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    stopping: StoppingRule = field(default_factory=StoppingRule)
    defences: Defences = field(default_factory=Defences)
    clients: ClientsConfig = field(default_factory=ClientsConfig)
    attackers: AttackersConfig = field(default_factory=AttackersConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    tor: TorConfig = field(default_factory=TorConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def config_from_mapping(data: Any, source: str = "config") -> RunConfig:
    """Validate a raw mapping; return the :class:`RunConfig` or raise :class:`ConfigError`."""
    return from_mapping(RunConfig, data, source)


def config_to_mapping(config: Any) -> Any:
    """Return the fully resolved config as plain data (for ``summary.json``)."""
    return to_mapping(config)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of ``data`` with ``key.path=value`` overrides applied.

    Raises
    ------
    ConfigError
        An override without ``=``, or a path through a non-mapping.
    """
    import copy

    import yaml

    result = copy.deepcopy(data) if data else {}
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected key.path=value")
            continue
        parts = key.strip().split(".")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"--set {key}: {part} is not a section")
                break
            node = child
        else:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    if problems:
        raise ConfigError(problems, "--set")
    return result


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply ``--set`` overrides, validate everything.

    Raises
    ------
    ConfigError
        Unreadable YAML or any invalid key or value (all of them listed).
    FileNotFoundError
        No file at ``path``.
    """
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"not valid YAML{where}: {getattr(error, 'problem', error)}"], str(path)) from None
    data = apply_overrides(data or {}, overrides or [])
    return config_from_mapping(data, str(path))
