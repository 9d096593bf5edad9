"""The summary of one load run: what summary.json holds."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import numpy as np

from .record import Run
from .resources import ResourceMonitor

NOISE_NOTE = (
    "2-core machine shared with other jobs; broker, nats-server and the load generators compete for "
    "the same cores: rates move by up to 2x between rounds, so compare the per-round shares"
)


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 2**20


def _slope_mb_per_min(rows: list[dict[str, Any]], key: str) -> float | None:
    if len(rows) < 3:
        return None
    t = np.array([r["t"] for r in rows])
    v = np.array([r[key] for r in rows], dtype=np.float64) / 2**20
    if np.ptp(t) <= 0:
        return None
    return float(np.polyfit(t - t[0], v, 1)[0] * 60.0)


def _update_accounting(run: Run) -> dict[str, int]:
    """Every update the clients saw acked, against what the broker counted."""
    rejected = dict(run.progress.updates_rejected) if run.progress is not None else {}
    accepted = run.progress.updates_accepted if run.progress is not None else 0
    counted = accepted + sum(rejected.get(reason, 0) for reason in ("roni", "stale", "after_stop"))
    acked = run.steady.updates_acked if run.steady is not None else 0
    timeouts = run.steady.errors.get("timeout", 0) if run.steady is not None else 0
    return {
        "client_updates_sent": run.steady.updates_sent if run.steady is not None else 0,
        "client_work_replies": acked,
        "broker_accepted": accepted,
        "broker_roni_rejected": rejected.get("roni", 0),
        "broker_stale_rejected": rejected.get("stale", 0),
        "broker_after_stop": rejected.get("after_stop", 0),
        "broker_counted": counted,
        "lost": max(0, acked - counted),
        "counted_but_reply_lost": max(0, counted - acked),
        "client_timeouts": timeouts,
    }


def summarise(run: Run, monitor: ResourceMonitor | None, *, caps: list[str] | None = None) -> dict[str, Any]:
    """Return the run's summary (what summary.json holds).

    Keys: ``clients``, ``updates_per_s`` (updates the clients saw acked with Work during
    the measured part of the steady slices, per second), ``baseline_updates_per_s`` (the same against the
    echo), ``broker_share_of_ceiling`` (their ratio), ``joins_per_s``, ``p50_ms``,
    ``p99_ms``, ``p999_ms`` (steady update round trips), ``broker_rss_mb`` and
    ``server_rss_mb`` (peak during the steady phase), ``broker_state_bytes_per_client``,
    ``errors`` (transport failures and Error replies of connect, join and steady),
    ``lost_updates``, ``rejected_by_reason`` and more, each named for what it is.
    """
    settings = run.settings
    summary: dict[str, Any] = {
        "status": run.status,
        "clients": settings.clients,
        "connections": settings.connections,
        "connections_total": settings.connections_total,
        "generator_processes": settings.processes,
        "client_work": settings.client_work,
        "duration_s": settings.duration_s,
        "rounds": settings.rounds,
        "measured_s": settings.measured_s * settings.rounds,
        "settings": asdict(settings),
        "fd_limit": None if run.limits is None else {"soft": run.limits.fd_soft, "hard": run.limits.fd_hard},
        "machine": None
        if run.limits is None
        else {
            "cpus": os.cpu_count(),
            "ephemeral_ports": run.limits.ephemeral_ports,
            "memory_available_gb": run.limits.memory_available_bytes / 2**30,
        },
        "caps": caps or [],
        "noise": NOISE_NOTE,
    }
    if run.failure:
        summary["failure"] = run.failure
    if caps:
        summary["message"] = (
            "not run: this machine caps the test (" + "; ".join(caps) + "). "
            "Use --connections shared to reach this many logical clients."
        )
        return summary
    connected = sum(r.connected for r in run.connect)
    connect_failed: dict[str, int] = {}
    for report in run.connect:
        for kind, count in report.failed.items():
            connect_failed[kind] = connect_failed.get(kind, 0) + count
    connect_s = max((r.seconds for r in run.connect), default=0.0)
    summary.update(
        {
            "connections_made": connected,
            "clients_connected": sum(r.clients_connected for r in run.connect),
            "connect_seconds": connect_s,
            "connects_per_s": connected / connect_s if connect_s > 0 else None,
            "connect_failures": connect_failed,
        }
    )
    steady, echo, join = run.steady, run.echo, run.join
    measured = settings.measured_s * settings.rounds  # each slice after its warm-up
    updates_per_s = steady.updates_acked_in_window / measured if steady is not None else None
    baseline = echo.updates_acked_in_window / measured if echo is not None else None
    latency = steady.latency.summary_ms() if steady is not None else {}
    errors: dict[str, int] = {}
    for kind, count in connect_failed.items():
        if not kind.startswith("after:"):
            errors[f"connect:{kind}"] = count
    for stats in (join, steady):
        if stats is not None:
            for kind, count in stats.errors.items():
                errors[f"{stats.phase}:{kind}"] = errors.get(f"{stats.phase}:{kind}", 0) + count
    for kind, count in run.broker_connection_events.items():
        errors[f"broker_connection:{kind}"] = count
    if run.server_counters.get("slow_consumers"):
        errors["server:slow_consumers"] = int(run.server_counters["slow_consumers"])
    accounting = _update_accounting(run)
    memory = run.memory
    admitted = join.admitted if join is not None else 0
    state = None
    if admitted and "broker_rss_after_joins" in memory:
        state = (memory["broker_rss_after_joins"] - memory["broker_rss_before_joins"]) / admitted
    state_after_updates = None
    if admitted and "broker_rss_end" in memory:
        state_after_updates = (memory["broker_rss_end"] - memory["broker_rss_before_joins"]) / admitted
    steady_rows = monitor.during("steady") if monitor is not None else []
    per_connection: dict[str, float | None] = {"server": None, "generators": None}
    marks = monitor.boundaries if monitor is not None else {}
    after_connect = marks.get("echo") or marks.get("curate")
    if "connect" in marks and after_connect is not None and connected >= 100:  # fewer: noise
        for who in per_connection:
            per_connection[who] = (after_connect[f"{who}_rss"] - marks["connect"][f"{who}_rss"]) / connected
    rejected: dict[str, Any] = {
        "updates": dict(run.progress.updates_rejected) if run.progress is not None else {},
        "client_error_replies": {
            k: v
            for s in (join, steady)
            if s is not None
            for k, v in s.errors.items()
            if k.startswith("error:")
        },
        "decode": dict(run.service_stats.get("refused_on_decode", {})),
        "auth_callout": run.callout_refused,
    }
    summary.update(
        {
            "updates_per_s": updates_per_s,
            "baseline_updates_per_s": baseline,
            "broker_share_of_ceiling": (updates_per_s / baseline)
            if updates_per_s is not None and baseline
            else None,
            "rounds_updates_per_s": [
                {
                    "round": i + 1,
                    "baseline_updates_per_s": e.updates_acked_in_window / settings.measured_s
                    if e is not None
                    else None,
                    "updates_per_s": b.updates_acked_in_window / settings.measured_s,
                    "broker_share_of_ceiling": (
                        b.updates_acked_in_window / e.updates_acked_in_window
                        if e is not None and e.updates_acked_in_window
                        else None
                    ),
                }
                for i, (b, e) in enumerate(
                    zip(run.steady_rounds, run.echo_rounds or [None] * len(run.steady_rounds), strict=False)
                )
            ],
            "joins_per_s": (join.admitted / join.wall_s) if join is not None and join.wall_s > 0 else None,
            "clients_admitted": admitted,
            "join_seconds": join.wall_s if join is not None else None,
            "p50_ms": latency.get("p50_ms"),
            "p90_ms": latency.get("p90_ms"),
            "p99_ms": latency.get("p99_ms"),
            "p999_ms": latency.get("p999_ms"),
            "max_ms": latency.get("max_ms"),
            "latency_ms": {
                name: s.latency.summary_ms()
                for name, s in (("echo", echo), ("join", join), ("steady", steady))
                if s is not None
            },
            "broker_rss_mb": _mb(max((r["broker_rss"] for r in steady_rows), default=None)),
            "server_rss_mb": _mb(max((r["server_rss"] for r in steady_rows), default=None)),
            "generators_rss_mb": _mb(max((r["generators_rss"] for r in steady_rows), default=None)),
            "broker_rss_mb_before_joins": _mb(memory.get("broker_rss_before_joins")),
            "broker_rss_mb_after_joins": _mb(memory.get("broker_rss_after_joins")),
            "broker_rss_mb_end": _mb(memory.get("broker_rss_end")),
            "broker_state_bytes_per_client": state,
            "broker_state_bytes_per_client_after_updates": state_after_updates,
            "broker_rss_slope_mb_per_min_steady": _slope_mb_per_min(steady_rows, "broker_rss"),
            "server_rss_slope_mb_per_min_steady": _slope_mb_per_min(steady_rows, "server_rss"),
            "server_bytes_per_connection": per_connection["server"],
            "generator_bytes_per_connection": per_connection["generators"],
            "broker_cpu_pct": monitor.cpu_pct("steady", "broker") if monitor else None,
            "server_cpu_pct": monitor.cpu_pct("steady", "server") if monitor else None,
            "generators_cpu_pct": monitor.cpu_pct("steady", "generators") if monitor else None,
            "baseline_server_cpu_pct": monitor.cpu_pct("echo", "server") if monitor else None,
            "baseline_generators_cpu_pct": monitor.cpu_pct("echo", "generators") if monitor else None,
            "cpu_by_phase": monitor.phases if monitor else {},
            "errors": int(sum(errors.values())),
            "errors_by_kind": errors,
            "baseline_errors": echo.error_count if echo is not None else None,
            "baseline_errors_by_kind": dict(echo.errors) if echo is not None else None,
            "echo_answered": run.echo_answered,
            "lost_updates": accounting["lost"],
            "update_accounting": accounting,
            "rejected_by_reason": rejected,
            "validation_rounds_started": run.validation_rounds,
            "waits": steady.waits if steady is not None else None,
            "rejoins": (join.rejoins if join else 0) + (steady.rejoins if steady else 0),
            "progress": None
            if run.progress is None
            else {
                "updates_accepted": run.progress.updates_accepted,
                "version": run.progress.version,
                "active_clients": run.progress.active_clients,
                "penalties": run.progress.penalties,
                "evictions": run.progress.evictions,
                "validation_error": run.progress.validation_error,
            },
            "broker_service": run.service_stats,
            "auth_callout_granted": run.callout_granted,
            "server_counters": run.server_counters,
            "broker_connection_events": run.broker_connection_events,
            "nats_server_version": run.server_version,
        }
    )
    return summary
