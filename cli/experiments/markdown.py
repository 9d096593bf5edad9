"""Markdown for reports: tables, and one experiment's section (figures, numbers, paper beside ours).

The same section is an experiment folder's own ``report.md`` and one chapter of the
combined report of ``tormentor-engine report``; figure links are written relative to the
folder the report lands in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import Experiment

__all__ = ["epsilon_text", "render_experiment", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return a GitHub-flavoured markdown table (``|`` in cells escaped)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def epsilon_text(epsilon: Any) -> str:
    """ε for tables: ``∞`` for no privacy, else its value."""
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        return str(epsilon)
    return "∞" if value == float("inf") else f"{value:g}"


def _settings_block(settings: Any) -> str:
    import yaml

    return (
        "```yaml\n" + yaml.safe_dump(settings, sort_keys=False, default_flow_style=None, width=100) + "```\n"
    )


def render_experiment(
    experiment: Experiment,
    meta: dict,
    records: Sequence[dict],
    folder: Path,
    report_dir: Path,
    *,
    level: int = 2,
) -> str:
    """Return the markdown section of one experiment.

    Parameters
    ----------
    experiment : Experiment
        Supplies the title, method, tables, comparisons and differences.
    meta : dict
        Its ``experiment.json``.
    records : sequence of dict
        Its ``results.json``.
    folder : Path
        The experiment's output folder (where its PNG files are).
    report_dir : Path
        Where the report is written (figure links are relative to it).
    level : int
        Heading level of the section title.
    """
    h = "#" * level
    parts = [f"{h} {experiment.name}: {experiment.title}\n"]
    parts.append(
        f"Paper: {experiment.paper_ref}. Scale: `{meta.get('scale', '?')}`; seeds: {meta.get('seeds')}; "
        f"{len(records)} records; wall time {meta.get('wall_s', float('nan')):.0f} s on this machine "
        f"({_machine(meta)}).\n"
    )
    parts.append(f"{h}# How it ran\n\n{experiment.method}\n")
    for name in meta.get("figures", []):
        link = Path(os.path.relpath(Path(folder) / name, report_dir)).as_posix()
        parts.append(f"![{experiment.name}: {name}]({link})\n")
    parts.append(f"{h}# Our numbers (median [min–max] over seeds)\n")
    parts.extend(experiment.tables(records))
    rows = experiment.compare(records)
    if rows:
        parts.append(f"{h}# The paper beside ours\n")
        parts.append(
            table(
                ("claim", "paper", "ours", "verdict"), [(r.claim, r.paper, r.ours, r.verdict) for r in rows]
            )
        )
    notes = meta.get("notes") or []
    if notes:
        parts.append(f"{h}# Observations\n\n" + "".join(f"- {note}\n" for note in notes))
    if experiment.differences:
        parts.append(
            f"{h}# Honest differences from the paper\n\n"
            + "".join(f"- {d}\n" for d in experiment.differences)
        )
    files = [*meta.get("csv", []), "results.json", "experiment.json"]
    parts.append(
        f"{h}# Settings\n\nData files: {', '.join(f'`{f}`' for f in files)}. Overrides: "
        f"{meta.get('overrides') or 'none'}.\n\n"
    )
    parts.append(_settings_block(meta.get("settings", {})))
    return "\n".join(parts)


def _machine(meta: dict) -> str:
    machine = meta.get("machine") or {}
    load = machine.get("load_average_before") or []
    cpus = machine.get("cpus", "?")
    text = f"{cpus} CPUs, shared"
    if load:
        text += f", load average {load[0]:.1f} at the start"
    return text + ": timings are noisy"
