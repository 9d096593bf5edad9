"""The proof-of-work nonce search on several threads (Numba ``prange``).

Imported by :func:`.sha256_pow.pow_scan` only when a search asks for more than one thread:
this kernel takes several seconds to compile from an empty cache, and a client that
searches on one core never pays for it.

Determinism
-----------
The range is scanned in batches of ``threads`` contiguous chunks; each thread runs the
serial kernel on its chunk and stops at its chunk's first hit. After a batch, the hit in
the lowest chunk is the smallest solving nonce of the batch, and since batches run in
order it is the smallest solving nonce ``>= start`` overall: the same nonce as the
serial search and the hashlib reference, whatever the number of threads.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import prange, types

from ._jit import kernel
from .sha256_pow import PIECE_PER_THREAD, SCAN_ARGS, scan_serial

__all__ = ["chunk_size", "scan_parallel", "scanner"]

#: Bounds of the nonces per thread per batch. Small chunks waste little past the
#: first hit at easy difficulties; large chunks amortise the cost of a parallel launch.
_MIN_CHUNK = 1 << 8
_MAX_CHUNK = 1 << 16

#: One parallel search at a time per process: Numba's ``workqueue`` threading layer
#: (its fallback when neither TBB nor OpenMP is installed) aborts the process when two
#: threads launch parallel kernels at once, and two searches would share the cores anyway.
_LAUNCH = threading.Lock()


def chunk_size(bits: int) -> int:
    """Return the nonces per thread per batch for difficulty ``bits``.

    About a sixteenth of the expected work ``2**bits``, within [2**8, 2**16].
    """
    return min(_MAX_CHUNK, max(_MIN_CHUNK, (1 << bits) >> 4))


@kernel(types.int64(*SCAN_ARGS, types.int64, types.int64), parallel=True)
def scan_parallel(midstate, template, offset, start, count, bits, chunk, nchunks_max):
    """Parallel :func:`.sha256_pow.scan_serial`: index of the first hit in ``count`` nonces.

    Parameters
    ----------
    midstate, template, offset, start, count, bits
        As for :func:`.sha256_pow.scan_serial`.
    chunk : int64
        Nonces per thread per batch, >= 1.
    nchunks_max : int64
        Chunks per batch, >= 1: the number of threads. (Passed in: calling
        ``numba.get_num_threads()`` here would stop Numba from caching the kernel.)

    Returns
    -------
    int64
        The smallest ``i`` in ``[0, count)`` such that ``start + i`` solves the puzzle,
        or -1.
    """
    hits = np.empty(nchunks_max, np.int64)
    done = 0
    while done < count:
        batch = min(count - done, nchunks_max * chunk)
        nchunks = (batch + chunk - 1) // chunk
        for c in prange(nchunks):
            low = done + c * chunk
            size = min(chunk, done + batch - low)
            hits[c] = scan_serial(midstate, template, offset, start + np.uint64(low), size, bits)
        for c in range(nchunks):
            if hits[c] >= 0:
                return done + c * chunk + hits[c]
        done += batch
    return -1


def scanner(threads: int | None, bits: int):
    """Return ``(scan, piece)`` for :func:`.sha256_pow.pow_scan`: a scan callable and its slice.

    Parameters
    ----------
    threads : int or None
        Requested threads; None means all. Capped at ``numba.config.NUMBA_NUM_THREADS``.
    bits : int
        Difficulty, which sets the chunk size.

    Returns
    -------
    scan : callable
        ``scan(midstate, template, offset, start, count, bits) -> int`` with the same
        contract as :func:`.sha256_pow.scan_serial`, on the chosen number of threads.
    piece : int
        Nonces per call (about one second of work), so Ctrl-C is honoured between calls.
    """
    available = numba.config.NUMBA_NUM_THREADS
    n = available if threads is None else min(threads, available)
    if n == 1:
        return scan_serial, PIECE_PER_THREAD
    chunk = chunk_size(bits)

    def scan(midstate, template, offset, start, count, bits):
        with _LAUNCH:
            previous = numba.get_num_threads()
            numba.set_num_threads(n)
            try:
                return scan_parallel(midstate, template, offset, start, count, bits, chunk, n)
            finally:
                numba.set_num_threads(previous)

    return scan, PIECE_PER_THREAD * n
