"""Dial the broker's onion service: one SOCKS forwarder, hence one Tor circuit, per connection.

Every logical client gets its own :class:`~tormentor.transport.tor.SocksForwarder` with
its own random SOCKS credentials; tor's ``IsolateSOCKSAuth`` then gives it its own
circuit, so two clients of one process are not linkable by their circuit. NATS connects
to the forwarder's local port and knows nothing of Tor (no nats-py internals used).
"""

from __future__ import annotations

from typing import Any

from .client_runner import connect_client

__all__ = ["connect_through_tor", "tor_connector"]


async def connect_through_tor(
    info: dict[str, Any],
    *,
    connect_timeout_s: float,
    forwarders: list[Any],
    connect_options: dict[str, Any] | None = None,
    name: str = "client",
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
    )
    await forwarder.__aenter__()
    forwarders.append(forwarder)
    url = f"nats://127.0.0.1:{forwarder.local_port}"
    if connect_options is None:
        return await connect_client(url, connect_timeout_s=connect_timeout_s, name=name)
    import nats

    return await nats.connect(url, connect_timeout=connect_timeout_s, **{"name": name, **connect_options})


def tor_connector(info: dict[str, Any]) -> tuple[Any, list[Any]]:
    """Return a ``connect(url, ...)`` for :func:`run_clients` that goes through Tor, and its forwarders."""
    forwarders: list[Any] = []

    async def connect(url: str, *, connect_timeout_s: float = 60.0, name: str = "client") -> Any:
        del url  # the onion in ``info`` is the only way in
        return await connect_through_tor(
            info, connect_timeout_s=connect_timeout_s, forwarders=forwarders, name=name
        )

    return connect, forwarders
