"""What a run writes: summary.json, trace.csv, model.json and loss.png."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TraceRow", "plot_trace", "time_to_target", "write_json", "write_model", "write_trace"]

TRACE_COLUMNS = ("time_s", "version", "train_error", "test_error", "validation_error", "active_clients")


@dataclass(frozen=True)
class TraceRow:
    """The global model's errors at one moment of a run (errors are 0-1 fractions)."""

    time_s: float
    version: int
    train_error: float
    test_error: float
    validation_error: float
    active_clients: int


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    return value


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (NaN becomes null, infinity "inf")."""
    path.write_text(json.dumps(_plain(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_trace(path: Path, rows: list[TraceRow]) -> None:
    """Write the trace as CSV with the columns of :data:`TRACE_COLUMNS`."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRACE_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    f"{row.time_s:.3f}",
                    row.version,
                    f"{row.train_error:.6f}",
                    f"{row.test_error:.6f}",
                    f"{row.validation_error:.6f}",
                    row.active_clients,
                ]
            )


def write_model(
    path: Path,
    weights: np.ndarray,
    feature_names: tuple[str, ...],
    mean: np.ndarray,
    std: np.ndarray,
    clip: float | None,
) -> None:
    """Write the model with what is needed to apply it to raw rows."""
    write_json(
        path,
        {
            "model": "logistic",
            "labels": {"+1": "default next month", "-1": "no default"},
            "weights": [float(w) for w in weights],
            "feature_names": list(feature_names),
            "preprocessing": {
                "standardise": "(raw - mean) / std for the 23 raw features, then a bias column of ones",
                "mean": [float(m) for m in mean],
                "std": [float(s) for s in std],
                "clip": clip,
            },
        },
    )


def time_to_target(rows: list[TraceRow], target: float | None) -> float | None:
    """Seconds until the training error first reached ``target`` (None if never or unset)."""
    if target is None:
        return None
    for row in rows:
        if row.train_error <= target:
            return row.time_s
    return None


def plot_trace(path: Path, rows: list[TraceRow], *, title: str, centralised: float | None = None) -> None:
    """Plot training, test and validation error against time (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    t = [r.time_s for r in rows]
    ax.plot(t, [100 * r.train_error for r in rows], label="training error")
    ax.plot(t, [100 * r.test_error for r in rows], label="test error", alpha=0.8)
    ax.plot(
        t,
        [100 * r.validation_error for r in rows],
        label="validation error (curator's set)",
        alpha=0.6,
        linestyle=":",
    )
    if centralised is not None:
        ax.axhline(
            100 * centralised,
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"centralised logistic regression ({100 * centralised:.1f}%)",
        )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("0-1 error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
