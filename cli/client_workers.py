"""Client worker processes for ``run``: many logical clients per OS process.

A worker gets a small, picklable :class:`WorkerSpec` (where the broker is, which clients
it hosts, their settings) and rebuilds its clients' data itself: the data split and the
shards are deterministic in the seed, so the parent never ships data between processes.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["WorkerSpec", "build_clients", "client_data", "start_workers", "worker_main"]

#: Through Tor a client waits longer for an unreachable broker: routing around a dead
#: relay can take minutes in a small network.
TOR_PATIENCE_S = 180.0


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker process needs (picklable, no arrays)."""

    url: str
    model_id: str
    data_path: str
    seed: int | None
    train_fraction: float
    shards: str
    shard_size: int | None
    total_clients: int
    indices: tuple[int, ...]
    poisoner_indices: tuple[int, ...]
    clients: dict[str, Any]  # ClientsConfig as a mapping
    request_timeout_s: float
    connect_timeout_s: float
    start_delays_s: tuple[float, ...]
    tor: dict[str, Any] | None = None  # {"socks_host", "socks_port", "onion", "port"} when through Tor


def client_data(spec: WorkerSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return the (x, y) shard of every client of the run, in client order."""
    from tormentor.engine.data import client_shards, load_credit

    data = load_credit(spec.data_path, seed=spec.seed, train_fraction=spec.train_fraction)
    return client_shards(
        data.X_train,
        data.y_train,
        spec.total_clients,
        mode=spec.shards,
        size=spec.shard_size,
        seed=spec.seed,
    )


def build_clients(spec: WorkerSpec) -> list[Any]:
    """Build this worker's clients (honest, or label-flipping poisoners)."""
    from tormentor.engine.attacks import LabelFlippingPoisoner
    from tormentor.engine.client import LearningClient
    from tormentor.engine.dp_sgd import LearningRate, StepConfig
    from tormentor.engine.ledger import PrivacyLedger

    shards = client_data(spec)
    settings = spec.clients
    rate = settings["learning_rate"]
    epsilon = settings["epsilon"]
    step = StepConfig(
        batch=settings["batch"],
        epsilon=math.inf if epsilon is None or epsilon == "inf" else float(epsilon),
        clip=settings["clip"],
        lam=settings["lam"],
        learning_rate=LearningRate(rate["initial"], rate["decay_steps"], rate["power"]),
    )
    clients = []
    for index in spec.indices:
        x, y = shards[index]
        budget = None
        if settings["budget_epsilon"] is not None:
            budget = PrivacyLedger(
                budget_epsilon=settings["budget_epsilon"],
                budget_delta=settings["budget_delta"],
                accounting=settings["accounting"],
            )
        rng = np.random.default_rng(None if spec.seed is None else [spec.seed, index])
        cls = LabelFlippingPoisoner if index in spec.poisoner_indices else LearningClient
        clients.append(
            cls(
                x,
                y,
                model_id=spec.model_id,
                k=settings["k"],
                step=step,
                rng=rng,
                budget=budget,
                max_updates=settings["max_updates"],
                pow_threads=settings["pow_threads"],
            )
        )
    return clients


async def _run(spec: WorkerSpec) -> list[dict[str, Any]]:
    from tormentor.transport.client_runner import TRANSPORT_PATIENCE_S, connect_client, run_clients

    clients = build_clients(spec)
    connect = connect_client
    url = spec.url
    forwarders: list[Any] = []
    new_identity = None
    if spec.tor is not None:
        from tormentor.transport.tor_client import tor_connector

        connect, forwarders, new_identity = tor_connector(spec.tor)
    try:
        outcomes = await run_clients(
            clients,
            url,
            indices=spec.indices,
            connections=spec.clients["connections"],
            request_timeout_s=spec.request_timeout_s,
            connect_timeout_s=spec.connect_timeout_s,
            start_delays_s=spec.start_delays_s,
            connect=connect,
            patience_s=TOR_PATIENCE_S if spec.tor is not None else TRANSPORT_PATIENCE_S,
        )
    finally:
        for forwarder in forwarders:
            await forwarder.close()
        if new_identity is not None:
            new_identity.close()
    results = []
    for outcome, client in zip(outcomes, clients, strict=True):
        record = asdict(outcome)
        record["stop"] = asdict(outcome.stop)
        record["stopped_for"] = client.stopped_for
        record["poisoner"] = outcome.index in spec.poisoner_indices
        record["privacy_spent"] = client.budget.spent() if client.budget is not None else None
        results.append(record)
    return results


def worker_main(spec: WorkerSpec, results: Any) -> None:
    """Process entry point: run the clients, put their outcomes on ``results``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _die_with_parent()
    try:
        results.put(("ok", asyncio.run(_run(spec))))
    except BaseException as error:  # report, never hang the parent
        results.put(("error", f"{type(error).__name__}: {error}"))


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no orphans)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)
    except OSError:
        pass


def start_workers(specs: list[WorkerSpec]) -> tuple[list[Any], Any]:
    """Start one spawned process per spec; return the processes and the results queue."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=worker_main, args=(spec, results), daemon=True) for spec in specs]
    for process in processes:
        process.start()
    return processes, results
