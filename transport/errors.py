"""Transport errors: one class per decision the caller has to make.

Exception tree::

    TransportError
    ├── ServerStartError          our nats-server did not start: fix the install/config
    ├── ConnectError              no server reachable: retry later or give up
    │   └── AuthenticationError   credentials refused: do not retry with the same ones
    ├── RequestTimeout            (also builtin TimeoutError) no reply in time: retry
    ├── NoResponders              nobody serves the subject (broker down): back off
    ├── PayloadTooLarge           message above a payload limit: send less
    ├── PermissionDenied          the server refused a subject to this identity
    ├── ConnectionClosed          the connection is gone or going: reconnect
    ├── SlowConsumer              messages were dropped for a slow subscriber: shed load
    └── TransportUsageError       (also ValueError) our own misuse of the client: a bug

nats-py's exceptions are translated to these in ONE place, :func:`translate`, used as
``raise translate(exc) from exc``. Its table :data:`NATS_ERROR_TABLE` has one entry per
public class of :mod:`nats.errors` (a test fails when nats-py adds one). Messages never
carry payloads, tokens or passwords: only fixed texts, subjects and the server's own
error line.
"""

from __future__ import annotations

import re

import nats.errors as nats_errors

__all__ = [
    "NATS_ERROR_TABLE",
    "AuthenticationError",
    "ConnectError",
    "ConnectionClosed",
    "NoResponders",
    "PayloadTooLarge",
    "PermissionDenied",
    "RequestTimeout",
    "ServerStartError",
    "SlowConsumer",
    "TransportError",
    "TransportUsageError",
    "translate",
]


class TransportError(Exception):
    """Base class of every transport failure."""


class ServerStartError(TransportError):
    """The nats-server process could not be found, configured or started.

    The message carries nats-server's last stderr line when there is one.
    """


class ConnectError(TransportError):
    """No connection to the server could be made (refused, unreachable, TLS)."""


class AuthenticationError(ConnectError):
    """The server (or the auth-callout service) refused the credentials."""


class RequestTimeout(TransportError, TimeoutError):
    """A request, flush or drain did not complete within its timeout."""


class NoResponders(TransportError):
    """Nobody is subscribed to the request subject (the broker is not running)."""


class PayloadTooLarge(TransportError):
    """A message exceeded a payload limit (the server's or this connection's).

    Parameters
    ----------
    size : int or None
        Size of the payload that was refused, in bytes, when known.
    limit : int or None
        The limit in force, in bytes, when known.
    """

    def __init__(self, size: int | None = None, limit: int | None = None) -> None:
        self.size = size
        self.limit = limit
        if size is not None and limit is not None:
            text = f"payload of {size} bytes exceeds the limit of {limit} bytes"
        elif limit is not None:
            text = f"payload exceeds the limit of {limit} bytes"
        else:
            text = "payload exceeds the server's limit"
        super().__init__(text)


class PermissionDenied(TransportError):
    """The server refused to let this identity publish or subscribe on ``subject``.

    Parameters
    ----------
    subject : str or None
        The refused subject, when the server named it. Coming from nats-py's async
        error it is LOWER-CASED (nats-py lower-cases the server's ``-ERR`` line).
    action : str or None
        ``"publish"`` or ``"subscribe"`` when known.
    """

    def __init__(self, subject: str | None = None, action: str | None = None) -> None:
        self.subject = subject
        self.action = action
        what = f"{action} to {subject!r}" if action else f"subject {subject!r}"
        super().__init__(f"permission denied: {what}")


class ConnectionClosed(TransportError):
    """The connection is closed, draining, reconnecting, stale or broke mid-protocol."""


class SlowConsumer(TransportError):
    """The client dropped messages because a subscriber could not keep up.

    Parameters
    ----------
    subject : str or None
        Subject of the subscription that fell behind.
    """

    def __init__(self, subject: str | None = None) -> None:
        self.subject = subject
        super().__init__(f"slow consumer on {subject!r}: messages dropped")


class TransportUsageError(TransportError, ValueError):
    """The NATS client was used wrongly (bad subject, timeout, callback): our bug."""


