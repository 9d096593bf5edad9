"""Serve a :class:`~tormentor.engine.brokerage.Brokerage` on NATS.

One process owns the model. Subscription callbacks only queue messages; one task drains
everything pending (up to ``max_batch``), decodes it, hands the batch to the brokerage
(one RONI kernel call and one vectorised sum for all its updates), and publishes the
replies together. A reply the latency defence delays is scheduled on the event loop, so
a slow reply never holds up another client. Housekeeping (timeouts, deadlines) runs
every ``tick_every_s``.

Nothing a peer sends can stop the service: undecodable requests get a typed
:class:`~tormentor.engine.protocol.Error` reply, and a failure inside the brokerage (a
bug) answers that batch with ``INTERNAL`` and keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from tormentor.engine.broker import Outgoing
from tormentor.engine.brokerage import Brokerage
from tormentor.engine.protocol import (
    Curate,
    ErrorCode,
    Fetch,
    Join,
    Leave,
    ProtocolError,
    Solve,
    Status,
    Update,
)

from .codec import WireError, decode, encode
from .subjects import CLIENT_REQUESTS, CURATOR_REQUESTS

__all__ = ["BrokerService", "ServiceStats"]

log = logging.getLogger(__name__)

#: What may arrive on each subject; anything else is ``UNKNOWN_TYPE``.
CLIENT_REQUEST_TYPES: tuple[type, ...] = (Join, Solve, Update, Leave)
CURATOR_REQUEST_TYPES: tuple[type, ...] = (Curate, Status, Fetch)


@dataclass
class ServiceStats:
    """Counters of the service (not of the protocol: see the brokers' progress)."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    refused_on_decode: Counter = field(default_factory=Counter)
    no_reply_subject: int = 0
    internal_errors: int = 0
    busy_s: float = 0.0


class BrokerService:
    """The broker process's NATS front: batches in, replies out.

    Parameters
    ----------
    brokerage : Brokerage
        The models this process serves (single owner: only this service touches it).
    max_batch : int
        Most requests handled in one batch.
    tick_every_s : float
        Interval of the brokerage's housekeeping.
    max_client_bytes : int
        Largest client request decoded (bigger ones get ``OVERSIZED``).
    max_curator_bytes : int
        Largest curator request (a ``curate`` carries the validation set).
    """

    def __init__(
        self,
        brokerage: Brokerage,
        *,
        max_batch: int = 1024,
        tick_every_s: float = 0.25,
        max_client_bytes: int = 64 * 1024,
        max_curator_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        if max_batch < 1 or not tick_every_s > 0:
            raise ValueError("max_batch must be >= 1 and tick_every_s > 0")
        self.brokerage = brokerage
        self.max_batch = max_batch
        self.tick_every_s = tick_every_s
        self.max_client_bytes = max_client_bytes
        self.max_curator_bytes = max_curator_bytes
        self.stats = ServiceStats()
        self._pending: deque[tuple[Any, bool]] = deque()
        self._wake = asyncio.Event()
        self._nc: Any = None
        self._subs: list[Any] = []
        self._task: asyncio.Task | None = None
        self._delayed: dict[int, tuple[asyncio.TimerHandle, str, bytes]] = {}
        self._delayed_count = 0
        self._stopping = False

    async def start(self, nc: Any) -> None:
        """Subscribe on ``nc`` (connected with the broker identity) and start serving."""
        self._nc = nc
        self._subs = [
            await nc.subscribe(
                CLIENT_REQUESTS,
                cb=self._on_client,
                pending_msgs_limit=1_000_000,
                pending_bytes_limit=512 * 1024 * 1024,
            ),
            await nc.subscribe(CURATOR_REQUESTS, cb=self._on_curator),
        ]
        await nc.flush()
        self._task = asyncio.create_task(self._serve(), name="broker-service")

    async def stop(self) -> None:
        """Stop taking requests, answer what is queued, send delayed replies now."""
        self._stopping = True
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may already be closed
                pass
        self._wake.set()
        if self._task is not None:
            await self._task
        for timer, subject, data in self._delayed.values():
            timer.cancel()
            await self._publish(subject, data)
        self._delayed.clear()
        if self._nc is not None and self._nc.is_connected:
            await self._nc.flush()

    async def __aenter__(self) -> BrokerService:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ intake

    async def _on_client(self, msg: Any) -> None:
        self._pending.append((msg, False))
        self._wake.set()

    async def _on_curator(self, msg: Any) -> None:
        self._pending.append((msg, True))
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.tick_every_s
        while True:
            if not self._pending and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_tick - loop.time()))
                except TimeoutError:
                    pass
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
                await self._handle(batch)
                await asyncio.sleep(0)  # let the callbacks queue more, and the flusher write
            if loop.time() >= next_tick:
                await self._send(self._guarded(self.brokerage.tick, []))
                next_tick = loop.time() + self.tick_every_s
            if self._stopping and not self._pending:
                return

    async def _handle(self, batch: list[tuple[Any, bool]]) -> None:
        started = time.perf_counter()
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        requests: list[tuple[Any, Any]] = []
        immediate: list[Outgoing] = []
        for msg, from_curator in batch:
            if not msg.reply:
                self.stats.no_reply_subject += 1
                continue
            try:
                if from_curator:
                    request = decode(msg.data, accept=CURATOR_REQUEST_TYPES, max_bytes=self.max_curator_bytes)
                else:
                    request = decode(msg.data, accept=CLIENT_REQUEST_TYPES, max_bytes=self.max_client_bytes)
            except WireError as error:
                self.stats.refused_on_decode[error.code.value] += 1
                immediate.append(Outgoing(msg.reply, error.reply()))
                continue
            requests.append((msg.reply, request))
        outgoing = immediate + self._guarded(lambda: self.brokerage.handle_batch(requests), requests)
        self.stats.busy_s += time.perf_counter() - started
        await self._send(outgoing)

    def _guarded(self, call: Any, requests: list[tuple[Any, Any]]) -> list[Outgoing]:
        """Run a brokerage call; on a bug, answer ``requests`` with ``INTERNAL`` and go on."""
        try:
            return call()
        except Exception:
            self.stats.internal_errors += 1
            log.exception("broker failed on a batch; answering it with an internal error")
            refusal = ProtocolError(ErrorCode.INTERNAL, "the broker failed on this request; it had no effect")
            return [Outgoing(handle, refusal.reply()) for handle, _ in requests]

    async def _send(self, outgoing: list[Outgoing]) -> None:
        loop = asyncio.get_running_loop()
        for item in outgoing:
            if item.handle is None:
                continue
            data = encode(item.reply)
            if item.delay_s > 0 and not self._stopping:
                self._delayed_count += 1
                key = self._delayed_count
                timer = loop.call_later(item.delay_s, self._publish_later, key, item.handle, data)
                self._delayed[key] = (timer, item.handle, data)
            else:
                await self._publish(item.handle, data)

    def _publish_later(self, key: int, subject: str, data: bytes) -> None:
        self._delayed.pop(key, None)
        asyncio.ensure_future(self._publish(subject, data))

    async def _publish(self, subject: str, data: bytes) -> None:
        try:
            await self._nc.publish(subject, data)
        except Exception as error:  # a closed connection must not kill the loop
            log.warning("could not publish a reply: %s", type(error).__name__)
