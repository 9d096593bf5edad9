"""Mode ``system``: use a tor that is already running (the real Tor network, deployments).

The tor is reached by its control port (to publish the broker's onion) and its SOCKS port
(for clients). This process does not own it: :meth:`SystemTor.close` removes the onion
services it published and closes the control connection, and tor keeps running.

:class:`SystemTor` and :class:`~tormentor.transport.tor.private_network.PrivateTorNetwork`
offer the same members (:class:`TorBackend`), so wiring code can take either::

    backend: TorBackend = SystemTor(control_port=9051, socks_port=9050)   # or a network
    with backend:
        service = backend.publish_onion({4222: ("127.0.0.1", nats_port)}, key_file=key)
        forwarder = SocksForwarder(service.address, 4222, backend.socks_host,
                                   backend.socks_port, new_identity=backend.new_identity)

The tor's torrc needs ``ControlPort`` with ``CookieAuthentication 1`` (the cookie file
readable by this user) or ``HashedControlPassword``, and a ``SocksPort`` (its default
``IsolateSOCKSAuth`` gives each client forwarder its own circuit). The password, when
there is one, comes from the environment variable ``TORMENTOR_TOR_CONTROL_PASSWORD``
(:func:`control_password`), never from a config file or the command line, where it would
be stored or visible to other users in the process list.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol, runtime_checkable

from .control import TorControl
from .errors import TorControlError
from .onion import OnionService, publish_onion

__all__ = ["CONTROL_PASSWORD_ENV", "SystemTor", "TorBackend", "control_password"]

_ANY_ADDRESS = frozenset({"0.0.0.0", "::"})

#: The environment variable that holds a system tor's control-port password.
CONTROL_PASSWORD_ENV = "TORMENTOR_TOR_CONTROL_PASSWORD"


def control_password(environ: Mapping[str, str] | None = None) -> str | None:
    """Return the control-port password from ``$TORMENTOR_TOR_CONTROL_PASSWORD``, or None.

    An empty value counts as unset (cookie authentication).
    """
    value = (os.environ if environ is None else environ).get(CONTROL_PASSWORD_ENV)
    return value or None


@runtime_checkable
class TorBackend(Protocol):
    """What both modes (``private`` and ``system``) offer to the code that wires them."""

    socks_host: str

    @property
    def socks_port(self) -> int:
        """Tor's SOCKS5 port on ``socks_host``."""
        ...

    @property
    def onion_service_control(self) -> TorControl:
        """Control connection of the tor that hosts the broker's onion service."""
        ...

    def wait_ready(self) -> object:
        """Block until tor can build circuits."""
        ...

    def publish_onion(
        self,
        ports: Mapping[int, tuple[str, int]],
        *,
        key_file: str | os.PathLike[str] | None = None,
        timeout_s: float = 120.0,
    ) -> OnionService:
        """Publish an onion service; see :func:`~tormentor.transport.tor.onion.publish_onion`."""
        ...

    def new_identity(self) -> None:
        """``SIGNAL NEWNYM`` on the tor that owns the SOCKS port."""
        ...

    def close(self) -> None:
        """Release everything this object holds."""
        ...


