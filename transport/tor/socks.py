"""Reach an onion service through tor's SOCKS5 port, from asyncio code.

:class:`SocksForwarder` listens on ``127.0.0.1:<ephemeral>`` and tunnels every connection
it accepts through tor's SOCKS5 port to ``<onion>:<port>``. Any TCP client (nats-py with
``nats://127.0.0.1:<local_port>``, say) then reaches the onion without knowing about
SOCKS, and its reconnects go through the forwarder as well.

Each forwarder has its own SOCKS username and password. Tor's ``IsolateSOCKSAuth`` (on by
default for every SocksPort) puts streams with different credentials on different
circuits, so each logical client (one forwarder each) gets its own rendezvous circuit
and clients cannot be linked by a shared circuit.

The ``.onion`` name is always resolved by tor (``rdns=True``, ``socks5h`` semantics), never
locally. Timeouts are sized for Tor: 60 s per connection attempt by default. When an
attempt fails in a way that a retry may fix, the forwarder switches to a new SOCKS
username (a new circuit) and, if given a ``new_identity`` callable (``SIGNAL NEWNYM`` on
the client tor, which also purges its cached onion descriptors), calls it from a worker
thread, then tries again.

Example::

    async with SocksForwarder(service.address, 4222, "127.0.0.1", net.socks_port,
                              new_identity=net.new_identity) as forwarder:
        nc = await nats.connect(f"nats://127.0.0.1:{forwarder.local_port}",
                                connect_timeout=60)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
from collections.abc import Callable
from types import TracebackType

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy

from .errors import OnionUnreachable

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "TOR_SOCKS_ERRORS",
    "SocksForwarder",
    "open_socks_connection",
]

log = logging.getLogger(__name__)

#: Seconds allowed for one SOCKS connect through tor (tor's own circuit timeout is 60 s).
DEFAULT_CONNECT_TIMEOUT_S = 60.0

#: SOCKS5 reply codes tor sends for onion services (with the SocksPort flag
#: ``ExtendedErrors``), from tor's socks-extensions.txt.
TOR_SOCKS_ERRORS: dict[int, str] = {
    0x01: "general failure",
    0x04: "host unreachable",
    0x05: "connection refused by the service",
    0x06: "TTL expired (tor timed out)",
    0xF0: "onion service descriptor can not be found",
    0xF1: "onion service descriptor is invalid",
    0xF2: "onion service introduction failed",
    0xF3: "onion service rendezvous failed",
    0xF4: "onion service requires client authorization",
    0xF5: "onion service client authorization is wrong",
    0xF6: "onion address is invalid",
    0xF7: "onion service introduction timed out",
}
#: Codes a retry cannot fix.
_PERMANENT_CODES = frozenset({0xF4, 0xF5, 0xF6})
_CHUNK = 64 * 1024
_MAX_SOCKS_FIELD = 255


class _DialFailure(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def _check_port(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"{name}: expected an int in 1..65535, got {value!r}")
    return value


def _check_host(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError(f"{name}: expected a non-empty host name, got {value!r}")
    return value


def _check_credential(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: expected a non-empty str")
    if len(value.encode("utf-8")) > _MAX_SOCKS_FIELD:
        raise ValueError(f"{name}: longer than {_MAX_SOCKS_FIELD} bytes (SOCKS5 limit)")
    return value


def _reply_code(exc: ProxyError) -> int | None:
    if exc.error_code is not None:
        return int(exc.error_code)
    # python-socks reports codes it does not know (tor's 0xF0-0xF7) only in the text.
    match = re.search(r"reply code: 0x([0-9a-f]{2})", str(exc), re.IGNORECASE)
    return int(match.group(1), 16) if match else None


async def _dial(
    host: str,
    port: int,
    socks_host: str,
    socks_port: int,
    username: str,
    password: str,
    timeout_s: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """One SOCKS5 connect; raises _DialFailure with a reason and whether to retry."""
    proxy = Proxy(
        ProxyType.SOCKS5, socks_host, socks_port, username=username, password=password,
        rdns=True, loop=asyncio.get_running_loop(),
    )
    try:
        sock = await proxy.connect(dest_host=host, dest_port=port, timeout=timeout_s)
    except ProxyConnectionError as exc:
        raise _DialFailure(f"tor's SOCKS port {socks_host}:{socks_port} cannot be reached "
                           f"({exc.strerror or exc})", retryable=False) from None
    except ProxyTimeoutError:
        raise _DialFailure(f"SOCKS connect timed out after {timeout_s:g} s",
                           retryable=True) from None
    except ProxyError as exc:
        code = _reply_code(exc)
        if code is None:
            text = str(exc)
            permanent = "authentication" in text.lower()
            raise _DialFailure(f"SOCKS error: {text}", retryable=not permanent) from None
        meaning = TOR_SOCKS_ERRORS.get(code, "unknown SOCKS reply")
        raise _DialFailure(f"{meaning} (SOCKS 0x{code:02X})",
                           retryable=code not in _PERMANENT_CODES) from None
    except OSError as exc:
        raise _DialFailure(f"SOCKS connection broke: {exc}", retryable=True) from None
    try:
        return await asyncio.open_connection(sock=sock, limit=_CHUNK)
    except OSError as exc:
        sock.close()
        raise _DialFailure(f"SOCKS connection broke: {exc}", retryable=True) from None


async def open_socks_connection(
    host: str,
    port: int,
    *,
    socks_host: str,
    socks_port: int,
    username: str,
    password: str,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open one stream to ``host:port`` through tor's SOCKS5 port (one try, no retry).

    Parameters
    ----------
    host : str
        Destination, typically ``"<id>.onion"``; resolved by tor.
    port : int
        Destination (virtual) port.
    socks_host : str
        Tor's SOCKS address, e.g. ``"127.0.0.1"``.
    socks_port : int
        Tor's SOCKS port.
    username, password : str
        SOCKS credentials; streams with different credentials use different circuits.
    connect_timeout_s : float, optional
        Seconds allowed for the connect; default 60.

    Returns
    -------
    (asyncio.StreamReader, asyncio.StreamWriter)

    Raises
    ------
    ValueError
        If an argument is malformed.
    OnionUnreachable
        If the connect fails (``attempts == 1``; the reason names tor's SOCKS error).
    """
    _check_host("host", host)
    _check_port("port", port)
    _check_host("socks_host", socks_host)
    _check_port("socks_port", socks_port)
    _check_credential("username", username)
    _check_credential("password", password)
    if not connect_timeout_s > 0:
        raise ValueError(f"connect_timeout_s: expected > 0, got {connect_timeout_s!r}")
    try:
        return await _dial(host, port, socks_host, socks_port, username, password,
                           connect_timeout_s)
    except _DialFailure as failure:
        raise OnionUnreachable(host, port, 1, failure.reason) from None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until EOF, then half-close the other side."""
    while True:
        data = await reader.read(_CHUNK)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


class SocksForwarder:
    """A local TCP port that tunnels each connection to ``<onion>:<port>`` through tor.

    Use as an async context manager (or call :meth:`start` and :meth:`close`).

    Parameters
    ----------
    onion_host : str
        Destination host, e.g. ``"<56 chars>.onion"``; resolved by tor, never locally.
    port : int
        Destination (virtual) port, e.g. 4222.
    socks_host : str
        Tor's SOCKS address, e.g. ``"127.0.0.1"``.
    socks_port : int
        Tor's SOCKS port.
    username, password : str, optional
        SOCKS credentials of this forwarder (its circuit-isolation key). Default: random
        (``secrets``), distinct for each forwarder. At most 255 bytes each.
    connect_timeout_s : float, optional
        Seconds allowed for each SOCKS connect; default 60.
    attempts : int, optional
        Connects tried per accepted connection before giving up; default 3.
    retry_delay_s : float, optional
        Seconds between attempts; default 1.
    new_identity : callable, optional
        Called (in a worker thread) before each retry, e.g.
        :meth:`PrivateTorNetwork.new_identity` (``SIGNAL NEWNYM`` on the client tor).
    listen_host : str, optional
        Local IP address to listen on; default ``"127.0.0.1"``.

    Attributes
    ----------
    onion_host : str
    port : int
    connections_accepted : int
        Local connections accepted so far.
    tunnel_failures : int
        Accepted connections dropped because no tunnel could be made.
    last_error : OnionUnreachable or None
        The last such failure.

    Examples
    --------
    >>> async with SocksForwarder(onion, 4222, "127.0.0.1", socks_port) as fwd:  # doctest: +SKIP
    ...     reader, writer = await asyncio.open_connection("127.0.0.1", fwd.local_port)
    """

    def __init__(
        self,
        onion_host: str,
        port: int,
        socks_host: str,
        socks_port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        attempts: int = 3,
        retry_delay_s: float = 1.0,
        new_identity: Callable[[], object] | None = None,
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.onion_host = _check_host("onion_host", onion_host)
        self.port = _check_port("port", port)
        self.socks_host = _check_host("socks_host", socks_host)
        self.socks_port = _check_port("socks_port", socks_port)
        base = username if username is not None else f"tm-{secrets.token_hex(8)}"
        self._base_username = _check_credential("username", base)
        # Leave room for the "~<n>" suffix added on retries.
        if len(base.encode("utf-8")) > _MAX_SOCKS_FIELD - 8:
            raise ValueError(f"username: longer than {_MAX_SOCKS_FIELD - 8} bytes")
        self._password = _check_credential(
            "password", password if password is not None else secrets.token_hex(8))
        if not connect_timeout_s > 0:
            raise ValueError(f"connect_timeout_s: expected > 0, got {connect_timeout_s!r}")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts: expected an int >= 1, got {attempts!r}")
        if not retry_delay_s >= 0:
            raise ValueError(f"retry_delay_s: expected >= 0, got {retry_delay_s!r}")
        if new_identity is not None and not callable(new_identity):
            raise TypeError("new_identity: expected a callable or None")
        self.connect_timeout_s = float(connect_timeout_s)
        self.attempts = attempts
        self.retry_delay_s = float(retry_delay_s)
        self._new_identity = new_identity
        try:
            ipaddress.ip_address(listen_host)
        except ValueError:
            raise ValueError(f"listen_host: expected an IP address literal, got "
                             f"{listen_host!r}") from None
        self._listen_host = listen_host
        self._username = self._base_username
        self._generation = 0
        self._renew_lock: asyncio.Lock | None = None
        self._server: asyncio.AbstractServer | None = None
        self._local_port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_accepted = 0
        self.tunnel_failures = 0
        self.last_error: OnionUnreachable | None = None

    # ----------------------------------------------------------------- properties
    @property
    def local_host(self) -> str:
        """The address the forwarder listens on."""
        return self._listen_host

    @property
    def local_port(self) -> int:
        """The local port to connect to (after :meth:`start`)."""
        if self._local_port is None:
            raise RuntimeError("SocksForwarder: not started")
        return self._local_port

    @property
    def username(self) -> str:
        """The SOCKS username in use now (changes after a failed attempt)."""
        return self._username

    @property
    def open_connections(self) -> int:
        """Connections being forwarded now."""
        return len(self._tasks)

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> SocksForwarder:
        """Start listening on ``listen_host:<ephemeral port>``.

        Returns
        -------
        SocksForwarder
            self.

        Raises
        ------
        RuntimeError
            If already started.
        OSError
            If the local port cannot be opened.
        """
        if self._server is not None:
            raise RuntimeError("SocksForwarder: already started")
        self._renew_lock = asyncio.Lock()
        self._server = await asyncio.start_server(self._handle, self._listen_host, 0)
        self._local_port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and close every forwarded connection. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> SocksForwarder:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ----------------------------------------------------------------- tunnels
    async def open_tunnel(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open one stream to the onion with this forwarder's credentials, with retries.

        Returns
        -------
        (asyncio.StreamReader, asyncio.StreamWriter)

        Raises
        ------
        OnionUnreachable
            After ``attempts`` failed connects, or at once for a failure no retry can fix
            (tor's SOCKS port down, invalid address, client authorization).
        """
        failure = _DialFailure("no attempt made", retryable=False)
        attempt = 0
        for attempt in range(1, self.attempts + 1):
            username = self._username
            try:
                return await _dial(self.onion_host, self.port, self.socks_host,
                                   self.socks_port, username, self._password,
                                   self.connect_timeout_s)
            except _DialFailure as exc:
                failure = exc
            log.info("connect to %s:%d failed (attempt %d of %d): %s", self.onion_host,
                     self.port, attempt, self.attempts, failure.reason)
            if not failure.retryable or attempt == self.attempts:
                break
            await self._renew_identity(username)
            await asyncio.sleep(self.retry_delay_s)
        raise OnionUnreachable(self.onion_host, self.port, attempt, failure.reason)

    async def _renew_identity(self, failed_username: str) -> None:
        """New SOCKS username (so a new circuit) and NEWNYM, once per failed username."""
        if self._renew_lock is None:
            self._renew_lock = asyncio.Lock()
        async with self._renew_lock:
            if self._username != failed_username:
                return  # another connection already renewed it
            self._generation += 1
            self._username = f"{self._base_username}~{self._generation}"
            if self._new_identity is not None:
                try:
                    await asyncio.to_thread(self._new_identity)
                except Exception as exc:  # a failed NEWNYM must not stop the retry
                    log.warning("new identity before retry failed: %s", type(exc).__name__)

    async def _handle(self, local_reader: asyncio.StreamReader,
                      local_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections_accepted += 1
        try:
            await self._forward(local_reader, local_writer)
        except asyncio.CancelledError:
            # Only close() cancels this task. End normally: on Python 3.11 a cancelled
            # start_server callback task makes asyncio log a spurious error.
            pass
        finally:
            local_writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _forward(self, local_reader: asyncio.StreamReader,
                       local_writer: asyncio.StreamWriter) -> None:
        try:
            remote_reader, remote_writer = await self.open_tunnel()
        except OnionUnreachable as exc:
            self.tunnel_failures += 1
            self.last_error = exc
            log.warning("dropping a local connection: %s", exc)
            return
        pipes = {
            asyncio.ensure_future(_pipe(local_reader, remote_writer)),
            asyncio.ensure_future(_pipe(remote_reader, local_writer)),
        }
        try:
            # Both directions end (EOF each way), or one breaks: then close both.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for pipe in pipes:
                pipe.cancel()
            remote_writer.close()
            local_writer.close()
            await asyncio.gather(*pipes, return_exceptions=True)
            with contextlib.suppress(OSError):
                await remote_writer.wait_closed()

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._local_port}" if self._local_port else "not started"
        return f"SocksForwarder({where} -> {self.onion_host}:{self.port} via " \
               f"{self.socks_host}:{self.socks_port})"
