"""Publish a v3 onion service that maps virtual ports to local TCP ports.

The broker is a Tor onion service (paper, sections 3.2 and 5): clients and the curator
reach it at ``<id>.onion`` and the broker's server only ever sees connections from its own
tor, never a client's address.

:func:`publish_onion` sends ``ADD_ONION`` on a tor's control connection and waits until
the descriptor uploads it started have ended (at least one onion-service directory
stored it). It works on any
:class:`~tormentor.transport.tor.control.TorControl`: the private network's onion-service
tor, or a system tor reached by control port. The service is ephemeral: it lives until
:meth:`OnionService.close` or until that control connection closes.

A stable address needs a stable key: with ``key_file`` the ED25519-V3 private key is
saved on first publication (mode 0600, written atomically) and reused afterwards, so a
restarted broker keeps its ``.onion`` address. The key is never logged, shown in an error,
or kept in the :class:`OnionService` object.

Example::

    service = publish_onion(control, {4222: ("127.0.0.1", nats_port)},
                            key_file=state_dir / "broker.onion-key")
    print(service.address)     # 56 base32 characters + ".onion"
    ...
    service.close()
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import queue
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import stem
import stem.response.add_onion
import stem.response.events

from .control import TorControl, redact_secrets
from .errors import OnionKeyFileError, OnionPublishError, TorControlError

__all__ = [
    "ED25519_V3",
    "OnionKey",
    "OnionService",
    "load_onion_key",
    "publish_onion",
    "save_onion_key",
]

#: tor's key-type name for v3 onion-service keys (the 64-byte expanded ed25519 secret).
ED25519_V3 = "ED25519-V3"
_ED25519_V3_KEY_BYTES = 64
_KEY_FILE_MODE = 0o600
#: Seconds that uploads still in flight get after the first HSDir stored the descriptor.
_SETTLE_S = 10.0


@dataclass(frozen=True)
class OnionKey:
    """An onion-service private key as tor's ``ADD_ONION`` takes it.

    Attributes
    ----------
    key_type : str
        Always ``"ED25519-V3"``.
    blob : str
        Base64 of the 64-byte expanded secret key. Hidden from ``repr``.
    """

    key_type: str
    blob: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.key_type != ED25519_V3:
            raise ValueError(f"key_type: expected {ED25519_V3!r}, got {self.key_type!r}")
        try:
            raw = base64.b64decode(self.blob, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("blob: not valid base64") from None
        if len(raw) != _ED25519_V3_KEY_BYTES:
            raise ValueError(f"blob: expected {_ED25519_V3_KEY_BYTES} bytes, got {len(raw)}")


def save_onion_key(path: str | os.PathLike[str], key: OnionKey) -> Path:
    """Write ``key`` to ``path`` as ``ED25519-V3:<base64>``, mode 0600, atomically.

    The parent folder is created with mode 0700 when missing. The file is first written
    to a temporary name created with mode 0600 (never readable by others, not even
    briefly), then renamed over ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    key : OnionKey
        The key to save.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        If ``key`` is not an OnionKey.
    OnionKeyFileError
        If the file cannot be written.
    """
    if not isinstance(key, OnionKey):
        raise TypeError(f"key: expected OnionKey, got {type(key).__name__}")
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _KEY_FILE_MODE)
        try:
            os.fchmod(fd, _KEY_FILE_MODE)  # the umask may have narrowed it; never widened
            os.write(fd, f"{key.key_type}:{key.blob}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise OnionKeyFileError(path, f"cannot be written: {exc.strerror}") from None
    return path


def load_onion_key(path: str | os.PathLike[str]) -> OnionKey:
    """Read a key saved by :func:`save_onion_key`.

    Like ssh, refuses a file that group or others may read or write.

    Parameters
    ----------
    path : str or os.PathLike
        The key file.

    Returns
    -------
    OnionKey

    Raises
    ------
    OnionKeyFileError
        If the file is missing or unreadable, is accessible to group or others, or does
        not hold one ``ED25519-V3:<base64 of 64 bytes>`` line. The message never shows
        the file's content.
    """
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise OnionKeyFileError(
                path, f"is accessible to group or others (mode {mode:04o}); run chmod 600"
            )
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise OnionKeyFileError(path, "does not exist") from None
    except UnicodeDecodeError:
        raise OnionKeyFileError(path, "is not an onion key file (not ASCII)") from None
    except OSError as exc:
        raise OnionKeyFileError(path, f"cannot be read: {exc.strerror}") from None
    key_type, sep, blob = text.strip().partition(":")
    if not sep:
        raise OnionKeyFileError(path, "is not an onion key file (expected ED25519-V3:<key>)")
    try:
        return OnionKey(key_type, blob)
    except ValueError as exc:
        field_name = str(exc).partition(":")[0]
        raise OnionKeyFileError(path, f"holds a malformed key ({field_name} is invalid)") \
            from None


def _format_target(virtual_port: int, target: tuple[str, int]) -> str:
    if isinstance(virtual_port, bool) or not isinstance(virtual_port, int) \
            or not 0 < virtual_port < 65536:
        raise ValueError(f"ports: virtual port must be an int in 1..65535, got {virtual_port!r}")
    if not (isinstance(target, tuple) and len(target) == 2):
        raise ValueError(f"ports[{virtual_port}]: expected (host, port), got {target!r}")
    host, port = target
    if not isinstance(host, str) or not host or any(c in host for c in " ,\t\r\n"):
        raise ValueError(f"ports[{virtual_port}]: invalid host {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"ports[{virtual_port}]: port must be an int in 1..65535, got {port!r}")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class OnionService:
    """A published ephemeral v3 onion service. Holds no key material.

    Made by :func:`publish_onion`; close it with :meth:`close` or a ``with`` block.

    Attributes
    ----------
    service_id : str
        The 56-character base32 identifier.
    address : str
        ``service_id + ".onion"``.
    ports : dict of int to (str, int)
        Virtual port to local ``(host, port)``.
    key_file : pathlib.Path or None
        Where the key is saved, when it is.
    publish_s : float
        Seconds from ``ADD_ONION`` until the descriptor uploads in flight had ended.
    hsdirs : int
        Onion-service directories that stored the descriptor by then.
    """

    def __init__(
        self,
        control: TorControl,
        service_id: str,
        ports: Mapping[int, tuple[str, int]],
        key_file: Path | None,
        publish_s: float,
        hsdirs: int = 0,
    ) -> None:
        self._control = control
        self.service_id = service_id
        self.address = f"{service_id}.onion"
        self.ports = dict(ports)
        self.key_file = key_file
        self.publish_s = publish_s
        self.hsdirs = hsdirs
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Remove the service from tor (``DEL_ONION``). Idempotent.

        Does nothing more when tor or its control connection is already gone (tor then
        dropped the service itself).

        Raises
        ------
        TorControlError
            If tor is reachable but refuses the removal.
        """
        if self._closed:
            return
        self._closed = True
        if not self._control.is_alive:
            return
        try:
            self._control.remove_onion(self.service_id)
        except TorControlError:
            if self._control.is_alive:
                raise

    def __enter__(self) -> OnionService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        ports = ", ".join(f"{v}->{h}:{p}" for v, (h, p) in self.ports.items())
        state = "closed" if self._closed else "published"
        return f"OnionService({self.address!r}, ports=[{ports}], hsdirs={self.hsdirs}, {state})"


