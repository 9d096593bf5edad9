"""Tests for tormentor.engine.ledger: budgets, accounting modes, fallback, save/load."""

from __future__ import annotations

import copy
import json
import math
import sys

import pytest

from tormentor.engine.ledger import (
    BudgetExceededError,
    LedgerStateError,
    PrivacyLedger,
    StepKind,
)
from tormentor.engine.privacy import (
    amplify_by_subsampling,
    optimal_pure_composition,
    pld_available,
    pld_composition,
)

needs_pld = pytest.mark.skipif(not pld_available(), reason="dp-accounting not installed")
STEP = {"epsilon": 1.0, "batch_size": 10, "shard_size": 150}
AMPLIFIED = amplify_by_subsampling(epsilon=1.0, batch_size=10, population=150)


def run_until_refused(ledger: PrivacyLedger, limit: int = 100_000, **step) -> int:
    count = 0
    while ledger.can_spend(**step):
        ledger.record_step(**step)
        count += 1
        assert count < limit
    return count


def block_dp_accounting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("dp_accounting", "dp_accounting.pld", "dp_accounting.pld.privacy_loss_distribution"):
        monkeypatch.setitem(sys.modules, name, None)


# ------------------------------------------------------------------ accounting modes
def test_basic_accounting_allows_exactly_budget_over_epsilon() -> None:
    ledger = PrivacyLedger(budget_epsilon=1.0, budget_delta=1e-5, accounting="basic")
    assert run_until_refused(ledger, epsilon=0.1, batch_size=10, shard_size=150) == 10
    assert ledger.spent() == pytest.approx(1.0)
    assert ledger.steps == 10
    with pytest.raises(BudgetExceededError):
        ledger.record_step(epsilon=0.1, batch_size=10, shard_size=150)
    assert ledger.steps == 10  # a refused step is not recorded


def test_amplified_accounting_uses_the_subsampled_epsilon() -> None:
    ledger = PrivacyLedger(budget_epsilon=162.7, budget_delta=1e-5, accounting="amplified")
    steps = run_until_refused(ledger, **STEP)
    assert steps == math.floor(162.7 / AMPLIFIED) == 1500
    assert ledger.spent() == pytest.approx(1500 * AMPLIFIED)
    assert ledger.spent() <= 162.7


def test_without_replacement_flag_controls_amplification() -> None:
    ledger = PrivacyLedger(budget_epsilon=3.0, budget_delta=1e-5, accounting="amplified")
    ledger.record_step(epsilon=1.0, batch_size=10, shard_size=150, sampled_without_replacement=False)
    assert ledger.spent() == pytest.approx(1.0)
    ledger.record_step(**STEP)
    assert ledger.spent() == pytest.approx(1.0 + AMPLIFIED)


@needs_pld
def test_pld_accounting_matches_the_tight_closed_form() -> None:
    budget = 26.0
    ledger = PrivacyLedger(budget_epsilon=budget, budget_delta=1e-5, accounting="pld")
    steps = run_until_refused(ledger, **STEP)
    # independent oracle: the largest T with optimal composition <= budget
    assert optimal_pure_composition(epsilon=AMPLIFIED, steps=steps, delta=1e-5) <= budget
    assert optimal_pure_composition(epsilon=AMPLIFIED, steps=steps + 1, delta=1e-5) > budget
    assert 1400 <= steps <= 1600  # the worked example: 1,500 steps cost about 26
    assert ledger.spent() <= budget
    assert ledger.spent() == pytest.approx(
        optimal_pure_composition(epsilon=AMPLIFIED, steps=steps, delta=1e-5), rel=1e-6
    )
    # the closed form and dp-accounting's PLD agree on the spent value
    from_pld = pld_composition(step_counts={AMPLIFIED: steps}, delta=1e-5)
    assert ledger.spent() == pytest.approx(from_pld, rel=1e-6)
    assert ledger.spent(delta=1e-3) < ledger.spent()
    assert ledger.remaining_steps(**STEP) == 0


@needs_pld
def test_pld_is_far_cheaper_than_basic_for_many_steps() -> None:
    pld = PrivacyLedger(budget_epsilon=math.inf, budget_delta=1e-5, accounting="pld")
    amplified = PrivacyLedger(budget_epsilon=math.inf, budget_delta=1e-5, accounting="amplified")
    basic = PrivacyLedger(budget_epsilon=math.inf, budget_delta=1e-5, accounting="basic")
    for _ in range(1500):
        for ledger in (pld, amplified, basic):
            ledger.record_step(**STEP)
    assert basic.spent() == 1500.0
    assert amplified.spent() == pytest.approx(162.7, abs=0.05)
    assert 20.0 <= pld.spent() <= 32.0
    assert pld.remaining_steps(**STEP) is None


