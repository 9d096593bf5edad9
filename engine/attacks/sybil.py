"""One party admitting many identities (paper 4, "Sybil attacks").

Each identity is a full admission: ``join``, solve the admission puzzle (expected
2**bits SHA-256 evaluations), ``solve``. The party's cost is the CPU time of those
searches, which is what the admission difficulty is meant to make expensive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..pow import solve_puzzle
from ..protocol import Admitted, Challenge, Join, Solve

__all__ = ["SybilReport", "admit_sybils"]


@dataclass(frozen=True)
class SybilReport:
    """What admitting ``identities`` cost one party."""

    identities: int
    admitted: int
    bits: int
    wall_s: float
    cpu_s: float
    tokens: tuple[bytes, ...]


def admit_sybils(
    send: Callable[[Any], Any],
    *,
    model_id: str,
    n_features: int,
    identities: int,
    k: int = 1,
    threads: int | None = 1,
) -> SybilReport:
    """Admit ``identities`` sybils through ``send`` (request -> reply); measure the cost.

    Parameters
    ----------
    send : callable
        Delivers a request to the broker and returns its reply (in process, or over a
        transport).
    model_id : str
        The model to join.
    n_features : int
        The schema every identity claims.
    identities : int
        How many identities to admit.
    k : int
        The k every identity asks for.
    threads : int or None
        Puzzle-search threads of the attacking party.
    """
    if identities < 0:
        raise ValueError(f"identities must be >= 0, got {identities}")
    tokens = []
    bits = 0
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(identities):
        challenge = send(Join(model_id=model_id, n_features=n_features, k=k))
        if not isinstance(challenge, Challenge):
            break
        bits = challenge.bits
        nonce = solve_puzzle(challenge.puzzle, challenge.bits, threads=threads)
        admitted = send(Solve(model_id=model_id, join_id=challenge.join_id, nonce=nonce))
        if isinstance(admitted, Admitted):
            tokens.append(admitted.token)
    return SybilReport(
        identities=identities,
        admitted=len(tokens),
        bits=bits,
        wall_s=time.perf_counter() - wall_start,
        cpu_s=time.process_time() - cpu_start,
        tokens=tuple(tokens),
    )
