"""The broker side's building blocks, shared by ``run`` (one machine) and ``broker``/``curate``.

Each function starts one piece and registers its teardown on an
:class:`~contextlib.AsyncExitStack`, so that whoever owns the stack stops everything in
reverse order, on success, error, Ctrl-C or SIGTERM::

    bus     = await start_bus(config, stack, run_dir / "nats")        # nats-server + auth callout
    front   = await start_front(config, stack, run_dir / "tor", bus)  # Tor onion service, or direct
    service = await start_broker_service(config, stack, bus, Brokerage())
    curator = await connect_curator(stack, url=bus.url, connect_options=bus.curator_options,
                                    tor=front.tor, ...)

Heavy imports (nats-py, nkeys, stem) happen inside the functions, when a piece starts.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Bus",
    "Front",
    "connect_curator",
    "start_broker_service",
    "start_bus",
    "start_front",
    "task_spec",
]

log = logging.getLogger(__name__)


@dataclass
class Bus:
    """The NATS bus the broker serves on.

    Attributes
    ----------
    url : str
        Where the broker and a local curator connect (``nats://127.0.0.1:PORT``, or the
        operator's server).
    broker_options, curator_options : dict
        nats-py ``connect()`` keyword arguments that sign in as the broker / the curator
        (nkey seed and inbox prefix); empty when attached to an operator's server.
    version : str
        nats-server's version (``"external"`` when attached).
    embedded : bool
        Whether this process started the server.
    monitor_url : str or None
        nats-server's HTTP monitoring address (embedded server only).
    port : int or None
        The embedded server's client port (what an onion service forwards to).
    """

    url: str
    broker_options: dict[str, Any]
    curator_options: dict[str, Any]
    version: str
    embedded: bool
    monitor_url: str | None
    port: int | None


async def start_bus(config: Any, stack: contextlib.AsyncExitStack, run_dir: Path, *,
                    model_dim: int | None = None, expected_clients: int | None = None) -> Bus:
    """Start nats-server and the auth callout, or attach to ``config.transport.nats_url``.

    Parameters
    ----------
    config : RunConfig
        Uses ``transport`` (``nats_url``, ``max_payload_bytes``).
    stack : AsyncExitStack
        Receives the teardown (server stop, callout stop).
    run_dir : Path
        nats-server's folder (config, log, ``endpoint.json`` with the seeds, mode 0600).
    model_dim : int or None
        Number of model weights, when known: sizes the largest message a client may
        send (``16 d + 1024`` bytes, at least 4 KiB). None keeps the default (64 KiB,
        models up to about 8,000 weights).
    expected_clients : int or None
        Clients expected at once, when known: sizes the connection limits. None keeps
        the defaults (10,000 client connections).
    """
    import nats  # noqa: F401  (fail early with a clear ImportError)

    if config.transport.nats_url:
        from tormentor.transport.nats_server import NatsEndpoint

        endpoint = NatsEndpoint.attach(config.transport.nats_url)
        return Bus(endpoint.url, {}, {}, "external", False, None, None)
    from tormentor.transport.auth_callout import AuthCalloutService
    from tormentor.transport.nats_server import NatsServer, ServerLimits

    # Connections through Tor, hundreds at once, need more than nats-server's default 2 s
    # to finish the CONNECT and the auth callout's answer; a broker busy with a large
    # batch must not be dropped as a slow consumer after 2 s either.
    sizes: dict[str, Any] = {
        "max_payload_bytes": config.transport.max_payload_bytes,
        "auth_timeout_s": 10.0,
        "write_deadline_s": 10.0,
    }
    if model_dim is not None:
        sizes["client_max_payload_bytes"] = max(4096, 16 * model_dim + 1024)
    if expected_clients is not None:
        sizes["client_max_connections"] = max(100, 2 * expected_clients)
        sizes["max_connections"] = max(200, 2 * expected_clients + 100)
    server = NatsServer(ServerLimits(**sizes), run_dir=run_dir)
    server.start()
    stack.callback(server.stop)
    callout = AuthCalloutService(server.url, server.callout, server.callout_issuer_seed)
    await stack.enter_async_context(callout)
    port = int(server.url.rsplit(":", 1)[1])
    return Bus(server.url, server.broker.connect_options(), server.curator.connect_options(),
               server.version or "unknown", True, server.monitor_url, port)


@dataclass
class Front:
    """How clients reach the bus: directly, or through the broker's onion service.

    Attributes
    ----------
    mode : str
        ``"off"``, ``"private"`` or ``"system"``.
    client_url : str
        ``nats://...`` (off) or ``tor://<id>.onion``.
    tor : dict or None
        Dial information for :func:`tormentor.transport.tor_client.connect_through_tor`
        (``onion``, ``port``, ``socks_host``, ``socks_port``); None when off.
    summary : dict
        What a run reports about Tor (mode, onion, bootstrap and publish seconds).
    onion_service_pid : int or None
        The onion-service tor's process id (private mode).
    """

    mode: str
    client_url: str
    tor: dict[str, Any] | None
    summary: dict[str, Any]
    onion_service_pid: int | None = None


async def start_front(config: Any, stack: contextlib.AsyncExitStack, state_dir: Path, bus: Bus) -> Front:
    """Put Tor in front of the bus if ``config.tor.mode`` asks for it; return how clients reach it.

    Parameters
    ----------
    config : RunConfig
        Uses ``tor``.
    stack : AsyncExitStack
        Receives the teardown (the private network's tors die with it).
    state_dir : Path
        Tor's folder: the onion key (``broker.onion-key``, mode 0600, kept so that a
        restarted broker keeps its address) and, in private mode, the network.
    bus : Bus
        The bus to put behind the onion (its local port).

    Raises
    ------
    ValueError
        Tor was asked for in front of an operator's NATS server (it needs the local port).
    """
    if config.tor.mode == "off":
        return Front("off", bus.url, None, {"mode": "off"})
    if bus.port is None:
        raise ValueError("tor.mode private/system needs the embedded nats-server (transport.nats_url: null)")
    from tormentor.transport.tor_front import start_tor_front

    front = await start_tor_front(config.tor, stack, state_dir, bus.port)
    return Front(front.mode, f"tor://{front.onion}", front.client_info(), dict(front.summary),
                 front.onion_service_pid)


async def start_broker_service(config: Any, stack: contextlib.AsyncExitStack, bus: Bus,
                               brokerage: Any) -> Any:
    """Connect as the broker and serve ``brokerage`` on the bus; return the BrokerService."""
    import nats

    from tormentor.transport.broker_service import BrokerService

    nc = await nats.connect(bus.url, **{"name": "broker", **bus.broker_options})
    stack.push_async_callback(nc.close)
    service = BrokerService(brokerage, max_batch=config.transport.max_batch,
                            max_curator_bytes=config.transport.max_payload_bytes)
    await service.start(nc)
    stack.push_async_callback(service.stop)
    return service


async def connect_curator(stack: contextlib.AsyncExitStack, *, url: str | None,
                          connect_options: dict[str, Any], tor: dict[str, Any] | None,
                          connect_timeout_s: float, request_timeout_s: float) -> Any:
    """Open the curator's connection and return a requester on the curator subject.

    Through Tor like any client when ``tor`` is given (paper 3.2), else straight to
    ``url``.

    Parameters
    ----------
    stack : AsyncExitStack
        Receives the teardown (the connection and any SOCKS forwarder).
    url : str or None
        The bus (used when ``tor`` is None).
    connect_options : dict
        Sign-in options of the curator identity (nkey seed, inbox prefix); empty for a
        server whose operator admits the curator otherwise.
    tor : dict or None
        ``onion``, ``port``, ``socks_host``, ``socks_port``.
    connect_timeout_s, request_timeout_s : float
        Timeouts; requests wait at least 30 s (a ``curate`` carries the validation set).
    """
    from tormentor.transport.client_runner import NatsRequester
    from tormentor.transport.errors import translate
    from tormentor.transport.subjects import CURATOR_REQUESTS

    if tor is None and url is None:
        raise ValueError("connect_curator needs url or tor")
    options = {"error_cb": _log_nats_error, **connect_options}
    try:
        if tor is not None:
            from tormentor.transport.tor_client import connect_through_tor

            forwarders: list[Any] = []
            try:  # (through Tor, NATS reconnects through new circuits for as long as it takes)
                nc = await connect_through_tor(tor, connect_timeout_s=connect_timeout_s,
                                               forwarders=forwarders, connect_options=options,
                                               name="curator")
            finally:
                for forwarder in forwarders:
                    stack.push_async_callback(forwarder.close)
        else:
            import nats

            # nats-py retries an unreachable server 60 times, 2 s apart, by default: give up in seconds.
            nc = await nats.connect(url, connect_timeout=connect_timeout_s, max_reconnect_attempts=5,
                                    reconnect_time_wait=0.5, **{"name": "curator", **options})
    except Exception as error:
        if type(error).__module__.split(".")[0] == "tormentor":
            raise  # Tor errors and our own transport errors are already what the caller maps
        raise translate(error) from error
    stack.push_async_callback(nc.close)
    return NatsRequester(nc, timeout_s=max(30.0, request_timeout_s), subject=CURATOR_REQUESTS)


async def _log_nats_error(error: Exception) -> None:
    """nats-py's error callback: one log line (its default logs a traceback per retry)."""
    log.debug("nats: %s", type(error).__name__)


def task_spec(config: Any, n_features: int) -> Any:
    """Return the curator's :class:`~tormentor.engine.protocol.TaskSpec` for ``config``.

    Parameters
    ----------
    config : RunConfig
        Uses ``task``, ``stopping`` and ``defences``.
    n_features : int
        Columns of the data, bias included (24 for the credit data).
    """
    from tormentor.engine.protocol import TaskSpec

    return TaskSpec(
        n_features=n_features,
        model_type=config.task.model,
        min_clients=config.task.min_clients,
        max_clients=config.task.max_clients,
        aggregation=config.task.aggregation,
        max_staleness=config.task.max_staleness,
        client_timeout_s=config.task.client_timeout_s,
        stopping=config.stopping,
        defences=config.defences,
    )