COMMENSURATE = [  # full-epsilon steps on one lattice: composed exactly
    {"epsilon": 0.2, "batch_size": 10, "shard_size": 150, "sampled_without_replacement": False},
    {"epsilon": 0.6, "batch_size": 10, "shard_size": 150, "sampled_without_replacement": False},
    {"epsilon": 0.4, "batch_size": 5, "shard_size": 150, "sampled_without_replacement": False},
]
UNRELATED = [  # amplified epsilons with no common lattice: rounded up on a 1e-3 lattice
    {"epsilon": 1.0, "batch_size": 10, "shard_size": 150},
    {"epsilon": 2.0, "batch_size": 10, "shard_size": 150},
    {"epsilon": 0.5, "batch_size": 5, "shard_size": 150, "sampled_without_replacement": False},
]


@needs_pld
@pytest.mark.parametrize(
    ("kinds", "budget", "interval", "repeats"),
    [(COMMENSURATE, 4.0, 1e-4, 10), (UNRELATED, 4.0, 1e-3, 6)],
    ids=["commensurate", "unrelated"],
)
def test_can_spend_agrees_with_brute_force_on_mixed_steps(
    kinds: list[dict], budget: float, interval: float, repeats: int
) -> None:
    ledger = PrivacyLedger(
        budget_epsilon=budget, budget_delta=1e-5, accounting="pld", value_discretization_interval=interval
    )
    pattern = [0, 0, 1, 2, 0, 1, 1, 0, 2, 0] * repeats
    decisions = []
    for index in pattern:
        kind = kinds[index]
        # brute force: a ledger without a budget, replaying every step plus this one
        replay = PrivacyLedger(
            budget_epsilon=math.inf,
            budget_delta=1e-5,
            accounting="pld",
            value_discretization_interval=interval,
        )
        for step_kind, count in ledger.step_counts().items():
            for _ in range(count):
                replay.record_step(
                    epsilon=step_kind.epsilon,
                    batch_size=step_kind.batch_size,
                    shard_size=step_kind.shard_size,
                    sampled_without_replacement=step_kind.sampled_without_replacement,
                )
        replay.record_step(**kind)
        expected = replay.spent() <= budget * (1 + 1e-12)
        assert ledger.can_spend(**kind) == expected
        decisions.append(expected)
        if expected:
            ledger.record_step(**kind)
    assert any(decisions) and not all(decisions)
    assert ledger.spent() <= budget


@needs_pld
@pytest.mark.parametrize(
    ("kinds", "budget", "interval"),
    [(COMMENSURATE, 10.0, 1e-4), (UNRELATED, 6.0, 1e-3)],
    ids=["commensurate", "unrelated"],
)
def test_plan_after_switching_kind_matches_brute_force(
    kinds: list[dict], budget: float, interval: float
) -> None:
    ledger = PrivacyLedger(
        budget_epsilon=budget, budget_delta=1e-5, accounting="pld", value_discretization_interval=interval
    )
    history = [kinds[1], kinds[2], kinds[1], kinds[2], kinds[1]]
    for kind in history:
        ledger.record_step(**kind)
    # brute force: add steps of kind 0 to an unlimited replay until the budget is passed
    replay = PrivacyLedger(
        budget_epsilon=math.inf, budget_delta=1e-5, accounting="pld", value_discretization_interval=interval
    )
    for kind in history:
        replay.record_step(**kind)
    expected = 0
    while True:
        replay.record_step(**kinds[0])
        if replay.spent() > budget * (1 + 1e-12):
            break
        expected += 1
    assert expected > 70  # long enough to pass the point where a plan is made
    assert ledger.remaining_steps(**kinds[0]) == expected
    fresh = PrivacyLedger.from_state_dict(ledger.state_dict())  # no plan yet: checks, then plan
    assert run_until_refused(fresh, **kinds[0]) == expected


def test_remaining_steps_counts_down() -> None:
    ledger = PrivacyLedger(budget_epsilon=2.0, budget_delta=0.0, accounting="basic")
    assert ledger.remaining_steps(epsilon=0.5, batch_size=1, shard_size=1) == 4
    ledger.record_step(epsilon=0.5, batch_size=1, shard_size=1)
    assert ledger.remaining_steps(epsilon=0.5, batch_size=1, shard_size=1) == 3
    assert ledger.remaining_steps(epsilon=0.25, batch_size=1, shard_size=1) == 6
    ledger.record_step(epsilon=0.25, batch_size=1, shard_size=1)
    assert ledger.remaining_steps(epsilon=0.5, batch_size=1, shard_size=1) == 2


