"""``tormentor-engine run``: the whole brokered-learning experiment on one machine.

What starts, in order (and stops in reverse, on completion, error or Ctrl-C)::

    nats-server (embedded, generated config)  -- or --nats / transport.nats_url
    auth-callout service (anonymous clients get per-connection inbox permissions)
    Tor front (tor.mode: private network or system tor; off = direct)
    broker service (owns the model; batches requests)
    curator (curate with the validation set; polls aggregate progress; fetches the model)
    client worker processes (honest clients and poisoners, each on its own connection)

The harness (this process) samples the global model every ``output.trace_every_s`` to
measure training and test error on the whole shards: a measurement only the experiment
can make, never the broker (paper 7.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from tormentor.engine import kernels
from tormentor.engine.brokerage import Brokerage
from tormentor.engine.centralised import fit_logistic_regression, zero_one_error
from tormentor.engine.curator import CuratorSession, curate_request
from tormentor.engine.data import CreditData, load_credit, resolve_data_path
from tormentor.engine.protocol import Curated, Error, Final, Progress

from .client_workers import WorkerSpec, start_workers
from .config import RunConfig, config_to_mapping
from .exit_codes import ExitCode
from .outputs import TraceRow, plot_trace, time_to_target, write_json, write_model, write_trace
from .progress import Progress as ProgressDisplay
from .services import Bus, Front, connect_curator, start_broker_service, start_bus, start_front, task_spec
from .signals import run_until_signalled

__all__ = ["RunResult", "run_experiment", "run_experiment_async"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run produced (also written to its output folder)."""

    out_dir: Path
    summary: dict[str, Any]
    trace: list[TraceRow] = field(default_factory=list)
    final_weights: np.ndarray | None = None


def run_experiment(config: RunConfig, *, out: str | None = None) -> int:
    """Run ``config`` to completion; write its outputs; return an exit code."""
    out_dir = _out_dir(config, out)
    # Re-cancel only after a minute: the teardown (Tor's in particular) must not be cut short.
    result = asyncio.run(run_until_signalled(run_experiment_async(config, out_dir), recancel_s=60.0))
    summary = result.summary
    print(
        f"done: {summary['updates_accepted']:,} updates in {summary['wall_seconds']:.1f} s; "
        f"training error {100 * summary['final_train_error']:.2f}% "
        f"(centralised {100 * summary['centralised_train_error']:.2f}%), "
        f"test {100 * summary['final_test_error']:.2f}%; outputs in {out_dir}"
    )
    return ExitCode.OK


def _out_dir(config: RunConfig, out: str | None) -> Path:
    if out:
        return Path(out)
    if config.output.dir:
        return Path(config.output.dir)
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


# ----------------------------------------------------------------------------- the run


