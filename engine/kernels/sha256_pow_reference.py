"""SHA-256 and the proof-of-work nonce search with :mod:`hashlib`: the reference.

The puzzle (paper, sections 5.2 and 5.5; Hashcash, reference [2]): given a ``prefix``
chosen by the broker and a difficulty ``bits``, find a nonce ``n``, an unsigned 64-bit
integer appended to the prefix as 8 little-endian bytes, such that the SHA-256 digest,
read as a big-endian integer, has at least ``bits`` trailing zero bits::

    int.from_bytes(sha256(prefix + n.to_bytes(8, "little")), "big") % 2**bits == 0

Each try succeeds with probability ``2**-bits``, so the number of tries up to the first
hit is geometric with mean ``2**bits``. The paper counts trailing zero hex digits: ``z``
digits are ``bits = 4 * z``.

This module is the test oracle of :mod:`.sha256_pow`, the baseline of its benchmarks and the
backend when ``TORMENTOR_NO_NUMBA=1``. :func:`pow_verify` here is the one the broker
uses under either backend (the Numba module re-exports it): verifying is one hash.

Every search returns the *smallest* nonce ``>= start`` that solves the puzzle, so the
serial, parallel and reference searches agree exactly.
"""

from __future__ import annotations

import hashlib
import operator

__all__ = [
    "MAX_BITS",
    "NONCE_BYTES",
    "NONCE_LIMIT",
    "pow_scan",
    "pow_search",
    "pow_verify",
    "sha256",
]

#: Length of the nonce appended to the prefix, in bytes (little-endian).
NONCE_BYTES = 8
#: Nonces are in ``range(NONCE_LIMIT)``: unsigned 64-bit integers.
NONCE_LIMIT = 2**64
#: Largest difficulty: the low 64 bits of the digest must all be zero.
MAX_BITS = 64


def check_prefix(prefix: object) -> bytes:
    """Return ``prefix`` as ``bytes``; raise ``TypeError`` unless it is bytes or bytearray."""
    if not isinstance(prefix, (bytes, bytearray)):
        raise TypeError(f"prefix must be bytes or bytearray, got {type(prefix).__name__}")
    return bytes(prefix)


def check_int(value: object, name: str, low: int, high: int) -> int:
    """Return ``value`` as an ``int`` in ``[low, high]``; raise TypeError/ValueError naming it.

    Python ints and NumPy integers are accepted; ``bool``, floats and strings are not.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not low <= number <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {number}")
    return number


def check_threads(threads: object) -> int | None:
    """Validate the ``threads`` argument of the searches: ``None`` or an integer >= 1."""
    if threads is None:
        return None
    return check_int(threads, "threads", 1, 2**31 - 1)


def sha256(data: bytes) -> bytes:
    """Return the SHA-256 digest of ``data`` (FIPS 180-4), 32 bytes.

    Parameters
    ----------
    data : bytes or bytearray
        The message, any length.

    Returns
    -------
    bytes
        The 32-byte digest.

    Raises
    ------
    TypeError
        If ``data`` is not bytes or bytearray.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data must be bytes or bytearray, got {type(data).__name__}")
    return hashlib.sha256(data).digest()


def _low64(digest: bytes) -> int:
    """Return the digest's low 64 bits (its last 8 bytes, big-endian)."""
    return int.from_bytes(digest[24:], "big")