def test_zero_cost_steps_and_unlimited_budget() -> None:
    ledger = PrivacyLedger(budget_epsilon=0.0, budget_delta=0.0, accounting="basic")
    assert ledger.can_spend(epsilon=0.0, batch_size=1, shard_size=1)
    assert ledger.remaining_steps(epsilon=0.0, batch_size=1, shard_size=1) is None
    assert not ledger.can_spend(epsilon=0.1, batch_size=1, shard_size=1)
    unlimited = PrivacyLedger(budget_epsilon=math.inf, budget_delta=1e-5, accounting="basic")
    unlimited.record_step(epsilon=math.inf, batch_size=1, shard_size=1)
    assert unlimited.spent() == math.inf
    finite = PrivacyLedger(budget_epsilon=1e6, budget_delta=1e-5, accounting="basic")
    assert not finite.can_spend(epsilon=math.inf, batch_size=1, shard_size=1)


# ------------------------------------------------------------------------- fallback
def test_falls_back_without_dp_accounting(monkeypatch: pytest.MonkeyPatch) -> None:
    block_dp_accounting(monkeypatch)
    ledger = PrivacyLedger(budget_epsilon=162.7, budget_delta=1e-5, accounting="pld")
    assert ledger.accounting == "pld"
    assert ledger.accounting_used == "amplified"
    steps = run_until_refused(ledger, **STEP)
    assert steps == 1500
    report = ledger.report()
    assert report["accounting_used"] == "amplified"
    assert "dp-accounting is not installed" in report["fallback_reason"]
    assert "upper bound" in report["fallback_reason"]
    assert report["spent_epsilon"] == pytest.approx(1500 * AMPLIFIED)


@needs_pld
def test_report_without_fallback() -> None:
    ledger = PrivacyLedger(budget_epsilon=5.0, budget_delta=1e-6)
    ledger.record_step(**STEP)
    report = ledger.report()
    assert report == {
        "accounting": "pld",
        "accounting_used": "pld",
        "fallback_reason": None,
        "steps": 1,
        "spent_epsilon": pytest.approx(
            optimal_pure_composition(epsilon=AMPLIFIED, steps=1, delta=1e-6), rel=1e-9
        ),
        "budget_epsilon": 5.0,
        "budget_delta": 1e-6,
    }


# ------------------------------------------------------------------------ save/load
BUDGETS = {"basic": 250.0, "amplified": 30.0, "pld": 30.0}


def filled_ledger(accounting: str = "pld") -> PrivacyLedger:
    ledger = PrivacyLedger(budget_epsilon=BUDGETS[accounting], budget_delta=1e-5, accounting=accounting)
    for _ in range(200):
        ledger.record_step(**STEP)
    # a second kind, a multiple of the first's cost under "pld": composed exactly and fast
    for _ in range(7):
        ledger.record_step(
            epsilon=4 * AMPLIFIED, batch_size=20, shard_size=150, sampled_without_replacement=False
        )
    return ledger


@pytest.mark.parametrize("accounting", ["basic", "amplified", pytest.param("pld", marks=needs_pld)])
def test_state_round_trip(accounting: str) -> None:
    ledger = filled_ledger(accounting)
    state = json.loads(json.dumps(ledger.state_dict()))  # plain data, survives a file
    restored = PrivacyLedger.from_state_dict(state)
    assert restored.spent() == ledger.spent()
    assert restored.step_counts() == ledger.step_counts()
    assert restored.steps == 207
    assert restored.accounting == accounting
    assert restored.remaining_steps(**STEP) == ledger.remaining_steps(**STEP)
    assert restored.state_dict() == ledger.state_dict()
    # loading into an existing ledger replaces its state
    other = PrivacyLedger(budget_epsilon=1.0, budget_delta=0.0, accounting="basic")
    other.record_step(epsilon=0.1, batch_size=1, shard_size=1)
    other.load_state_dict(state)
    assert other.step_counts() == ledger.step_counts()
    assert other.budget_epsilon == BUDGETS[accounting]


def test_loaded_state_over_budget_allows_nothing() -> None:
    state = filled_ledger("basic").state_dict()
    state["budget_epsilon"] = 1.0
    ledger = PrivacyLedger.from_state_dict(state)
    assert ledger.steps == 207
    assert not ledger.can_spend(**STEP)
    assert ledger.remaining_steps(**STEP) == 0


def corrupt(path: str, value: object):
    def apply(state: dict) -> None:
        target = state
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value

    return apply


