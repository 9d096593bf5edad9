"""Error curves: from a run's trace to a step function on a common grid, and bands over seeds.

A run's trace samples the global model at irregular moments (every N model versions in
the simulator, every few tenths of a second over the real transport). To take a median
over seeds, each curve is read as a step function (the error of the latest sample at or
before x) on one grid; x before the first sample is NaN. Plots then draw the median
line and a min–max band.

The all-zero initial model has no prediction (every margin is 0, which counts as an
error: 100 %), so curves start at the first accepted update: callers drop version 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tormentor.engine import kernels
from tormentor.engine.simulation import TracePoint

__all__ = ["Band", "Curve", "band", "curve_from_trace", "tail_mean", "time_average"]


@dataclass(frozen=True)
class Curve:
    """A sampled curve: ``x`` increasing (updates or seconds), ``y`` 0-1 errors, float64 (n,).

    ``end`` (optional) is where the run stopped: past it the curve has no value (NaN)
    instead of holding its last sample.
    """

    x: np.ndarray
    y: np.ndarray
    end: float | None = None

    def __post_init__(self) -> None:
        if self.x.shape != self.y.shape or self.x.ndim != 1:
            raise ValueError("x and y must be 1-D arrays of the same length")

    def on_grid(self, grid: np.ndarray) -> np.ndarray:
        """Return the step-function value at each grid point (NaN before the first sample)."""
        if self.x.size == 0:
            return np.full(grid.shape, np.nan)
        index = np.searchsorted(self.x, grid, side="right") - 1
        values = self.y[np.clip(index, 0, None)]
        inside = index >= 0 if self.end is None else (index >= 0) & (grid <= self.end)
        return np.where(inside, values, np.nan)


@dataclass(frozen=True)
class Band:
    """Median and min–max over seeds of curves on one ``grid``."""

    grid: np.ndarray
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray


def curve_from_trace(
    trace: Sequence[TracePoint], x_train: np.ndarray, y_train: np.ndarray, *, x: str = "version"
) -> Curve:
    """Training error of each traced model after the first update.

    Parameters
    ----------
    trace : sequence of TracePoint
        A simulation's trace.
    x_train, y_train : ndarray, shapes (n, d) and (n,)
        The whole training shard (paper 7.1: the hypothetical metric no client can compute).
    x : {"version", "time_s"}
        What the curve's x is: model versions (accepted updates) or virtual seconds.
    """
    if x not in ("version", "time_s"):
        raise ValueError(f"x must be 'version' or 'time_s', got {x!r}")
    points = [p for p in trace if p.version > 0]
    xs = np.array([float(getattr(p, x)) for p in points])
    ys = np.array([kernels.error_rate(np.array(p.weights), x_train, y_train) for p in points])
    return Curve(xs, ys)


def band(curves: Sequence[Curve], grid: np.ndarray) -> Band:
    """Return the median and min–max of ``curves`` on ``grid`` (NaN where no curve has a value)."""
    if not curves:
        raise ValueError("band needs at least one curve")
    stacked = np.vstack([c.on_grid(grid) for c in curves])
    with np.errstate(all="ignore"):
        valid = ~np.isnan(stacked)
        any_valid = valid.any(axis=0)
        filled = np.where(valid, stacked, np.nan)
        median = np.full(grid.shape, np.nan)
        low = np.full(grid.shape, np.nan)
        high = np.full(grid.shape, np.nan)
        if any_valid.any():
            median[any_valid] = np.nanmedian(filled[:, any_valid], axis=0)
            low[any_valid] = np.nanmin(filled[:, any_valid], axis=0)
            high[any_valid] = np.nanmax(filled[:, any_valid], axis=0)
    return Band(grid, median, low, high)


def tail_mean(curve: Curve, fraction: float = 0.1) -> float:
    """Mean of the samples in the last ``fraction`` of the curve's x range (a less noisy "final")."""
    if curve.x.size == 0:
        return float("nan")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    start = curve.x[-1] - fraction * (curve.x[-1] - curve.x[0])
    return float(np.mean(curve.y[curve.x >= start]))


def time_average(curve: Curve, end: float) -> float:
    """Area under the step function from the first sample to ``end``, divided by that span."""
    if curve.x.size == 0 or end <= curve.x[0]:
        return float("nan")
    edges = np.append(curve.x[curve.x < end], end)
    widths = np.diff(edges)
    return float(np.sum(curve.y[: widths.size] * widths) / (end - curve.x[0]))
