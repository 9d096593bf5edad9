"""SHA-256 and the proof-of-work search: Numba (serial and parallel) against hashlib."""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tormentor.engine import kernels

reference = importlib.import_module("tormentor.engine.kernels.sha256_pow_reference")

NUMBA = kernels.BACKEND == "numba"
requires_numba = pytest.mark.skipif(not NUMBA, reason="Numba backend disabled (TORMENTOR_NO_NUMBA)")

#: Prefix lengths: empty, one byte, every nonce alignment and word position in the
#: one-block layouts (<= 47 mod 64; rounds 0-7 precomputed from 32 on), the two-block
#: layouts with the nonce in the first block (48-56) or split over both (57-63), and
#: full-block prefixes (midstate) with each layout after them.
PREFIX_LENGTHS = [0, 1, 3, 20, 31, 32, 33, 47, 48, 55, 56, 57, 63, 64, 100, 111, 112, 127]


def numba_module():
    # Imported by name: the package attribute `kernels.sha256` is the function.
    return importlib.import_module("tormentor.engine.kernels.sha256_pow")


class Impl(NamedTuple):
    sha256: Callable[[bytes], bytes]
    pow_search: Callable[..., int]
    pow_scan: Callable[..., int | None]


@pytest.fixture(
    params=[
        pytest.param("reference"),
        pytest.param("numba", marks=requires_numba),
        pytest.param("numba-parallel", marks=requires_numba),
    ]
)
def impl(request) -> Impl:
    module = reference if request.param == "reference" else numba_module()
    threads = 2 if request.param == "numba-parallel" else 1
    return Impl(
        module.sha256,
        functools.partial(module.pow_search, threads=threads),
        functools.partial(module.pow_scan, threads=threads),
    )


def solves(prefix: bytes, nonce: int, bits: int) -> bool:
    """The puzzle, spelled as in the specification (independent of pow_verify)."""
    digest = hashlib.sha256(prefix + nonce.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "big") % 2**bits == 0


@functools.cache
def first_solution(prefix: bytes, bits: int, start: int) -> int:
    """Brute force with the specification's own test."""
    nonce = start
    while not solves(prefix, nonce, bits):
        nonce += 1
    return nonce


def puzzle(length: int) -> tuple[bytes, int]:
    """A fixed prefix of `length` bytes and a fixed 64-bit start, seeded by the length."""
    rng = np.random.default_rng(7_000 + length)
    return rng.bytes(length), int(rng.integers(0, 2**64 - 2**32, dtype=np.uint64))


# --- SHA-256 itself ----------------------------------------------------------------


def test_sha256_every_length_up_to_300(impl):
    data = np.random.default_rng(11).bytes(300)
    for n in range(301):
        assert impl.sha256(data[:n]) == hashlib.sha256(data[:n]).digest(), n


@pytest.mark.parametrize("length", [55, 56, 63, 64, 119, 120, 127, 128, 1000, 4096 + 55, 100_000])
def test_sha256_block_boundaries_and_long_messages(impl, length):
    data = np.random.default_rng(length).bytes(length)
    assert impl.sha256(data) == hashlib.sha256(data).digest()


def test_sha256_known_answers(impl):
    # FIPS 180-4 examples (NIST CSRC "SHA256.pdf"): "abc" and the two-block message.
    assert impl.sha256(b"abc").hex() == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    message = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    assert impl.sha256(message).hex() == ("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")


def test_sha256_all_bytes_values(impl):
    data = bytes(range(256)) * 3
    assert impl.sha256(data) == hashlib.sha256(data).digest()
    assert impl.sha256(b"\xff" * 200) == hashlib.sha256(b"\xff" * 200).digest()


@requires_numba
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_sha256_numba_matches_hashlib_on_random_data(data):
    assert numba_module().sha256(data) == hashlib.sha256(data).digest()


def test_sha256_accepts_bytearray_without_mutating_it(impl):
    data = bytearray(b"tormentor" * 20)
    before = bytes(data)
    assert impl.sha256(data) == hashlib.sha256(before).digest()
    assert data == before


@pytest.mark.parametrize("bad", ["abc", memoryview(b"abc"), np.zeros(3, np.uint8), None, 5])
def test_sha256_rejects_non_bytes(impl, bad):
    with pytest.raises(TypeError, match="data"):
        impl.sha256(bad)


