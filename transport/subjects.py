"""NATS subject names of the protocol, and the client identity the inbox derives from.

Who may use which subject (enforced by the server config of
:mod:`tormentor.transport.nats_server` and the grants of
:mod:`tormentor.transport.auth_callout`)::

    subject                       publish                 subscribe
    tormentor.v1.client           anonymous clients       broker (queue group allowed)
    tormentor.v1.curator          curator                 broker (queue group allowed)
    _I.<24 hex>.>  (client inbox) broker, replies only    the one client holding the secret
    _C.>           (curator inbox) broker, replies only   curator
    _B.>           (broker inbox) nobody                  broker

An anonymous client invents a secret ``s`` (:func:`new_client_secret`, 32 random
bytes), connects with ``token = client_token(s)`` (64 lowercase hex characters) and
``inbox_prefix = client_inbox_prefix(s)``. The auth-callout service sees the token,
recomputes the prefix with the same function and lets that connection subscribe only
below it, so no other client can read its replies. The prefix is a one-way function
of the secret: seeing a prefix (the broker sees it in every reply-to subject) does not
let anyone claim it.

This module is pure (no network, no nkeys): a headless client needs only it and the codec.
"""

from __future__ import annotations

import hashlib
import re
import secrets

__all__ = [
    "BROKER_INBOX_PREFIX",
    "CLIENT_INBOX_ROOT",
    "CLIENT_REQUESTS",
    "CLIENT_SECRET_BYTES",
    "CURATOR_INBOX_PREFIX",
    "CURATOR_REQUESTS",
    "MAX_CLIENT_SECRET_BYTES",
    "MIN_CLIENT_SECRET_BYTES",
    "client_connect_options",
    "client_inbox_prefix",
    "client_token",
    "new_client_secret",
    "secret_from_token",
]

#: Subject of every client request (Join, Solve, Update, Leave).
CLIENT_REQUESTS = "tormentor.v1.client"
#: Subject of every curator request (Curate, Status, Fetch).
CURATOR_REQUESTS = "tormentor.v1.curator"

#: First token of every anonymous client's inbox prefix.
CLIENT_INBOX_ROOT = "_I"
#: Inbox prefix of the curator identity (shared by whoever holds the curator password).
CURATOR_INBOX_PREFIX = "_C"
#: Inbox prefix of the broker identity (nobody may publish there; reserved).
BROKER_INBOX_PREFIX = "_B"

#: Length of the secret a client invents, in bytes (256 bits).
CLIENT_SECRET_BYTES = 32
#: Shortest secret the auth-callout service accepts, in bytes (128 bits).
MIN_CLIENT_SECRET_BYTES = 16
#: Longest secret the auth-callout service accepts, in bytes.
MAX_CLIENT_SECRET_BYTES = 64

#: Hex characters of SHA-256(secret) in the inbox prefix (96 bits).
_PREFIX_HEX_CHARS = 24
_TOKEN_PATTERN = re.compile(r"[0-9a-f]*")


def new_client_secret() -> bytes:
    """Return a fresh client secret: 32 bytes from the OS's CSPRNG.

    Returns
    -------
    bytes
        ``CLIENT_SECRET_BYTES`` random bytes. Keep it private: whoever holds it can
        read this client's replies.
    """
    return secrets.token_bytes(CLIENT_SECRET_BYTES)


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes):
        raise TypeError(f"secret must be bytes, got {type(secret).__name__}")
    if not MIN_CLIENT_SECRET_BYTES <= len(secret) <= MAX_CLIENT_SECRET_BYTES:
        raise ValueError(
            f"secret must be {MIN_CLIENT_SECRET_BYTES}..{MAX_CLIENT_SECRET_BYTES} bytes long, "
            f"got {len(secret)}"
        )


def client_inbox_prefix(secret: bytes) -> str:
    """Return the inbox prefix a client with this secret owns.

    Parameters
    ----------
    secret : bytes
        The client's secret, 16..64 bytes.

    Returns
    -------
    str
        ``"_I." + sha256(secret).hexdigest()[:24]``; the client subscribes below
        ``prefix + ".>"``.

    Raises
    ------
    TypeError
        If ``secret`` is not bytes.
    ValueError
        If ``secret`` has the wrong length.
    """
    _check_secret(secret)
    digest = hashlib.sha256(secret).hexdigest()[:_PREFIX_HEX_CHARS]
    return f"{CLIENT_INBOX_ROOT}.{digest}"


def client_token(secret: bytes) -> str:
    """Return the connect token carrying ``secret``: its lowercase hex encoding.

    Parameters
    ----------
    secret : bytes
        The client's secret, 16..64 bytes.

    Returns
    -------
    str
        ``secret.hex()`` (32..128 characters of ``[0-9a-f]``).
    """
    _check_secret(secret)
    return secret.hex()


def secret_from_token(token: str) -> bytes:
    """Parse a connect token back into the client's secret (the callout's check).

    Parameters
    ----------
    token : str
        What the client sent as its connect token.

    Returns
    -------
    bytes
        The secret.

    Raises
    ------
    ValueError
        If the token is not 32..128 lowercase hex characters of even length. The
        message never repeats the token.
    """
    if not isinstance(token, str):
        raise ValueError("token must be a string")
    low, high = 2 * MIN_CLIENT_SECRET_BYTES, 2 * MAX_CLIENT_SECRET_BYTES
    if not low <= len(token) <= high or len(token) % 2:
        raise ValueError(f"token must be {low}..{high} hex characters (even), got {len(token)}")
    if _TOKEN_PATTERN.fullmatch(token) is None:
        raise ValueError("token must be lowercase hex")
    return bytes.fromhex(token)


def client_connect_options(secret: bytes) -> dict[str, str]:
    """Return the nats-py ``connect()`` keyword arguments of an anonymous client.

    Parameters
    ----------
    secret : bytes
        The client's secret, 16..64 bytes (see :func:`new_client_secret`).

    Returns
    -------
    dict
        ``{"token": client_token(secret), "inbox_prefix": client_inbox_prefix(secret)}``.
    """
    return {"token": client_token(secret), "inbox_prefix": client_inbox_prefix(secret)}
