"""SHA-256 and the proof-of-work nonce search, written in Numba.

The puzzle and its reference are in :mod:`.sha256_pow_reference`: find the smallest nonce
``n >= start`` (8 little-endian bytes appended to ``prefix``) such that the big-endian
SHA-256 digest of ``prefix + n`` has ``bits`` trailing zero bits (paper, sections 5.2
and 5.5). This module computes the same results, faster (FIPS 180-4, section 6.2).

What makes the search fast
--------------------------
Midstate
    The full 64-byte blocks of the prefix are compressed once; each try hashes only
    the final block (two blocks when ``len(prefix) % 64 > 47``: keep prefixes at 47
    bytes mod 64 or less, or the rate halves).
Constant first rounds
    The message words before the first nonce byte do not change between tries, so
    rounds 0-7 are run once when the nonce starts at byte 32 or later of its block
    (``len(prefix) % 64`` in 32..47: the fastest layout, e.g. a 32-byte prefix).
Eight rounds per loop body
    The working variables return to their own registers every eight rounds, so a loop
    of eight written-out rounds needs no register shuffling.
Early exit
    For ``bits <= 32`` only the last digest word ``H7`` matters, and its final value is
    the working variable ``e`` after round 60 (0-based) plus the chaining value ``H7``:
    rounds 61-63 are skipped, and rounds 57-60 skip the ``a`` update. A candidate for
    ``bits > 32`` (``H7 == 0``, one try in 2**32) is checked with a full compression.

:func:`pow_verify` is :func:`.sha256_pow_reference.pow_verify` (hashlib, re-exported): it is
one hash, and the broker verifies with the same function under either backend.

Parallel search (``threads`` other than 1) lives in :mod:`.sha256_pow_parallel`, imported
on first use, so a process that never asks for it never compiles it.
"""

from __future__ import annotations

import numpy as np
from numba import types

from ._jit import kernel
from .sha256_pow_reference import (
    MAX_BITS,
    NONCE_LIMIT,
    check_int,
    check_prefix,
    check_threads,
    pow_verify,
)

__all__ = ["pow_scan", "pow_search", "pow_verify", "sha256"]

#: Round constants K_0..K_63 (FIPS 180-4, section 4.2.2).
_K = np.array(
    [
        0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
        0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
        0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
        0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
        0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
        0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
        0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
        0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
    ],
    dtype=np.uint32,
)  # fmt: skip

#: Initial hash value H(0) (FIPS 180-4, section 5.3.3).
_H0 = np.array(
    [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19],
    dtype=np.uint32,
)

#: Nonces per thread scanned by one kernel call (about 1 s at 5 M tries/s): between
#: calls the interpreter can handle Ctrl-C.
PIECE_PER_THREAD = 1 << 22

_bytes_ro = types.Array(types.uint8, 1, "C", readonly=True)
_words = types.Array(types.uint32, 1, "C")
_u32 = types.uint32
_state = types.UniTuple(_u32, 8)

#: Signature shared by the serial scan and the parallel one (which adds the chunk size
#: and the thread count):
#: (midstate, final-block template words, byte offset of the nonce, first nonce,
#: number of nonces, bits) -> index of the first hit or -1.
SCAN_ARGS = (_words, _words, types.int64, types.uint64, types.int64, types.int64)


@kernel(_u32(_u32))
def _big_sigma0(x):
    """Σ0(x) = ROTR2(x) ^ ROTR13(x) ^ ROTR22(x) (FIPS 180-4, eq. 4.4)."""
    return ((x >> 2) | (x << 30)) ^ ((x >> 13) | (x << 19)) ^ ((x >> 22) | (x << 10))


@kernel(_u32(_u32))
def _big_sigma1(x):
    """Σ1(x) = ROTR6(x) ^ ROTR11(x) ^ ROTR25(x) (FIPS 180-4, eq. 4.5)."""
    return ((x >> 6) | (x << 26)) ^ ((x >> 11) | (x << 21)) ^ ((x >> 25) | (x << 7))


