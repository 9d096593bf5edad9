"""Who is connected to a local TCP port: the evidence that the broker never sees clients.

Behind an onion service, every connection the broker's server accepts must come from
the onion-service tor on 127.0.0.1, never from a client's address (paper, section 4.1:
clients stay anonymous to the broker). :func:`tcp_peers` lists the peers of a local
listening port and the process owning each peer socket, with psutil.

Example::

    peers = tcp_peers(nats_port)
    assert {p.pid for p in peers} == {net.onion_service_pid}
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

__all__ = ["TcpPeer", "tcp_peers"]


@dataclass(frozen=True)
class TcpPeer:
    """One established connection accepted on a local port.

    Attributes
    ----------
    local : (str, int)
        The server side: ``(host, port)`` of the accepted socket.
    remote : (str, int)
        The peer's address as the server sees it.
    pid : int or None
        Process owning the peer socket, when it is on this machine and visible to us.
    """

    local: tuple[str, int]
    remote: tuple[str, int]
    pid: int | None


def tcp_peers(port: int, host: str = "127.0.0.1") -> list[TcpPeer]:
    """List the established connections accepted on ``host:port`` and their peers' PIDs.

    Parameters
    ----------
    port : int
        The local listening port, 1-65535.
    host : str, optional
        The local address it listens on; default ``"127.0.0.1"``.

    Returns
    -------
    list of TcpPeer
        One per established connection, in no particular order.

    Raises
    ------
    ValueError
        If ``port`` is out of range.
    psutil.AccessDenied
        If the system does not let this user list sockets.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port: expected an int in 1..65535, got {port!r}")
    connections = psutil.net_connections(kind="tcp")
    # The peer socket is the one whose (local, remote) is this socket's (remote, local):
    # the local address alone is ambiguous, since Linux gives one ephemeral port to
    # several outgoing connections that go to different places.
    owner_by_pair = {
        ((c.laddr.ip, c.laddr.port), (c.raddr.ip, c.raddr.port)): c.pid
        for c in connections
        if c.laddr and c.raddr and c.pid is not None
    }
    peers = []
    for c in connections:
        if (c.laddr and c.raddr and c.status == psutil.CONN_ESTABLISHED
                and c.laddr.port == port and c.laddr.ip == host):
            local, remote = (c.laddr.ip, c.laddr.port), (c.raddr.ip, c.raddr.port)
            peers.append(TcpPeer(local, remote, owner_by_pair.get((remote, local))))
    return peers
