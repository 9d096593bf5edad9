"""The Tor layer: real tor daemons driven with stem; moves bytes, knows nothing of NATS.

The broker is a Tor onion service (paper, sections 3.2, 4 and 5): clients and the curator
reach it at ``<id>.onion`` through their own tor, the broker's server sees only
connections from its own tor on 127.0.0.1, and no party learns another's address.

Modes
-----
``private``
    :class:`PrivateTorNetwork`: 3 directory authorities + 2 relays (configurable, at
    least 4 relays in all), an onion-service tor and a client tor, all on 127.0.0.1 and
    owned by this process. For tests and local experiments.
``system``
    :class:`SystemTor`: an existing tor on the real Tor network, given by control port
    and SOCKS port (and a password in ``$TORMENTOR_TOR_CONTROL_PASSWORD`` if it needs one).

Both offer :class:`TorBackend`: ``publish_onion(ports, key_file=...)`` returning an
:class:`OnionService`, ``socks_host``/``socks_port`` for clients, ``new_identity()``,
``wait_ready()``, ``close()``. Clients reach the onion through a :class:`SocksForwarder`
(a local TCP port tunnelled through SOCKS5, own credentials hence own circuit).

Sketch::

    with PrivateTorNetwork(workdir) as net:
        service = net.publish_onion({4222: ("127.0.0.1", nats_port)},
                                    key_file=state / "broker.onion-key")
        async with SocksForwarder(service.address, 4222, net.socks_host, net.socks_port,
                                  new_identity=net.new_identity) as fwd:
            ...  # connect to 127.0.0.1:fwd.local_port

Stem is synchronous: every blocking call sits behind :class:`TorControl`, and asyncio
code calls it with ``asyncio.to_thread``. Only :class:`SocksForwarder` is asyncio-native.

Errors
------
One class per decision the caller has to make (all in :mod:`.errors`)::

    TorError
    ├── TorNotInstalled            install tor (Debian package ``tor``)
    │   └── TorVersionUnsupported  upgrade tor (needs 0.4.x: v3 onion services)
    ├── TorProcessError            a tor we launched exited or opened no control port
    ├── TorBootstrapTimeout        (also TimeoutError) bootstrap not finished in time
    ├── TorControlError            control port unreachable, auth or command refused
    ├── OnionPublishError          the onion service could not be published
    │   └── OnionKeyFileError      the saved key file is missing, unsafe or malformed
    └── OnionUnreachable           (also ConnectionError) SOCKS connect to the onion
                                   failed after every retry

No message, log line or ``repr`` holds an onion private key or a control password.

Modules
-------
errors
    The exception tree above (no dependencies).
control
    :class:`TorControl`, the facade over one stem ``Controller``.
process
    :class:`TorProcess`: launch, own and stop one tor.
private_network
    :class:`PrivateTorNetwork`.
system
    :class:`SystemTor` and :class:`TorBackend`.
onion
    :func:`publish_onion`, :class:`OnionService`, the 0600 key file.
socks
    :class:`SocksForwarder`, :func:`open_socks_connection`.
checks
    :func:`tcp_peers`: which process is on the other end of each accepted connection.

The errors import eagerly; everything else loads on first use, so this package imports
without the ``tor`` extra (stem, python-socks) installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    OnionKeyFileError,
    OnionPublishError,
    OnionUnreachable,
    TorBootstrapTimeout,
    TorControlError,
    TorError,
    TorNotInstalled,
    TorProcessError,
    TorVersionUnsupported,
)

if TYPE_CHECKING:
    from .checks import TcpPeer, tcp_peers
    from .control import MINIMUM_TOR_VERSION, BootstrapStatus, TorControl
    from .onion import OnionKey, OnionService, load_onion_key, publish_onion, save_onion_key
    from .private_network import BootstrapTimings, PrivateTorNetwork
    from .process import TorProcess, require_tor_version, tor_version
    from .socks import SocksForwarder, open_socks_connection
    from .system import CONTROL_PASSWORD_ENV, SystemTor, TorBackend, control_password

#: Public name -> module that defines it (imported on first access).
_LAZY = {
    "MINIMUM_TOR_VERSION": "control",
    "BootstrapStatus": "control",
    "TorControl": "control",
    "TorProcess": "process",
    "require_tor_version": "process",
    "tor_version": "process",
    "BootstrapTimings": "private_network",
    "PrivateTorNetwork": "private_network",
    "SystemTor": "system",
    "TorBackend": "system",
    "CONTROL_PASSWORD_ENV": "system",
    "control_password": "system",
    "OnionKey": "onion",
    "OnionService": "onion",
    "load_onion_key": "onion",
    "publish_onion": "onion",
    "save_onion_key": "onion",
    "SocksForwarder": "socks",
    "open_socks_connection": "socks",
    "TcpPeer": "checks",
    "tcp_peers": "checks",
}

__all__ = [
    "CONTROL_PASSWORD_ENV",
    "MINIMUM_TOR_VERSION",
    "BootstrapStatus",
    "BootstrapTimings",
    "OnionKey",
    "OnionKeyFileError",
    "OnionPublishError",
    "OnionService",
    "OnionUnreachable",
    "PrivateTorNetwork",
    "SocksForwarder",
    "SystemTor",
    "TcpPeer",
    "TorBackend",
    "TorBootstrapTimeout",
    "TorControl",
    "TorControlError",
    "TorError",
    "TorNotInstalled",
    "TorProcess",
    "TorProcessError",
    "TorVersionUnsupported",
    "control_password",
    "load_onion_key",
    "open_socks_connection",
    "publish_onion",
    "require_tor_version",
    "save_onion_key",
    "tcp_peers",
    "tor_version",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
