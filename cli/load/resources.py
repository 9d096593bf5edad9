"""Resource samples of one load run: RSS and CPU seconds of the broker, nats-server and the generators."""

from __future__ import annotations

import asyncio
import time
from typing import Any


class ResourceMonitor:
    """Samples RSS and CPU seconds of the broker, nats-server and the generators.

    Parameters
    ----------
    broker_pid, server_pid : int
        This process, and nats-server.
    every_s : float
        Sampling interval of :meth:`run`.
    """

    def __init__(self, broker_pid: int, server_pid: int, *, every_s: float = 1.0) -> None:
        import psutil

        self._psutil = psutil
        self.broker = psutil.Process(broker_pid)
        self.server = psutil.Process(server_pid)
        self.generators: list[Any] = []
        self.every_s = every_s
        self.started = time.monotonic()
        self.phase = "start"
        self.samples: list[dict[str, Any]] = []
        self.phases: dict[str, dict[str, float]] = {}
        #: The sample taken when each phase first started.
        self.boundaries: dict[str, dict[str, Any]] = {}
        self._phase_start: dict[str, Any] | None = None

    def add_generators(self, pids: list[int]) -> None:
        """Follow the generator processes too."""
        self.generators = [self._psutil.Process(pid) for pid in pids]

    @staticmethod
    def _cpu(process: Any) -> float:
        try:
            times = process.cpu_times()
            return float(times.user + times.system)
        except Exception:  # exited
            return 0.0

    @staticmethod
    def _rss(process: Any) -> int:
        try:
            return int(process.memory_info().rss)
        except Exception:
            return 0

    def sample(self) -> dict[str, Any]:
        """Take and keep one sample now."""
        row = {
            "t": time.monotonic(),
            "phase": self.phase,
            "broker_rss": self._rss(self.broker),
            "server_rss": self._rss(self.server),
            "generators_rss": sum(self._rss(p) for p in self.generators),
            "broker_cpu_s": self._cpu(self.broker),
            "server_cpu_s": self._cpu(self.server),
            "generators_cpu_s": sum(self._cpu(p) for p in self.generators),
        }
        self.samples.append(row)
        return row

    def mark(self, phase: str) -> dict[str, Any]:
        """End the current phase (its CPU use adds up per name) and start ``phase``; return the sample."""
        row = self.sample()
        if self._phase_start is not None:
            begin = self._phase_start
            usage = self.phases.setdefault(
                begin["phase_name"],
                dict.fromkeys(("wall_s", "broker_cpu_s", "server_cpu_s", "generators_cpu_s"), 0.0),
            )
            usage["wall_s"] += row["t"] - begin["t"]
            for key in ("broker_cpu_s", "server_cpu_s", "generators_cpu_s"):
                usage[key] += row[key] - begin[key]
        self.phase = phase
        self._phase_start = {**row, "phase_name": phase}
        self.boundaries.setdefault(phase, row)
        return row

    async def run(self, stop_after_s: float) -> None:
        """Sample every ``every_s`` until cancelled (or ``stop_after_s`` passed)."""
        deadline = time.monotonic() + stop_after_s
        while time.monotonic() < deadline:
            await asyncio.sleep(self.every_s)
            self.sample()

    def cpu_pct(self, phase: str, who: str) -> float | None:
        """CPU use of ``who`` (broker, server, generators) over ``phase``, in % of one core."""
        usage = self.phases.get(phase)
        if not usage or usage["wall_s"] <= 0:
            return None
        return 100.0 * usage[f"{who}_cpu_s"] / usage["wall_s"]

    def during(self, phase: str) -> list[dict[str, Any]]:
        """The samples taken during ``phase``."""
        return [row for row in self.samples if row["phase"] == phase]
