"""Put the NATS bus behind a Tor onion service: the broker side of ``tor.mode``.

``private`` builds a private Tor network on 127.0.0.1 (the tests' and the quick start's
mode); ``system`` publishes through an existing tor given by its control and SOCKS
ports. Either way the onion's virtual port 4222 maps to the local nats-server, the onion
key is kept (mode 0600) in the state folder so a restarted broker keeps its address, and
clients get what they need to dial it: the onion address and a SOCKS port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ONION_PORT", "TorFront", "connection_origins", "start_tor_front"]

#: The onion's virtual port for NATS.
ONION_PORT = 4222


@dataclass(frozen=True)
class TorFront:
    """How clients reach the broker through Tor, and what the run reports about it."""

    mode: str
    onion: str
    socks_host: str
    socks_port: int
    onion_service_pid: int | None
    backend: Any
    summary: dict[str, Any]
    client_control_port: int | None = None

    def client_info(self) -> dict[str, Any]:
        """Picklable dial information for client processes (control port: for NEWNYM)."""
        return {
            "onion": self.onion,
            "port": ONION_PORT,
            "socks_host": self.socks_host,
            "socks_port": self.socks_port,
            "control_port": self.client_control_port,
        }


async def start_tor_front(
    tor: Any, stack: contextlib.AsyncExitStack, state_dir: Path, nats_port: int
) -> TorFront:
    """Start (private) or attach to (system) tor and publish the broker's onion service.

    Parameters
    ----------
    tor : TorConfig
        ``mode``, ports, network size and timeouts.
    stack : AsyncExitStack
        Receives the teardown (the private network's tors die with it).
    state_dir : Path
        Holds the onion key (``broker.onion-key``, 0600) and the private network.
    nats_port : int
        The local nats-server port the onion forwards to.
    """
    from tormentor.transport.tor import PrivateTorNetwork, SystemTor, control_password

    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    started = time.monotonic()
    if tor.mode == "private":
        backend = PrivateTorNetwork(
            state_dir / "network",
            relays=tor.relays,
            authorities=tor.authorities,
            bootstrap_timeout_s=tor.bootstrap_timeout_s,
        )
    elif tor.mode == "system":
        backend = SystemTor(tor.control_port, tor.socks_port, password=control_password())
    else:
        raise ValueError(f"tor.mode must be 'private' or 'system' here, got {tor.mode!r}")
    stack.callback(backend.close)
    await asyncio.to_thread(backend.start)
    await asyncio.to_thread(backend.wait_ready)
    ready = time.monotonic() - started
    service = await asyncio.to_thread(
        backend.publish_onion, {ONION_PORT: ("127.0.0.1", nats_port)}, key_file=state_dir / "broker.onion-key"
    )
    summary = {
        "mode": tor.mode,
        "onion": service.address,
        "bootstrap_s": ready,
        "publish_s": time.monotonic() - started - ready,
    }
    if tor.mode == "private":
        summary["relays"] = tor.relays
        summary["authorities"] = tor.authorities
    pid = getattr(backend, "onion_service_pid", None)
    control_port = backend.tors["client"].control_port if tor.mode == "private" else tor.control_port
    return TorFront(
        tor.mode, service.address, backend.socks_host, backend.socks_port, pid, backend, summary, control_port
    )


def connection_origins(nats_port: int, onion_service_pid: int | None) -> dict[str, Any]:
    """Classify the connections nats-server accepted, by the process on the other end.

    With Tor on, every client connection must come from the onion-service tor: the
    broker's server never sees a client's address. Connections from this process (the
    broker, the auth callout) are local by design. Anything else is counted in
    ``other`` and named in ``other_processes`` (``"name[pid]"``, or ``"unknown"`` when the
    peer socket's owner could not be found, e.g. a connection closing as it was listed).
    """
    from tormentor.transport.tor.checks import tcp_peers

    origins: dict[str, Any] = {"onion_service_tor": 0, "broker_process": 0, "other": 0, "other_processes": []}
    me = os.getpid()
    for peer in tcp_peers(nats_port):
        if onion_service_pid is not None and peer.pid == onion_service_pid:
            origins["onion_service_tor"] += 1
        elif peer.pid == me:
            origins["broker_process"] += 1
        else:
            origins["other"] += 1
            origins["other_processes"].append(_describe_process(peer.pid))
    return origins


def _describe_process(pid: int | None) -> str:
    if pid is None:
        return "unknown"
    try:
        import psutil

        return f"{psutil.Process(pid).name()}[{pid}]"
    except Exception:  # the process may be gone already
        return f"gone[{pid}]"
