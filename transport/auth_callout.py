"""Auth-callout service: grant each anonymous client its own inbox and nothing else.

nats-server (>= 2.10, configured by :mod:`tormentor.transport.nats_server`) sends every
connection that is not one of the fixed identities to this service as an
*authorization request*: a JWT signed by the server's nkey, published on
``$SYS.REQ.USER.AUTH`` in the AUTH account (ADR-26). Its claims carry, among others::

    iss   server public nkey (N...)        nats.user_nkey     the nkey the grant must name
    nats.server_id.id  server public nkey  nats.connect_opts.auth_token   the client's token

The service parses the token (:func:`tormentor.transport.subjects.secret_from_token`:
32..128 lowercase hex characters, i.e. a 16..64-byte secret), recomputes the client's
inbox prefix ``_I.<sha256(secret)[:24]>`` and replies with an *authorization response*
JWT signed by the callout issuer (an account nkey whose public key is in the server
config)::

    response: {"iss": <issuer A...>, "sub": <user_nkey>, "aud": <server id>,
               "nats": {"jwt": <user JWT>, "type": "authorization_response", "version": 2}}
    user JWT: {"iss": <issuer A...>, "sub": <user_nkey>, "aud": "CLIENTS", "name": "client",
               "nats": {"pub": {"allow": ["tormentor.v1.client"]},
                        "sub": {"allow": ["_I.<prefix>.>"]},
                        "type": "user", "version": 2}}

``aud`` places the connection in the CLIENTS account (config mode). No ``resp``: a
client cannot answer anyone. Payload and subscription limits are NOT in the grant:
nats-server in config mode applies only a callout grant's permissions (not its
``payload``/``subs``), so the limits are the CLIENTS account's, in the server config.

A refusal is a response with ``"error"`` instead of ``"jwt"``; the server then closes
the connection with an authorization violation. Refused: no token, a token that is not
hex, shorter than 16 bytes or longer than 64 bytes. Tokens are never logged: logs name
the reason only.

The request's signature is checked against the key in its own ``iss`` (and, when
``expected_server_key`` is given, that key must be the server's). The request is not
encrypted (no xkey): run the service on the server's host or over TLS, because the
request carries the client's token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import nacl.exceptions
import nacl.signing
import nats
import nkeys
from nats.aio.msg import Msg

from .errors import translate
from .nats_server import AUTH_CALLOUT_SUBJECT, CLIENT_ACCOUNT, Identity
from .subjects import CLIENT_REQUESTS, client_inbox_prefix, secret_from_token

__all__ = [
    "AuthCalloutService",
    "CalloutRefusal",
    "client_permissions",
    "decode_jwt",
    "encode_jwt",
]

_log = logging.getLogger(__name__)

_JWT_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_JWT_VERSION = 2


class CalloutRefusal(Exception):
    """A connection the service refuses; ``reason`` goes into the response's error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def client_permissions(inbox_prefix: str) -> dict[str, Any]:
    """Return the ``nats`` section of an anonymous client's user JWT.

    Parameters
    ----------
    inbox_prefix : str
        The client's inbox prefix (``_I.<24 hex>``).

    Returns
    -------
    dict
        Publish only on the client request subject, subscribe only below the prefix,
        no response rights. Limits (payload, subscriptions) are not here: nats-server in
        config mode ignores them in a callout grant; the CLIENTS account enforces them.
    """
    return {
        "pub": {"allow": [CLIENT_REQUESTS]},
        "sub": {"allow": [f"{inbox_prefix}.>"]},
        "type": "user",
        "version": _JWT_VERSION,
    }


# --------------------------------------------------------------------------- JWT


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(claims: dict[str, Any], signer: Any) -> str:
    """Sign ``claims`` as an ``ed25519-nkey`` JWT.

    Parameters
    ----------
    claims : dict
        The claims; ``jti`` is filled in (base32 SHA-256 of the claims without it).
    signer : nkeys.KeyPair
        Key pair from a seed (the callout issuer account).

    Returns
    -------
    str
        ``header.payload.signature``, each base64url without padding.
    """
    body = dict(claims)
    body["jti"] = ""
    digest = hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode("ascii").rstrip("=")
    header = _b64url_encode(json.dumps(_JWT_HEADER, separators=(",", ":")).encode())
    payload = _b64url_encode(json.dumps(body, separators=(",", ":")).encode())
    signature = signer.sign(f"{header}.{payload}".encode("ascii"))
    return f"{header}.{payload}.{_b64url_encode(signature)}"


