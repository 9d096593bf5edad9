"""Tor layer benchmarks on a private Tor network (loopback: Tor's own cost, no real latency).

- ``test_bench_echo_rtt[direct|onion]``: one 64-byte echo round trip on one open TCP
  connection, straight to the echo server (the baseline) and through a SocksForwarder and
  the onion service. The ratio and p50/p99 are printed.
- ``test_bench_bootstrap``: a fresh network from key generation to both clients at 100 %,
  ``TORMENTOR_BENCH_TOR_BOOTSTRAPS`` times (default 3; once with --benchmark-disable).

Loopback latency through tor is bimodal (Nagle on tor's sockets; see
docs/tor-private-network.md section 7): compare medians across networks, not single runs.
Run: .venv/bin/pytest -q bench/test_bench_tor.py -s
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import threading

import pytest

from tormentor.transport.tor import PrivateTorNetwork, SocksForwarder

pytestmark = [
    pytest.mark.tor,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tor") is None or shutil.which("tor-gencert") is None,
                       reason="tor / tor-gencert not installed (Debian package `tor`)"),
]

MESSAGE = b"x" * 64
RESULTS: dict[str, float] = {}


class LoopThread:
    """An asyncio loop in a thread hosting the echo server and the forwarder."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    loop = LoopThread()
    server = loop.run(asyncio.start_server(_echo, "127.0.0.1", 0))
    echo_port = server.sockets[0].getsockname()[1]
    with PrivateTorNetwork(tmp_path_factory.mktemp("tor-bench") / "net") as net:
        print(f"\nbootstrap of the benchmark network: {net.timings}")
        service = net.publish_onion({7: ("127.0.0.1", echo_port)})
        forwarder = SocksForwarder(service.address, 7, net.socks_host, net.socks_port,
                                   new_identity=net.new_identity)
        loop.run(forwarder.start())
        yield {"direct": echo_port, "onion": forwarder.local_port}
        loop.run(forwarder.close())
    server.close()
    loop.run(server.wait_closed())
    loop.close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _roundtrip(sock: socket.socket) -> None:
    sock.sendall(MESSAGE)
    received = 0
    while received < len(MESSAGE):
        chunk = sock.recv(len(MESSAGE) - received)
        if not chunk:
            raise ConnectionError("echo connection closed")
        received += len(chunk)


@pytest.mark.parametrize("path", ["direct", "onion"])
def test_bench_echo_rtt(benchmark, setup, path):
    sock = _connect(setup[path])
    try:
        _roundtrip(sock)  # opens the circuit before timing
        benchmark.pedantic(_roundtrip, args=(sock,), rounds=300, iterations=1,
                           warmup_rounds=10)
    finally:
        sock.close()
    if benchmark.stats is None:  # --benchmark-disable
        return
    data = sorted(benchmark.stats.stats.data)
    p50 = data[len(data) // 2] * 1e3
    p99 = data[min(len(data) - 1, int(len(data) * 0.99))] * 1e3
    RESULTS[path] = p50
    print(f"\necho RTT {path}: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({len(data)} round trips)")
    if "direct" in RESULTS and "onion" in RESULTS:
        print(f"onion / direct p50 ratio: {RESULTS['onion'] / RESULTS['direct']:.0f}x")


def test_bench_bootstrap(benchmark, tmp_path):
    runs = int(os.environ.get("TORMENTOR_BENCH_TOR_BOOTSTRAPS", "3"))
    totals: list[float] = []

    def bootstrap():
        with PrivateTorNetwork(tmp_path / f"net{len(totals)}") as net:
            totals.append(net.timings.total_s)
            print(f"\n  {net.timings}")

    benchmark.pedantic(bootstrap, rounds=max(1, runs), iterations=1)
    print(f"\nbootstrap (keys to ready) over {len(totals)} runs: median "
          f"{statistics.median(totals):.1f} s, runs {', '.join(f'{t:.1f}' for t in totals)}")