async def run_experiment_async(config: RunConfig, out_dir: Path) -> RunResult:
    """Run ``config``; write outputs into ``out_dir``; return the :class:`RunResult`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = resolve_data_path(config.data.path)
    data = load_credit(data_path, seed=config.seed, train_fraction=config.data.train_fraction)
    w_central = fit_logistic_regression(data.X_train, data.y_train)
    central_train = zero_one_error(w_central, data.X_train, data.y_train)
    central_test = zero_one_error(w_central, data.X_test, data.y_test)
    task = task_spec(config, data.n_weights)
    total_clients = config.clients.count + config.attackers.poisoners
    if total_clients == 0:
        raise ValueError("clients.count + attackers.poisoners must be at least 1")

    async with contextlib.AsyncExitStack() as stack:
        bus = await start_bus(
            config, stack, out_dir / "nats", model_dim=data.n_weights, expected_clients=total_clients
        )
        front = await start_front(config, stack, out_dir / "tor", bus)
        brokerage = Brokerage(rng=np.random.default_rng(None if config.seed is None else [config.seed, 99]))
        service = await start_broker_service(config, stack, bus, brokerage)
        curator = await connect_curator(
            stack,
            url=bus.url,
            connect_options=bus.curator_options,
            tor=front.tor,
            connect_timeout_s=config.tor.connect_timeout_s if front.tor else 10.0,
            request_timeout_s=config.transport.request_timeout_s,
        )
        reply = await curator.request(curate_request(task, data.X_test, data.y_test))
        if not isinstance(reply, Curated):
            raise RuntimeError(f"curate was refused: {getattr(reply, 'message', reply)}")
        session = CuratorSession.from_reply(reply)
        broker = brokerage.brokers[session.model_id]
        started = time.monotonic()

        specs = _worker_specs(config, data_path, session.model_id, front, total_clients)
        processes, results = start_workers(specs)
        stack.callback(_stop_processes, processes)

        origins: dict[str, Any] = {}
        trace, last_status = await _observe(
            config,
            data,
            broker,
            curator,
            session,
            processes,
            started,
            lambda: _sample_origins(bus, front, origins),
        )
        final = await _curator_request(
            curator, session.fetch(), give_up_after_s=CURATOR_PATIENCE_S, must=True
        )
        if not isinstance(final, Final):
            raise RuntimeError(f"the curator could not fetch the model: {final}")
        outcomes = await _collect(results, len(processes), timeout_s=config.transport.request_timeout_s + 15)
        wall = time.monotonic() - started
        service_stats = service.stats

    if origins:
        front.summary["connections_seen_by_nats"] = origins
    summary = _summary(
        config,
        data,
        final,
        trace,
        outcomes,
        wall,
        central_train,
        central_test,
        bus,
        front,
        service_stats,
        total_clients,
    )
    write_json(out_dir / "summary.json", summary)
    write_trace(out_dir / "trace.csv", trace)
    write_model(out_dir / "model.json", final.weights, data.feature_names, data.mean, data.std, data.clip)
    plot_trace(
        out_dir / "loss.png",
        trace,
        title=f"{total_clients} clients, tor {config.tor.mode}",
        centralised=central_train,
    )
    return RunResult(out_dir=out_dir, summary=summary, trace=trace, final_weights=np.array(final.weights))


# ----------------------------------------------------------------------------- pieces


def _worker_specs(
    config: RunConfig, data_path: Path, model_id: str, front: Front, total: int
) -> list[WorkerSpec]:
    poisoners = tuple(range(config.clients.count, total))
    processes = max(1, min(config.clients.processes, total))
    spread = config.clients.start_spread_s
    delays = [spread * i / max(total - 1, 1) for i in range(total)]
    clients = config_to_mapping(config.clients)
    specs = []
    for p in range(processes):
        indices = tuple(range(p, total, processes))
        specs.append(
            WorkerSpec(
                url=front.client_url,
                model_id=model_id,
                data_path=str(data_path),
                seed=config.seed,
                train_fraction=config.data.train_fraction,
                shards=config.data.shards,
                shard_size=config.data.shard_size,
                total_clients=total,
                indices=indices,
                poisoner_indices=tuple(i for i in indices if i in poisoners),
                clients=clients,
                request_timeout_s=config.transport.request_timeout_s,
                connect_timeout_s=config.tor.connect_timeout_s if front.tor else 10.0,
                start_delays_s=tuple(delays[i] for i in indices),
                tor=front.tor,
            )
        )
    return specs


async def _observe(
    config: RunConfig,
    data: CreditData,
    broker: Any,
    curator: Any,
    session: CuratorSession,
    processes: list[Any],
    started: float,
    sample: Any,
) -> tuple[list[TraceRow], Progress | None]:
    """Sample the model and the curator's progress until training ends."""
    display = ProgressDisplay(config.stopping.max_updates, mode=config.output.progress)
    trace: list[TraceRow] = []
    status: Progress | None = None
    every = config.output.trace_every_s
    try:
        while True:
            reply = await _curator_request(curator, session.status(), give_up_after_s=CURATOR_PATIENCE_S)
            if isinstance(reply, Error):
                raise RuntimeError(f"status refused: {reply.code}: {reply.message}")
            if reply is not None:
                status = reply
                display.update(status.updates_accepted, status.validation_error, status.active_clients)
            # The curator's validation error when its poll got through; the trace goes on without it.
            trace.append(_trace_row(data, broker, started, status.validation_error if reply else math.nan))
            sample()
            if broker.done and (status is None or status.done or reply is None):
                break
            if not any(p.is_alive() for p in processes):
                broker.finish("clients_finished")
                continue
            await asyncio.sleep(every)
    finally:
        display.close()
    return trace, status


#: How long the curator keeps retrying a request whose reply was lost (e.g. a Tor relay
#: on its circuit died) before the run gives up on it.
CURATOR_PATIENCE_S = 180.0


async def _curator_request(curator: Any, request: Any, *, give_up_after_s: float, must: bool = False) -> Any:
    """Send a curator request, retrying on lost replies; None if it never got through.

    A status poll that fails is skipped (training goes on without the curator watching);
    ``must`` requests (the final fetch) are retried until ``give_up_after_s``.
    """
    from tormentor.transport.errors import TransportError

    deadline = time.monotonic() + give_up_after_s
    while True:
        try:
            return await curator.request(request)
        except TransportError as error:
            if time.monotonic() >= deadline:
                raise
            log.warning("curator request lost (%s); retrying", type(error).__name__)
            if not must:
                return None
            await asyncio.sleep(1.0)


