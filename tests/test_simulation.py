"""In-process brokered learning on the credit data (issue: engine 'done when').

Ten honest clients train through the real broker, validator and puzzles, on a virtual
clock; the harness measures the training error on the whole training shard.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tormentor.engine.centralised import zero_one_error
from tormentor.engine.client import LearningClient
from tormentor.engine.curator import curate_request
from tormentor.engine.data import client_shards
from tormentor.engine.dp_sgd import LearningRate, StepConfig
from tormentor.engine.ledger import PrivacyLedger
from tormentor.engine.protocol import Defences, StoppingRule, TaskSpec
from tormentor.engine.simulation import SimulationSettings, simulate

pytestmark = pytest.mark.slow

RATE = LearningRate(initial=0.05, decay_steps=1000.0, power=0.5)


def run(credit, *, epsilon=math.inf, defences=None, updates=20_000, clients=10, seed=1, budget=None):
    task = TaskSpec(
        n_features=credit.n_weights,
        min_clients=1,
        stopping=StoppingRule(max_updates=updates),
        defences=defences or Defences(admission_bits=0, update_bits=0, validator=False),
    )
    shards = client_shards(credit.X_train, credit.y_train, clients, mode="disjoint", seed=seed)
    step = StepConfig(batch=10, epsilon=epsilon, clip=1.0, lam=0.001, learning_rate=RATE)

    def make(model_id):
        return [
            LearningClient(
                x,
                y,
                model_id=model_id,
                k=1,
                step=step,
                rng=np.random.default_rng([seed, i]),
                budget=budget() if budget else None,
            )
            for i, (x, y) in enumerate(shards)
        ]

    return simulate(
        curate_request(task, credit.X_test, credit.y_test),
        make,
        seed=seed,
        settings=SimulationSettings(trace_every=max(updates // 20, 1)),
    )


def train_errors(result, credit):
    return [zero_one_error(p.weights, credit.X_train, credit.y_train) for p in result.trace]


def test_ten_honest_clients_reach_the_centralised_error(credit, centralised_train_error):
    result = run(credit)
    errors = train_errors(result, credit)
    assert result.final is not None and result.final.progress.stop_reason == "max_updates"
    assert result.final.progress.updates_accepted == 20_000
    assert errors[-1] <= centralised_train_error + 0.005, errors
    assert all(stop is not None and stop.ok for stop in result.stops)


def test_dp_at_epsilon_5_batch_10_converges(credit):
    result = run(credit, epsilon=5.0)
    errors = train_errors(result, credit)
    # The curve falls from the all-zero model (every score 0, which counts as an error)
    # to well below the majority-class error (22.1%).
    assert errors[0] == 1.0
    assert np.mean(errors[-5:]) < 0.200, errors


def test_all_defences_on_do_not_hurt_honest_clients(credit, centralised_train_error):
    defences = Defences(
        admission_bits=8, update_bits=4, validator=True, validation_rate=0.1, roni_threshold=0.02
    )
    result = run(credit, defences=defences, updates=10_000)
    progress = result.final.progress
    assert progress.evictions == 0
    assert train_errors(result, credit)[-1] <= centralised_train_error + 0.01
    assert result.broker.progress().updates_accepted == 10_000


def test_clients_leave_when_their_privacy_budget_is_spent(credit):
    def budget():
        return PrivacyLedger(budget_epsilon=10.0, budget_delta=1e-5, accounting="amplified")

    result = run(credit, epsilon=1.0, updates=100_000, clients=4, budget=budget)
    for client in result.clients:
        assert client.stopped_for == "budget"
        assert client.budget.spent() <= 10.0 + 1e-9
        # One more step would have gone over.
        assert not client.budget.can_spend(epsilon=1.0, batch_size=10, shard_size=client.x.shape[0])
    assert result.final.progress.updates_accepted == sum(c.stats.updates_sent for c in result.clients)