def publish_onion(
    control: TorControl,
    ports: Mapping[int, tuple[str, int]],
    *,
    key_file: str | os.PathLike[str] | None = None,
    timeout_s: float = 120.0,
) -> OnionService:
    """Publish a v3 onion service and wait until its descriptor is uploaded.

    Returns when every upload tor started has ended and at least one HSDir stored the
    descriptor (stem's ``await_publication`` stops at the first one, which leaves a
    window in which clients get "descriptor not found").

    With ``key_file``: if the file exists its key is reused (same address as before),
    otherwise a new key is made and saved there (mode 0600) before the upload is awaited,
    so even a timed-out first publication keeps its address. Without ``key_file``, tor
    discards the key (``DiscardPK``): a new address every time.

    Parameters
    ----------
    control : TorControl
        Control connection of the tor that will host the service; the service lives as
        long as this connection (or until :meth:`OnionService.close`).
    ports : mapping of int to (str, int)
        Virtual port to local target, e.g. ``{4222: ("127.0.0.1", 41234)}``.
    key_file : str or os.PathLike, optional
        Where the private key is kept.
    timeout_s : float, optional
        Seconds to wait for the first stored descriptor; default 120. After it, other
        uploads in flight get at most 10 s more.

    Returns
    -------
    OnionService

    Raises
    ------
    ValueError
        If ``ports`` is empty or malformed, or ``timeout_s`` is not positive.
    TypeError
        If ``control`` is not a TorControl.
    OnionKeyFileError
        If ``key_file`` exists but cannot be used, or cannot be written.
    OnionPublishError
        If tor refuses ``ADD_ONION``, every descriptor upload fails, or none succeeds
        within ``timeout_s`` (the service is then removed again). Uploads still pending
        at ``timeout_s`` after one success are not an error.
    TorControlError
        If the control connection fails.

    Examples
    --------
    >>> service = publish_onion(net.onion_service_control,         # doctest: +SKIP
    ...                         {7: ("127.0.0.1", echo_port)})
    >>> service.address.endswith(".onion")                          # doctest: +SKIP
    True
    """
    if not isinstance(control, TorControl):
        raise TypeError(f"control: expected TorControl, got {type(control).__name__}")
    if not isinstance(ports, Mapping) or not ports:
        raise ValueError("ports: expected a non-empty mapping {virtual_port: (host, port)}")
    targets = {v: _format_target(v, t) for v, t in ports.items()}
    if not timeout_s > 0:
        raise ValueError(f"timeout_s: expected > 0, got {timeout_s!r}")
    key_path = Path(key_file) if key_file is not None else None
    existing_key = load_onion_key(key_path) if key_path is not None and key_path.exists() \
        else None

    events: queue.Queue[stem.response.events.HSDescEvent] = queue.Queue()
    control.add_event_listener(events.put, "HS_DESC")
    started = time.monotonic()
    try:
        response = _add_onion(control, targets, existing_key, discard_key=key_path is None
                              or existing_key is not None)
        service_id = response.service_id
        try:
            if key_path is not None and existing_key is None:
                save_onion_key(key_path, OnionKey(response.private_key_type,
                                                  response.private_key))
            hsdirs = _await_upload(events, service_id, timeout_s, started)
        except BaseException:
            with contextlib.suppress(TorControlError):
                control.remove_onion(service_id)
            raise
        finally:
            del response  # drop the only reference to the private key
    finally:
        with contextlib.suppress(TorControlError):
            control.remove_event_listener(events.put)
    return OnionService(control, service_id, ports, key_path, time.monotonic() - started,
                        hsdirs)


