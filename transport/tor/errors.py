"""Errors raised by the Tor layer: one class per decision the caller has to make.

The tree (also drawn in the package docstring)::

    TorError
    ├── TorNotInstalled            install tor (Debian package ``tor``)
    │   └── TorVersionUnsupported  upgrade tor
    ├── TorProcessError            a tor we launched exited or never opened its control port
    ├── TorBootstrapTimeout        (also TimeoutError) bootstrap not finished in time
    ├── TorControlError            control port unreachable, authentication or command refused
    ├── OnionPublishError          the onion service could not be published
    │   └── OnionKeyFileError      the saved onion key file is missing, unsafe or malformed
    └── OnionUnreachable           (also ConnectionError) SOCKS connect to the onion failed
                                   after every retry

No message or attribute ever holds a private key, a control-port password or a cookie.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "OnionKeyFileError",
    "OnionPublishError",
    "OnionUnreachable",
    "TorBootstrapTimeout",
    "TorControlError",
    "TorError",
    "TorNotInstalled",
    "TorProcessError",
    "TorVersionUnsupported",
]


class TorError(Exception):
    """Base class of every error raised by :mod:`tormentor.transport.tor`."""


class TorNotInstalled(TorError):
    """A tor program (``tor`` or ``tor-gencert``) is missing.

    Parameters
    ----------
    program : str
        The name or path that was looked up, e.g. ``"tor"`` or ``"/opt/tor/bin/tor"``.
    reason : str, optional
        Why it is unusable; by default "not found".

    Attributes
    ----------
    program : str
    reason : str
    """

    def __init__(self, program: str, reason: str = "not found") -> None:
        self.program = program
        self.reason = reason
        super().__init__(
            f"{program!r}: {reason}; install the Debian package `tor` "
            "(apt-get install tor), which provides both tor and tor-gencert"
        )


class TorVersionUnsupported(TorNotInstalled):
    """The installed tor is older than the version this package needs.

    Parameters
    ----------
    program : str
        Path of the tor binary that was asked.
    found : str
        The version it reported, e.g. ``"0.3.5.8"``.
    required : str
        The oldest version supported, e.g. ``"0.4.0.5"``.

    Attributes
    ----------
    found : str
    required : str
    """

    def __init__(self, program: str, found: str, required: str) -> None:
        self.found = found
        self.required = required
        super().__init__(
            program,
            f"tor {found} is too old: version {required} or newer is needed "
            "(v3 onion services over ADD_ONION)",
        )


class TorProcessError(TorError):
    """A tor this process launched exited, or never opened its control port.

    Parameters
    ----------
    name : str
        Which tor, e.g. ``"auth0"``, ``"onion-service"``, ``"client"``.
    reason : str
        What happened, e.g. "exited" or "did not open its control port within 30 s".
    exit_code : int or None
        The exit status when the process ended (negative: killed by that signal).
    last_log_line : str or None
        The last ``[err]`` line of tor's log, else its last ``[warn]`` line.

    Attributes
    ----------
    name : str
    exit_code : int or None
    last_log_line : str or None
    """

    def __init__(
        self,
        name: str,
        reason: str,
        *,
        exit_code: int | None = None,
        last_log_line: str | None = None,
    ) -> None:
        self.name = name
        self.exit_code = exit_code
        self.last_log_line = last_log_line
        message = f"tor {name!r} {reason}"
        if exit_code is not None:
            message += f" (exit code {exit_code})"
        if last_log_line:
            message += f"; last tor warning: {last_log_line}"
        super().__init__(message)


class TorBootstrapTimeout(TorError, TimeoutError):
    """A tor (or the private network's consensus) did not finish bootstrapping in time.

    Parameters
    ----------
    name : str
        Which tor, e.g. ``"client"``, or ``"auth0"`` for the consensus gate.
    phase : str
        How far it got, e.g. ``"PROGRESS=75 TAG=enough_dirinfo"``.
    timeout_s : float
        The time allowed, in seconds.
    last_log_line : str or None
        The last ``[err]``/``[warn]`` line of that tor's log, when the log is ours.

    Attributes
    ----------
    name : str
    phase : str
    timeout_s : float
    last_log_line : str or None
    """

    def __init__(
        self, name: str, phase: str, timeout_s: float, *, last_log_line: str | None = None
    ) -> None:
        self.name = name
        self.phase = phase
        self.timeout_s = timeout_s
        self.last_log_line = last_log_line
        message = f"tor {name!r} not bootstrapped after {timeout_s:g} s; reached: {phase}"
        if last_log_line:
            message += f"; last tor warning: {last_log_line}"
        super().__init__(message)


class TorControlError(TorError):
    """Talking to a tor's control port failed.

    Covers: the port cannot be reached, authentication failed, tor refused a command,
    the connection broke, or tor's reply could not be parsed.

    Parameters
    ----------
    endpoint : str
        Which control port, e.g. ``"client (127.0.0.1:41234)"``.
    reason : str
        What failed, without passwords or keys.

    Attributes
    ----------
    endpoint : str
    reason : str
    """

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"tor control port {endpoint}: {reason}")


class OnionPublishError(TorError):
    """The onion service could not be created or its descriptor was not uploaded.

    Parameters
    ----------
    reason : str
        What failed, without key material.

    Attributes
    ----------
    reason : str
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"onion service not published: {reason}")


class OnionKeyFileError(OnionPublishError):
    """The saved onion-service key file cannot be used (never shows its content).

    Parameters
    ----------
    path : pathlib.Path
        The key file.
    reason : str
        E.g. "is readable by group or others (mode 0644); run chmod 600".

    Attributes
    ----------
    path : pathlib.Path
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        super().__init__(f"key file {str(path)!r} {reason}")


class OnionUnreachable(TorError, ConnectionError):
    """A connection through tor's SOCKS port to ``<onion>:<port>`` failed on every try.

    Parameters
    ----------
    address : str
        The destination host, e.g. ``"abc...xyz.onion"`` (public, not a secret).
    port : int
        The destination (virtual) port.
    attempts : int
        How many connections were tried.
    reason : str
        The last failure, e.g. "onion service descriptor can not be found (SOCKS 0xF0)".

    Attributes
    ----------
    address : str
    port : int
    attempts : int
    reason : str
    """

    def __init__(self, address: str, port: int, attempts: int, reason: str) -> None:
        self.address = address
        self.port = port
        self.attempts = attempts
        self.reason = reason
        tries = "try" if attempts == 1 else "tries"
        super().__init__(f"{address}:{port} unreachable through tor after {attempts} {tries}: "
                         f"{reason}")