def _server_verify_key(public_key: str) -> nacl.signing.VerifyKey:
    """Decode a server public nkey (``N...``) into an Ed25519 verify key."""
    raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_SERVER:
        raise ValueError("issuer is not a server public nkey")
    if nkeys.crc16(bytearray(raw[:33])) != int.from_bytes(raw[33:], "little"):
        raise ValueError("issuer nkey checksum mismatch")
    return nacl.signing.VerifyKey(raw[1:33])


def decode_jwt(token: str | bytes) -> dict[str, Any]:
    """Decode a server-signed JWT and verify its signature against its ``iss``.

    Parameters
    ----------
    token : str or bytes
        ``header.payload.signature``.

    Returns
    -------
    dict
        The claims.

    Raises
    ------
    ValueError
        If the JWT is malformed, not ``ed25519-nkey``, or the signature is wrong.
    """
    try:
        text = token.decode("ascii") if isinstance(token, bytes) else token
        header_b64, payload_b64, signature_b64 = text.split(".")
        header = json.loads(_b64url_decode(header_b64))
        claims = json.loads(_b64url_decode(payload_b64))
        signature = _b64url_decode(signature_b64)
        if not isinstance(header, dict) or str(header.get("alg", "")).lower() != "ed25519-nkey":
            raise ValueError("JWT algorithm is not ed25519-nkey")
        if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
            raise ValueError("JWT claims have no issuer")
        key = _server_verify_key(claims["iss"])
        key.verify(f"{header_b64}.{payload_b64}".encode("ascii"), signature)
    except (UnicodeError, binascii.Error, json.JSONDecodeError, nacl.exceptions.CryptoError,
            TypeError) as exc:
        raise ValueError(f"bad authorization request JWT ({type(exc).__name__})") from exc
    return claims


# --------------------------------------------------------------------------- service


