"""Dial the broker's onion service: one SOCKS forwarder, hence one Tor circuit, per connection.

Every logical client gets its own :class:`~tormentor.transport.tor.SocksForwarder` with
its own random SOCKS credentials; tor's ``IsolateSOCKSAuth`` then gives it its own
circuit, so two clients of one process are not linkable by their circuit. NATS connects
to the forwarder's local port and knows nothing of Tor (no nats-py internals used).
"""

from __future__ import annotations

import threading
from typing import Any

from .client_runner import connect_client

__all__ = ["NewIdentity", "connect_through_tor", "tor_connector"]


class NewIdentity:
    """``SIGNAL NEWNYM`` on the clients' tor, over one control connection per process.

    A forwarder calls it when a dial fails: tor then builds fresh circuits and forgets
    cached onion descriptors, which is how clients route around a relay that died
    (a private network's authorities may keep listing it as running). The connection
    is opened on first use (cookie authentication, or the password in
    ``$TORMENTOR_TOR_CONTROL_PASSWORD``); without a control port it does nothing.
    """

    def __init__(self, control_port: int | None) -> None:
        self.control_port = control_port
        self._control: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self.control_port is None:
            return
        from tormentor.transport.tor import TorControl, control_password

        with self._lock:
            if self._control is None:
                self._control = TorControl.connect(
                    self.control_port, name="clients' tor", password=control_password()
                )
            self._control.signal_newnym()

    def close(self) -> None:
        """Close the control connection, if one was opened."""
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None


async def connect_through_tor(
    info: dict[str, Any],
    *,
    connect_timeout_s: float,
    forwarders: list[Any],
    connect_options: dict[str, Any] | None = None,
    name: str = "client",
    new_identity: NewIdentity | None = None,
) -> Any:
    """Open a forwarder to ``info["onion"]`` and a NATS connection through it.

    ``connect_options`` sign the connection in (an identity's nkey options); by default
    it is an anonymous client (fresh secret, own inbox prefix).
    """
    from tormentor.transport.tor import SocksForwarder

    forwarder = SocksForwarder(
        info["onion"],
        info["port"],
        info["socks_host"],
        info["socks_port"],
        connect_timeout_s=connect_timeout_s,
        new_identity=new_identity,
    )
    await forwarder.__aenter__()
    forwarders.append(forwarder)
    url = f"nats://127.0.0.1:{forwarder.local_port}"
    # A broken circuit is routine through Tor: NATS reconnects (through the forwarder,
    # hence a new circuit) for as long as the client's own patience lasts.
    if connect_options is None:
        return await connect_client(
            url, connect_timeout_s=connect_timeout_s, name=name, max_reconnect_attempts=-1
        )
    import nats

    return await nats.connect(
        url,
        connect_timeout=connect_timeout_s,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1.0,
        **{"name": name, **connect_options},
    )


def tor_connector(info: dict[str, Any]) -> tuple[Any, list[Any], NewIdentity]:
    """Return a Tor ``connect(url, ...)`` for :func:`run_clients`, its forwarders and its NEWNYM.

    ``info`` holds ``onion``, ``port``, ``socks_host``, ``socks_port`` and, optionally,
    ``control_port`` of the clients' tor (for NEWNYM on failed dials). Close the
    forwarders and the :class:`NewIdentity` when the clients are done.
    """
    forwarders: list[Any] = []
    new_identity = NewIdentity(info.get("control_port"))

    async def connect(url: str, *, connect_timeout_s: float = 60.0, name: str = "client") -> Any:
        del url  # the onion in ``info`` is the only way in
        return await connect_through_tor(
            info,
            connect_timeout_s=connect_timeout_s,
            forwarders=forwarders,
            name=name,
            new_identity=new_identity,
        )

    return connect, forwarders, new_identity
