"""Auth callout against a real nats-server: each client gets its own inbox, nothing else."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import urllib.request

import nacl.signing
import nats
import nats.aio.client
import nkeys
import pytest

from tormentor.transport.auth_callout import (
    AuthCalloutService,
    client_permissions,
    decode_jwt,
    encode_jwt,
)
from tormentor.transport.errors import (
    AuthenticationError,
    ConnectionClosed,
    PayloadTooLarge,
    PermissionDenied,
    translate,
)
from tormentor.transport.nats_server import CLIENT_ACCOUNT, NatsServer, ServerLimits
from tormentor.transport.subjects import (
    CLIENT_REQUESTS,
    CURATOR_REQUESTS,
    client_connect_options,
    client_inbox_prefix,
    client_token,
    new_client_secret,
    secret_from_token,
)

pytestmark = pytest.mark.nats

CLIENT_PAYLOAD = 4096
CLIENT_SUBS = 4


@pytest.fixture(scope="module")
def server():
    limits = ServerLimits(client_max_payload_bytes=CLIENT_PAYLOAD,
                          client_max_subscriptions=CLIENT_SUBS)
    with NatsServer(limits) as running:
        yield running


class ErrorLog:
    def __init__(self):
        self.errors: list[Exception] = []

    async def callback(self, exc):
        self.errors.append(exc)

    def translated(self):
        return [translate(exc) for exc in self.errors]

    def denied(self, action):
        return sorted(e.subject for e in self.translated()
                      if isinstance(e, PermissionDenied) and e.action == action)


@contextlib.asynccontextmanager
async def broker_and_callout(server, **callout_options):
    """The callout service plus a broker answering client requests with 're:' + data."""
    async with AuthCalloutService(server.url, server.callout, server.callout_issuer_seed,
                                  **callout_options) as callout:
        broker = await nats.connect(server.url, allow_reconnect=False,
                                    **server.broker.connect_options())
        seen: list[tuple[str, str, bytes]] = []

        async def serve(msg):
            seen.append((msg.subject, msg.reply, bytes(msg.data)))
            await msg.respond(b"re:" + msg.data)

        await broker.subscribe(CLIENT_REQUESTS, queue="brokers", cb=serve)
        await broker.flush()
        try:
            yield callout, seen
        finally:
            await broker.close()


async def client(server, secret, log=None):
    return await nats.connect(server.url, allow_reconnect=False,
                              error_cb=(log or ErrorLog()).callback,
                              **client_connect_options(secret))


async def refused_connect(url, **options):
    """Connect, expecting a refusal; return the translated error (nothing left open)."""
    nc = nats.aio.client.Client()
    try:
        await nc.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                         connect_timeout=5, error_cb=ErrorLog().callback, **options)
    except Exception as exc:  # what nats-py raises on a refusal varies
        return translate(exc)
    finally:
        await nc.close()  # nats-py leaves the socket open after a failed first connect
    raise AssertionError("the connection was accepted")


# --------------------------------------------------------------------------- honest path


def test_client_request_reply_through_the_callout(server):
    async def scenario():
        async with broker_and_callout(server) as (callout, seen):
            secret = new_client_secret()
            log = ErrorLog()
            nc = await client(server, secret, log)
            try:
                reply = await nc.request(CLIENT_REQUESTS, b"join", timeout=5)
            finally:
                await nc.close()
            assert reply.data == b"re:join"
            assert reply.subject.startswith(client_inbox_prefix(secret) + ".")
            assert log.errors == []
            assert callout.granted == 1 and not callout.refused
            # The request crossed from CLIENTS to APP through the service import: the broker
            # sees a per-request reply subject, not the client's inbox prefix.
            [(subject, reply_to, data)] = seen
            assert (subject, data) == (CLIENT_REQUESTS, b"join")
            assert client_inbox_prefix(secret) not in reply_to

    asyncio.run(scenario())


def _get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_clients_land_in_the_clients_account(server):
    async def scenario():
        async with broker_and_callout(server):
            nc = await client(server, new_client_secret())
            try:
                await nc.flush()
                return await asyncio.to_thread(
                    _get_json, f"{server.monitor_url}/connz?acc={CLIENT_ACCOUNT}&auth=1")
            finally:
                await nc.close()

    connz = asyncio.run(scenario())
    [conn] = connz["connections"]
    assert conn["account"] == CLIENT_ACCOUNT
    assert conn["ip"] == "127.0.0.1"  # connz shows each peer's address (the Tor work uses it)


def test_request_at_exactly_the_payload_limit_passes(server):
    async def scenario():
        async with broker_and_callout(server) as (_, seen):
            nc = await client(server, new_client_secret())
            try:
                reply = await nc.request(CLIENT_REQUESTS, b"x" * CLIENT_PAYLOAD, timeout=5)
            finally:
                await nc.close()
            assert len(reply.data) == CLIENT_PAYLOAD + 3
            assert len(seen[0][2]) == CLIENT_PAYLOAD

    asyncio.run(scenario())


# --------------------------------------------------------------------------- hostile client


def test_attacker_is_refused_everywhere_and_never_sees_a_victims_reply(server):
    async def scenario():
        async with broker_and_callout(server) as (_, seen):
            victim_secret, attacker_secret = new_client_secret(), new_client_secret()
            victim_prefix = client_inbox_prefix(victim_secret)
            victim_log, attacker_log = ErrorLog(), ErrorLog()
            victim = await client(server, victim_secret, victim_log)
            attacker = await client(server, attacker_secret, attacker_log)
            stolen: list[str] = []
            unsolicited: list[str] = []

            async def steal(msg):
                stolen.append(msg.subject)

            async def victim_spy(msg):
                unsolicited.append(msg.subject)

            try:
                await victim.subscribe(f"{victim_prefix}.spy", cb=victim_spy)
                refused_subs = [">", "_INBOX.>", "_I.>", f"{victim_prefix}.>",
                                f"{victim_prefix}.spy", CLIENT_REQUESTS, CURATOR_REQUESTS,
                                "_R_.>", "$SYS.>", "*"]
                for subject in refused_subs:
                    await attacker.subscribe(subject, cb=steal)
                # The one place it may subscribe: its own inbox.
                await attacker.subscribe(f"{client_inbox_prefix(attacker_secret)}.own", cb=steal)
                refused_pubs = [CURATOR_REQUESTS, "anything", f"{victim_prefix}.spy",
                                "_INBOX.x", "$SYS.REQ.USER.AUTH"]
                for subject in refused_pubs:
                    await attacker.publish(subject, b"forged")
                await attacker.flush()
                # The victim talks to the broker while the attacker listens everywhere.
                replies = await asyncio.gather(*(
                    victim.request(CLIENT_REQUESTS, f"update {i}".encode(), timeout=5)
                    for i in range(20)))
                await victim.flush()
                await asyncio.sleep(0.1)
            finally:
                await attacker.close()
                await victim.close()
            assert sorted(r.data for r in replies) == sorted(
                f"re:update {i}".encode() for i in range(20))
            assert stolen == [] and unsolicited == []
            assert victim_log.errors == []
            assert attacker_log.denied("subscribe") == sorted(s.lower() for s in refused_subs)
            assert attacker_log.denied("publish") == sorted(s.lower() for s in refused_pubs)
            assert all(data.startswith(b"update") for _, _, data in seen)  # nothing forged

    asyncio.run(scenario())


def test_payload_above_the_client_limit_closes_the_connection(server):
    async def scenario():
        async with broker_and_callout(server) as (_, seen):
            closed = asyncio.Event()

            async def on_closed():
                closed.set()

            nc = await nats.connect(server.url, allow_reconnect=False,
                                    error_cb=ErrorLog().callback, closed_cb=on_closed,
                                    **client_connect_options(new_client_secret()))
            await nc.publish(CLIENT_REQUESTS, b"x" * (CLIENT_PAYLOAD + 1))
            with contextlib.suppress(Exception):  # the server may close before the PONG
                await nc.flush(timeout=5)
            await asyncio.wait_for(closed.wait(), 5)
            assert nc.is_closed
            assert isinstance(translate(nc.last_error), PayloadTooLarge)
            assert seen == []

    asyncio.run(scenario())


def test_subscription_limit_is_enforced(server):
    async def scenario():
        async with broker_and_callout(server):
            secret = new_client_secret()
            log = ErrorLog()
            nc = await client(server, secret, log)
            prefix = client_inbox_prefix(secret)
            try:
                for i in range(CLIENT_SUBS + 1):
                    await nc.subscribe(f"{prefix}.s{i}")
                with contextlib.suppress(Exception):
                    await nc.flush(timeout=5)
                await asyncio.sleep(0.1)
            finally:
                await nc.close()
            text = str(nc.last_error).lower()
            assert "maximum subscriptions exceeded" in text
            assert isinstance(translate(nc.last_error), ConnectionClosed)

    asyncio.run(scenario())


@pytest.mark.parametrize("token, reason", [
    (None, "no token"),
    ("", "no token"),
    ("ab" * 15, "bad token"),  # 15 bytes: below the 16-byte minimum
    ("zz" * 32, "bad token"),  # not hex
    ("AB" * 32, "bad token"),  # upper case
    ("abc" * 11, "bad token"),  # odd length
    ("ab" * 65, "bad token"),  # 65 bytes: above the maximum
])
def test_bad_or_missing_tokens_are_refused(server, token, reason, caplog):
    async def scenario():
        async with broker_and_callout(server) as (callout, _):
            options = {} if token is None else {"token": token}
            refusal = await refused_connect(server.url, **options)
            assert isinstance(refusal, AuthenticationError)
            assert callout.granted == 0
            assert sum(callout.refused.values()) == 1
            [logged_reason] = callout.refused
            assert logged_reason.startswith(reason)

    with caplog.at_level(logging.DEBUG, logger="tormentor.transport.auth_callout"):
        asyncio.run(scenario())
    if token:
        assert token not in caplog.text
    assert "refused a connection" in caplog.text


def test_tokens_never_reach_the_logs(server, caplog):
    secret = new_client_secret()

    async def scenario():
        async with broker_and_callout(server):
            nc = await client(server, secret)
            await nc.request(CLIENT_REQUESTS, b"x", timeout=5)
            await nc.close()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert client_token(secret) not in caplog.text


def test_pinned_server_key_end_to_end(server):
    with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=5) as response:
        server_key = json.load(response)["server_id"]

    async def scenario():
        async with broker_and_callout(server, expected_server_key=server_key) as (callout, _):
            nc = await client(server, new_client_secret())
            reply = await nc.request(CLIENT_REQUESTS, b"x", timeout=5)
            await nc.close()
            assert reply.data == b"re:x" and callout.granted == 1

    asyncio.run(scenario())


def test_without_the_callout_service_nobody_anonymous_gets_in():
    limits = ServerLimits(auth_timeout_s=0.3)

    async def scenario(running):
        refusal = await refused_connect(running.url, **client_connect_options(new_client_secret()))
        assert isinstance(refusal, AuthenticationError)

    with NatsServer(limits, monitoring=False) as running:
        asyncio.run(scenario(running))


def test_client_connection_limit():
    limits = ServerLimits(client_max_connections=2, max_connections=10)

    async def scenario(running):
        async with broker_and_callout(running):
            first = await client(running, new_client_secret())
            second = await client(running, new_client_secret())
            try:
                refusal = await refused_connect(running.url,
                                                **client_connect_options(new_client_secret()))
            finally:
                await first.close()
                await second.close()
            assert refusal is not None
            # The broker's own identity is not counted against the clients' limit.
            broker2 = await nats.connect(running.url, allow_reconnect=False,
                                         **running.broker.connect_options())
            await broker2.close()

    with NatsServer(limits, monitoring=False) as running:
        asyncio.run(scenario(running))


# --------------------------------------------------------------------------- pure core


def _seed(prefix):
    return nkeys.encode_seed(os.urandom(32), prefix)


def _decode_signed(token, public_key):
    header, payload, signature = token.split(".")
    raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    pad = "=" * (-len(signature) % 4)
    nacl.signing.VerifyKey(raw[1:33]).verify(
        f"{header}.{payload}".encode(), base64.urlsafe_b64decode(signature + pad))
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def pure_service(server):
    return AuthCalloutService(server.url, server.callout, server.callout_issuer_seed,
                              clock=lambda: 1_700_000_000.5)


def _request(server_kp, user_key, connect_opts):
    server_key = server_kp.public_key.decode()
    claims = {"aud": "nats-authorization-request", "iat": 1, "iss": server_key,
              "sub": "issuer", "nats": {"server_id": {"id": server_key, "name": "t"},
                                        "user_nkey": user_key, "connect_opts": connect_opts,
                                        "type": "authorization_request", "version": 2}}
    return encode_jwt(claims, server_kp)


def test_authorize_grants_exactly_the_client_permissions(pure_service):
    server_kp = nkeys.from_seed(_seed(nkeys.PREFIX_BYTE_SERVER))
    user_key = nkeys.from_seed(_seed(nkeys.PREFIX_BYTE_USER)).public_key.decode()
    secret = new_client_secret()
    answer = pure_service.authorize(
        _request(server_kp, user_key, {"auth_token": client_token(secret), "protocol": 1}))
    issuer = pure_service.issuer_public_key
    response = _decode_signed(answer, issuer)
    assert response["iss"] == issuer and response["sub"] == user_key
    assert response["aud"] == server_kp.public_key.decode()
    assert response["iat"] == 1_700_000_000
    assert response["nats"]["type"] == "authorization_response"
    assert "error" not in response["nats"]
    user = _decode_signed(response["nats"]["jwt"], issuer)
    assert (user["iss"], user["sub"], user["aud"]) == (issuer, user_key, CLIENT_ACCOUNT)
    assert user["nats"] == client_permissions(client_inbox_prefix(secret))
    assert user["nats"]["pub"] == {"allow": [CLIENT_REQUESTS]}
    assert user["nats"]["sub"] == {"allow": [client_inbox_prefix(secret) + ".>"]}
    assert "resp" not in user["nats"]
    assert client_token(secret) not in answer  # the grant does not carry the token


def test_authorize_refusal_carries_an_error_and_no_grant(pure_service):
    server_kp = nkeys.from_seed(_seed(nkeys.PREFIX_BYTE_SERVER))
    user_key = nkeys.from_seed(_seed(nkeys.PREFIX_BYTE_USER)).public_key.decode()
    answer = pure_service.authorize(_request(server_kp, user_key, {"user": "x", "pass": "y"}))
    response = _decode_signed(answer, pure_service.issuer_public_key)
    assert response["nats"]["error"] == "no token" and "jwt" not in response["nats"]
    assert pure_service.refused["no token"] == 1 and pure_service.granted == 0


def test_untrusted_requests_raise(pure_service, server):
    server_kp = nkeys.from_seed(_seed(nkeys.PREFIX_BYTE_SERVER))
    user_key = nkeys.from_seed(_seed(nkeys.PREFIX_BYTE_USER)).public_key.decode()
    good = _request(server_kp, user_key, {"auth_token": "ab" * 32})
    header, payload, signature = good.split(".")
    tampered_payload = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(
            b"ab", b"cd", 1)).rstrip(b"=").decode()
    account_kp = nkeys.from_seed(_seed(nkeys.PREFIX_BYTE_ACCOUNT))
    for bad in ("", "a.b", "a.b.c", f"{header}.{tampered_payload}.{signature}",
                _request(account_kp, user_key, {}),  # signed by an account, not a server
                _request(server_kp, "not-a-user", {"auth_token": "ab" * 32}),
                b"\xff\xfe"):
        with pytest.raises(ValueError):
            pure_service.authorize(bad)
    pinned = AuthCalloutService(server.url, server.callout, server.callout_issuer_seed,
                                expected_server_key="NOTTHISONE")
    with pytest.raises(ValueError, match="unexpected server"):
        pinned.authorize(good)
    assert decode_jwt(good)["nats"]["user_nkey"] == user_key


def test_service_argument_validation(server):
    with pytest.raises(ValueError, match="account nkey seed"):
        AuthCalloutService(server.url, server.callout, server.callout.seed)  # a user seed
    with pytest.raises(ValueError, match="account nkey seed"):
        AuthCalloutService(server.url, server.callout, "garbage")
    with pytest.raises(TypeError):
        AuthCalloutService(server.url, "callout", server.callout_issuer_seed)


# --------------------------------------------------------------------------- subjects


def test_token_format_round_trip_and_refusals():
    secret = new_client_secret()
    assert len(secret) == 32 and secret_from_token(client_token(secret)) == secret
    prefix = client_inbox_prefix(secret)
    assert prefix.startswith("_I.") and len(prefix) == 3 + 24
    assert client_connect_options(secret) == {"token": secret.hex(), "inbox_prefix": prefix}
    for bad in ("", "ab" * 15, "AB" * 16, "g" * 32, "abc" * 11, "ab" * 65, None):
        with pytest.raises(ValueError) as info:
            secret_from_token(bad)
        if bad:
            assert bad not in str(info.value)
    with pytest.raises(TypeError):
        client_inbox_prefix("not bytes")
    with pytest.raises(ValueError):
        client_inbox_prefix(b"short")
