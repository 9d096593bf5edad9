"""Proof-of-work search speed: tries per second, hashlib baseline vs Numba (1 and all threads).

Each method scans a fixed range of nonces at ``bits = 64``, where a hit is practically
impossible (probability ``count * 2**-64``), so every nonce is tried and the rate is
exact: ``items`` = nonces tried per call, and the summary of ``bench/conftest.py`` prints
tries/s and the ratio to the Numba kernel.

Groups and implementations
--------------------------
32-byte prefix (one final block per try, rounds 0-7 precomputed; the layout to use)
    ``reference``: :func:`sha256_pow_reference.pow_scan`, ``base.copy().update(nonce)`` in a
    Python loop. ``openssl-per-call``: ``hashlib.sha256(m).digest()`` on a 64-byte message
    in a tight loop, OpenSSL's per-call rate with Python's call overhead (a comparison,
    not a search). ``numba``: :func:`sha256.pow_scan`, one thread. ``numba-parallel``:
    all Numba threads.
60-byte prefix (the nonce spills into a second block: about half the rate)
    ``reference`` and ``numba``.

Run: ``.venv/bin/pytest bench/test_bench_sha256.py``; smoke test: ``--benchmark-disable``.
Timings are noisy on a shared machine.
"""

from __future__ import annotations

import hashlib
import importlib

import pytest

from tormentor.engine import kernels

reference = importlib.import_module("tormentor.engine.kernels.sha256_pow_reference")
requires_numba = pytest.mark.skipif(kernels.BACKEND != "numba", reason="Numba backend disabled")

START = 2**40 + 12_345
MESSAGE_64 = bytes(range(64))
GROUPS = {
    32: "sha256 nonce search, 32-byte prefix (tries)",
    60: "sha256 nonce search, 60-byte prefix: two blocks (tries)",
}


def numba_module():
    # By name: the package attribute `kernels.sha256` is the function.
    return importlib.import_module("tormentor.engine.kernels.sha256_pow")


def scan_reference(prefix: bytes, count: int) -> None:
    assert reference.pow_scan(prefix, 64, START, count) is None


def openssl_per_call(prefix: bytes, count: int) -> None:
    sha256 = hashlib.sha256
    message = MESSAGE_64
    for _ in range(count):
        sha256(message).digest()


def scan_numba(prefix: bytes, count: int) -> None:
    assert numba_module().pow_scan(prefix, 64, START, count, threads=1) is None


def scan_numba_parallel(prefix: bytes, count: int) -> None:
    assert numba_module().pow_scan(prefix, 64, START, count, threads=None) is None


#: impl -> (function, tries per call: about 0.1-0.5 s each)
IMPLEMENTATIONS = {
    "reference": (scan_reference, 1 << 16),
    "openssl-per-call": (openssl_per_call, 1 << 17),
    "numba": (scan_numba, 1 << 20),
    "numba-parallel": (scan_numba_parallel, 1 << 21),
}
CASES = [
    pytest.param(impl, length, marks=requires_numba if impl.startswith("numba") else ())
    for length, impls in ((32, IMPLEMENTATIONS), (60, ("reference", "numba")))
    for impl in impls
]


@pytest.mark.parametrize(("impl", "length"), CASES)
def test_pow_tries_per_second(benchmark, bench, impl, length):
    function, count = IMPLEMENTATIONS[impl]
    if length == 60:
        count //= 2  # two blocks per try: about half the rate
    benchmark.group = GROUPS[length]
    if impl == "numba-parallel":
        import numba

        benchmark.extra_info["threads"] = numba.config.NUMBA_NUM_THREADS
    # Three rounds after one warm-up call, which loads (or compiles) the kernels.
    bench(impl, function, bytes(range(length)), count, items=count, rounds=3)
