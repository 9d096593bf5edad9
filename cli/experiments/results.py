"""Experiment records: ``results.json``, ``experiment.json``, CSV files and median/spread summaries.

``results.json`` is a list with one record per point and seed::

    {"experiment": "fig10", "seed": 2,
     "settings": {"poisoner_share": 0.5, "validator": true, "roni_threshold": 0.02, ...},
     "outcomes": {"final_train_error": 0.201, "penalties": 12, ...}}

Setting and outcome names follow the issue (``epsilon``, ``batch``, ``clients``, ``tor``,
``poisoner_share``, ``validator``, ``roni_threshold``, ``bystanders``, ``attacker_sends``;
``final_train_error``, ``time_to_target_s``, ``reconstruction_error``, ``penalties``).
Errors are 0-1 fractions; times are seconds. JSON has no infinity: ε = ∞ (no DP) is
written as the string ``"inf"`` and read back by :func:`as_number`.

Summaries group records by their settings and give, per outcome, the median and the
spread over seeds: min, max and the (population) standard deviation.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tormentor.cli.outputs import write_json

__all__ = [
    "Spread",
    "as_number",
    "group_by",
    "make_record",
    "normalised",
    "read_experiment",
    "read_results",
    "spread",
    "summarise",
    "write_csv",
    "write_experiment",
    "write_results",
]

RESULTS_NAME = "results.json"
EXPERIMENT_NAME = "experiment.json"


def make_record(experiment: str, seed: int, settings: Mapping[str, Any], outcomes: Mapping[str, Any]) -> dict:
    """Return one ``results.json`` record (copies of the mappings)."""
    return {"experiment": experiment, "seed": seed, "settings": dict(settings), "outcomes": dict(outcomes)}


def as_number(value: Any) -> float:
    """Return ``value`` as a float: ``"inf"`` → ∞, None → NaN (for JSON read back)."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("inf", "+inf", "infinity"):
            return math.inf
        if text == "-inf":
            return -math.inf
        return float(text)
    return float(value)


def normalised(records: Sequence[dict]) -> list[dict]:
    """Return the records with ``"inf"``/``"-inf"`` setting values (JSON read back) as floats."""

    def clean(value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "-inf", "infinity"):
            return as_number(value)
        return value

    return [{**r, "settings": {k: clean(v) for k, v in r["settings"].items()}} for r in records]


def write_results(out_dir: Path, records: list[dict]) -> Path:
    """Write ``results.json`` (NaN → null, ∞ → "inf"); return its path."""
    path = out_dir / RESULTS_NAME
    write_json(path, records)
    return path


def read_results(out_dir: Path) -> list[dict]:
    """Read an experiment folder's ``results.json``.

    Raises
    ------
    FileNotFoundError
        The folder has no ``results.json``.
    ValueError
        It is not a list of records with ``experiment``, ``seed``, ``settings`` and ``outcomes``.
    """
    path = Path(out_dir) / RESULTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir}: no {RESULTS_NAME} (not an experiment output folder)")
    records = json.loads(path.read_text(encoding="utf-8"))
    required = {"experiment", "seed", "settings", "outcomes"}
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and required <= r.keys() for r in records
    ):
        raise ValueError(f"{path}: expected a list of records with keys {sorted(required)}")
    return records


def write_experiment(out_dir: Path, meta: Mapping[str, Any]) -> Path:
    """Write ``experiment.json``: name, scale, settings, seeds, wall time, machine."""
    path = out_dir / EXPERIMENT_NAME
    write_json(path, dict(meta))
    return path


def read_experiment(out_dir: Path) -> dict:
    """Read ``experiment.json`` (an empty mapping if the folder has none)."""
    path = Path(out_dir) / EXPERIMENT_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Spread:
    """Median and spread of one outcome over seeds (NaN/None values are left out)."""

    median: float
    low: float
    high: float
    std: float
    n: int

    def percent(self, digits: int = 1) -> str:
        """Format a 0-1 fraction as ``median% [low–high]``."""
        if self.n == 0:
            return "–"
        return f"{100 * self.median:.{digits}f}% [{100 * self.low:.{digits}f}–{100 * self.high:.{digits}f}]"

    def seconds(self, digits: int = 1) -> str:
        """Format seconds as ``median s [low–high]``."""
        if self.n == 0:
            return "–"
        return f"{self.median:.{digits}f} s [{self.low:.{digits}f}–{self.high:.{digits}f}]"

    def plain(self, digits: int = 3) -> str:
        """Format as ``median [low–high]`` (whole numbers past ``digits`` digits, never exponents)."""
        if self.n == 0:
            return "–"

        def number(value: float) -> str:
            return f"{value:.0f}" if abs(value) >= 10 ** (digits - 1) else f"{value:.{digits}g}"

        return f"{number(self.median)} [{number(self.low)}–{number(self.high)}]"


def spread(values: Iterable[Any]) -> Spread:
    """Return the :class:`Spread` of ``values`` (None, NaN and non-numbers are skipped)."""
    numbers = []
    for value in values:
        try:
            number = as_number(value)
        except (TypeError, ValueError):
            continue
        if not math.isnan(number):
            numbers.append(number)
    if not numbers:
        return Spread(math.nan, math.nan, math.nan, math.nan, 0)
    array = np.array(numbers)
    return Spread(
        float(np.median(array)), float(array.min()), float(array.max()), float(array.std()), len(numbers)
    )


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def group_by(records: Sequence[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """Group records by the values of setting ``keys`` (in first-seen order)."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        settings = record["settings"]
        groups.setdefault(tuple(_key(settings.get(k)) for k in keys), []).append(record)
    return groups


def summarise(records: Sequence[dict], keys: Sequence[str], outcome: str) -> dict[tuple, Spread]:
    """Return {setting values: Spread of ``outcome`` over the group's seeds}."""
    return {
        group: spread(r["outcomes"].get(outcome) for r in members)
        for group, members in group_by(records, keys).items()
    }


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV with a header row; floats with 6 significant digits, ∞ as ``inf``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
    return path


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    if value is None:
        return ""
    return value