@kernel(_u32(_u32))
def _small_sigma0(x):
    """σ0(x) = ROTR7(x) ^ ROTR18(x) ^ SHR3(x) (FIPS 180-4, eq. 4.6)."""
    return ((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)


@kernel(_u32(_u32))
def _small_sigma1(x):
    """σ1(x) = ROTR17(x) ^ ROTR19(x) ^ SHR10(x) (FIPS 180-4, eq. 4.7)."""
    return ((x >> 17) | (x << 15)) ^ ((x >> 19) | (x << 13)) ^ (x >> 10)


@kernel(_u32(_u32, _u32, _u32, _u32))
def _message_word(w2, w7, w15, w16):
    """W_t = σ1(W_{t-2}) + W_{t-7} + σ0(W_{t-15}) + W_{t-16} (mod 2**32) (FIPS 180-4, 6.2.2)."""
    return np.uint32(_small_sigma1(w2) + w7 + _small_sigma0(w15) + w16)


@kernel(_state(_u32, _u32, _u32, _u32, _u32, _u32, _u32, _u32, _u32))
def _round(a, b, c, d, e, f, g, h, kw):
    """One SHA-256 round on the working variables; ``kw = K_t + W_t`` (mod 2**32).

    Ch and Maj in their equivalent three-operation forms:
    Ch(e, f, g) = g ^ (e & (f ^ g)), Maj(a, b, c) = (a & b) ^ (c & (a ^ b)).
    """
    t1 = np.uint32(h + _big_sigma1(e) + (g ^ (e & (f ^ g))) + kw)
    t2 = np.uint32(_big_sigma0(a) + ((a & b) ^ (c & (a ^ b))))
    return np.uint32(t1 + t2), a, b, c, np.uint32(d + t1), e, f, g


@kernel(types.uint64(types.uint64))
def _bswap64(x):
    """Reverse the byte order of a 64-bit word (LLVM emits one ``bswap``)."""
    x = ((x & np.uint64(0x00000000FFFFFFFF)) << np.uint64(32)) | (x >> np.uint64(32))
    x = ((x & np.uint64(0x0000FFFF0000FFFF)) << np.uint64(16)) | (
        (x & np.uint64(0xFFFF0000FFFF0000)) >> np.uint64(16)
    )
    x = ((x & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(8)) | (
        (x & np.uint64(0xFF00FF00FF00FF00)) >> np.uint64(8)
    )
    return x


@kernel(types.void(_words, types.int64, _words, types.int64, types.int64))
def _schedule(words, offset, w, t_from, t_to):
    """Fill the message schedule ``w[t]`` for ``t_from <= t < t_to`` (eq. 6.2, step 1).

    ``words[offset:offset + 16]`` is the block as 16 big-endian words; ``w`` has 64.
    """
    for t in range(t_from, min(t_to, 16)):
        w[t] = words[offset + t]
    for t in range(max(t_from, 16), t_to):
        w[t] = _message_word(w[t - 2], w[t - 7], w[t - 15], w[t - 16])


@kernel(types.void(_words, _words, types.int64, _words))
def _compress(state, words, offset, w):
    """Compress the block ``words[offset:offset + 16]`` into ``state`` (8 words), in place.

    ``w`` is scratch space for the 64-word message schedule.
    """
    _schedule(words, offset, w, 0, 64)
    a, b, c, d, e, f, g, h = state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7]
    for t in range(64):
        a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[t] + w[t]))
    state[0] = np.uint32(state[0] + a)
    state[1] = np.uint32(state[1] + b)
    state[2] = np.uint32(state[2] + c)
    state[3] = np.uint32(state[3] + d)
    state[4] = np.uint32(state[4] + e)
    state[5] = np.uint32(state[5] + f)
    state[6] = np.uint32(state[6] + g)
    state[7] = np.uint32(state[7] + h)


