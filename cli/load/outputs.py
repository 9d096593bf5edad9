"""The files of a load run besides summary.json: timeline.csv, latency.csv, load.png and scaling.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from .record import Run
from .resources import ResourceMonitor

TIMELINE_COLUMNS = (
    "phase",
    "round",
    "second",
    "updates_per_s",
    "broker_rss_mb",
    "server_rss_mb",
    "broker_cpu_pct",
    "server_cpu_pct",
    "generators_cpu_pct",
)


def _timeline_rows(run: Run, monitor: ResourceMonitor) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number in range(max(len(run.echo_rounds), len(run.steady_rounds))):
        for name, rounds in (("echo", run.echo_rounds), ("broker", run.steady_rounds)):
            if number >= len(rounds) or rounds[number].timeline is None:
                continue
            timeline = rounds[number].timeline
            t_start, length = timeline.start, run.settings.slice_s
            samples = [s for s in monitor.samples if t_start - 1.0 <= s["t"] <= t_start + length + 1.0]
            for second in range(math.ceil(length)):
                width = min(1.0, length - second)
                row: dict[str, Any] = {
                    "phase": name,
                    "round": number + 1,
                    "second": second,
                    "updates_per_s": timeline.counts[second] / width,
                }
                begin = [s for s in samples if s["t"] <= t_start + second]
                end = [s for s in samples if s["t"] <= t_start + second + width]
                if end:
                    row["broker_rss_mb"] = end[-1]["broker_rss"] / 2**20
                    row["server_rss_mb"] = end[-1]["server_rss"] / 2**20
                if begin and end and end[-1]["t"] > begin[-1]["t"]:
                    dt = end[-1]["t"] - begin[-1]["t"]
                    for who in ("broker", "server", "generators"):
                        row[f"{who}_cpu_pct"] = (
                            100 * (end[-1][f"{who}_cpu_s"] - begin[-1][f"{who}_cpu_s"]) / dt
                        )
                rows.append(row)
    return rows


def write_timeline(path: Path, run: Run, monitor: ResourceMonitor) -> None:
    """Write per-second updates/s of each echo ("echo") and steady ("broker") slice, with resources.

    RSS and CPU come from the 1 s samples around each second, so a row's CPU may be blank
    when no two samples bracket it.
    """
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=TIMELINE_COLUMNS)
        writer.writeheader()
        for row in _timeline_rows(run, monitor):
            writer.writerow({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in row.items()})


def write_latency(path: Path, run: Run) -> None:
    """Write round-trip percentiles (ms) of the echo, join and steady phases."""
    columns = ("phase", "count", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for name, stats in (("echo", run.echo), ("join", run.join), ("steady", run.steady)):
            if stats is None:
                continue
            values = stats.latency.summary_ms()
            writer.writerow([name, values["count"], *(f"{values[c]:.3f}" for c in columns[2:])])


def plot_load(path: Path, run: Run, monitor: ResourceMonitor, summary: dict[str, Any]) -> None:
    """Plot updates/s over time (broker vs echo), latency percentiles and memory (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_lat, ax_mem) = plt.subplots(1, 3, figsize=(15, 4.2), dpi=110)
    per_slice = math.ceil(run.settings.slice_s)
    for rounds, label in ((run.echo_rounds, "echo baseline"), (run.steady_rounds, "broker")):
        counts = [r.timeline.counts[:per_slice] for r in rounds if r.timeline is not None]
        if counts:
            values = np.concatenate(counts)
            ax_rate.plot(np.arange(values.size) + 0.5, values, marker=".", label=label)
    for number in range(1, run.settings.rounds):
        ax_rate.axvline(number * per_slice, color="grey", linewidth=0.5)
    ax_rate.set_xlabel("second of the phase (the rounds' slices in order)")
    ax_rate.set_ylabel("updates acked per second")
    share = summary.get("broker_share_of_ceiling")
    ax_rate.set_title(
        f"{run.settings.clients:,} clients, {run.settings.connections} connections"
        + (f": broker {100 * share:.0f}% of echo" if share else ""),
        fontsize=9,
    )
    ax_rate.set_ylim(bottom=0)
    ax_rate.grid(alpha=0.3)
    ax_rate.legend(fontsize=8)

    names = ("p50_ms", "p90_ms", "p99_ms", "p999_ms")
    phases = [
        (n, s) for n, s in (("echo", run.echo), ("join", run.join), ("broker", run.steady)) if s is not None
    ]
    width = 0.8 / max(len(phases), 1)
    for i, (name, stats) in enumerate(phases):
        values = stats.latency.summary_ms()
        ax_lat.bar(np.arange(len(names)) + i * width, [values[n] for n in names], width, label=name)
    ax_lat.set_xticks(np.arange(len(names)) + width * (len(phases) - 1) / 2)
    ax_lat.set_xticklabels([n.removesuffix("_ms") for n in names])
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("round trip (ms)")
    ax_lat.set_title("request latency percentiles", fontsize=9)
    ax_lat.grid(alpha=0.3, axis="y")
    ax_lat.legend(fontsize=8)

    t0 = monitor.samples[0]["t"] if monitor.samples else 0.0
    times = [s["t"] - t0 for s in monitor.samples]
    ax_mem.plot(times, [s["broker_rss"] / 2**20 for s in monitor.samples], label="broker process")
    ax_mem.plot(times, [s["server_rss"] / 2**20 for s in monitor.samples], label="nats-server")
    previous = None
    for sample, t in zip(monitor.samples, times, strict=True):
        if sample["phase"] != previous and sample["phase"] != "between":
            ax_mem.axvline(t, color="grey", linewidth=0.5)
            ax_mem.text(t, 0, sample["phase"], rotation=90, fontsize=6, va="bottom")
        previous = sample["phase"]
    ax_mem.set_xlabel("seconds since start")
    ax_mem.set_ylabel("RSS (MB)")
    ax_mem.set_title("memory", fontsize=9)
    ax_mem.grid(alpha=0.3)
    ax_mem.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_scaling(path: Path, summaries: list[dict[str, Any]]) -> None:
    """Write one row per run of a multi-size invocation."""
    columns = (
        "clients",
        "status",
        "connections",
        "updates_per_s",
        "baseline_updates_per_s",
        "broker_share_of_ceiling",
        "joins_per_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "broker_rss_mb",
        "server_rss_mb",
        "broker_state_bytes_per_client",
        "errors",
        "lost_updates",
    )
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for summary in summaries:
            writer.writerow([summary.get(c) for c in columns])
