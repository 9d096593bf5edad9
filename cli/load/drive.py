"""One load run: start nats-server, the broker and the generators, run the phases, stop everything."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .generators import Generators
from .outputs import plot_load, write_latency, write_timeline
from .record import Run, merged
from .resources import ResourceMonitor
from .settings import LoadError, LoadSettings, connection_caps, task_spec, validation_set
from .state_cost import traced_broker_growth, traced_state_bytes_per_client
from .summary import summarise


def run_load(settings: LoadSettings, out_dir: Path) -> dict[str, Any]:
    """Run one load test and write its outputs into ``out_dir``; return the summary."""
    return asyncio.run(run_load_async(settings, out_dir))


async def run_load_async(settings: LoadSettings, out_dir: Path) -> dict[str, Any]:
    """Run one load test (see :mod:`tormentor.cli.load`); return the summary written to summary.json.

    Raises
    ------
    LoadError
        A generator failed or did not answer in time (summary.json says so first).
    """
    from tormentor.transport.load_clients import machine_limits, raise_open_file_limit

    from ..outputs import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    raise_open_file_limit()
    run = Run(settings, limits=machine_limits())
    caps = connection_caps(settings, run.limits)
    if caps:
        run.status = "capped"
        summary = summarise(run, None, caps=caps)
        write_json(out_dir / "summary.json", summary)
        return summary
    monitor: ResourceMonitor | None = None
    try:
        monitor = await _drive(run)
    except LoadError as error:
        run.status, run.failure = "failed", str(error)
        write_json(out_dir / "summary.json", summarise(run, monitor))
        raise
    summary = summarise(run, monitor)
    summary["broker_state_bytes_per_client_traced"] = traced_state_bytes_per_client(
        settings, min(settings.clients, 2000)
    )
    # Heap growth over 20 rounds of one update per client: flat when the broker's memory is bounded.
    summary["broker_traced_growth_bytes"] = traced_broker_growth(settings, min(settings.clients, 1000), 20)
    write_json(out_dir / "summary.json", summary)
    write_timeline(out_dir / "timeline.csv", run, monitor)
    write_latency(out_dir / "latency.csv", run)
    plot_load(out_dir / "load.png", run, monitor, summary)
    return summary


async def _drive(run: Run) -> ResourceMonitor:
    """Start everything, run the phases, stop everything; return the resource samples."""
    import nats

    from tormentor.engine.brokerage import Brokerage
    from tormentor.engine.curator import CuratorSession, curate_request
    from tormentor.engine.protocol import Curated, Progress
    from tormentor.transport.auth_callout import AuthCalloutService
    from tormentor.transport.broker_service import BrokerService
    from tormentor.transport.client_runner import NatsRequester
    from tormentor.transport.load_clients import EchoResponder, GeneratorSpec, echo_reply_payload
    from tormentor.transport.nats_server import NatsServer, ServerLimits
    from tormentor.transport.subjects import CURATOR_REQUESTS

    settings = run.settings
    total = settings.connections_total
    limits = ServerLimits(
        client_max_payload_bytes=max(4096, 16 * settings.n_features + 1024),
        client_max_connections=max(100, total + 64),
        max_connections=max(200, total + 164),
        auth_timeout_s=10.0,
    )
    async with contextlib.AsyncExitStack() as stack:
        server = NatsServer(limits)
        server.start()
        stack.callback(server.stop)
        run.server_version = server.version or "unknown"
        assert server.pid is not None
        monitor = ResourceMonitor(os.getpid(), server.pid)
        callout = AuthCalloutService(server.url, server.callout, server.callout_issuer_seed)
        await stack.enter_async_context(callout)

        specs = [
            GeneratorSpec(
                url=server.url,
                worker=i,
                clients=n,
                connections=settings.connections,
                shared_connections=settings.connections_per_process,
                n_features=settings.n_features,
                k=settings.k,
                update_bits=settings.update_bits,
                client_work=settings.client_work,
                request_timeout_s=settings.request_timeout_s,
                connect_timeout_s=settings.connect_timeout_s,
                connect_concurrency=settings.connect_concurrency,
                think_s=settings.think_s,
                seed=None if settings.seed is None else settings.seed + i,
            )
            for i, n in enumerate(settings.clients_per_process)
        ]
        generators = Generators(specs)
        stack.callback(generators.stop)
        run.generator_pids = await generators.ask(None, "ready", timeout_s=120)
        monitor.add_generators(run.generator_pids)
        sampler = asyncio.create_task(monitor.run(stop_after_s=4 * 3600))
        stack.callback(sampler.cancel)
        grace = settings.request_timeout_s + 60

        monitor.mark("connect")
        deadline = time.monotonic() + settings.max_connect_s
        run.connect = await generators.ask(("connect", deadline), "connect", settings.max_connect_s + grace)

        monitor.mark("curate")
        broker_events: Counter[str] = Counter()

        async def on_broker_event(error: Exception | None = None) -> None:
            broker_events[type(error).__name__ if error is not None else "disconnected"] += 1

        broker_nc = await nats.connect(
            server.url,
            **{**server.broker.connect_options(), "name": "broker"},
            error_cb=on_broker_event,
            disconnected_cb=on_broker_event,
        )
        stack.push_async_callback(broker_nc.close)
        brokerage = Brokerage()
        service = BrokerService(brokerage)
        await service.start(broker_nc)
        curator_nc = await nats.connect(server.url, **{**server.curator.connect_options(), "name": "curator"})
        stack.push_async_callback(curator_nc.close)
        curator = NatsRequester(curator_nc, timeout_s=60.0, subject=CURATOR_REQUESTS)
        x, y = validation_set(settings)
        reply = await curator.request(curate_request(task_spec(settings), x, y))
        if not isinstance(reply, Curated):
            raise LoadError(f"curate was refused: {reply}")
        session = CuratorSession.from_reply(reply)
        # Load the broker's kernels and code paths (puzzles, RONI) before measuring memory.
        traced_state_bytes_per_client(settings, min(settings.clients, 100))

        gc.collect()
        run.memory["broker_rss_before_joins"] = monitor.mark("join")["broker_rss"]
        deadline = time.monotonic() + settings.max_join_s
        joins = await generators.ask(
            ("join", session.model_id, deadline), "join", settings.max_join_s + grace
        )
        run.join = merged("join", joins)
        gc.collect()
        run.memory["broker_rss_after_joins"] = monitor.mark("between")["broker_rss"]
        await service.stop()  # the echo and the broker take turns on the client subject
        run.add_service_stats(service.stats)

        echo_nc = await nats.connect(server.url, **{**server.broker.connect_options(), "name": "echo"})
        stack.push_async_callback(echo_nc.close)
        responder = EchoResponder(echo_reply_payload(settings.n_features, settings.update_bits))
        for _ in range(settings.rounds):
            if settings.baseline:
                monitor.mark("echo")
                await responder.start(echo_nc)
                window = _window(settings)
                parts = await generators.ask(
                    ("echo", *window, responder.reply), "echo", settings.slice_s + grace
                )
                run.echo_rounds.append(merged("echo", parts))
                await responder.stop()
                monitor.mark("between")
            service = BrokerService(brokerage)
            await service.start(broker_nc)
            monitor.mark("steady")
            window = _window(settings)
            parts = await generators.ask(("steady", *window), "steady", settings.slice_s + grace)
            run.steady_rounds.append(merged("steady", parts))
            monitor.mark("between")
            await service.stop()
            run.add_service_stats(service.stats)
        run.echo_answered = responder.answered
        gc.collect()
        run.memory["broker_rss_end"] = monitor.mark("close")["broker_rss"]

        service = BrokerService(brokerage)  # to answer the curator
        await service.start(broker_nc)
        stack.push_async_callback(service.stop)
        status = await _status(curator, session)
        if not isinstance(status, Progress):
            raise LoadError(f"status was refused: {status}")
        run.progress = status
        # Not in Progress (the curator does not need it); read from the broker to show RONI ran.
        validator = getattr(brokerage.brokers[session.model_id], "_validator", None)
        run.validation_rounds = None if validator is None else validator.rounds_started
        run.server_counters = await asyncio.to_thread(_server_counters, server.monitor_url)
        run.broker_connection_events = dict(broker_events)
        run.callout_refused = dict(callout.refused)
        run.callout_granted = callout.granted
        await generators.ask(("exit",), "exit", timeout_s=120)
        monitor.mark("done")
    return monitor


async def _status(curator: Any, session: Any) -> Any:
    """Ask for the broker's progress, a few times if its connection is just reconnecting."""
    from tormentor.transport.errors import NoResponders, RequestTimeout

    for attempt in range(5):
        try:
            return await curator.request(session.status())
        except (NoResponders, RequestTimeout):
            if attempt == 4:
                raise
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


def _server_counters(monitor_url: str | None) -> dict[str, Any]:
    """nats-server's own counters (``/varz``): slow consumers, messages, connections."""
    if monitor_url is None:
        return {}
    import urllib.request

    try:
        with urllib.request.urlopen(f"{monitor_url}/varz", timeout=5.0) as response:
            varz = json.loads(response.read())
    except (OSError, ValueError):
        return {}
    keys = (
        "slow_consumers",
        "in_msgs",
        "out_msgs",
        "in_bytes",
        "out_bytes",
        "total_connections",
        "connections",
    )
    return {key: varz.get(key) for key in keys}


def _window(settings: LoadSettings) -> tuple[float, float, float]:
    """A slice starting shortly (the command must reach every generator first).

    Returns its start, its end and when acks start counting (after the warm-up).
    """
    start = time.monotonic() + 0.5
    return start, start + settings.slice_s, start + settings.slice_s * settings.warmup_fraction