class AuthCalloutService:
    """The asyncio service that answers nats-server's authorization requests.

    Parameters
    ----------
    url : str
        ``nats://host:port`` of the server.
    identity : Identity
        The callout identity (``NatsServer.callout``).
    issuer_seed : str
        Account nkey seed whose public key is the ``issuer`` in the server's
        ``auth_callout`` block (``NatsServer.callout_issuer_seed``).
    account : str
        Account the clients are placed in (the CLIENTS account of the server config,
        which holds the per-client limits).
    expected_server_key : str or None
        If given, requests must be signed by this server nkey (``N...``).
    clock : callable
        Returns the time in seconds (``iat`` of the JWTs); injectable for tests.

    Examples
    --------
    >>> async with AuthCalloutService(server.url, server.callout,   # doctest: +SKIP
    ...                               server.callout_issuer_seed):
    ...     ...  # clients can connect now
    """

    def __init__(
        self,
        url: str,
        identity: Identity,
        issuer_seed: str,
        *,
        account: str = CLIENT_ACCOUNT,
        expected_server_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(identity, Identity):
            raise TypeError(f"identity must be an Identity, got {type(identity).__name__}")
        if not isinstance(account, str) or not account:
            raise ValueError("account must be a non-empty account name")
        try:
            raw_seed = issuer_seed.encode("ascii")
            seed_kind, _ = nkeys.decode_seed(raw_seed)
            self._issuer = nkeys.from_seed(raw_seed)
        except (nkeys.NkeysError, AttributeError, UnicodeError, ValueError):
            raise ValueError("issuer_seed must be an account nkey seed (SA...)") from None
        if seed_kind != nkeys.PREFIX_BYTE_ACCOUNT:
            raise ValueError("issuer_seed must be an account nkey seed (SA...)")
        self._issuer_key = self._issuer.public_key.decode("ascii")
        self.url = url
        self.identity = identity
        self.account = account
        self.expected_server_key = expected_server_key
        self._clock = clock
        self._nc: Any = None
        #: Connections granted since start.
        self.granted = 0
        #: Refusals by reason since start (reasons never contain tokens).
        self.refused: Counter[str] = Counter()

    @property
    def issuer_public_key(self) -> str:
        """Public account nkey (``A...``) the server config must name as issuer."""
        return self._issuer_key

    # ----------------------------------------------------------- pure core

    def authorize(self, request_jwt: bytes | str) -> str:
        """Answer one authorization request (pure; no network).

        Parameters
        ----------
        request_jwt : bytes or str
            The server's authorization-request JWT.

        Returns
        -------
        str
            The authorization-response JWT: a grant, or a refusal with an error.

        Raises
        ------
        ValueError
            If the request itself cannot be trusted or parsed (bad JWT, wrong server,
            no user nkey): there is nobody to answer, the server will time out.
        """
        claims = decode_jwt(request_jwt)
        if self.expected_server_key is not None and claims["iss"] != self.expected_server_key:
            raise ValueError("authorization request signed by an unexpected server")
        request = claims.get("nats")
        if not isinstance(request, dict):
            raise ValueError("authorization request has no nats section")
        user_nkey = request.get("user_nkey")
        server = request.get("server_id")
        server_id = server.get("id") if isinstance(server, dict) else None
        if not (isinstance(user_nkey, str) and user_nkey.startswith("U")):
            raise ValueError("authorization request has no user nkey")
        if not isinstance(server_id, str):
            raise ValueError("authorization request has no server id")
        now = int(self._clock())
        body: dict[str, Any] = {"type": "authorization_response", "version": _JWT_VERSION}
        try:
            prefix = self._client_prefix(request.get("connect_opts"))
        except CalloutRefusal as refusal:
            self.refused[refusal.reason] += 1
            _log.info("auth callout refused a connection: %s", refusal.reason)
            body["error"] = refusal.reason
        else:
            user_claims = {
                "iat": now,
                "iss": self._issuer_key,
                "name": "client",
                "sub": user_nkey,
                "aud": self.account,
                "nats": client_permissions(prefix),
            }
            body["jwt"] = encode_jwt(user_claims, self._issuer)
            self.granted += 1
        response = {"iat": now, "iss": self._issuer_key, "sub": user_nkey, "aud": server_id,
                    "nats": body}
        return encode_jwt(response, self._issuer)

    @staticmethod
    def _client_prefix(connect_opts: object) -> str:
        if not isinstance(connect_opts, dict):
            raise CalloutRefusal("no connect options")
        token = connect_opts.get("auth_token")
        if not token:
            raise CalloutRefusal("no token")
        try:
            secret = secret_from_token(token)
        except ValueError as exc:
            raise CalloutRefusal(f"bad token: {exc}") from None
        return client_inbox_prefix(secret)

    # ----------------------------------------------------------- service

    async def start(self) -> None:
        """Connect as the callout identity and start answering requests.

        Raises
        ------
        tormentor.transport.errors.TransportError
            Translated connection failure.
        """
        if self._nc is not None:
            raise RuntimeError("the callout service is already running")
        try:
            self._nc = await nats.connect(
                self.url, allow_reconnect=True, max_reconnect_attempts=-1,
                error_cb=self._on_error, **self.identity.connect_options())
            await self._nc.subscribe(AUTH_CALLOUT_SUBJECT, cb=self._on_request)
            await self._nc.flush()
        except Exception as exc:
            nc, self._nc = self._nc, None
            if nc is not None:
                await nc.close()
            raise translate(exc) from exc

    async def stop(self) -> None:
        """Drain and close the connection (idempotent)."""
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except Exception as exc:  # draining a broken connection: close regardless
                _log.debug("callout drain failed: %s", type(exc).__name__)
                await nc.close()

    async def __aenter__(self) -> AuthCalloutService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _on_request(self, msg: Msg) -> None:
        try:
            answer = self.authorize(msg.data)
        except ValueError as exc:
            self.refused["untrusted request"] += 1
            _log.warning("auth callout dropped a request: %s", exc)
            return
        except Exception as exc:  # keep serving; the server times this connection out
            self.refused["internal error"] += 1
            _log.error("auth callout failed on a request: %s", type(exc).__name__)
            return
        if msg.reply:
            await msg.respond(answer.encode("ascii"))

    async def _on_error(self, exc: Exception) -> None:
        _log.warning("auth callout connection: %s", translate(exc))
