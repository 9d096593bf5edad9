"""What an experiment is, and running one: settings in, the standard output folder out.

An :class:`Experiment` names a paper figure or table, says how it runs (in process on
the simulator's virtual clock, or over the real transport), and supplies four pure
pieces: ``execute`` (run every point and seed, write CSV and PNG files, return the
records), ``tables`` and ``compare`` (markdown tables and the paper-vs-ours rows, both
computed from the records alone, so ``tormentor-engine report`` can rebuild them from
``results.json``), and ``differences`` (what is honestly not the paper's setting).

:func:`run_experiment` writes, into one folder::

    results.json     one record per point and seed (settings + outcomes)
    experiment.json  name, scale, settings, seeds, wall time, machine
    *.csv, *.png     the curves and figures
    report.md        the numbers, the settings, the seeds, the paper beside ours
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tormentor.engine import kernels

from .markdown import render_experiment
from .results import write_experiment, write_results
from .settings import config_path, load_scale, settings_to_mapping

__all__ = [
    "Execution",
    "Experiment",
    "PaperRow",
    "Verdict",
    "default_out_dir",
    "run_experiment",
    "stderr_log",
]

Log = Callable[[str], None]


class Verdict:
    """The words a paper-vs-ours row may end with."""

    AGREES = "agrees"
    DIFFERS = "differs"
    CONTRADICTS = "contradicts"
    NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class PaperRow:
    """One published claim beside our number and a verdict (:class:`Verdict`)."""

    claim: str
    paper: str
    ours: str
    verdict: str


@dataclass(frozen=True)
class Execution:
    """What ``execute`` produced: the records and the files it wrote (names inside the folder)."""

    records: list[dict]
    figures: list[str] = field(default_factory=list)
    csv: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Experiment:
    """A reproducible experiment of the paper's section 7.

    Attributes
    ----------
    name : str
        Command-line name (``fig5``) and YAML file stem.
    title : str
        One line for the report.
    paper_ref : str
        Where it is in the paper (``Figure 10, section 7.5``).
    method : str
        How it runs and why (markdown paragraph).
    settings_type : type
        Frozen dataclass of its settings.
    execute : callable(settings, out_dir, log) -> Execution
    tables : callable(records) -> list of markdown str
    compare : callable(records) -> list of PaperRow
    differences : tuple of str
        Honest differences from the paper's setting.
    """

    name: str
    title: str
    paper_ref: str
    method: str
    settings_type: type
    execute: Callable[[Any, Path, Log], Execution]
    tables: Callable[[Sequence[dict]], list[str]]
    compare: Callable[[Sequence[dict]], list[PaperRow]]
    differences: tuple[str, ...] = ()


def stderr_log(message: str) -> None:
    """Print a progress line to stderr."""
    print(message, file=sys.stderr, flush=True)


def _quiet(message: str) -> None:
    return None


def default_out_dir(name: str) -> Path:
    """``runs/experiments/<name>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / "experiments" / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_experiment(
    experiment: Experiment,
    *,
    scale: str = "full",
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    config: str | Path | None = None,
    log: Log | None = stderr_log,
) -> Path:
    """Run ``experiment`` at ``scale``; write its output folder; return the folder.

    Parameters
    ----------
    experiment : Experiment
        What to run.
    scale : str
        ``full`` (the paper's scale), ``quick``, or another scale of the YAML file.
    out : path or None
        Output folder (default :func:`default_out_dir`).
    overrides : sequence of str
        ``key.path=value`` changes to the scale's settings.
    config : path or None
        The YAML file (default ``configs/experiments/<name>.yaml``).
    log : callable(str) or None
        Progress lines (None = silent).

    Raises
    ------
    ConfigError
        Invalid settings (every problem listed).
    """
    settings = load_scale(
        experiment.settings_type, config or config_path(experiment.name), scale, list(overrides)
    )
    out_dir = Path(out) if out is not None else default_out_dir(experiment.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = log or _quiet
    load_before = os.getloadavg()
    started_at = datetime.now().isoformat(timespec="seconds")
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    say(f"{experiment.name}: {experiment.title} [{scale}] -> {out_dir}")
    execution = experiment.execute(settings, out_dir, say)
    wall = time.perf_counter() - wall_start
    write_results(out_dir, execution.records)
    mapping = settings_to_mapping(settings)
    meta = {
        "experiment": experiment.name,
        "title": experiment.title,
        "paper_ref": experiment.paper_ref,
        "scale": scale,
        "overrides": list(overrides),
        "settings": mapping,
        "seeds": mapping.get("seeds"),
        "records": len(execution.records),
        "figures": execution.figures,
        "csv": execution.csv,
        "notes": execution.notes,
        "started_at": started_at,
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu_start,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "kernel_backend": kernels.BACKEND,
        },
    }
    write_experiment(out_dir, meta)
    (out_dir / "report.md").write_text(
        render_experiment(experiment, meta, execution.records, out_dir, out_dir, level=1), encoding="utf-8"
    )
    say(f"{experiment.name}: done in {wall:.1f} s ({len(execution.records)} records)")
    return out_dir
