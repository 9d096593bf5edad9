"""Proof-of-work puzzles: admission and per-update, with adaptive difficulty (paper 4.1, 5.2, 5.5).

A puzzle is a fresh random prefix and a difficulty in bits. A solution is a nonce ``n``
(0 <= n < 2**64) such that ``SHA-256(prefix ‖ n as 8 little-endian bytes)``, read as a
big-endian integer, has at least ``bits`` trailing zero bits: on average ``2**bits``
hashes of work. The broker hands out a new prefix per client and per iteration, so a
proof can never be replayed; the per-client difficulty rises when RONI penalises the
client, which slows a poisoner down relative to honest clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import kernels

__all__ = ["PUZZLE_BYTES", "DifficultyPolicy", "Puzzle", "new_puzzle", "solve_puzzle"]

#: Prefix length in bytes. 32 + 8 nonce bytes fit one SHA-256 block, so search is fast.
PUZZLE_BYTES = 32


@dataclass(frozen=True)
class Puzzle:
    """A SHA-256 puzzle: ``prefix`` (PUZZLE_BYTES random bytes) and difficulty ``bits``."""

    prefix: bytes
    bits: int

    def is_solved_by(self, nonce: object) -> bool:
        """Return True when ``nonce`` solves this puzzle (one hash; bad types are False)."""
        if not isinstance(nonce, int) or isinstance(nonce, bool) or not 0 <= nonce < 2**64:
            return False
        return bool(kernels.pow_verify(self.prefix, nonce, self.bits))


def new_puzzle(bits: int, entropy: Callable[[int], bytes]) -> Puzzle:
    """Return a puzzle with a fresh prefix drawn from ``entropy`` (e.g. ``secrets.token_bytes``)."""
    if not 0 <= bits <= 64:
        raise ValueError(f"bits must be in 0..64, got {bits}")
    prefix = entropy(PUZZLE_BYTES)
    if len(prefix) != PUZZLE_BYTES:
        raise ValueError(f"entropy returned {len(prefix)} bytes, expected {PUZZLE_BYTES}")
    return Puzzle(prefix=prefix, bits=bits)


def solve_puzzle(prefix: bytes, bits: int, *, threads: int | None = 1) -> int:
    """Return a nonce that solves ``(prefix, bits)``; expected ``2**bits`` hashes.

    ``threads=1`` (the default, for clients on small devices) searches on one core;
    ``None`` uses every Numba thread.
    """
    return int(kernels.pow_search(prefix, bits, 0, threads=threads))


@dataclass(frozen=True)
class DifficultyPolicy:
    """Per-update difficulty: where a client starts and how penalties raise it.

    Attributes
    ----------
    initial_bits : int
        Difficulty of a newly admitted client's per-update puzzle.
    penalty_bits : int
        Added on each RONI penalty when ``adaptive`` (4 bits = one hex digit = 16x work).
    max_bits : int
        Ceiling.
    adaptive : bool
        Whether penalties raise the difficulty at all.
    """

    initial_bits: int = 4
    penalty_bits: int = 4
    max_bits: int = 32
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.initial_bits <= self.max_bits <= 64:
            raise ValueError("need 0 <= initial_bits <= max_bits <= 64")
        if not 0 <= self.penalty_bits <= 64:
            raise ValueError(f"penalty_bits must be in 0..64, got {self.penalty_bits}")

    def after_penalty(self, bits: int) -> int:
        """Return the difficulty of a client at ``bits`` after one more penalty."""
        if not self.adaptive:
            return bits
        return min(bits + self.penalty_bits, self.max_bits)