@kernel(_words(_bytes_ro))
def _midstate(data):
    """Return the hash state after compressing every full 64-byte block of ``data``.

    Trailing bytes (``len(data) % 64`` of them) are ignored: they belong to the final
    block(s), which the caller pads.
    """
    state = _H0.copy()
    words = np.empty(16, np.uint32)
    w = np.empty(64, np.uint32)
    for block in range(data.size // 64):
        base = block * 64
        for j in range(16):
            p = base + 4 * j
            words[j] = np.uint32(
                (np.uint32(data[p]) << 24)
                | (np.uint32(data[p + 1]) << 16)
                | (np.uint32(data[p + 2]) << 8)
                | np.uint32(data[p + 3])
            )
        _compress(state, words, 0, w)
    return state


@kernel(types.Array(types.uint8, 1, "C")(_bytes_ro))
def _sha256_digest(data):
    """Return the SHA-256 digest of ``data`` as 32 bytes (uint8); padding per section 5.1.1."""
    n = data.size
    state = _midstate(data)
    full = (n // 64) * 64
    rem = n - full
    nblocks = 1 if rem <= 55 else 2
    tail = np.zeros(128, np.uint8)
    for i in range(rem):
        tail[i] = data[full + i]
    tail[rem] = 0x80
    bit_length = np.uint64(n) * np.uint64(8)
    for i in range(8):
        tail[nblocks * 64 - 1 - i] = np.uint8((bit_length >> np.uint64(8 * i)) & np.uint64(0xFF))
    words = np.empty(32, np.uint32)
    for j in range(16 * nblocks):
        p = 4 * j
        words[j] = np.uint32(
            (np.uint32(tail[p]) << 24)
            | (np.uint32(tail[p + 1]) << 16)
            | (np.uint32(tail[p + 2]) << 8)
            | np.uint32(tail[p + 3])
        )
    w = np.empty(64, np.uint32)
    for block in range(nblocks):
        _compress(state, words, 16 * block, w)
    out = np.empty(32, np.uint8)
    for j in range(8):
        for i in range(4):
            out[4 * j + i] = np.uint8((state[j] >> (24 - 8 * i)) & 0xFF)
    return out


@kernel(types.boolean(_u32, _u32, types.int64))
def _has_zero_tail(h6, h7, bits):
    """Return True if a digest whose last two words are ``h6, h7`` ends in ``bits`` zero bits.

    The digest's low 64 bits, read big-endian, are ``h6 * 2**32 + h7``; ``0 <= bits <= 64``.
    """
    if bits <= 32:
        return (np.uint64(h7) & ((np.uint64(1) << np.uint64(bits)) - np.uint64(1))) == 0
    return h7 == 0 and (np.uint64(h6) & ((np.uint64(1) << np.uint64(bits - 32)) - np.uint64(1))) == 0


@kernel(types.boolean(_words, _words, types.int64, types.int64, _words))
def _full_check(midstate, words, nblocks, bits, w):
    """Return True if the padded message ``words`` solves the puzzle: a full compression.

    ``nblocks`` blocks of ``words`` are compressed from ``midstate`` (``w`` is scratch)
    and the digest's last two words are tested with :func:`_has_zero_tail`. Used for
    the rare candidates when ``bits > 32``.
    """
    state = midstate.copy()
    for block in range(nblocks):
        _compress(state, words, 16 * block, w)
    return _has_zero_tail(state[6], state[7], bits)


@kernel(types.int64(*SCAN_ARGS))
def scan_serial(midstate, template, offset, start, count, bits):
    """Return the index ``i`` of the first solving nonce ``start + i``, ``0 <= i < count``.

    Parameters
    ----------
    midstate : uint32[8]
        Hash state after the full 64-byte blocks of the prefix.
    template : uint32[16] or uint32[32]
        The final padded block(s) as big-endian words, with the 8 nonce bytes zero.
    offset : int64
        Byte offset of the nonce in ``template`` (``len(prefix) % 64``).
    start : uint64
        First nonce; ``start + count <= 2**64`` (the caller guarantees no wrap).
    count : int64
        Number of nonces to try.
    bits : int64
        Required trailing zero bits, ``0 <= bits <= 64``.

    Returns
    -------
    int64
        The index of the first hit, or -1 when none of the ``count`` nonces solves it.
    """
    # Everything per try is written out here: a call that passes arrays costs a
    # reference-count update, and LLVM does not inline a call as big as eight rounds.
    # `offset & 63` lets LLVM prove every index non-negative and drop the wraparound
    # checks on negative indices.
    words = template.copy()
    nblocks = template.size // 16
    w = np.empty(64, np.uint32)
    scratch = np.empty(64, np.uint32)
    offset = offset & 63
    first = offset >> 2  # first word holding a nonce byte (0..15)
    shift = np.uint64(8 * (offset & 3))  # bits of that word before the nonce
    low_mask = np.uint32(0xFFFFFFFF) if bits >= 32 else np.uint32((1 << bits) - 1)
    # Rounds 0..aligned-1 read only constant words (aligned: `first` rounded down to a
    # multiple of 8, so that the per-try rounds run eight at a time): run them once.
    aligned = first & 8
    for t in range(aligned):
        w[t] = words[t]
    a0, b0, c0, d0 = midstate[0], midstate[1], midstate[2], midstate[3]
    e0, f0, g0, h0 = midstate[4], midstate[5], midstate[6], midstate[7]
    for t in range(aligned):
        a0, b0, c0, d0, e0, f0, g0, h0 = _round(a0, b0, c0, d0, e0, f0, g0, h0, np.uint32(_K[t] + w[t]))
    for i in range(count):
        # The nonce's 8 bytes, little-endian, start at byte `offset`: byte-swapped they
        # are the 64 message bits from there, split over words first..first+2.
        swapped = _bswap64(start + np.uint64(i))
        words[first] = np.uint32(template[first] | (swapped >> (np.uint64(32) + shift)))
        words[first + 1] = np.uint32(template[first + 1] | ((swapped >> shift) & np.uint64(0xFFFFFFFF)))
        words[first + 2] = np.uint32(
            template[first + 2] | ((swapped << (np.uint64(32) - shift)) & np.uint64(0xFFFFFFFF))
        )
        a, b, c, d, e, f, g, h = a0, b0, c0, d0, e0, f0, g0, h0
        chain7 = midstate[7]
        for block in range(nblocks):
            last_block = block == nblocks - 1
            # Message words. Block 0 from word `aligned`, unless block 1 overwrote w[0:16].
            t_from = aligned if nblocks == 1 else 0
            if block == 1:
                t_from = 0
                a = np.uint32(midstate[0] + a)
                b = np.uint32(midstate[1] + b)
                c = np.uint32(midstate[2] + c)
                d = np.uint32(midstate[3] + d)
                e = np.uint32(midstate[4] + e)
                f = np.uint32(midstate[5] + f)
                g = np.uint32(midstate[6] + g)
                h = np.uint32(midstate[7] + h)
                chain7 = h
            for t in range(t_from, 16):
                w[t] = words[16 * block + t]
            # Rounds eight at a time, up to round 55 in the last block (63 otherwise);
            # from round 16 on, each round's schedule word is computed just before it:
            # interleaving the two dependency chains is about 10% faster than two loops.
            t = aligned if block == 0 else 0
            rounds_end = 56 if last_block else 64
            while t < rounds_end:
                late = t >= 16
                if late:
                    w[t] = _message_word(w[t - 2], w[t - 7], w[t - 15], w[t - 16])
                a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[t] + w[t]))
                if late:
                    w[t + 1] = _message_word(w[t - 1], w[t - 6], w[t - 14], w[t - 15])
                a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[t + 1] + w[t + 1]))
                if late:
                    w[t + 2] = _message_word(w[t], w[t - 5], w[t - 13], w[t - 14])
                a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[t + 2] + w[t + 2]))
                if late:
                    w[t + 3] = _message_word(w[t + 1], w[t - 4], w[t - 12], w[t - 13])
                a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[t + 3] + w[t + 3]))
                if late:
                    w[t + 4] = _message_word(w[t + 2], w[t - 3], w[t - 11], w[t - 12])
                a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[t + 4] + w[t + 4]))
                if late:
                    w[t + 5] = _message_word(w[t + 3], w[t - 2], w[t - 10], w[t - 11])
                a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[t + 5] + w[t + 5]))
                if late:
                    w[t + 6] = _message_word(w[t + 4], w[t - 1], w[t - 9], w[t - 10])
                a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[t + 6] + w[t + 6]))
                if late:
                    w[t + 7] = _message_word(w[t + 5], w[t], w[t - 8], w[t - 9])
                a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[t + 7] + w[t + 7]))
                t += 8
        for t in range(56, 61):
            w[t] = _message_word(w[t - 2], w[t - 7], w[t - 15], w[t - 16])
        a, b, c, d, e, f, g, h = _round(a, b, c, d, e, f, g, h, np.uint32(_K[56] + w[56]))
        # Rounds 57-60 without `a` (it never reaches e after round 60, which is H7 - chain7).
        for t in range(57, 61):
            t1 = np.uint32(h + _big_sigma1(e) + (g ^ (e & (f ^ g))) + np.uint32(_K[t] + w[t]))
            h = g
            g = f
            f = e
            e = np.uint32(d + t1)
            d = c
            c = b
            b = a
        h7 = np.uint32(e + chain7)
        if (h7 & low_mask) == 0:
            if bits <= 32 or _full_check(midstate, words, nblocks, bits, scratch):
                return i
    return -1


