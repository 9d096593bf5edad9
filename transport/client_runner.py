"""Drive :class:`~tormentor.engine.client.LearningClient` state machines over NATS.

Many logical clients run in one asyncio loop. By default each has its own anonymous
connection (its own secret, token and inbox prefix, so no client can read another's
replies; see :mod:`tormentor.transport.auth_callout`); ``shared`` mode multiplexes a
process's clients over one connection (the broker still sees distinct tokens).

A client's CPU work (its DP step and puzzle) runs in a worker thread when the puzzle is
big enough to matter, so one client's search never stalls the others' network I/O; the
Numba kernels release the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tormentor.engine.client import LearningClient, Send, Stop
from tormentor.engine.protocol import REPLY_TYPES, Challenge, Work

from .codec import WireError, decode, encode
from .errors import ConnectionClosed, NoResponders, RequestTimeout, TransportError, translate
from .subjects import CLIENT_REQUESTS, client_connect_options, new_client_secret

__all__ = ["ClientOutcome", "NatsRequester", "connect_client", "drive_client", "run_clients"]

log = logging.getLogger(__name__)

#: Puzzles of at least this many bits are solved in a worker thread.
THREAD_POW_BITS = 14
#: Largest reply a client accepts (a Work message is about d * 8 + 100 bytes).
MAX_REPLY_BYTES = 4 * 1024 * 1024
#: How long a client keeps retrying while the broker is unreachable before it gives up.
TRANSPORT_PATIENCE_S = 60.0
#: Backoff between retries after a lost reply: doubles from the first to the last value.
RETRY_BACKOFF_S = (0.5, 10.0)


@dataclass
class ClientOutcome:
    """How one client's run ended, with its own latency samples (seconds)."""

    index: int
    stop: Stop
    updates_sent: int
    waits: int
    rejoins: int
    timeouts: int
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0


class NatsRequester:
    """Send one request and decode its reply, on one NATS connection.

    Parameters
    ----------
    nc : nats.aio.client.Client
        A connected client.
    timeout_s : float
        Reply timeout (size it for Tor when the broker is an onion service).
    subject : str
        Request subject.
    """

    def __init__(self, nc: Any, *, timeout_s: float, subject: str = CLIENT_REQUESTS) -> None:
        self.nc = nc
        self.timeout_s = timeout_s
        self.subject = subject

    async def request(self, message: Any) -> Any:
        """Return the decoded reply to ``message``.

        Raises
        ------
        RequestTimeout, NoResponders, ConnectionClosed, TransportError
            Translated from nats-py (see :mod:`tormentor.transport.errors`).
        WireError
            The reply was not a valid protocol message (a broken or hostile broker).
        """
        data = encode(message)
        try:
            msg = await self.nc.request(self.subject, data, timeout=self.timeout_s)
        except Exception as error:  # nats-py raises its own classes: translate in one place
            raise translate(error, size=len(data)) from error
        return decode(msg.data, accept=REPLY_TYPES, max_bytes=MAX_REPLY_BYTES)


async def connect_client(
    url: str,
    *,
    connect_timeout_s: float = 10.0,
    name: str = "client",
    max_reconnect_attempts: int = 5,
    **extra: Any,
) -> Any:
    """Open one anonymous client connection (fresh secret, own inbox prefix).

    ``max_reconnect_attempts=-1`` reconnects forever (through Tor, where a broken
    circuit is routine); the client's own patience then bounds the retries.
    """
    import nats

    options = client_connect_options(new_client_secret())
    try:
        return await nats.connect(
            url,
            connect_timeout=connect_timeout_s,
            allow_reconnect=True,
            max_reconnect_attempts=max_reconnect_attempts,
            reconnect_time_wait=0.5,
            name=name,
            **options,
            **extra,
        )
    except Exception as error:
        raise translate(error) from error


def _expected_hashes(reply: Any) -> float:
    bits = reply.bits if isinstance(reply, (Challenge, Work)) else 0
    return 2.0**bits


