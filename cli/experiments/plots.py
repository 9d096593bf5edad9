"""PNG figures shaped like the paper's: a median line with a min–max band per series.

One function draws every experiment's figure from plain data: panels side by side,
each with lines (median and band over seeds), optional markers (the paper's published
points) and horizontal reference lines (the centralised model, the majority class).
matplotlib runs headless (Agg).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Line", "Markers", "Panel", "RefLine", "draw", "epsilon_positions"]


@dataclass(frozen=True)
class Line:
    """One series: median with a min–max band, all arrays of shape (n,)."""

    label: str
    x: np.ndarray
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    points: bool = False  # draw markers at the samples (for few x values)


@dataclass(frozen=True)
class Markers:
    """Published points to compare with (drawn as hollow markers)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]


@dataclass(frozen=True)
class RefLine:
    """A horizontal reference line at ``y`` (same units as the data)."""

    label: str
    y: float
    style: str = "--"


@dataclass(frozen=True)
class Panel:
    """One axes: a title, lines, the paper's markers and reference lines."""

    title: str
    lines: Sequence[Line]
    markers: Sequence[Markers] = field(default_factory=tuple)
    references: Sequence[RefLine] = field(default_factory=tuple)
    xlabel: str | None = None  # this panel's x label (default: the figure's)
    logx: bool | None = None  # this panel's x scale (default: the figure's)


def draw(
    path: Path,
    panels: Sequence[Panel],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    percent: bool = True,
    logx: bool = False,
    logy: bool = False,
    xticks: tuple[Sequence[float], Sequence[str]] | None = None,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Draw ``panels`` side by side into the PNG ``path``; return the path.

    Parameters
    ----------
    path : Path
        The PNG file to write.
    panels : sequence of Panel
        Axes, left to right (sharing the y axis).
    xlabel, ylabel : str
        Axis labels (a panel's own ``xlabel`` wins).
    title : str
        The figure's title.
    percent : bool
        Data are 0-1 fractions; show them as percentages.
    logx, logy : bool
        Logarithmic axes (a panel's own ``logx`` wins).
    xticks : (positions, labels) or None
        Explicit x ticks (e.g. an "∞" position for ε = ∞).
    ylim : (low, high) or None
        y range in the data's units (fractions when ``percent``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("draw needs at least one panel")
    scale = 100.0 if percent else 1.0
    width = 5.0 * len(panels) + 1.0
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.2), dpi=110, squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes[0], panels, strict=True):
        for i, line in enumerate(panel.lines):
            colour = colours[i % len(colours)]
            ax.plot(
                line.x,
                scale * line.median,
                color=colour,
                label=line.label,
                marker="o" if line.points else None,
                markersize=4,
            )
            ax.fill_between(
                line.x, scale * line.low, scale * line.high, color=colour, alpha=0.18, linewidth=0
            )
        for j, markers in enumerate(panel.markers):
            ax.scatter(
                markers.x,
                [scale * y for y in markers.y],
                facecolors="none",
                edgecolors=colours[j % len(colours)],
                marker="s",
                s=45,
                label=markers.label,
                zorder=5,
            )
        for ref in panel.references:
            ax.axhline(scale * ref.y, color="grey", linestyle=ref.style, linewidth=1, label=ref.label)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel if panel.xlabel is not None else xlabel)
        if panel.logx if panel.logx is not None else logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        if xticks is not None:
            ax.set_xticks(list(xticks[0]), list(xticks[1]))
        if ylim is not None:
            ax.set_ylim(scale * ylim[0], scale * ylim[1])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def epsilon_positions(epsilons: Sequence[float]) -> tuple[np.ndarray, list[str]]:
    """Return x positions and tick labels for privacy levels (ε = ∞ one step past the largest finite ε)."""
    finite = sorted(e for e in epsilons if np.isfinite(e))
    step = (finite[-1] - finite[0]) / max(len(finite) - 1, 1) if len(finite) > 1 else 1.0
    beyond = (finite[-1] + step) if finite else 1.0
    positions = np.array([e if np.isfinite(e) else beyond for e in epsilons], dtype=np.float64)
    labels = [f"{e:g}" if np.isfinite(e) else "∞" for e in epsilons]
    return positions, labels