def _add_onion(
    control: TorControl,
    targets: Mapping[int, str],
    key: OnionKey | None,
    *,
    discard_key: bool,
) -> stem.response.add_onion.AddOnionResponse:
    if key is None:
        key_type, key_content = "NEW", ED25519_V3
    else:
        key_type, key_content = key.key_type, key.blob
    try:
        return control.stem_controller.create_ephemeral_hidden_service(
            dict(targets), key_type=key_type, key_content=key_content,
            discard_key=discard_key, await_publication=False,
        )
    except stem.InvalidRequest as exc:
        # tor's reply text never holds the key, but redact anyway.
        raise OnionPublishError(f"tor refused ADD_ONION ({exc.code}): "
                                f"{redact_secrets(str(exc.message))}") from None
    except (stem.OperationFailed, stem.ProtocolError) as exc:
        raise OnionPublishError(f"ADD_ONION failed: {type(exc).__name__}") from None
    except stem.ControllerError as exc:
        raise TorControlError(control.name, f"ADD_ONION: {type(exc).__name__}") from None


def _await_upload(
    events: queue.Queue[stem.response.events.HSDescEvent],
    service_id: str,
    timeout_s: float,
    started: float,
) -> int:
    """Wait until every descriptor upload tor started has ended, at least one stored.

    stem's ``await_publication`` returns at the first HSDir that stored the descriptor;
    a client that asks another responsible HSDir a moment later gets "descriptor not
    found" (SOCKS 0xF0; seen on the private network). Waiting for the uploads in flight
    closes that window. Returns the number of HSDirs that stored it.
    """
    pending: set[str] = set()
    stored: set[str] = set()
    failures: dict[str, str] = {}
    deadline = started + timeout_s
    while True:
        if stored and not pending:
            return len(stored)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if stored:  # at least one HSDir has it; the rest are slow, not fatal
                return len(stored)
            raise OnionPublishError(
                f"descriptor of {service_id}.onion not uploaded within {timeout_s:g} s "
                f"({len(pending)} uploads pending, {len(failures)} failed)"
            )
        try:
            event = events.get(timeout=min(remaining, 1.0))
        except queue.Empty:
            continue
        directory = event.directory_fingerprint or event.directory or ""
        # tor may leave the address out of UPLOADED/FAILED events: match by directory.
        ours = event.address == service_id or directory in pending
        if event.action == stem.HSDescAction.UPLOAD and event.address == service_id:
            pending.add(directory)
        elif event.action == stem.HSDescAction.UPLOADED and ours:
            pending.discard(directory)
            if not stored:
                deadline = min(deadline, time.monotonic() + _SETTLE_S)
            stored.add(directory)
        elif event.action == stem.HSDescAction.FAILED and ours:
            pending.discard(directory)
            failures[directory] = str(event.reason)
            if not pending and not stored:
                reasons = ", ".join(sorted(set(failures.values())))
                raise OnionPublishError(
                    f"every descriptor upload of {service_id}.onion failed ({reasons})"
                )
