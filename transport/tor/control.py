"""One facade over a stem ``Controller``: every control-port call goes through here.

Stem 1.8 is synchronous and its ``Controller`` is thread-safe. Asyncio code calls these
methods from a worker thread (``await asyncio.to_thread(control.signal_newnym)``).
Stem's exceptions are translated to :class:`~tormentor.transport.tor.errors.TorControlError`
in one place (:func:`_translated`), so nothing above this module sees a stem error.

This module also installs a :class:`logging.Filter` on the ``stem`` logger that redacts
onion private keys and ``AUTHENTICATE`` arguments, should anyone turn on stem's TRACE log
(which echoes every control command, ``ADD_ONION ED25519-V3:<key>`` included).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import stem
import stem.connection
import stem.control
import stem.response.events
import stem.socket
import stem.version

from .errors import TorBootstrapTimeout, TorControlError, TorVersionUnsupported

__all__ = [
    "MINIMUM_TOR_VERSION",
    "BootstrapStatus",
    "TorControl",
]

#: Oldest tor this package accepts: the 0.4 series (v3 onion services through ADD_ONION
#: ``ED25519-V3`` keys, HS_DESC events). Tested with 0.4.9.11.
MINIMUM_TOR_VERSION = "0.4.0.5"

_T = TypeVar("_T")

_SECRET_PATTERNS = (
    (re.compile(r"(ED25519-V3|RSA1024):[A-Za-z0-9+/=]+"), r"\1:<redacted>"),
    (re.compile(r"(PrivateKey=)\S+"), r"\1<redacted>"),
    (re.compile(r"(AUTHENTICATE)\s+\S+"), r"\1 <redacted>"),
    (re.compile(r"(ClientAuthV3=)\S+"), r"\1<redacted>"),
)


def redact_secrets(text: str) -> str:
    """Return ``text`` with onion keys and control-port credentials replaced by ``<redacted>``.

    Parameters
    ----------
    text : str
        A control-port command or reply, a log message or an error message.

    Returns
    -------
    str
        The same text with every ``ED25519-V3:<base64>``, ``PrivateKey=...``,
        ``AUTHENTICATE <x>`` and ``ClientAuthV3=...`` argument replaced.

    Examples
    --------
    >>> redact_secrets("ADD_ONION ED25519-V3:AAAA Port=80")
    'ADD_ONION ED25519-V3:<redacted> Port=80'
    """
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _RedactStemSecrets(logging.Filter):
    """Redact key material from stem's own log records (stem formats before logging)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_secrets(record.msg)
        return True


def _install_stem_log_filter() -> None:
    stem_logger = logging.getLogger("stem")
    if not any(isinstance(f, _RedactStemSecrets) for f in stem_logger.filters):
        stem_logger.addFilter(_RedactStemSecrets())
    # stem sets its logger to TRACE when imported, and its records propagate past the
    # root logger's level: without this a Tor run floods stderr. TORMENTOR_STEM_LOG=DEBUG
    # (or any level name) restores the detail for debugging.
    level = os.environ.get("TORMENTOR_STEM_LOG", "WARNING").upper()
    stem_logger.setLevel(getattr(logging, level, logging.WARNING))


_install_stem_log_filter()


class _Controller(stem.control.Controller):
    """stem's Controller, starting its threads without ``Thread.setDaemon``.

    stem 1.8 calls the deprecated ``setDaemon`` (a DeprecationWarning on Python 3.10+,
    an error under ``-W error``, raised in stem's own threads too). This is the same
    method with ``daemon=True``; stem is pinned below 1.9.
    """

    def _launch_threads(self) -> None:
        with self._socket._get_send_lock():
            if not self._reader_thread or not self._reader_thread.is_alive():
                self._reader_thread = threading.Thread(
                    target=self._reader_loop, name="Tor listener", daemon=True)
                self._reader_thread.start()
            if not self._event_thread or not self._event_thread.is_alive():
                self._event_thread = threading.Thread(
                    target=self._event_loop, name="Event notifier", daemon=True)
                self._event_thread.start()