def pow_verify(prefix: bytes, nonce: int, bits: int) -> bool:
    """Return True if ``nonce`` solves the puzzle ``(prefix, bits)``; one SHA-256.

    Parameters
    ----------
    prefix : bytes or bytearray
        The puzzle's prefix, any length.
    nonce : int
        The candidate, ``0 <= nonce < 2**64``; hashed as 8 little-endian bytes.
    bits : int
        Required number of trailing zero bits of the digest, ``0 <= bits <= 64``.

    Returns
    -------
    bool
        ``int.from_bytes(sha256(prefix + nonce.to_bytes(8, "little")), "big") % 2**bits == 0``.

    Raises
    ------
    TypeError
        If ``prefix`` is not bytes/bytearray, or ``nonce`` or ``bits`` is not an integer.
    ValueError
        If ``nonce`` or ``bits`` is out of range. A broker treats both errors, like
        ``False``, as a rejected proof.
    """
    prefix = check_prefix(prefix)
    nonce = check_int(nonce, "nonce", 0, NONCE_LIMIT - 1)
    bits = check_int(bits, "bits", 0, MAX_BITS)
    digest = hashlib.sha256(prefix + nonce.to_bytes(NONCE_BYTES, "little")).digest()
    return _low64(digest) % (1 << bits) == 0


def pow_scan(prefix: bytes, bits: int, start: int, count: int, *, threads: int | None = 1) -> int | None:
    """Return the smallest solving nonce in ``[start, start + count)``, or None.

    The bounded search behind :func:`pow_search`: a caller that wants to cancel or
    report progress scans in slices. Hashes ``prefix`` once (``hashlib`` keeps the
    midstate) and ``copy().update(nonce)`` per try.

    Parameters
    ----------
    prefix : bytes or bytearray
        The puzzle's prefix, any length.
    bits : int
        Difficulty, ``0 <= bits <= 64`` trailing zero bits.
    start : int
        First nonce tried, ``0 <= start < 2**64``.
    count : int
        Number of nonces tried, ``0 <= count <= 2**64 - start``.
    threads : int or None
        Accepted for signature parity with the Numba kernel and validated
        (None or >= 1); the reference always runs on one thread.

    Returns
    -------
    int or None
        The smallest ``n`` in ``[start, start + count)`` with ``pow_verify(prefix, n,
        bits)``, or None if there is none.
    """
    prefix = check_prefix(prefix)
    bits = check_int(bits, "bits", 0, MAX_BITS)
    start = check_int(start, "start", 0, NONCE_LIMIT - 1)
    count = check_int(count, "count", 0, NONCE_LIMIT - start)
    check_threads(threads)
    if count == 0:
        return None
    if bits == 0:
        return start
    mask = (1 << bits) - 1
    base = hashlib.sha256(prefix)
    for nonce in range(start, start + count):
        hasher = base.copy()
        hasher.update(nonce.to_bytes(NONCE_BYTES, "little"))
        if _low64(hasher.digest()) & mask == 0:
            return nonce
    return None


def pow_search(prefix: bytes, bits: int, start: int = 0, *, threads: int | None = 1) -> int:
    """Return the smallest nonce ``n >= start`` that solves the puzzle ``(prefix, bits)``.

    Expected work: ``2**bits`` hashes (the number of tries is geometric with
    ``p = 2**-bits``). ``bits = 0`` returns ``start``.

    Parameters
    ----------
    prefix : bytes or bytearray
        The puzzle's prefix, any length.
    bits : int
        Difficulty, ``0 <= bits <= 64`` trailing zero bits of the digest.
    start : int
        First nonce tried, ``0 <= start < 2**64``. Clients start at a random nonce
        so two searches of one prefix do not repeat each other's work.
    threads : int or None
        Validated for parity with the Numba kernel; the reference uses one thread.

    Returns
    -------
    int
        The nonce, ``start <= n < 2**64``.

    Raises
    ------
    TypeError, ValueError
        On a bad argument (the message names it).
    RuntimeError
        If no nonce in ``[start, 2**64)`` solves the puzzle (practically unreachable).
    """
    prefix = check_prefix(prefix)
    bits = check_int(bits, "bits", 0, MAX_BITS)
    start = check_int(start, "start", 0, NONCE_LIMIT - 1)
    nonce = pow_scan(prefix, bits, start, NONCE_LIMIT - start, threads=threads)
    if nonce is None:
        raise RuntimeError(f"no nonce in [start, 2**64) has {bits} trailing zero bits")
    return nonce
