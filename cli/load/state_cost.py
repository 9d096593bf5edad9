"""Broker state per client, measured with ``tracemalloc`` on a bare (transport-free) brokerage."""

from __future__ import annotations

import gc
import tracemalloc
from dataclasses import asdict
from typing import Any

import numpy as np

from .settings import LoadSettings, task_spec, validation_set


def _bare_broker(settings: LoadSettings, clients: int) -> tuple[Any, str]:
    """A transport-free brokerage with the run's task curated; returns it and the model id."""
    from tormentor.engine.brokerage import Brokerage
    from tormentor.engine.protocol import Curate

    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    sized = LoadSettings(**{**asdict(settings), "clients": max(clients, settings.k), "processes": 1})
    x, y = validation_set(sized)
    brokerage = Brokerage(rng=np.random.default_rng(0))
    curated, _ = brokerage.curate(Curate(task=task_spec(sized), validation_x=x, validation_y=y))
    return brokerage, curated.model_id


def _admit(brokerage: Any, model: str, settings: LoadSettings, clients: int) -> list[Any]:
    """Join and solve ``clients`` clients; return the ``Admitted`` outgoing replies."""
    from tormentor.engine.pow import solve_puzzle
    from tormentor.engine.protocol import Join, Solve

    joins = [(i, Join(model_id=model, n_features=settings.n_features, k=settings.k)) for i in range(clients)]
    out = brokerage.handle_batch(joins)
    nonces = [solve_puzzle(o.reply.puzzle, o.reply.bits) for o in out]
    solves = [
        (o.handle, Solve(model_id=model, join_id=o.reply.join_id, nonce=n))
        for o, n in zip(out, nonces, strict=True)
    ]
    return brokerage.handle_batch(solves)


def _one_update_each(
    brokerage: Any, model: str, tokens: list[bytes], work: list[Any], delta: np.ndarray
) -> list[Any]:
    """Send one update per client (in one batch); return the outgoing replies."""
    from tormentor.engine.pow import solve_puzzle
    from tormentor.engine.protocol import Update

    updates = [
        (
            i,
            Update(
                model_id=model,
                token=tokens[i],
                base=w.puzzle,
                nonce=solve_puzzle(w.puzzle, w.bits),
                delta=delta,
            ),
        )
        for i, w in enumerate(work)
    ]
    return brokerage.handle_batch(updates)


def traced_state_bytes_per_client(settings: LoadSettings, clients: int = 2000) -> float:
    """Python heap the broker keeps per client: admit ``clients`` and take one update from each.

    A bare :class:`~tormentor.engine.brokerage.Brokerage` (no transport) curates the
    run's task; ``tracemalloc`` measures what admission (Join, Solve) and one update per
    client (validation round included) leave allocated once every reply is dropped.

    Parameters
    ----------
    settings : LoadSettings
        Its task and validation set size are used.
    clients : int
        Clients admitted (>= 1).

    Returns
    -------
    float
        Bytes per client.
    """
    delta = np.zeros(settings.n_features)
    # First use allocates once per process (code caches, kernel dispatch): not per client.
    warm, warm_model = _bare_broker(settings, min(clients, 50))
    warm_admitted = _admit(warm, warm_model, settings, min(clients, 50))
    _one_update_each(
        warm, warm_model, [o.reply.token for o in warm_admitted], [o.reply for o in warm_admitted], delta
    )
    del warm, warm_admitted
    brokerage, model = _bare_broker(settings, clients)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        admitted = _admit(brokerage, model, settings, clients)
        out = _one_update_each(
            brokerage, model, [o.reply.token for o in admitted], [o.reply for o in admitted], delta
        )
        replies = len(out)
        del admitted, out
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if replies != clients:
        raise RuntimeError(f"expected {clients} replies to the updates, got {replies}")
    return (after - before) / clients


def _handle(outgoing: Any) -> Any:
    return outgoing.handle


def traced_broker_growth(settings: LoadSettings, clients: int = 1000, rounds: int = 10) -> list[int]:
    """Heap growth of the broker over ``rounds`` rounds of one update per client (bytes).

    The clients are admitted and send two updates each before measuring starts (the
    broker's per-client state then exists); element ``r`` is the traced heap after round
    ``r + 1`` minus the heap before the first measured round. A broker whose memory is
    bounded shows a flat list (RONI rounds opening and closing make it alternate),
    whatever the number of updates.

    Parameters
    ----------
    settings : LoadSettings
        Its task and validation set size are used.
    clients : int
        Clients admitted (>= 1).
    rounds : int
        Measured rounds (>= 1).

    Returns
    -------
    list of int
        Growth after each round, in bytes.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    brokerage, model = _bare_broker(settings, clients)
    delta = np.zeros(settings.n_features)
    admitted = _admit(brokerage, model, settings, clients)
    tokens = [o.reply.token for o in admitted]
    work = [o.reply for o in _one_update_each(brokerage, model, tokens, [o.reply for o in admitted], delta)]
    del admitted
    growth = np.zeros(rounds, dtype=np.int64)  # preallocated: recording must not allocate
    tracemalloc.start()
    try:
        # One traced round first: what the harness holds (the last replies) is then traced too.
        work = [o.reply for o in sorted(_one_update_each(brokerage, model, tokens, work, delta), key=_handle)]
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for number in range(rounds):
            out = _one_update_each(brokerage, model, tokens, work, delta)
            work = [o.reply for o in sorted(out, key=_handle)]
            del out
            gc.collect()
            growth[number] = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return growth.tolist()
