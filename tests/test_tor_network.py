"""The Tor layer against real tor daemons: a private Tor network on 127.0.0.1.

One network is built per module (``network`` fixture, 15-40 s on a busy 2-core machine)
and shared. ``test_close_stops_every_tor`` closes it, so it stays the last test of the
file. Tests without the ``network`` fixture need no running tor (a few need the binary).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from tormentor.transport.tor import (
    BootstrapStatus,
    OnionKey,
    OnionKeyFileError,
    OnionUnreachable,
    PrivateTorNetwork,
    SocksForwarder,
    SystemTor,
    TorBackend,
    TorBootstrapTimeout,
    TorControlError,
    TorNotInstalled,
    TorProcessError,
    TorVersionUnsupported,
    load_onion_key,
    save_onion_key,
    tcp_peers,
)
from tormentor.transport.tor.control import redact_secrets
from tormentor.transport.tor.process import TorProcess, render_torrc, require_tor_version

pytestmark = pytest.mark.tor

HAVE_TOR = shutil.which("tor") is not None and shutil.which("tor-gencert") is not None
needs_tor = pytest.mark.skipif(not HAVE_TOR, reason="tor / tor-gencert not installed "
                               "(Debian package `tor`)")
NATS_SERVER = Path(sys.executable).parent / "nats-server"

# A valid v3 onion address that no one publishes: its public key is the ed25519 base point.
_BASE_POINT = bytes.fromhex("58" + "66" * 31)


def _v3_address(public_key: bytes) -> str:
    version = b"\x03"
    checksum = hashlib.sha3_256(b".onion checksum" + public_key + version).digest()[:2]
    return base64.b32encode(public_key + checksum + version).decode().lower() + ".onion"


UNPUBLISHED_ONION = _v3_address(_BASE_POINT)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class EchoServer:
    """An asyncio TCP echo server on 127.0.0.1:<ephemeral> in its own thread and loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.peers: list[tuple[str, int]] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    def start(self) -> EchoServer:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> int:
        self.server = await asyncio.start_server(self._echo, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("peername")[:2])
        self._writers.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _stop(self) -> None:
        self.server.close()
        for writer in list(self._writers):
            writer.close()
        await self.server.wait_closed()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _echo_roundtrip(port: int, payloads: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        replies = []
        for payload in payloads:
            writer.write(payload)
            await writer.drain()
            replies.append(await asyncio.wait_for(reader.readexactly(len(payload)), 60))
        return replies
    finally:
        writer.close()
        await writer.wait_closed()


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def echo_server():
    server = EchoServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    if not HAVE_TOR:
        pytest.skip("tor / tor-gencert not installed (Debian package `tor`)")
    net = PrivateTorNetwork(tmp_path_factory.mktemp("tor") / "net", relays=2, authorities=3,
                            bootstrap_timeout_s=120)
    with net:
        print(f"\nprivate network bootstrap: {net.timings}")
        yield net


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def echo_onion(network, echo_server, state_dir):
    service = network.publish_onion({7: ("127.0.0.1", echo_server.port)},
                                    key_file=state_dir / "echo.onion-key")
    yield service
    service.close()


# --------------------------------------------------------------------------- no daemon
def test_bootstrap_status_parses_notice_and_warn_lines():
    done = BootstrapStatus.parse('NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"')
    warn = BootstrapStatus.parse(
        'WARN BOOTSTRAP PROGRESS=14 TAG=handshake SUMMARY="Handshaking with a relay" '
        'WARNING="Connection refused" REASON=CONNECTREFUSED COUNT=3')

    assert (done.progress, done.tag, done.summary, done.warning) == (100, "done", "Done", None)
    assert (warn.progress, warn.tag, warn.warning) == (14, "handshake", "Connection refused")
    with pytest.raises(ValueError, match="PROGRESS"):
        BootstrapStatus.parse("garbage")


def test_redact_secrets_hides_keys_and_passwords():
    blob = base64.b64encode(bytes(range(64))).decode()

    text = redact_secrets(f"ADD_ONION ED25519-V3:{blob} Port=7 / PrivateKey=ED25519-V3:{blob} "
                          "/ AUTHENTICATE \"hunter2\"")

    assert blob not in text and "hunter2" not in text
    assert text.count("<redacted>") == 3


def test_render_torrc_refuses_option_injection():
    assert render_torrc([("SocksPort", "0"), ("DirAuthority", "a"), ("DirAuthority", "b")]) \
        == "SocksPort 0\nDirAuthority a\nDirAuthority b\n"
    with pytest.raises(ValueError, match="line break"):
        render_torrc([("Nickname", "x\nControlPort 9051")])
    with pytest.raises(ValueError, match="option name"):
        render_torrc([("Bad Option", "1")])


def test_onion_key_file_is_0600_and_round_trips(tmp_path):
    key = OnionKey("ED25519-V3", base64.b64encode(bytes(range(64))).decode())
    path = tmp_path / "keys" / "broker.onion-key"

    save_onion_key(path, key)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_onion_key(path) == key
    assert key.blob not in repr(key)


def test_onion_key_file_refused_when_others_can_read_it_or_it_is_malformed(tmp_path):
    blob = base64.b64encode(bytes(range(64))).decode()
    path = save_onion_key(tmp_path / "k", OnionKey("ED25519-V3", blob))
    path.chmod(0o644)

    with pytest.raises(OnionKeyFileError, match="chmod 600") as loose:
        load_onion_key(path)
    path.chmod(0o600)
    path.write_text(f"ED25519-V3:{blob[:-8]}\n")
    with pytest.raises(OnionKeyFileError, match="malformed") as short:
        load_onion_key(path)
    with pytest.raises(OnionKeyFileError, match="does not exist"):
        load_onion_key(tmp_path / "missing")

    for error in (loose.value, short.value):
        assert blob[:16] not in str(error)


def test_network_parameters_are_validated(tmp_path):
    with pytest.raises(ValueError, match="relays"):
        PrivateTorNetwork(tmp_path, authorities=2, relays=1)
    with pytest.raises(ValueError, match="authorities"):
        PrivateTorNetwork(tmp_path, authorities=0, relays=5)
    with pytest.raises(ValueError, match="bootstrap_timeout_s"):
        PrivateTorNetwork(tmp_path, bootstrap_timeout_s=0)
    with pytest.raises(ValueError, match="socks_port"):
        SocksForwarder(UNPUBLISHED_ONION, 7, "127.0.0.1", 0)
    with pytest.raises(ValueError, match="listen_host"):
        SocksForwarder(UNPUBLISHED_ONION, 7, "127.0.0.1", 9050, listen_host="localhost")


def test_missing_tor_binary_raises_tor_not_installed(tmp_path, monkeypatch):
    with pytest.raises(TorNotInstalled, match="Debian package `tor`") as by_path:
        PrivateTorNetwork(tmp_path / "a", tor_binary=tmp_path / "no-such-tor").start()
    assert by_path.value.program == str(tmp_path / "no-such-tor")

    if HAVE_TOR:
        with pytest.raises(TorNotInstalled, match="tor-gencert"):
            PrivateTorNetwork(tmp_path / "b", tor_gencert_binary="no-such-tor-gencert").start()

    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    with pytest.raises(TorNotInstalled, match="not found in PATH") as by_name:
        PrivateTorNetwork(tmp_path / "c").start()
    assert by_name.value.program == "tor"
    assert not (tmp_path / "c").exists()


def test_old_tor_version_is_refused_naming_the_version_needed(tmp_path):
    old_tor = tmp_path / "tor"
    old_tor.write_text("#!/bin/sh\necho 'Tor version 0.3.5.8.'\n")
    old_tor.chmod(0o755)

    with pytest.raises(TorVersionUnsupported, match=r"0\.3\.5\.8 is too old") as info:
        require_tor_version(old_tor)

    assert info.value.found == "0.3.5.8"
    assert info.value.required.startswith("0.4.")
    assert isinstance(info.value, TorNotInstalled)


# --------------------------------------------------------------------------- one tor
@needs_tor
def test_tor_exits_when_its_owning_python_process_dies(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from tormentor.transport.tor.process import TorProcess
        tor = TorProcess.launch("owned", Path({str(tmp_path / "owned")!r}),
                                [("SocksPort", "0"), ("DisableNetwork", "1"),
                                 ("GeoIPFile", '""'), ("GeoIPv6File", '""')])
        print(tor.pid, flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        tor_pid = int(owner.stdout.readline())
        assert _alive(tor_pid)

        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 30
        while _alive(tor_pid) and time.monotonic() < deadline:
            time.sleep(0.2)

        assert not _alive(tor_pid)
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()


@needs_tor
def test_bootstrap_timeout_names_the_phase_and_leaves_no_tor_running(tmp_path):
    net = PrivateTorNetwork(tmp_path / "net", bootstrap_timeout_s=1)

    with pytest.raises(TorBootstrapTimeout) as info:
        net.start()

    assert info.value.name == "auth0"
    assert "consensus gate" in info.value.phase
    assert isinstance(info.value, TimeoutError)
    assert len(net.pids) == 7
    assert not any(_alive(pid) for pid in net.pids.values())


@needs_tor
def test_tor_process_launch_rejects_a_dead_tor(tmp_path):
    """A torrc tor refuses: TorProcessError with tor's own complaint, no process left."""
    with pytest.raises(TorProcessError) as info:
        TorProcess.launch("broken", tmp_path / "broken", [("SocksPort", "not-a-port")])

    assert info.value.exit_code not in (None, 0)
    assert info.value.last_log_line and "SocksPort" in info.value.last_log_line


# --------------------------------------------------------------------------- network
def test_network_is_a_tor_backend_with_a_socks_port(network):
    assert isinstance(network, TorBackend)
    assert network.client_control.listeners("socks") == [("127.0.0.1", network.socks_port)]
    assert all(tor.is_running() for tor in network.tors.values())


def test_echo_through_the_onion_with_two_forwarders(network, echo_onion):
    payloads = [b"hello", os.urandom(1000), os.urandom(200_000)]

    async def scenario():
        async with (
            SocksForwarder(echo_onion.address, 7, network.socks_host, network.socks_port,
                           username="client-a", password="pa",
                           new_identity=network.new_identity) as first,
            SocksForwarder(echo_onion.address, 7, network.socks_host, network.socks_port,
                           username="client-b", password="pb",
                           new_identity=network.new_identity) as second,
        ):
            return await asyncio.gather(_echo_roundtrip(first.local_port, payloads),
                                        _echo_roundtrip(second.local_port, payloads))

    replies_a, replies_b = asyncio.run(scenario())

    assert replies_a == payloads
    assert replies_b == payloads
    assert echo_onion.address.endswith(".onion") and len(echo_onion.address) == 62


def test_different_socks_usernames_get_different_rendezvous_circuits(network, echo_onion):
    async def scenario():
        async with (
            SocksForwarder(echo_onion.address, 7, network.socks_host,
                           network.socks_port) as first,
            SocksForwarder(echo_onion.address, 7, network.socks_host,
                           network.socks_port) as second,
        ):
            connections = []
            for forwarder in (first, first, second):
                reader, writer = await asyncio.open_connection("127.0.0.1",
                                                               forwarder.local_port)
                writer.write(b"ping")
                await writer.drain()
                assert await asyncio.wait_for(reader.readexactly(4), 60) == b"ping"
                connections.append(writer)
            streams = await asyncio.to_thread(network.client_control.streams)
            circuits = await asyncio.to_thread(network.client_control.circuits)
            for writer in connections:
                writer.close()
            return first.username, second.username, streams, circuits

    user_a, user_b, streams, circuits = asyncio.run(scenario())

    onion_streams = [s for s in streams if s.target_address == echo_onion.address]
    circuit_by_id = {c.id: c for c in circuits}
    users_by_circuit: dict[str, set[str]] = {}
    for stream in onion_streams:
        circuit = circuit_by_id[stream.circ_id]
        assert circuit.purpose == "HS_CLIENT_REND"
        users_by_circuit.setdefault(stream.circ_id, set()).add(circuit.socks_username)
    assert len(onion_streams) == 3
    # first's two connections share one circuit; second's is on another one.
    assert sorted(users_by_circuit.values(), key=sorted) == sorted([{user_a}, {user_b}],
                                                                   key=sorted)
    assert user_a != user_b


def test_every_connection_the_server_sees_comes_from_the_onion_service_tor(
        network, echo_onion, echo_server):
    async def scenario():
        async with (
            SocksForwarder(echo_onion.address, 7, network.socks_host,
                           network.socks_port) as first,
            SocksForwarder(echo_onion.address, 7, network.socks_host,
                           network.socks_port) as second,
        ):
            writers = []
            for forwarder in (first, second, second):
                reader, writer = await asyncio.open_connection("127.0.0.1",
                                                               forwarder.local_port)
                writer.write(b"who")
                await writer.drain()
                assert await asyncio.wait_for(reader.readexactly(3), 60) == b"who"
                writers.append(writer)
            peers = await asyncio.to_thread(tcp_peers, echo_server.port)
            for writer in writers:
                writer.close()
            return peers

    peers = asyncio.run(scenario())

    assert len(peers) >= 3
    assert {peer.pid for peer in peers} == {network.onion_service_pid}
    assert all(peer.remote[0] == "127.0.0.1" for peer in peers)
    assert os.getpid() not in {peer.pid for peer in peers}
    assert network.client_pid not in {peer.pid for peer in peers}


def test_onion_key_file_of_a_published_service_is_0600(echo_onion):
    assert stat.S_IMODE(echo_onion.key_file.stat().st_mode) == 0o600
    assert echo_onion.service_id not in echo_onion.key_file.read_text()


def test_republishing_from_the_key_file_keeps_the_address(network, echo_server, tmp_path):
    key_file = tmp_path / "restart.onion-key"
    first = network.publish_onion({7: ("127.0.0.1", echo_server.port)}, key_file=key_file)

    async def echo_once(address: str) -> bytes:
        async with SocksForwarder(address, 7, network.socks_host, network.socks_port,
                                  new_identity=network.new_identity) as forwarder:
            return (await _echo_roundtrip(forwarder.local_port, [b"again"]))[0]

    assert asyncio.run(echo_once(first.address)) == b"again"
    first.close()
    second = network.publish_onion({7: ("127.0.0.1", echo_server.port)}, key_file=key_file)
    try:
        assert second.address == first.address
        assert asyncio.run(echo_once(second.address)) == b"again"
    finally:
        second.close()


def test_private_key_never_reaches_stem_trace_log(network, echo_server, tmp_path, caplog):
    # stem traces every control command and reply when a handler on its own logger
    # accepts TRACE (level 5), as `stem.util.log.log_to_stdout(TRACE)` would set up.
    stem_logger = logging.getLogger("stem")
    caplog.set_level(5, logger="stem")
    stem_logger.addHandler(caplog.handler)
    key_file = tmp_path / "traced.onion-key"
    try:
        service = network.publish_onion({7: ("127.0.0.1", echo_server.port)},
                                        key_file=key_file)
        service.close()
        again = network.publish_onion({7: ("127.0.0.1", echo_server.port)},
                                      key_file=key_file)
        again.close()
    finally:
        stem_logger.removeHandler(caplog.handler)

    blob = load_onion_key(key_file).blob
    assert "ADD_ONION" in caplog.text  # the commands were traced ...
    assert blob not in caplog.text and blob[:24] not in caplog.text  # ... without the key
    assert "<redacted>" in caplog.text
    assert blob not in repr(service)

def test_unpublished_onion_is_unreachable_with_tor_reason(network):
    async def scenario():
        forwarder = SocksForwarder(UNPUBLISHED_ONION, 7, network.socks_host,
                                   network.socks_port, attempts=2, retry_delay_s=0.1,
                                   new_identity=network.new_identity)
        first_username = forwarder.username
        with pytest.raises(OnionUnreachable) as missing:
            await forwarder.open_tunnel()
        invalid = SocksForwarder("not-an-address.onion", 7, network.socks_host,
                                 network.socks_port, attempts=3)
        with pytest.raises(OnionUnreachable) as bad:
            await invalid.open_tunnel()
        return first_username, forwarder.username, missing.value, bad.value

    first_username, retry_username, missing, bad = asyncio.run(scenario())

    assert missing.attempts == 2
    assert "0xF0" in missing.reason  # descriptor can not be found
    assert retry_username != first_username  # a retry uses a new circuit
    assert bad.attempts == 1  # an invalid address is not retried
    assert "0xF6" in bad.reason


def test_forwarder_drops_local_connection_when_the_onion_is_unreachable(network):
    async def scenario():
        async with SocksForwarder(UNPUBLISHED_ONION, 7, network.socks_host,
                                  network.socks_port, attempts=1) as forwarder:
            reader, writer = await asyncio.open_connection("127.0.0.1", forwarder.local_port)
            data = await asyncio.wait_for(reader.read(10), 90)
            writer.close()
            return data, forwarder.tunnel_failures, forwarder.last_error

    data, failures, error = asyncio.run(scenario())

    assert data == b""
    assert failures == 1
    assert isinstance(error, OnionUnreachable)


def test_system_tor_mode_publishes_and_reaches_an_onion(network, echo_server):
    client_tor = network.tors["client"]
    with pytest.raises(TorControlError, match="no SOCKS listener"):
        SystemTor(client_tor.control_port, network.socks_port + 1 if network.socks_port
                  < 65535 else 1).start()

    with SystemTor(client_tor.control_port, network.socks_port) as system:
        assert isinstance(system, TorBackend)
        assert system.wait_ready(30) >= 0
        service = system.publish_onion({7: ("127.0.0.1", echo_server.port)})

        async def echo_once() -> bytes:
            async with SocksForwarder(service.address, 7, system.socks_host,
                                      system.socks_port) as forwarder:
                return (await _echo_roundtrip(forwarder.local_port, [b"system"]))[0]

        assert asyncio.run(echo_once()) == b"system"
    assert service.closed
    assert client_tor.is_running()  # closing a SystemTor leaves tor running


def _start_nats_server(workdir: Path) -> tuple[subprocess.Popen, int]:
    ports_dir = workdir / "ports"
    ports_dir.mkdir()
    process = subprocess.Popen(
        [str(NATS_SERVER), "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", str(ports_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        files = list(ports_dir.glob("*.ports"))
        if files:
            try:
                url = json.loads(files[0].read_text())["nats"][0]
                return process, int(url.rsplit(":", 1)[1])
            except (ValueError, KeyError, IndexError):
                pass
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"nats-server did not report its port (exit {process.poll()})")


@pytest.mark.nats
@pytest.mark.skipif(not NATS_SERVER.exists(), reason="nats-server binary not installed")
def test_nats_request_reply_through_the_onion(network, tmp_path):
    nats = pytest.importorskip("nats")
    server, nats_port = _start_nats_server(tmp_path)
    try:
        service = network.publish_onion({4222: ("127.0.0.1", nats_port)})

        async def scenario():
            responder = await nats.connect(f"nats://127.0.0.1:{nats_port}")

            async def reply(msg):
                await msg.respond(b"pong:" + msg.data)

            await responder.subscribe("svc.echo", cb=reply)
            await responder.flush()
            async with SocksForwarder(service.address, 4222, network.socks_host,
                                      network.socks_port,
                                      new_identity=network.new_identity) as forwarder:
                requester = await nats.connect(f"nats://127.0.0.1:{forwarder.local_port}",
                                               connect_timeout=60, allow_reconnect=False)
                answer = await requester.request("svc.echo", b"ping", timeout=30)
                peers = await asyncio.to_thread(tcp_peers, nats_port)
                await requester.close()
            await responder.close()
            return answer.data, peers

        data, peers = asyncio.run(scenario())
    finally:
        server.terminate()
        server.wait(10)

    assert data == b"pong:ping"
    # the responder connects directly (our PID); the requester only as the onion tor.
    assert {peer.pid for peer in peers} == {os.getpid(), network.onion_service_pid}


# --------------------------------------------------------------------------- teardown
def test_close_stops_every_tor(network):
    """Must stay last: it closes the module's shared network."""
    pids = network.pids
    assert all(_alive(pid) for pid in pids.values())

    network.close()

    assert len(pids) == 7
    assert not any(_alive(pid) for pid in pids.values())
    with pytest.raises(RuntimeError):
        network.wait_ready()


def test_tcp_peers_matches_the_whole_address_pair():
    """Two sockets of different processes may share a local port (to different places);
    the peer of a connection is found by both ends, never by the local port alone."""
    import socket
    import subprocess
    import sys

    from tormentor.transport.tor.checks import tcp_peers

    first, second = socket.socket(), socket.socket()
    for server in (first, second):
        server.bind(("127.0.0.1", 0))
        server.listen()
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import socket, sys, time\n"
         "s = socket.socket()\n"
         "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.connect(('127.0.0.1', {second.getsockname()[1]}))\n"
         "print(s.getsockname()[1], flush=True)\n"
         "time.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True)
    opened = [first, second]
    try:
        shared_port = int(child.stdout.readline())
        accepted_second, _ = second.accept()
        opened.append(accepted_second)
        # This process connects to `first` from the very same local port.
        mine = socket.socket()
        opened.append(mine)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        mine.bind(("127.0.0.1", shared_port))
        mine.connect(("127.0.0.1", first.getsockname()[1]))
        accepted_first, _ = first.accept()
        opened.append(accepted_first)
        peers = tcp_peers(first.getsockname()[1])
        assert [(p.remote[1], p.pid) for p in peers] == [(shared_port, os.getpid())]
        assert [p.pid for p in tcp_peers(second.getsockname()[1])] == [child.pid]
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        for sock in opened:
            sock.close()