async def drive_client(
    client: LearningClient,
    requester: NatsRequester,
    *,
    index: int = 0,
    on_reply: Callable[[int, Any], None] | None = None,
    patience_s: float = TRANSPORT_PATIENCE_S,
) -> ClientOutcome:
    """Run one client to its stop; return its outcome. Never raises for network trouble.

    A lost reply (timeout, connection trouble) makes the client join again, since its
    puzzle may have been consumed by the broker. It retries with a doubling backoff and
    gives up only after ``patience_s`` of consecutive failures (Tor may need a while to
    route around a dead relay).
    """
    started = time.perf_counter()
    latencies: list[float] = []
    timeouts = 0
    failing_since: float | None = None
    backoff = RETRY_BACKOFF_S[0]
    action: Send | Stop = client.start()
    while isinstance(action, Send):
        if action.after_s > 0:
            await asyncio.sleep(action.after_s)
        sent = time.perf_counter()
        try:
            reply = await requester.request(action.request)
        except (RequestTimeout, NoResponders, ConnectionClosed) as error:
            timeouts += 1
            now = time.perf_counter()
            failing_since = failing_since if failing_since is not None else now
            if now - failing_since > patience_s:
                action = Stop(
                    reason=f"broker unreachable for {now - failing_since:.0f} s ({type(error).__name__})",
                    ok=False,
                    code="unreachable",
                )
                break
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, RETRY_BACKOFF_S[1])
            action = client.rejoin(type(error).__name__, counted=False)
            continue
        except (TransportError, WireError) as error:
            action = Stop(reason=f"transport: {error}", ok=False, code=type(error).__name__)
            break
        failing_since, backoff = None, RETRY_BACKOFF_S[0]
        latencies.append(time.perf_counter() - sent)
        if on_reply is not None:
            on_reply(index, reply)
        if _expected_hashes(reply) >= 2.0**THREAD_POW_BITS:
            action = await asyncio.to_thread(client.on_reply, reply)
        else:
            action = client.on_reply(reply)
    return ClientOutcome(
        index=index,
        stop=action,
        updates_sent=client.stats.updates_sent,
        waits=client.stats.waits,
        rejoins=client.stats.rejoins,
        timeouts=timeouts,
        latencies_s=latencies,
        wall_s=time.perf_counter() - started,
    )


async def run_clients(
    clients: Sequence[LearningClient],
    url: str,
    *,
    indices: Sequence[int] | None = None,
    connections: str = "own",
    request_timeout_s: float = 10.0,
    connect_timeout_s: float = 10.0,
    start_delays_s: Sequence[float] | None = None,
    connect: Callable[..., Any] = connect_client,
    patience_s: float = TRANSPORT_PATIENCE_S,
) -> list[ClientOutcome]:
    """Run ``clients`` concurrently against the broker at ``url``; return their outcomes.

    Parameters
    ----------
    clients : sequence of LearningClient
        The state machines to drive.
    url : str
        The NATS server (ignored by a Tor ``connect``, which knows the onion).
    indices : sequence of int or None
        The clients' numbers in the run (for outcomes and connection names).
    connections : {"own", "shared"}
        One connection per client (default; needed for reply privacy between clients
        of different owners) or one for all of this process's clients.
    request_timeout_s : float
        Reply timeout; a lost reply makes the client join again.
    connect_timeout_s : float
        Connection timeout (size it for Tor).
    start_delays_s : sequence of float or None
        Seconds each client waits before joining (spreads a crowd's arrival).
    connect : callable
        Opens a connection (``connect_client``; the Tor layer passes its own).
    patience_s : float
        How long each client keeps retrying an unreachable broker before it gives up.
    """
    if connections not in ("own", "shared"):
        raise ValueError(f"connections must be 'own' or 'shared', got {connections!r}")
    indices = list(indices) if indices is not None else list(range(len(clients)))
    delays = list(start_delays_s) if start_delays_s is not None else [0.0] * len(clients)
    shared = await connect(url, connect_timeout_s=connect_timeout_s) if connections == "shared" else None

    async def one(position: int) -> ClientOutcome:
        client = clients[position]
        if delays[position] > 0:
            await asyncio.sleep(delays[position])
        try:
            nc = shared or await connect(
                url, connect_timeout_s=connect_timeout_s, name=f"client-{indices[position]}"
            )
        except TransportError as error:
            return ClientOutcome(
                indices[position], Stop(f"connect: {error}", False, type(error).__name__), 0, 0, 0, 0
            )
        try:
            return await drive_client(
                client,
                NatsRequester(nc, timeout_s=request_timeout_s),
                index=indices[position],
                patience_s=patience_s,
            )
        finally:
            if shared is None:
                await _close(nc)

    try:
        return list(await asyncio.gather(*(one(i) for i in range(len(clients)))))
    finally:
        if shared is not None:
            await _close(shared)


async def _close(nc: Any) -> None:
    try:
        await nc.drain()
    except Exception:
        try:
            await nc.close()
        except Exception:
            log.debug("closing a client connection failed", exc_info=True)
