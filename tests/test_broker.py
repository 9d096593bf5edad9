"""Rules of the broker (paper section 5), with engine objects called directly."""

from __future__ import annotations

import numpy as np
import pytest

from tormentor.engine.broker import Broker
from tormentor.engine.brokerage import Brokerage
from tormentor.engine.pow import solve_puzzle
from tormentor.engine.protocol import (
    Admitted,
    Challenge,
    Curate,
    Curated,
    Defences,
    Done,
    Error,
    ErrorCode,
    Fetch,
    Final,
    Join,
    Leave,
    Progress,
    Solve,
    Status,
    StoppingRule,
    TaskSpec,
    Update,
    Wait,
    Work,
)
from tormentor.engine.simulation import VirtualClock

D = 5


class Counter:
    """Deterministic entropy: distinct, reproducible bytes."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(1234)

    def __call__(self, n: int) -> bytes:
        return self.rng.bytes(n)


def validation_set(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.hstack([rng.normal(size=(n, D - 1)), np.ones((n, 1))])
    w_true = np.array([2.0, -1.0, 0.5, 1.5, 0.2])
    y = np.where(x @ w_true + 0.3 * rng.normal(size=n) > 0, 1.0, -1.0)
    return x, y


def make_broker(
    *,
    defences: Defences | None = None,
    stopping: StoppingRule | None = None,
    clock: VirtualClock | None = None,
    seed: int = 0,
    **task_kwargs,
) -> tuple[Broker, VirtualClock]:
    clock = clock or VirtualClock()
    x, y = validation_set()
    task = TaskSpec(
        n_features=D,
        defences=defences or Defences(admission_bits=4, update_bits=2, validator=False),
        stopping=stopping or StoppingRule(max_updates=10_000),
        **task_kwargs,
    )
    brokerage = Brokerage(clock=clock, entropy=Counter(), rng=np.random.default_rng(seed))
    _, broker = brokerage.curate(Curate(task=task, validation_x=x, validation_y=y))
    return broker, clock


def one(broker: Broker, request) -> object:
    out = broker.handle_batch([("h", request)])
    assert len(out) == 1 and out[0].handle == "h"
    return out[0].reply


def admit(broker: Broker, k: int = 1) -> Admitted:
    challenge = one(broker, Join(model_id=broker.model_id, n_features=D, k=k))
    assert isinstance(challenge, Challenge)
    nonce = solve_puzzle(challenge.puzzle, challenge.bits)
    admitted = one(broker, Solve(model_id=broker.model_id, join_id=challenge.join_id, nonce=nonce))
    assert isinstance(admitted, Admitted)
    return admitted


def update_for(broker: Broker, token: bytes, work, delta: np.ndarray) -> Update:
    nonce = solve_puzzle(work.puzzle, work.bits)
    return Update(model_id=broker.model_id, token=token, base=work.puzzle, nonce=nonce, delta=delta)


def error_code(reply) -> str:
    assert isinstance(reply, Error), reply
    return reply.code


# ----------------------------------------------------------------------------- admission


def test_join_checks_the_schema_and_k():
    broker, _ = make_broker(max_clients=3)
    assert error_code(one(broker, Join(model_id=broker.model_id, n_features=D + 1, k=1))) == "schema_mismatch"
    assert error_code(one(broker, Join(model_id=broker.model_id, n_features=D, k=0))) == "bad_field"
    assert error_code(one(broker, Join(model_id=broker.model_id, n_features=D, k=4))) == "bad_field"
    assert isinstance(one(broker, Join(model_id=broker.model_id, n_features=D, k=3)), Challenge)


def test_admission_puzzle_must_be_solved():
    broker, _ = make_broker(defences=Defences(admission_bits=12, update_bits=0, validator=False))
    challenge = one(broker, Join(model_id=broker.model_id, n_features=D, k=1))
    assert challenge.bits == 12 and len(challenge.puzzle) == 32
    good = solve_puzzle(challenge.puzzle, 12)
    wrong = next(n for n in range(good + 1, good + 10_000) if not _solves(challenge.puzzle, n, 12))
    assert (
        error_code(one(broker, Solve(model_id=broker.model_id, join_id=challenge.join_id, nonce=wrong)))
        == "wrong_proof"
    )
    assert broker.active_clients == 0
    admitted = one(broker, Solve(model_id=broker.model_id, join_id=challenge.join_id, nonce=good))
    assert isinstance(admitted, Admitted) and len(admitted.token) == 32
    assert broker.active_clients == 1
    # A join id is single use.
    again = one(broker, Solve(model_id=broker.model_id, join_id=challenge.join_id, nonce=good))
    assert error_code(again) == "unknown_join"


def _solves(prefix: bytes, nonce: int, bits: int) -> bool:
    from tormentor.engine.kernels import reference

    return reference("pow_verify")(prefix, nonce, bits)


def test_each_join_gets_a_fresh_puzzle():
    broker, _ = make_broker()
    puzzles = {one(broker, Join(model_id=broker.model_id, n_features=D, k=1)).puzzle for _ in range(20)}
    assert len(puzzles) == 20


def test_max_clients_is_enforced_at_admission():
    broker, _ = make_broker(max_clients=2)
    admit(broker)
    admit(broker)
    assert error_code(one(broker, Join(model_id=broker.model_id, n_features=D, k=1))) == "full"


def test_pending_joins_cannot_fill_the_model():
    broker, _ = make_broker(max_clients=2)
    for _ in range(50):  # an attacker's free joins
        one(broker, Join(model_id=broker.model_id, n_features=D, k=1))
    admit(broker)  # an honest client still gets in
    assert broker.active_clients == 1


# ----------------------------------------------------------------------------- updates


def test_update_is_applied_and_answered_with_the_next_model_and_puzzle():
    broker, _ = make_broker()
    admitted = admit(broker)
    delta = np.arange(D, dtype=np.float64)
    work = one(broker, update_for(broker, admitted.token, admitted, delta))
    assert isinstance(work, Work)
    np.testing.assert_array_equal(work.weights, delta)
    assert work.puzzle != admitted.puzzle
    assert broker.version == 1 and broker.progress().updates_accepted == 1


def test_replies_never_alias_the_live_model():
    broker, _ = make_broker()
    admitted = admit(broker)
    work = one(broker, update_for(broker, admitted.token, admitted, np.ones(D)))
    before = np.array(work.weights)
    one(broker, update_for(broker, admitted.token, work, np.ones(D)))
    np.testing.assert_array_equal(work.weights, before)
    assert not work.weights.flags.writeable


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda u, a: Update(u.model_id, b"\x00" * 32, u.base, u.nonce, u.delta), "unknown_token"),
        (lambda u, a: Update(u.model_id, u.token, b"\x01" * 32, u.nonce, u.delta), "stale_proof"),
        (lambda u, a: Update(u.model_id, u.token, u.base, u.nonce, np.ones(D + 1)), "bad_shape"),
        (lambda u, a: Update(u.model_id, u.token, u.base, u.nonce, np.ones((1, D))), "bad_shape"),
        (
            lambda u, a: Update(u.model_id, u.token, u.base, u.nonce, np.array([1, 2, np.nan, 4, 5.0])),
            "non_finite",
        ),
        (
            lambda u, a: Update(u.model_id, u.token, u.base, u.nonce, np.array([1, 2, np.inf, 4, 5.0])),
            "non_finite",
        ),
        (
            lambda u, a: Update(u.model_id, u.token, u.base, u.nonce, np.ones(D, dtype=np.float32)),
            "bad_field",
        ),
        (lambda u, a: Update(u.model_id, u.token, u.base, u.nonce, np.full(D, 1e300)), "bad_field"),
    ],
)
def test_bad_updates_get_distinct_errors_and_change_nothing(mutate, code):
    broker, _ = make_broker()
    admitted = admit(broker)
    good = update_for(broker, admitted.token, admitted, np.ones(D))
    reply = one(broker, mutate(good, admitted))
    assert error_code(reply) == code
    assert broker.version == 0
    # The client's puzzle was not consumed: the good update still goes through.
    assert isinstance(one(broker, good), Work)
    assert broker.version == 1


def test_wrong_proof_is_refused():
    broker, _ = make_broker(defences=Defences(admission_bits=0, update_bits=10, validator=False))
    admitted = admit(broker)
    nonce = next(n for n in range(10_000) if not _solves(admitted.puzzle, n, admitted.bits))
    bad = Update(broker.model_id, admitted.token, admitted.puzzle, nonce, np.ones(D))
    assert error_code(one(broker, bad)) == "wrong_proof"
    assert broker.version == 0


def test_replayed_update_is_refused_and_not_applied_twice():
    broker, _ = make_broker()
    admitted = admit(broker)
    first = update_for(broker, admitted.token, admitted, np.ones(D))
    assert isinstance(one(broker, first), Work)
    assert error_code(one(broker, first)) == "stale_proof"
    assert broker.version == 1


def test_two_updates_on_one_puzzle_in_one_batch():
    broker, _ = make_broker()
    admitted = admit(broker)
    update = update_for(broker, admitted.token, admitted, np.ones(D))
    out = broker.handle_batch([(1, update), (2, update)])
    replies = {o.handle: o.reply for o in out}
    assert isinstance(replies[1], Work) and error_code(replies[2]) == "stale_proof"
    assert broker.version == 1


def test_join_id_used_as_a_token_is_not_admitted():
    broker, _ = make_broker()
    challenge = one(broker, Join(model_id=broker.model_id, n_features=D, k=1))
    forged = Update(broker.model_id, challenge.join_id, challenge.puzzle, 0, np.ones(D))
    assert error_code(one(broker, forged)) == "not_admitted"


def test_unknown_model_id():
    brokerage = Brokerage(clock=VirtualClock(), entropy=Counter())
    out = brokerage.handle_batch([(0, Join(model_id="nope", n_features=D, k=1))])
    assert error_code(out[0].reply) == "unknown_model"


def test_batch_applies_several_updates_in_one_step():
    broker, _ = make_broker()
    a, b = admit(broker), admit(broker)
    out = broker.handle_batch(
        [(1, update_for(broker, a.token, a, np.ones(D))), (2, update_for(broker, b.token, b, 2 * np.ones(D)))]
    )
    assert broker.version == 2
    for item in out:
        np.testing.assert_array_equal(item.reply.weights, 3 * np.ones(D))


# ----------------------------------------------------------------------------- k gate


def test_updates_wait_until_enough_clients_are_active():
    broker, _ = make_broker(min_clients=1)
    a = admit(broker, k=3)
    b = admit(broker, k=1)
    update_a = update_for(broker, a.token, a, np.ones(D))
    reply = one(broker, update_a)
    assert isinstance(reply, Wait) and reply.reason == "min_clients"
    assert broker.version == 0
    # Client b only asks for k=1, but the curator's minimum is 1: its update is taken.
    assert isinstance(one(broker, update_for(broker, b.token, b, np.ones(D))), Work)
    admit(broker)
    # The same update of a (same puzzle, nothing consumed by Wait) is now taken.
    assert isinstance(one(broker, update_a), Work)
    assert broker.version == 2


def test_curator_minimum_gates_everyone():
    broker, _ = make_broker(min_clients=2)
    a = admit(broker, k=1)
    assert isinstance(one(broker, update_for(broker, a.token, a, np.ones(D))), Wait)


def test_k_gate_can_be_switched_off():
    broker, _ = make_broker(defences=Defences(admission_bits=0, update_bits=0, validator=False, k_gate=False))
    a = admit(broker, k=5)
    assert isinstance(one(broker, update_for(broker, a.token, a, np.ones(D))), Work)


def test_timeouts_drop_silent_clients_and_recheck_k():
    broker, clock = make_broker(client_timeout_s=10.0)
    a = admit(broker, k=2)
    b = admit(broker, k=2)
    work = one(broker, update_for(broker, a.token, a, np.ones(D)))
    assert isinstance(work, Work)
    clock.now = 8.0
    work = one(broker, update_for(broker, a.token, work, np.ones(D)))  # a stays alive
    clock.now = 12.0  # b silent since t=0
    broker.tick()
    assert broker.active_clients == 1
    assert isinstance(one(broker, update_for(broker, a.token, work, np.ones(D))), Wait)
    assert error_code(one(broker, update_for(broker, b.token, b, np.ones(D)))) == "expired"


def test_leave_ends_a_token():
    broker, _ = make_broker()
    a = admit(broker)
    assert isinstance(one(broker, Leave(model_id=broker.model_id, token=a.token)), Done)
    assert broker.active_clients == 0
    assert error_code(one(broker, update_for(broker, a.token, a, np.ones(D)))) == "expired"


def test_pending_joins_expire():
    broker, clock = make_broker(client_timeout_s=5.0)
    challenge = one(broker, Join(model_id=broker.model_id, n_features=D, k=1))
    clock.now = 6.0
    broker.tick()
    nonce = solve_puzzle(challenge.puzzle, challenge.bits)
    assert error_code(one(broker, Solve(broker.model_id, challenge.join_id, nonce))) == "unknown_join"


# ----------------------------------------------------------------------------- validator and PoW


def roni_broker(**defence_kwargs) -> Broker:
    defaults = dict(
        admission_bits=0,
        update_bits=1,
        validator=True,
        validation_rate=1.0,
        roni_threshold=0.02,
        penalty_bits=4,
    )
    defaults.update(defence_kwargs)
    broker, _ = make_broker(defences=Defences(**defaults))
    return broker


def good_direction() -> np.ndarray:
    return 0.5 * np.array([2.0, -1.0, 0.5, 1.5, 0.2])


def test_validation_round_sends_a_true_snapshot_in_an_ordinary_work_message():
    broker = roni_broker()
    a = admit(broker)
    work = one(broker, update_for(broker, a.token, a, good_direction()))
    # rate 1.0: a round started with the snapshot of the model after this update.
    assert type(work) is Work
    snapshot = np.array(work.weights)
    work2 = one(broker, update_for(broker, a.token, work, good_direction()))
    np.testing.assert_array_equal(snapshot, good_direction())  # M_s did not move with the model
    assert type(work2) is Work


def test_poisoner_is_penalised_and_its_difficulty_rises():
    broker = roni_broker()
    honest, poisoner = admit(broker), admit(broker)
    w_h = one(broker, update_for(broker, honest.token, honest, good_direction()))
    w_p = one(broker, update_for(broker, poisoner.token, poisoner, -good_direction()))
    bits_before = broker.bits_of(poisoner.token)
    for _ in range(6):
        w_h = one(broker, update_for(broker, honest.token, w_h, 0.1 * good_direction()))
        w_p = one(broker, update_for(broker, poisoner.token, w_p, -3 * good_direction()))
    assert broker.penalties_of(poisoner.token) >= 1
    assert broker.bits_of(poisoner.token) > bits_before
    assert broker.penalties_of(honest.token) == 0
    assert broker.progress().penalties == broker.penalties_of(poisoner.token)
    assert broker.progress().updates_rejected.get("roni", 0) >= 1


def test_eviction_after_n_penalties():
    broker = roni_broker(evict_after=1)
    honest, poisoner = admit(broker), admit(broker)
    w_h = one(broker, update_for(broker, honest.token, honest, good_direction()))
    work = poisoner
    reply = None
    for _ in range(10):
        reply = one(broker, update_for(broker, poisoner.token, work, -3 * good_direction()))
        if isinstance(reply, Error):
            break
        work = reply
        w_h = one(broker, update_for(broker, honest.token, w_h, 3 * good_direction()))
    assert error_code(reply) == "evicted"
    assert broker.active_clients == 1
    assert broker.progress().evictions == 1
    assert error_code(one(broker, update_for(broker, poisoner.token, work, np.zeros(D)))) == "evicted"


def test_penalty_without_adaptive_pow_keeps_difficulty():
    broker = roni_broker(adaptive_pow=False)
    honest, poisoner = admit(broker), admit(broker)
    w_h = one(broker, update_for(broker, honest.token, honest, good_direction()))
    work = poisoner
    for _ in range(6):
        work = one(broker, update_for(broker, poisoner.token, work, -3 * good_direction()))
        w_h = one(broker, update_for(broker, honest.token, w_h, 3 * good_direction()))
    assert broker.penalties_of(poisoner.token) >= 1
    assert broker.bits_of(poisoner.token) == 1


def test_validator_off_applies_everything():
    broker, _ = make_broker(defences=Defences(admission_bits=0, update_bits=0, validator=False))
    p = admit(broker)
    work = p
    for _ in range(5):
        work = one(broker, update_for(broker, p.token, work, -3 * good_direction()))
    assert broker.version == 5 and broker.progress().penalties == 0


# ----------------------------------------------------------------------------- aggregation modes


def test_sync_mode_averages_one_update_per_client_and_defers_replies():
    broker, _ = make_broker(aggregation="sync")
    a, b = admit(broker), admit(broker)
    first = broker.handle_batch([("a", update_for(broker, a.token, a, np.ones(D)))])
    assert first == [] and broker.version == 0  # a waits for b
    second = broker.handle_batch([("b", update_for(broker, b.token, b, 3 * np.ones(D)))])
    assert sorted(o.handle for o in second) == ["a", "b"]
    assert broker.version == 1
    for item in second:
        np.testing.assert_array_equal(item.reply.weights, 2 * np.ones(D))


def test_sync_round_closes_when_a_silent_client_times_out():
    clock = VirtualClock()
    broker, _ = make_broker(aggregation="sync", client_timeout_s=5.0, clock=clock)
    a, _b = admit(broker), admit(broker)
    clock.now = 4.0
    assert broker.handle_batch([("a", update_for(broker, a.token, a, np.ones(D)))]) == []
    clock.now = 6.0  # b admitted at 0, silent: dropped; a's request at 4 is fresh
    out = broker.tick()
    assert [o.handle for o in out] == ["a"] and broker.version == 1


def test_max_staleness_refuses_old_updates():
    broker, _ = make_broker(max_staleness=1)
    a, b = admit(broker), admit(broker)
    w_b = b
    for _ in range(3):
        w_b = one(broker, update_for(broker, b.token, w_b, np.ones(D)))
    stale = one(broker, update_for(broker, a.token, a, np.ones(D)))
    assert isinstance(stale, Work)  # fresh work, update not applied
    assert broker.version == 3 and broker.progress().updates_rejected["stale"] == 1


# ----------------------------------------------------------------------------- stopping and curator


def test_max_updates_ends_training_and_clients_get_done():
    broker, _ = make_broker(stopping=StoppingRule(max_updates=3))
    a = admit(broker)
    work = a
    for _ in range(2):
        work = one(broker, update_for(broker, a.token, work, np.ones(D)))
    last = one(broker, update_for(broker, a.token, work, np.ones(D)))
    assert isinstance(last, Done) and last.reason == "max_updates"
    assert broker.done
    assert isinstance(one(broker, Join(model_id=broker.model_id, n_features=D, k=1)), Done)


def test_deadline_and_target_and_plateau():
    broker, clock = make_broker(stopping=StoppingRule(max_updates=None, deadline_s=5.0))
    clock.now = 5.0
    broker.tick()
    assert broker.done and broker.stop_reason == "deadline"

    broker, _ = make_broker(stopping=StoppingRule(max_updates=1000, target_error=0.2, eval_every=1))
    a = admit(broker)
    reply = one(broker, update_for(broker, a.token, a, good_direction()))
    assert isinstance(reply, Done) and broker.stop_reason == "target_error"

    broker, _ = make_broker(stopping=StoppingRule(max_updates=1000, plateau_patience=3, eval_every=1))
    a = admit(broker)
    work = a
    for _ in range(10):
        work = one(broker, update_for(broker, a.token, work, np.zeros(D)))
        if isinstance(work, Done):
            break
    assert broker.stop_reason == "plateau"


def test_curator_sees_aggregates_and_fetches_the_final_model():
    clock = VirtualClock()
    brokerage = Brokerage(clock=clock, entropy=Counter(), rng=np.random.default_rng(0))
    x, y = validation_set()
    task = TaskSpec(
        n_features=D,
        stopping=StoppingRule(max_updates=2),
        defences=Defences(admission_bits=0, update_bits=0, validator=False),
    )
    curated = brokerage.handle_batch([("c", Curate(task=task, validation_x=x, validation_y=y))])[0].reply
    assert isinstance(curated, Curated)
    broker = brokerage.brokers[curated.model_id]
    wrong = brokerage.handle_batch([("c", Status(curated.model_id, b"guess"))])[0].reply
    assert error_code(wrong) == "wrong_secret"
    early = brokerage.handle_batch([("c", Fetch(curated.model_id, curated.secret))])[0].reply
    assert isinstance(early, Wait)
    a = admit(broker)
    work = one(broker, update_for(broker, a.token, a, np.ones(D)))
    one(broker, update_for(broker, a.token, work, np.ones(D)))
    status = brokerage.handle_batch([("c", Status(curated.model_id, curated.secret))])[0].reply
    assert isinstance(status, Progress) and status.done and status.updates_accepted == 2
    final = brokerage.handle_batch([("c", Fetch(curated.model_id, curated.secret))])[0].reply
    assert isinstance(final, Final)
    np.testing.assert_array_equal(final.weights, 2 * np.ones(D))
    assert set(vars(final.progress)) == set(vars(status))  # aggregates only


def test_curate_refuses_a_bad_validation_set():
    brokerage = Brokerage(clock=VirtualClock(), entropy=Counter())
    x, y = validation_set()
    task = TaskSpec(n_features=D)
    bad_cases = [
        Curate(task=task, validation_x=x[:, :3], validation_y=y),
        Curate(task=task, validation_x=x, validation_y=y[:-1]),
        Curate(task=task, validation_x=x, validation_y=np.where(y > 0, 1.0, 0.0)),
        Curate(task=task, validation_x=np.where(x > 1, np.nan, x), validation_y=y),
    ]
    for request in bad_cases:
        assert error_code(brokerage.handle_batch([(0, request)])[0].reply) == "invalid_task"
    assert brokerage.brokers == {}


def test_random_latency_is_applied_to_client_replies_only():
    broker, _ = make_broker(
        defences=Defences(admission_bits=0, update_bits=0, validator=False, max_latency_s=0.5)
    )
    challenge_out = broker.handle_batch([(0, Join(model_id=broker.model_id, n_features=D, k=1))])
    delays = [challenge_out[0].delay_s]
    a = admit(broker)
    work = a
    for _ in range(50):
        out = broker.handle_batch([(0, update_for(broker, a.token, work, np.zeros(D)))])
        work = out[0].reply
        delays.append(out[0].delay_s)
    assert all(0.0 <= d <= 0.5 for d in delays)
    assert np.std(delays) > 0.05  # genuinely random, not a constant


def test_error_codes_are_all_distinct():
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values))


def test_max_updates_is_exact_within_a_batch():
    broker, _ = make_broker(stopping=StoppingRule(max_updates=3))
    admitted = [admit(broker) for _ in range(5)]
    out = broker.handle_batch(
        [(i, update_for(broker, a.token, a, np.ones(D))) for i, a in enumerate(admitted)]
    )
    assert broker.version == 3 and broker.progress().updates_accepted == 3
    assert broker.progress().updates_rejected["after_stop"] == 2
    assert all(isinstance(o.reply, Done) for o in out)
    np.testing.assert_array_equal(broker.weights(), 3 * np.ones(D))


def test_departed_clients_are_remembered_within_a_bound(monkeypatch):
    import tormentor.engine.broker as broker_module

    monkeypatch.setattr(broker_module, "DEPARTED_REMEMBERED", 3)
    broker, _ = make_broker(max_clients=1)
    assert broker._departed_limit == 10  # ten per max_clients wins over the constant
    tokens = []
    for _ in range(12):
        a = admit(broker)
        tokens.append(a)
        assert isinstance(one(broker, Leave(model_id=broker.model_id, token=a.token)), Done)
    assert len(broker._departed) == 10
    oldest, newest = tokens[0], tokens[-1]
    assert error_code(one(broker, update_for(broker, newest.token, newest, np.zeros(D)))) == "expired"
    assert error_code(one(broker, update_for(broker, oldest.token, oldest, np.zeros(D)))) == "unknown_token"


def test_progress_counts_validation_rounds():
    broker = roni_broker()
    a = admit(broker)
    work = a
    for _ in range(3):
        work = one(broker, update_for(broker, a.token, work, 0.1 * good_direction()))
    assert broker.progress().validation_rounds >= 1