class SystemTor:
    """A running tor reached by control port and SOCKS port; not owned by this process.

    Parameters
    ----------
    control_port : int
        Tor's control port.
    socks_port : int
        Tor's SOCKS5 port (for clients).
    control_host, socks_host : str, optional
        Addresses of the two ports; default ``"127.0.0.1"``.
    password : str, optional
        The control-port password, when tor uses ``HashedControlPassword``. Never logged
        or shown in an error.
    bootstrap_timeout_s : float, optional
        Default seconds for :meth:`wait_ready`; default 300 (the real network is slower).

    Attributes
    ----------
    socks_host : str
    control_host : str
    control_port : int
    """

    def __init__(
        self,
        control_port: int,
        socks_port: int,
        *,
        control_host: str = "127.0.0.1",
        socks_host: str = "127.0.0.1",
        password: str | None = None,
        bootstrap_timeout_s: float = 300.0,
    ) -> None:
        for name, value in (("control_port", control_port), ("socks_port", socks_port)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise ValueError(f"{name}: expected an int in 1..65535, got {value!r}")
        for name, host in (("control_host", control_host), ("socks_host", socks_host)):
            if not isinstance(host, str) or not host:
                raise ValueError(f"{name}: expected a non-empty host, got {host!r}")
        if password is not None and not isinstance(password, str):
            raise TypeError("password: expected a str or None")
        if not bootstrap_timeout_s > 0:
            raise ValueError(f"bootstrap_timeout_s: expected > 0, got {bootstrap_timeout_s!r}")
        self.control_host = control_host
        self.control_port = control_port
        self.socks_host = socks_host
        self._socks_port = socks_port
        self._password = password
        self.bootstrap_timeout_s = float(bootstrap_timeout_s)
        self._control: TorControl | None = None
        self._services: list[OnionService] = []

    def start(self) -> SystemTor:
        """Connect and authenticate, check tor's version and that ``socks_port`` is tor's.

        Returns
        -------
        SystemTor
            self.

        Raises
        ------
        TorControlError
            If the control port cannot be reached or authentication fails, or tor has no
            SOCKS listener on ``socks_host:socks_port``.
        TorVersionUnsupported
            If tor is too old.
        """
        if self._control is not None:
            return self
        control = TorControl.connect(
            self.control_port, self.control_host, password=self._password, name="system tor"
        )
        try:
            listeners = control.listeners("socks")
            if not any(
                port == self._socks_port and (host == self.socks_host or host in _ANY_ADDRESS)
                for host, port in listeners
            ):
                found = ", ".join(f"{h}:{p}" for h, p in listeners) or "none"
                raise TorControlError(
                    control.name,
                    f"no SOCKS listener on {self.socks_host}:{self._socks_port} "
                    f"(tor's SOCKS listeners: {found})",
                )
        except BaseException:
            control.close()
            raise
        self._control = control
        return self

    @property
    def socks_port(self) -> int:
        """Tor's SOCKS5 port."""
        return self._socks_port

    @property
    def onion_service_control(self) -> TorControl:
        """The control connection (after :meth:`start`)."""
        if self._control is None:
            raise RuntimeError("SystemTor: start() first")
        return self._control

    def wait_ready(self, timeout_s: float | None = None) -> float:
        """Block until tor reports 100 % bootstrapped.

        Parameters
        ----------
        timeout_s : float, optional
            Seconds; default ``bootstrap_timeout_s``.

        Returns
        -------
        float
            Seconds waited.

        Raises
        ------
        TorBootstrapTimeout
            If tor is not at 100 % in time (names its phase).
        TorControlError
            If the control connection fails.
        """
        return self.onion_service_control.wait_bootstrapped(
            self.bootstrap_timeout_s if timeout_s is None else timeout_s
        )

    def publish_onion(
        self,
        ports: Mapping[int, tuple[str, int]],
        *,
        key_file: str | os.PathLike[str] | None = None,
        timeout_s: float = 120.0,
    ) -> OnionService:
        """Publish an onion service on this tor; see :func:`publish_onion`.

        The service lives while this object's control connection is open.

        Returns
        -------
        OnionService

        Raises
        ------
        ValueError
            If ``ports`` is malformed.
        OnionKeyFileError
            If ``key_file`` cannot be used.
        OnionPublishError
            If tor refuses, or the upload fails or times out.
        TorControlError
            If the control connection fails.
        """
        service = publish_onion(self.onion_service_control, ports, key_file=key_file, timeout_s=timeout_s)
        self._services.append(service)
        return service

    def new_identity(self) -> None:
        """``SIGNAL NEWNYM`` on this tor.

        Raises
        ------
        TorControlError
            If the control connection fails.
        """
        self.onion_service_control.signal_newnym()

    def close(self) -> None:
        """Remove the onion services published here and disconnect; tor keeps running."""
        for service in self._services:
            with contextlib.suppress(TorControlError):
                service.close()
        self._services.clear()
        if self._control is not None:
            self._control.close()
            self._control = None

    def __enter__(self) -> SystemTor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self._control is not None else "not connected"
        return (
            f"SystemTor(control={self.control_host}:{self.control_port}, "
            f"socks={self.socks_host}:{self._socks_port}, {state})"
        )