def puzzle_layout(prefix: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """Split a puzzle into what the scan kernels need.

    Parameters
    ----------
    prefix : bytes
        The puzzle's prefix, any length.

    Returns
    -------
    midstate : ndarray of uint32, shape (8,)
        Hash state after the ``len(prefix) // 64`` full blocks.
    template : ndarray of uint32, shape (16,) or (32,)
        The final block(s) (``prefix`` tail, 8 zero nonce bytes, 0x80, zeros, the
        message length in bits as a big-endian uint64) as big-endian words. Two blocks
        when ``len(prefix) % 64 > 47``.
    offset : int
        Byte offset of the nonce in the template: ``len(prefix) % 64``.
    """
    full = len(prefix) // 64 * 64
    midstate = _midstate(np.frombuffer(prefix, dtype=np.uint8))
    offset = len(prefix) - full
    nblocks = 1 if offset <= 47 else 2
    block = bytearray(64 * nblocks)
    block[:offset] = prefix[full:]
    block[offset + 8] = 0x80
    block[-8:] = ((len(prefix) + 8) * 8).to_bytes(8, "big")
    template = np.frombuffer(bytes(block), dtype=">u4").astype(np.uint32)
    return midstate, template, offset


def sha256(data: bytes) -> bytes:
    """Return the SHA-256 digest of ``data`` (FIPS 180-4), 32 bytes; bit-exact with hashlib.

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
    return _sha256_digest(np.frombuffer(bytes(data), dtype=np.uint8)).tobytes()


def pow_scan(prefix: bytes, bits: int, start: int, count: int, *, threads: int | None = 1) -> int | None:
    """Return the smallest solving nonce in ``[start, start + count)``, or None.

    The bounded search behind :func:`pow_search`; a caller that wants to cancel or
    report progress scans in slices. Same result as the reference for any ``threads``.

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
        1: the serial kernel. None (all Numba threads) or more than 1: the ``prange``
        kernel of :mod:`.sha256_pow_parallel`, capped at ``numba.config.NUMBA_NUM_THREADS``
        (when that cap is 1 the serial kernel runs).

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
    threads = check_threads(threads)
    if count == 0:
        return None
    if bits == 0:
        return start
    midstate, template, offset = puzzle_layout(prefix)
    scan, piece = scan_serial, PIECE_PER_THREAD
    if threads != 1:
        from . import sha256_pow_parallel as sha256_parallel  # lazy: its kernel costs seconds to compile

        scan, piece = sha256_parallel.scanner(threads, bits)
    done = 0
    while done < count:
        n = min(count - done, piece)
        hit = scan(midstate, template, offset, start + done, n, bits)
        if hit >= 0:
            return start + done + int(hit)
        done += n
    return None


def pow_search(prefix: bytes, bits: int, start: int = 0, *, threads: int | None = 1) -> int:
    """Return the smallest nonce ``n >= start`` that solves the puzzle ``(prefix, bits)``.

    Expected work: ``2**bits`` tries (geometric with ``p = 2**-bits``); about 5 M tries/s
    per core for prefixes of at most 47 bytes mod 64. ``bits = 0`` returns ``start``.

    Parameters
    ----------
    prefix : bytes or bytearray
        The puzzle's prefix, any length.
    bits : int
        Difficulty, ``0 <= bits <= 64`` trailing zero bits of the digest.
    start : int
        First nonce tried, ``0 <= start < 2**64``.
    threads : int or None
        1 (default): one core. None: all Numba threads. k > 1: k threads (capped at
        ``numba.config.NUMBA_NUM_THREADS``). The result does not depend on it.

    Returns
    -------
    int
        The nonce, ``start <= n < 2**64``; the same as the reference's.

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