# --- pow_search: correctness ---------------------------------------------------------


@pytest.mark.parametrize("bits", [0, 1, 8, 12, 16])
@pytest.mark.parametrize("length", PREFIX_LENGTHS)
def test_pow_search_returns_the_smallest_solution(impl, length, bits):
    prefix, start = puzzle(length)
    nonce = impl.pow_search(prefix, bits, start)
    assert start <= nonce < 2**64
    assert solves(prefix, nonce, bits)
    assert reference.pow_verify(prefix, nonce, bits)
    assert nonce == first_solution(prefix, bits, start)


@requires_numba
@pytest.mark.parametrize("threads", [1, 2, None, 64])
@pytest.mark.parametrize("length", [0, 32, 47, 48, 60, 64, 100])
def test_serial_parallel_and_reference_agree(length, threads):
    prefix, start = puzzle(length)
    for bits in (4, 10, 14):
        expected = reference.pow_search(prefix, bits, start)
        assert numba_module().pow_search(prefix, bits, start, threads=threads) == expected


@requires_numba
@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=200),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=1, max_value=10),
)
def test_numba_scan_matches_reference_on_random_puzzles(prefix, start, bits):
    count = min(600, 2**64 - start)
    expected = reference.pow_scan(prefix, bits, start, count)
    assert numba_module().pow_scan(prefix, bits, start, count) == expected


def test_pow_search_honours_start(impl):
    prefix = b"p" * 32
    previous = -1
    for _ in range(20):
        nonce = impl.pow_search(prefix, 6, previous + 1)
        assert nonce > previous
        assert all(not solves(prefix, n, 6) for n in range(previous + 1, nonce))
        previous = nonce


@pytest.mark.parametrize("start", [0, 2**31, 2**32 - 5, 2**63 - 3, 2**63, 2**64 - 2**14])
def test_pow_search_across_integer_boundaries(impl, start):
    # Nonces around the uint32 and int64 boundaries, where a signed or narrow type breaks.
    prefix = b"boundary" * 4
    nonce = impl.pow_search(prefix, 5, start)
    assert nonce == first_solution(prefix, 5, start)


def test_pow_search_bits_zero_returns_start(impl):
    for start in (0, 17, 2**64 - 1):
        assert impl.pow_search(b"abc", 0, start) == start


def test_pow_search_raises_when_the_nonce_space_is_exhausted(impl):
    # No nonce in [2**64 - 256, 2**64) has 20 trailing zero bits for this prefix.
    prefix, start = b"exhausted" * 4, 2**64 - 256
    assert not any(solves(prefix, n, 20) for n in range(start, 2**64))
    with pytest.raises(RuntimeError, match="2\\*\\*64"):
        impl.pow_search(prefix, 20, start)


def test_pow_search_reaches_the_last_nonce(impl):
    # The largest nonce, 2**64 - 1, is searched: with bits = 1 about half of these
    # prefixes solve there, the rest exhaust the space.
    outcomes = set()
    for i in range(16):
        prefix = f"last-{i}".encode()
        if solves(prefix, 2**64 - 1, 1):
            assert impl.pow_search(prefix, 1, 2**64 - 1) == 2**64 - 1
            outcomes.add("solved")
        else:
            with pytest.raises(RuntimeError):
                impl.pow_search(prefix, 1, 2**64 - 1)
            outcomes.add("exhausted")
    assert outcomes == {"solved", "exhausted"}


def test_mean_work_is_two_to_the_bits(impl):
    # Tries to the first hit are geometric with p = 2**-bits: mean 1/p, standard
    # deviation sqrt(1 - p)/p. The mean of 200 searches lies within 4.5 standard errors
    # of 1/p except with probability about 1e-5 (normal approximation).
    rng = np.random.default_rng(20_240_601)
    bits, searches = 8, 200
    tries = []
    for _ in range(searches):
        prefix = rng.bytes(32)
        start = int(rng.integers(0, 2**63, dtype=np.uint64))
        tries.append(impl.pow_search(prefix, bits, start) - start + 1)
    p = 2.0**-bits
    standard_error = np.sqrt(1 - p) / p / np.sqrt(searches)
    assert abs(np.mean(tries) - 1 / p) < 4.5 * standard_error