@dataclass(frozen=True)
class BootstrapStatus:
    """A parsed ``GETINFO status/bootstrap-phase`` reply.

    Attributes
    ----------
    progress : int
        Percent done, 0-100; 100 means tor can build circuits.
    tag : str
        Tor's phase keyword, e.g. ``"conn_pt"``, ``"enough_dirinfo"``, ``"done"``.
    summary : str
        Tor's human-readable summary of the phase.
    warning : str or None
        Tor's WARNING text when the phase line is a ``WARN``, else None.
    """

    progress: int
    tag: str
    summary: str
    warning: str | None = None

    @classmethod
    def parse(cls, line: str) -> BootstrapStatus:
        """Parse one bootstrap-phase line.

        Parameters
        ----------
        line : str
            E.g. ``'NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"'``.

        Returns
        -------
        BootstrapStatus

        Raises
        ------
        ValueError
            If ``line`` has no ``PROGRESS=<int>`` field.
        """
        fields = dict(re.findall(r'([A-Z_]+)=("(?:[^"\\]|\\.)*"|\S+)', line))
        if "PROGRESS" not in fields or not fields["PROGRESS"].isdigit():
            raise ValueError(f"line: no PROGRESS=<int> in bootstrap phase {line!r}")
        warning = fields.get("WARNING")
        return cls(
            progress=int(fields["PROGRESS"]),
            tag=fields.get("TAG", "").strip('"'),
            summary=fields.get("SUMMARY", "").strip('"'),
            warning=warning.strip('"') if warning else None,
        )

    def __str__(self) -> str:
        text = f"PROGRESS={self.progress} TAG={self.tag} ({self.summary})"
        if self.warning:
            text += f" WARNING={self.warning}"
        return text