#: Every public exception class of :mod:`nats.errors` -> our class. Looked up along the
#: MRO, so a subclass nats-py adds later still translates; the completeness test makes
#: us decide explicitly.
NATS_ERROR_TABLE: dict[type[BaseException], type[TransportError]] = {
    nats_errors.Error: TransportError,
    nats_errors.TimeoutError: RequestTimeout,
    nats_errors.FlushTimeoutError: RequestTimeout,
    nats_errors.DrainTimeoutError: RequestTimeout,
    nats_errors.NoRespondersError: NoResponders,
    nats_errors.MaxPayloadError: PayloadTooLarge,
    nats_errors.AuthorizationError: AuthenticationError,
    nats_errors.InvalidUserCredentialsError: AuthenticationError,
    nats_errors.NoServersError: ConnectError,
    nats_errors.SecureConnRequiredError: ConnectError,
    nats_errors.SecureConnWantedError: ConnectError,
    nats_errors.SecureConnFailedError: ConnectError,
    nats_errors.ServerNotInPoolError: ConnectError,
    nats_errors.ConnectionClosedError: ConnectionClosed,
    nats_errors.ConnectionDrainingError: ConnectionClosed,
    nats_errors.ConnectionReconnectingError: ConnectionClosed,
    nats_errors.OutboundBufferLimitError: ConnectionClosed,
    nats_errors.StaleConnectionError: ConnectionClosed,
    nats_errors.UnexpectedEOF: ConnectionClosed,
    nats_errors.ProtocolError: ConnectionClosed,
    nats_errors.JsonParseError: ConnectionClosed,
    nats_errors.SlowConsumerError: SlowConsumer,
    nats_errors.BadSubjectError: TransportUsageError,
    nats_errors.BadHeaderError: TransportUsageError,
    nats_errors.BadSubscriptionError: TransportUsageError,
    nats_errors.BadTimeoutError: TransportUsageError,
    nats_errors.InvalidCallbackTypeError: TransportUsageError,
    nats_errors.NotJSMessageError: TransportUsageError,
    nats_errors.MsgAlreadyAckdError: TransportUsageError,
}

# The server's -ERR lines that nats-py wraps in the bare nats.errors.Error.
_PERMISSION = re.compile(
    r"permissions violation for (publish|subscription) to \"?([^\"\s]+)\"?", re.IGNORECASE
)
_MAX_PAYLOAD = re.compile(r"maximum payload", re.IGNORECASE)
_MAX_CONNECTIONS = re.compile(r"maximum (connections|subscriptions) exceeded", re.IGNORECASE)
_AUTHORIZATION = re.compile(r"authorization violation|authentication (timeout|expired)", re.I)


def _translate_server_error(text: str) -> TransportError:
    """Classify the server's ``-ERR`` text that nats-py hands over as a bare ``Error``."""
    found = _PERMISSION.search(text)
    if found:
        action = "publish" if found.group(1).lower() == "publish" else "subscribe"
        return PermissionDenied(found.group(2), action)
    if _MAX_PAYLOAD.search(text):
        return PayloadTooLarge()
    if _AUTHORIZATION.search(text):
        return AuthenticationError(text)
    if _MAX_CONNECTIONS.search(text):
        return ConnectionClosed(text)
    return TransportError(text)


def translate(
    exc: BaseException, *, size: int | None = None, limit: int | None = None
) -> TransportError:
    """Translate a nats-py exception into our :class:`TransportError` tree.

    Parameters
    ----------
    exc : BaseException
        What nats-py raised (or passed to ``error_cb``).
    size, limit : int or None
        Payload size and limit in bytes, for a :class:`PayloadTooLarge` the caller can
        describe better than nats-py does.

    Returns
    -------
    TransportError
        The translated error; raise it with ``raise translate(exc) from exc``. A
        ``TransportError`` is returned unchanged; any other non-nats exception becomes a
        plain :class:`TransportError` naming its class.

    Examples
    --------
    >>> import nats.errors
    >>> type(translate(nats.errors.NoRespondersError())).__name__
    'NoResponders'
    """
    if isinstance(exc, TransportError):
        return exc
    if type(exc) is nats_errors.Error:
        return _translate_server_error(str(exc))
    for cls in type(exc).__mro__:
        ours = NATS_ERROR_TABLE.get(cls)
        if ours is None:
            continue
        if ours is PayloadTooLarge:
            return PayloadTooLarge(size, limit)
        if ours is SlowConsumer:
            return SlowConsumer(getattr(exc, "subject", None))
        if ours is PermissionDenied:  # pragma: no cover - no nats class maps here today
            return PermissionDenied(getattr(exc, "subject", None))
        return ours(_describe(exc))
    if isinstance(exc, TimeoutError):
        return RequestTimeout(f"timed out ({type(exc).__name__})")
    return TransportError(f"unexpected {type(exc).__name__} from the NATS client")


def _describe(exc: BaseException) -> str:
    """Describe a nats-py error by its fixed text; never echo message contents."""
    if isinstance(exc, nats_errors.MsgAlreadyAckdError):  # its str() embeds the message
        return "nats: message was already acknowledged"
    if isinstance(exc, nats_errors.BadHeaderError):  # str() embeds a header name
        return "nats: invalid header"
    try:
        return str(exc)
    except Exception:  # a nats error whose __str__ needs attributes it lacks
        return type(exc).__name__