# --- pow_scan: the bounded search ----------------------------------------------------


def test_pow_scan_slices_agree_with_one_search(impl):
    prefix, start = puzzle(40)
    expected = first_solution(prefix, 12, start)
    found = None
    for low in range(start, expected + 1, 1000):
        found = impl.pow_scan(prefix, 12, low, 1000)
        if found is not None:
            break
    assert found == expected


def test_pow_scan_returns_none_without_a_hit(impl):
    prefix, start = puzzle(40)
    expected = first_solution(prefix, 12, start)
    assert impl.pow_scan(prefix, 12, start, expected - start) is None
    assert impl.pow_scan(prefix, 12, start, expected - start + 1) == expected
    assert impl.pow_scan(prefix, 12, start, 0) is None


@pytest.mark.parametrize("bits", [33, 40, 64])
@pytest.mark.parametrize("length", [32, 60])
def test_pow_scan_above_32_bits_agrees_on_misses(impl, length, bits):
    # A real hit above 32 bits needs about 2**33 hashes; this checks the path that
    # filters candidates on H7 and then H6 rejects what hashlib rejects.
    prefix, start = puzzle(length)
    assert impl.pow_scan(prefix, bits, start, 4096) is None


@requires_numba
def test_zero_tail_test_of_the_last_two_digest_words():
    # The kernel's test for bits > 32 (H7 all zero, then the low bits of H6) on crafted
    # words, since no search here can afford a real 33-bit hit.
    has_zero_tail = numba_module()._has_zero_tail
    words = [0, 1, 2, 3, 0x80000000, 0xFFFFFFFF, 0x00010000, 0x12345600]
    for h6 in words:
        for h7 in words:
            low64 = h6 << 32 | h7
            for bits in range(65):
                assert has_zero_tail(h6, h7, bits) == (low64 % 2**bits == 0), (h6, h7, bits)


def test_pow_scan_rejects_a_count_past_the_nonce_space(impl):
    with pytest.raises(ValueError, match="count"):
        impl.pow_scan(b"x", 8, 2**64 - 10, 11)
    with pytest.raises(ValueError, match="count"):
        impl.pow_scan(b"x", 8, 0, -1)


# --- argument validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"prefix": "text"}, TypeError, "prefix"),
        ({"prefix": None}, TypeError, "prefix"),
        ({"bits": -1}, ValueError, "bits"),
        ({"bits": 65}, ValueError, "bits"),
        ({"bits": 8.0}, TypeError, "bits"),
        ({"bits": True}, TypeError, "bits"),
        ({"start": -1}, ValueError, "start"),
        ({"start": 2**64}, ValueError, "start"),
        ({"start": "0"}, TypeError, "start"),
        ({"threads": 0}, ValueError, "threads"),
        ({"threads": 1.5}, TypeError, "threads"),
    ],
)
@pytest.mark.parametrize("module_name", ["reference", pytest.param("numba", marks=requires_numba)])
def test_pow_search_validates_arguments(module_name, kwargs, error, name):
    module = reference if module_name == "reference" else numba_module()
    arguments = {"prefix": b"abc", "bits": 8, "start": 0, "threads": 1, **kwargs}
    with pytest.raises(error, match=name):
        module.pow_search(
            arguments["prefix"], arguments["bits"], arguments["start"], threads=arguments["threads"]
        )


def test_pow_search_accepts_numpy_integers_and_bytearray(impl):
    prefix = bytearray(b"q" * 32)
    nonce = impl.pow_search(prefix, np.int64(8), np.uint64(1000))
    assert nonce == first_solution(bytes(prefix), 8, 1000)
    assert prefix == bytearray(b"q" * 32)


# --- pow_verify ----------------------------------------------------------------------


def test_pow_verify_accepts_solutions_and_rejects_others():
    prefix, start = puzzle(32)
    nonce = first_solution(prefix, 12, start)
    assert reference.pow_verify(prefix, nonce, 12)
    assert reference.pow_verify(prefix, nonce, 0)
    for wrong in range(start, nonce):
        assert not reference.pow_verify(prefix, wrong, 12)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=150),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=0, max_value=64),
)
def test_pow_verify_matches_the_specification(prefix, nonce, bits):
    assert reference.pow_verify(prefix, nonce, bits) == solves(prefix, nonce, bits)


