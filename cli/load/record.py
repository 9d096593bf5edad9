"""What one load run produced (filled in as its phases go), and how the generators' phase stats merge."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .settings import LoadSettings


@dataclass
class Run:
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
        return merged("echo", self.echo_rounds) if self.echo_rounds else None

    @property
    def steady(self) -> Any:
        """The steady slices together."""
        return merged("steady", self.steady_rounds) if self.steady_rounds else None

    def add_service_stats(self, stats: Any) -> None:
        """Add one BrokerService's counters (a new service serves each slice)."""
        totals = self.service_stats
        for name in ("requests", "batches", "no_reply_subject", "internal_errors", "busy_s"):
            totals[name] = totals.get(name, 0) + getattr(stats, name)
        totals["largest_batch"] = max(totals.get("largest_batch", 0), stats.largest_batch)
        decode = totals.setdefault("refused_on_decode", {})
        for code, count in stats.refused_on_decode.items():
            decode[code] = decode.get(code, 0) + count


def merged(phase: str, parts: list[Any]) -> Any:
    """Merge generators' stats of one slice (timelines too) or slices (not their timelines)."""
    from tormentor.transport.load_clients import PhaseStats

    total = PhaseStats(phase)
    same_slice = len({None if p.timeline is None else p.timeline.start for p in parts}) == 1
    for part in parts:
        total.merge(part, timeline=same_slice)
    return total