DELETE = object()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (corrupt("version", 2), "version"),
        (corrupt("version", True), "version"),
        (corrupt("budget_epsilon", -1.0), "budget_epsilon"),
        (corrupt("budget_delta", 1.5), "budget_delta"),
        (corrupt("accounting", "rdp"), "accounting"),
        (corrupt("value_discretization_interval", 0.0), "value_discretization_interval"),
        (corrupt("steps", "many"), "steps"),
        (corrupt("steps.0.count", 0), r"steps\[0\].count"),
        (corrupt("steps.0.count", 2.0), r"steps\[0\].count"),
        (corrupt("steps.0.batch_size", 151), r"steps\[0\].*batch_size"),
        (corrupt("steps.1.epsilon", "x"), r"steps\[1\].*epsilon"),
        (corrupt("steps.1.sampled_without_replacement", 1), r"steps\[1\]"),
        (corrupt("steps.0.extra", 1), r"steps\[0\]"),
        (corrupt("steps.0.count", DELETE), r"steps\[0\]"),
        (corrupt("extra", 1), "unknown"),
        (corrupt("steps", DELETE), "missing"),
    ],
)
def test_load_rejects_malformed_state(mutate, match: str) -> None:
    ledger = filled_ledger("basic")
    before = ledger.state_dict()
    state = copy.deepcopy(before)
    mutate(state)
    with pytest.raises(LedgerStateError, match=match):
        ledger.load_state_dict(state)
    assert ledger.state_dict() == before  # unchanged after a failed load


def test_load_rejects_repeated_step_kind() -> None:
    state = filled_ledger("basic").state_dict()
    state["steps"].append(dict(state["steps"][0]))
    with pytest.raises(LedgerStateError, match="repeats"):
        PrivacyLedger.from_state_dict(state)
    with pytest.raises(LedgerStateError, match="mapping"):
        PrivacyLedger.from_state_dict([("version", 1)])  # type: ignore[arg-type]


# ------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"budget_epsilon": -1.0, "budget_delta": 0.0}, ValueError, "budget_epsilon"),
        ({"budget_epsilon": math.nan, "budget_delta": 0.0}, ValueError, "budget_epsilon"),
        ({"budget_epsilon": "1", "budget_delta": 0.0}, TypeError, "budget_epsilon"),
        ({"budget_epsilon": 1.0, "budget_delta": 1.0}, ValueError, "budget_delta"),
        ({"budget_epsilon": 1.0, "budget_delta": 0.0, "accounting": "rdp"}, ValueError, "accounting"),
        (
            {"budget_epsilon": 1.0, "budget_delta": 0.0, "value_discretization_interval": -1.0},
            ValueError,
            "value_discretization_interval",
        ),
    ],
)
def test_constructor_validation(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        PrivacyLedger(**kwargs)


@pytest.mark.parametrize(
    ("step", "error", "match"),
    [
        ({"epsilon": -0.1, "batch_size": 1, "shard_size": 1}, ValueError, "epsilon"),
        ({"epsilon": 0.1, "batch_size": 0, "shard_size": 1}, ValueError, "batch_size"),
        ({"epsilon": 0.1, "batch_size": 5, "shard_size": 4}, ValueError, "batch_size"),
        ({"epsilon": 0.1, "batch_size": 1.0, "shard_size": 4}, TypeError, "batch_size"),
        (
            {"epsilon": 0.1, "batch_size": 1, "shard_size": 4, "sampled_without_replacement": 1},
            TypeError,
            "sampled",
        ),
    ],
)
def test_step_validation(step: dict, error: type, match: str) -> None:
    ledger = PrivacyLedger(budget_epsilon=1.0, budget_delta=0.0, accounting="basic")
    with pytest.raises(error, match=match):
        ledger.can_spend(**step)
    with pytest.raises(error, match=match):
        ledger.record_step(**step)
    assert ledger.steps == 0


def test_numpy_scalars_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    ledger = PrivacyLedger(budget_epsilon=1.0, budget_delta=0.0, accounting="basic")
    ledger.record_step(epsilon=np.float64(0.5), batch_size=np.int64(10), shard_size=np.int64(150))
    (kind,) = ledger.step_counts()
    assert type(kind.batch_size) is int and type(kind.epsilon) is float
    assert ledger.spent() == 0.5


def test_step_kind_cost() -> None:
    kind = StepKind(1.0, 10, 150)
    assert kind.cost("basic") == 1.0
    assert kind.cost("amplified") == pytest.approx(AMPLIFIED)
    assert StepKind(1.0, 10, 150, False).cost("amplified") == 1.0
