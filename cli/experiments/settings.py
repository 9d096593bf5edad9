"""Experiment settings: the scales of ``configs/experiments/NAME.yaml``, validated whole.

Each experiment file has a ``full`` mapping (the paper's scale) and smaller scales
(``quick``, ...) that list only what they change; a scale is ``full`` deep-merged with
it. ``--set key.path=value`` overrides apply last. The merged mapping is checked against
the experiment's frozen dataclass, and *every* problem is reported with its path before
anything runs (:class:`tormentor.cli.config.ConfigError`), e.g.::

    epsilons[2]: expected a number, got 'five'
    client.lr_power: unknown key; allowed: batch, clip, lam, lr_decay_steps, lr_initial

This module also holds the settings several experiments share: where the data is and
how it is split (:class:`DataSettings`), the clients' private SGD settings
(:class:`StepSettings`) and the simulator's virtual costs (:class:`CostSettings`).
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tormentor.cli.config import ConfigError, apply_overrides
from tormentor.cli.schema import from_mapping, to_mapping
from tormentor.engine.data import CreditData, load_credit, resolve_data_path
from tormentor.engine.dp_sgd import LearningRate, StepConfig
from tormentor.engine.simulation import SimulationSettings

__all__ = [
    "CostSettings",
    "DataSettings",
    "StepSettings",
    "config_path",
    "load_scale",
    "merge",
    "settings_from_mapping",
    "settings_to_mapping",
]

#: The scale every other scale is merged onto.
BASE_SCALE = "full"


@dataclass(frozen=True)
class DataSettings:
    """Where creditcard.csv is and how it is split.

    Attributes
    ----------
    path : str or None
        Folder holding creditcard.csv (or the file); None = $TORMENTOR_DATA, then the
        user cache (``tormentor-engine data fetch``).
    split_seed : int
        Seed of the 70/30 permutation. Fixed across an experiment's seeds, so every run
        measures its training error on the same 21,000-row training shard.
    """

    path: str | None = None
    split_seed: int = 1

    def load(self) -> CreditData:
        """Return the prepared split (cached per path and seed within a process)."""
        return _load_cached(str(resolve_data_path(self.path)), self.split_seed)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, seed: int) -> CreditData:
    return load_credit(path, seed=seed)


@dataclass(frozen=True)
class StepSettings:
    """A client's DP-SGD settings apart from ε (see :class:`~tormentor.engine.dp_sgd.StepConfig`).

    Attributes
    ----------
    batch : int
        Batch size b.
    clip : float
        Per-example gradient clipping norm C.
    lam : float
        L2 regularisation λ (also used to fit the reference models).
    lr_initial, lr_decay_steps, lr_power : float
        η_t = lr_initial / (1 + t / lr_decay_steps) ** lr_power, t = the client's own step.
    """

    batch: int = 10
    clip: float = 1.0
    lam: float = 0.001
    lr_initial: float = 0.05
    lr_decay_steps: float = 1000.0
    lr_power: float = 0.5

    def __post_init__(self) -> None:
        # Fail at load time, with the field's name, rather than at the first step.
        self.step_config(math.inf)

    def step_config(self, epsilon: float, *, batch: int | None = None) -> StepConfig:
        """Return the engine's :class:`StepConfig` at ``epsilon`` (math.inf = no DP)."""
        return StepConfig(
            batch=self.batch if batch is None else batch,
            epsilon=epsilon,
            clip=self.clip,
            lam=self.lam,
            learning_rate=LearningRate(self.lr_initial, self.lr_decay_steps, self.lr_power),
        )


@dataclass(frozen=True)
class CostSettings:
    """Virtual costs of the in-process simulator (:class:`~tormentor.engine.simulation.SimulationSettings`).

    Attributes
    ----------
    compute_s : float
        Virtual seconds of one client step besides its puzzle.
    jitter : float
        Relative spread of ``compute_s`` (0 = every step takes exactly ``compute_s``).
    network_s : float
        One-way network delay of every message (seconds).
    hash_rate : float
        Virtual SHA-256 hashes per second of one client: a puzzle of ``bits`` costs
        ``2**bits / hash_rate`` virtual seconds. Each simulated client has its own, as if
        on its own machine.
    """

    compute_s: float = 0.002
    jitter: float = 0.5
    network_s: float = 0.0
    hash_rate: float = 5e6

    def __post_init__(self) -> None:
        self.simulation()

    def simulation(self, *, trace_every: int = 100, max_time_s: float = 1e6) -> SimulationSettings:
        """Return the engine's :class:`SimulationSettings` with these costs."""
        return SimulationSettings(
            compute_s=self.compute_s,
            jitter=self.jitter,
            hash_rate=self.hash_rate,
            network_s=self.network_s,
            trace_every=trace_every,
            max_time_s=max_time_s,
        )


# ----------------------------------------------------------------------------- files and scales


def config_path(name: str) -> Path:
    """Return ``configs/experiments/NAME.yaml`` of this checkout (else of the working folder)."""
    here = Path(__file__).resolve().parents[2] / "configs" / "experiments" / f"{name}.yaml"
    if here.is_file():
        return here
    return Path.cwd() / "configs" / "experiments" / f"{name}.yaml"


def merge(base: Any, change: Any) -> Any:
    """Return ``base`` deep-merged with ``change`` (mappings merge; anything else replaces)."""
    if isinstance(base, dict) and isinstance(change, dict):
        merged = copy.deepcopy(base)
        for key, value in change.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(change)


def load_scale(cls: type, path: str | Path, scale: str, overrides: list[str] | None = None) -> Any:
    """Read ``path``, merge ``scale`` onto ``full``, apply ``overrides``, validate as ``cls``.

    Parameters
    ----------
    cls : dataclass type
        The experiment's settings.
    path : str or Path
        The experiment's YAML file.
    scale : str
        ``full`` or the name of another top-level mapping of the file (``quick``).
    overrides : list of str
        ``key.path=value`` items (values parsed as YAML scalars).

    Raises
    ------
    ConfigError
        Unreadable YAML, an unknown scale, or any invalid key or value (all listed).
    FileNotFoundError
        No file at ``path``.
    """
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError([f"not valid YAML: {getattr(error, 'problem', error)}"], str(path)) from None
    if not isinstance(document, dict) or not isinstance(document.get(BASE_SCALE), dict):
        raise ConfigError([f"{BASE_SCALE}: the file must have a '{BASE_SCALE}' mapping"], str(path))
    if scale not in document or not isinstance(document[scale], dict):
        scales = ", ".join(sorted(k for k, v in document.items() if isinstance(v, dict)))
        raise ConfigError([f"{scale}: no such scale; the file has: {scales}"], str(path))
    mapping = document[BASE_SCALE] if scale == BASE_SCALE else merge(document[BASE_SCALE], document[scale])
    mapping = apply_overrides(mapping, overrides or [])
    return settings_from_mapping(cls, mapping, source=f"{path} [{scale}]")


def settings_from_mapping(cls: type, mapping: Any, source: str = "settings") -> Any:
    """Validate ``mapping`` as the dataclass ``cls``; raise :class:`ConfigError` listing every problem."""
    return from_mapping(cls, mapping, source)


def settings_to_mapping(settings: Any) -> Any:
    """Return a settings dataclass as plain data (tuples become lists, infinity stays a float)."""
    return to_mapping(settings, inf_as_text=False)