def test_pow_verify_bits_is_trailing_zero_bits():
    prefix, start = puzzle(20)
    nonce = first_solution(prefix, 10, start)
    digest = hashlib.sha256(prefix + nonce.to_bytes(8, "little")).digest()
    zeros = (int.from_bytes(digest, "big") & -int.from_bytes(digest, "big")).bit_length() - 1
    assert zeros >= 10
    for bits in range(65):
        assert reference.pow_verify(prefix, nonce, bits) == (bits <= zeros)


@pytest.mark.parametrize(
    ("prefix", "nonce", "bits", "error", "name"),
    [
        (b"p", -1, 8, ValueError, "nonce"),
        (b"p", 2**64, 8, ValueError, "nonce"),
        (b"p", 1.0, 8, TypeError, "nonce"),
        (b"p", "1", 8, TypeError, "nonce"),
        (b"p", None, 8, TypeError, "nonce"),
        (b"p", False, 8, TypeError, "nonce"),
        (b"p", 1, -1, ValueError, "bits"),
        (b"p", 1, 65, ValueError, "bits"),
        (b"p", 1, None, TypeError, "bits"),
        ("p", 1, 8, TypeError, "prefix"),
        ([1, 2], 1, 8, TypeError, "prefix"),
    ],
)
def test_pow_verify_rejects_bad_arguments(prefix, nonce, bits, error, name):
    with pytest.raises(error, match=name):
        reference.pow_verify(prefix, nonce, bits)


def test_pow_verify_accepts_the_largest_nonce_and_numpy_integers():
    for nonce in (0, 2**64 - 1, np.uint64(2**64 - 1)):
        assert reference.pow_verify(b"p", nonce, 0)
        assert reference.pow_verify(b"p", nonce, 1) == solves(b"p", int(nonce), 1)


@requires_numba
def test_numba_module_reexports_the_hashlib_verify():
    assert numba_module().pow_verify is reference.pow_verify


# --- backend selection and lazy imports ----------------------------------------------


def run_python(code: str, **env: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def test_no_numba_environment_variable_selects_the_hashlib_reference():
    out = run_python(
        """
        import sys
        from tormentor.engine import kernels
        assert kernels.BACKEND == "reference", kernels.BACKEND
        assert kernels.pow_search.__module__.endswith("sha256_pow_reference")
        nonce = kernels.pow_search(b"x" * 32, 8, 5)
        assert kernels.pow_verify(b"x" * 32, nonce, 8)
        assert "tormentor.engine.kernels.sha256_pow" not in sys.modules
        print(kernels.sha256(b"abc").hex(), nonce)
        """,
        TORMENTOR_NO_NUMBA="1",
    )
    digest, nonce = out.split()
    assert digest == hashlib.sha256(b"abc").hexdigest()
    assert int(nonce) == first_solution(b"x" * 32, 8, 5)


@requires_numba
def test_exported_names_resolve_to_the_numba_kernels():
    module = numba_module()
    assert kernels.pow_search is module.pow_search
    assert kernels.pow_verify is reference.pow_verify
    assert kernels.reference("pow_search") is reference.pow_search


@requires_numba
def test_kernels_sha256_stays_the_function_after_a_search():
    # Importing a family module binds its name on the package: no module may be named
    # like an exported function (the family is sha256_pow.py for this reason).
    out = run_python(
        """
        from tormentor.engine import kernels
        kernels.pow_search(b"x" * 32, 4)
        print(kernels.sha256(b"abc").hex())
        """
    )
    assert out.strip() == hashlib.sha256(b"abc").hexdigest()


@requires_numba
def test_parallel_module_is_imported_only_for_a_parallel_search():
    out = run_python(
        """
        import importlib, sys
        sha = importlib.import_module("tormentor.engine.kernels.sha256_pow")
        one = sha.pow_search(b"y" * 32, 10, 0, threads=1)
        print("tormentor.engine.kernels.sha256_pow_parallel" in sys.modules)
        two = sha.pow_search(b"y" * 32, 10, 0, threads=2)
        print("tormentor.engine.kernels.sha256_pow_parallel" in sys.modules, one == two)
        """
    )
    assert out.split() == ["False", "True", "True"]