def _sample_origins(bus: Bus, front: Front, seen: dict[str, Any]) -> None:
    """Record who is connected to nats-server (Tor runs only), worst case over the run.

    Counts are the largest seen in any sample; ``other_processes`` collects every peer
    that was neither the onion-service tor nor this process, in any sample.
    """
    if front.tor is None or bus.port is None:
        return
    from tormentor.transport.tor_front import connection_origins

    origins = connection_origins(bus.port, front.onion_service_pid)
    for key in ("onion_service_tor", "broker_process", "other"):
        seen[key] = max(seen.get(key, 0), origins[key])
    seen["other_processes"] = sorted(set(seen.get("other_processes", [])) | set(origins["other_processes"]))


def _trace_row(data: CreditData, broker: Any, started: float, validation_error: float) -> TraceRow:
    """Measure the current model on the whole shards; ``validation_error`` is the broker's."""
    weights = np.array(broker.weights())
    return TraceRow(
        time_s=time.monotonic() - started,
        version=broker.version,
        train_error=kernels.error_rate(weights, data.X_train, data.y_train),
        test_error=kernels.error_rate(weights, data.X_test, data.y_test),
        validation_error=validation_error,
        active_clients=broker.active_clients,
    )


async def _collect(results: Any, workers: int, *, timeout_s: float) -> list[dict[str, Any]]:
    """Gather the workers' client outcomes (each worker puts one message)."""
    import queue

    outcomes: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    received = 0
    while received < workers and time.monotonic() < deadline:
        try:
            kind, payload = await asyncio.to_thread(results.get, True, 0.5)
        except queue.Empty:
            continue
        received += 1
        if kind == "ok":
            outcomes.extend(payload)
        else:
            log.error("a client worker failed: %s", payload)
    if received < workers:
        log.warning("%d client worker(s) did not report within %.0f s", workers - received, timeout_s)
    return outcomes


def _stop_processes(processes: list[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


def _percentile_ms(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q) * 1e3) if values else None


def _summary(
    config: RunConfig,
    data: CreditData,
    final: Final,
    trace: list[TraceRow],
    outcomes: list[dict],
    wall: float,
    central_train: float,
    central_test: float,
    bus: Bus,
    front: Front,
    service_stats: Any,
    total_clients: int,
) -> dict[str, Any]:
    progress = final.progress
    weights = np.array(final.weights)
    latencies = [lat for o in outcomes for lat in o["latencies_s"]]
    stops: dict[str, int] = {}
    for o in outcomes:
        reason = o["stopped_for"] or o["stop"]["reason"]
        stops[reason] = stops.get(reason, 0) + 1
    return {
        "config": config_to_mapping(config),
        "clients": total_clients,
        "honest_clients": config.clients.count,
        "poisoners": config.attackers.poisoners,
        "updates_accepted": progress.updates_accepted,
        "updates_rejected": progress.updates_rejected,
        "updates_per_s": progress.updates_accepted / wall if wall > 0 else math.nan,
        "wall_seconds": wall,
        "stop_reason": progress.stop_reason,
        "final_train_error": zero_one_error(weights, data.X_train, data.y_train),
        "final_test_error": zero_one_error(weights, data.X_test, data.y_test),
        "final_validation_error": progress.validation_error,
        "centralised_train_error": central_train,
        "centralised_test_error": central_test,
        "target_error": config.output.target_error,
        # Both count from curate; first_update_s shows how much of that is start-up
        # (client processes, admission puzzles, the k gate), at the trace's resolution.
        "time_to_target_s": time_to_target(trace, config.output.target_error),
        "first_update_s": next((row.time_s for row in trace if row.version > 0), None),
        "penalties": progress.penalties,
        "evictions": progress.evictions,
        "client_stops": stops,
        "client_updates_sent": sum(o["updates_sent"] for o in outcomes),
        "client_timeouts": sum(o["timeouts"] for o in outcomes),
        "latency_p50_ms": _percentile_ms(latencies, 50),
        "latency_p99_ms": _percentile_ms(latencies, 99),
        "transport": {"nats_server_version": bus.version, "url": bus.url, "embedded": bus.embedded},
        "broker_service": {
            "batches": service_stats.batches,
            "largest_batch": service_stats.largest_batch,
            "busy_s": service_stats.busy_s,
            "refused_on_decode": dict(service_stats.refused_on_decode),
            "internal_errors": service_stats.internal_errors,
        },
        "tor": front.summary,
        "kernel_backend": kernels.BACKEND,
    }