class TorControl:
    """A thread-safe facade over one authenticated stem ``Controller``.

    Create it with :meth:`connect`. Keep exactly one per tor for the life of that tor: for
    a tor launched with ``__OwningControllerProcess`` set to our PID, stem sends
    ``TAKEOWNERSHIP`` on authentication, and closing this connection makes tor exit.
    Ephemeral onion services also die with the connection that made them.

    Parameters
    ----------
    controller : stem.control.Controller
        An authenticated controller; this object owns it from now on.
    name : str
        Label used in errors, e.g. ``"client (127.0.0.1:41234)"``.

    Examples
    --------
    >>> control = TorControl.connect(9051, name="system tor")  # doctest: +SKIP
    >>> control.bootstrap_status().progress                     # doctest: +SKIP
    100
    >>> control.close()                                          # doctest: +SKIP
    """

    def __init__(self, controller: stem.control.Controller, *, name: str) -> None:
        if not isinstance(controller, stem.control.Controller):
            raise TypeError(f"controller: expected stem.control.Controller, got "
                            f"{type(controller).__name__}")
        self._controller = controller
        self.name = name

    @classmethod
    def connect(
        cls,
        port: int,
        host: str = "127.0.0.1",
        *,
        password: str | None = None,
        name: str | None = None,
        minimum_version: str = MINIMUM_TOR_VERSION,
    ) -> TorControl:
        """Connect to and authenticate with a tor control port, then check tor's version.

        Authentication uses what tor offers: no auth, cookie / safe cookie (stem reads the
        cookie file named by PROTOCOLINFO), or ``password``.

        Parameters
        ----------
        port : int
            Control port, 1-65535.
        host : str, optional
            Control address; default ``"127.0.0.1"``.
        password : str, optional
            ``HashedControlPassword`` secret; never logged or shown in errors.
        name : str, optional
            Label for errors; default ``"<host>:<port>"``.
        minimum_version : str, optional
            Oldest tor accepted; default :data:`MINIMUM_TOR_VERSION`.

        Returns
        -------
        TorControl

        Raises
        ------
        ValueError
            If ``port`` is out of range.
        TorControlError
            If the port cannot be reached or authentication fails.
        TorVersionUnsupported
            If the tor behind the port is older than ``minimum_version``.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port: expected an int in 1..65535, got {port!r}")
        label = f"{name} ({host}:{port})" if name else f"{host}:{port}"
        try:
            controller = _Controller(stem.socket.ControlPort(address=host, port=port))
        except stem.SocketError as exc:
            raise TorControlError(label, f"cannot connect: {exc}") from None
        try:
            controller.authenticate(password=password)
        except stem.connection.AuthenticationFailure as exc:
            controller.close()
            # stem's messages name the auth method and cookie path, never the password.
            raise TorControlError(label, f"authentication failed: {type(exc).__name__}: "
                                         f"{redact_secrets(str(exc))}") from None
        except stem.ControllerError as exc:
            controller.close()
            raise TorControlError(label, f"authentication failed: {exc}") from None
        control = cls(controller, name=label)
        try:
            control.require_version(minimum_version)
        except BaseException:
            control.close()
            raise
        return control

    # ----------------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn every stem error raised inside the block into a TorControlError."""
        try:
            yield
        except stem.SocketClosed:
            raise TorControlError(self.name, f"{what}: control connection closed") from None
        except stem.SocketError as exc:
            raise TorControlError(self.name, f"{what}: socket error: {exc}") from None
        except stem.InvalidRequest as exc:
            raise TorControlError(
                self.name, f"{what}: tor refused the request ({exc.code}): "
                           f"{redact_secrets(str(exc.message))}"
            ) from None
        except stem.ProtocolError as exc:
            raise TorControlError(self.name, f"{what}: malformed reply from tor: "
                                             f"{redact_secrets(str(exc))}") from None
        except stem.ControllerError as exc:
            raise TorControlError(self.name, f"{what}: {type(exc).__name__}: "
                                             f"{redact_secrets(str(exc))}") from None

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        with self._translated(what):
            return fn()

    @property
    def stem_controller(self) -> stem.control.Controller:
        """The underlying stem ``Controller``, for diagnostics only.

        Errors it raises are stem's own, untranslated. Never close it directly: call
        :meth:`close`.
        """
        return self._controller

    @property
    def is_alive(self) -> bool:
        """True while the control connection is open."""
        return self._controller.is_alive()

    # ----------------------------------------------------------------- queries
    def version(self) -> stem.version.Version:
        """Return the tor version reported by ``GETINFO version``.

        Raises
        ------
        TorControlError
            If the control connection fails.
        """
        return self._call("GETINFO version", self._controller.get_version)

    def require_version(self, minimum: str = MINIMUM_TOR_VERSION) -> stem.version.Version:
        """Return tor's version, or raise if it is older than ``minimum``.

        Parameters
        ----------
        minimum : str
            E.g. ``"0.4.0.5"``.

        Returns
        -------
        stem.version.Version

        Raises
        ------
        TorVersionUnsupported
            If tor is older than ``minimum``.
        TorControlError
            If the control connection fails.
        """
        found = self.version()
        if found < stem.version.Version(minimum):
            raise TorVersionUnsupported(self.name, str(found), minimum)
        return found

    def get_info(self, key: str) -> str:
        """Return ``GETINFO <key>``.

        Parameters
        ----------
        key : str
            E.g. ``"status/bootstrap-phase"``, ``"ns/all"``, ``"md/all"``.

        Returns
        -------
        str

        Raises
        ------
        TorControlError
            If tor refuses the key or the connection fails.
        """
        return self._call(f"GETINFO {key}", lambda: self._controller.get_info(key))

    def get_pid(self) -> int:
        """Return the PID of the tor process (``GETINFO process/pid``).

        Raises
        ------
        TorControlError
            If the control connection fails.
        """
        return int(self.get_info("process/pid"))

    def set_options(self, options: dict[str, str]) -> None:
        """Apply ``SETCONF`` for every ``{option: value}`` at once.

        Parameters
        ----------
        options : dict of str to str
            E.g. ``{"DisableNetwork": "0"}``.

        Raises
        ------
        TorControlError
            If tor rejects an option or the connection fails.
        """
        self._call("SETCONF", lambda: self._controller.set_options(dict(options)))

    def listeners(self, kind: str) -> list[tuple[str, int]]:
        """Return the addresses tor listens on for ``kind``.

        Parameters
        ----------
        kind : {"socks", "control", "or", "dir"}
            Listener type.

        Returns
        -------
        list of (str, int)
            ``[(host, port), ...]``; empty if none.

        Raises
        ------
        ValueError
            If ``kind`` is not one of the four.
        TorControlError
            If the control connection fails.
        """
        if kind not in ("socks", "control", "or", "dir"):
            raise ValueError(f"kind: expected socks, control, or or dir, got {kind!r}")
        raw = self.get_info(f"net/listeners/{kind}")
        result: list[tuple[str, int]] = []
        for item in raw.split():
            address = item.strip('"')
            host, _, port = address.rpartition(":")
            if port.isdigit():
                result.append((host.strip("[]"), int(port)))
        return result

    def bootstrap_status(self) -> BootstrapStatus:
        """Return tor's bootstrap phase.

        Raises
        ------
        TorControlError
            If the control connection fails or the reply cannot be parsed.
        """
        line = self.get_info("status/bootstrap-phase")
        try:
            return BootstrapStatus.parse(line)
        except ValueError:
            raise TorControlError(self.name, f"unparsable bootstrap phase {line!r}") from None

    def wait_bootstrapped(
        self,
        timeout_s: float,
        *,
        poll_s: float = 0.2,
        check_alive: Callable[[], None] | None = None,
        last_log_line: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> float:
        """Block until tor reports ``PROGRESS=100``.

        Parameters
        ----------
        timeout_s : float
            Seconds to wait, > 0.
        poll_s : float, optional
            Seconds between polls; default 0.2.
        check_alive : callable, optional
            Called every poll; raises (e.g. ``TorProcessError``) if tor died.
        last_log_line : callable, optional
            Returns tor's last warning for the timeout message.
        clock, sleep : callable, optional
            Injectable time source and sleep, for tests.

        Returns
        -------
        float
            Seconds waited.

        Raises
        ------
        ValueError
            If ``timeout_s`` or ``poll_s`` is not positive.
        TorBootstrapTimeout
            If 100 % is not reached in ``timeout_s``; names the phase reached.
        TorControlError
            If the control connection fails.
        """
        if not timeout_s > 0:
            raise ValueError(f"timeout_s: expected > 0, got {timeout_s!r}")
        if not poll_s > 0:
            raise ValueError(f"poll_s: expected > 0, got {poll_s!r}")
        start = clock()
        while True:
            if check_alive is not None:
                check_alive()
            status = self.bootstrap_status()
            if status.progress >= 100:
                return clock() - start
            if clock() - start >= timeout_s:
                raise TorBootstrapTimeout(
                    self.name, str(status), timeout_s,
                    last_log_line=last_log_line() if last_log_line else None,
                )
            sleep(poll_s)

    def circuits(self) -> list[stem.response.events.CircuitEvent]:
        """Return tor's circuits (``GETINFO circuit-status``), parsed by stem.

        Each has ``id``, ``status``, ``purpose`` (e.g. ``"HS_CLIENT_REND"``), ``path`` and,
        for isolated SOCKS streams, ``socks_username``.

        Raises
        ------
        TorControlError
            If the control connection fails.
        """
        return self._call("GETINFO circuit-status", self._controller.get_circuits)

    def streams(self) -> list[stem.response.events.StreamEvent]:
        """Return tor's open streams (``GETINFO stream-status``), parsed by stem.

        Each has ``id``, ``status``, ``circ_id`` and ``target_address``/``target_port``.

        Raises
        ------
        TorControlError
            If the control connection fails.
        """
        return self._call("GETINFO stream-status", self._controller.get_streams)

    # ----------------------------------------------------------------- actions
    def signal_newnym(self) -> None:
        """Send ``SIGNAL NEWNYM``: new circuits for new streams, onion-service cache purged.

        Tor rate-limits NEWNYM (about one per 10 s) and delays, rather than drops, an early
        one.

        Raises
        ------
        TorControlError
            If the control connection fails.
        """
        self._call("SIGNAL NEWNYM", lambda: self._controller.signal(stem.Signal.NEWNYM))

    def add_event_listener(self, listener: Callable[[object], None], event_type: str) -> None:
        """Call ``listener(event)`` from stem's event thread for each ``event_type`` event.

        Parameters
        ----------
        listener : callable
            Must be quick and must not call back into this controller.
        event_type : str
            A ``stem.control.EventType`` value, e.g. ``"HS_DESC"``.

        Raises
        ------
        TorControlError
            If tor rejects the event type or the connection fails.
        """
        self._call(f"SETEVENTS {event_type}",
                   lambda: self._controller.add_event_listener(listener, event_type))

    def remove_event_listener(self, listener: Callable[[object], None]) -> None:
        """Stop calling ``listener``.

        Raises
        ------
        TorControlError
            If the connection fails.
        """
        self._call("SETEVENTS", lambda: self._controller.remove_event_listener(listener))

    def remove_onion(self, service_id: str) -> None:
        """Remove an ephemeral onion service made on this connection (``DEL_ONION``).

        Parameters
        ----------
        service_id : str
            The address without ``.onion``.

        Raises
        ------
        TorControlError
            If tor refuses (e.g. unknown service) or the connection fails.
        """
        self._call("DEL_ONION",
                   lambda: self._controller.remove_ephemeral_hidden_service(service_id))

    def close(self) -> None:
        """Close the control connection (idempotent).

        For a tor that we own this makes tor exit; ephemeral onion services made through
        this connection are removed by tor.
        """
        with contextlib.suppress(Exception):
            self._controller.close()

    def __repr__(self) -> str:
        state = "open" if self.is_alive else "closed"
        return f"TorControl({self.name!r}, {state})"
