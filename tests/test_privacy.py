"""Tests for tormentor.engine.privacy against closed forms and an exact oracle."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tormentor.engine.privacy import (
    PLDUnavailableError,
    amplify_by_subsampling,
    basic_composition,
    optimal_pure_composition,
    parallel_composition,
    pld_available,
    pld_composition,
)

needs_pld = pytest.mark.skipif(not pld_available(), reason="dp-accounting not installed")


def kairouz_delta(epsilon: float, steps: int, i: int) -> float:
    """Kairouz, Oh & Viswanath (2015), Thm 3.3: delta at total epsilon (steps - 2i) * epsilon.

    delta_i = sum_{l=0}^{i-1} C(T, l) (e^{(T-l) eps} - e^{(T-2i+l) eps}) / (1 + e^eps)^T,
    evaluated with exact binomials (math.comb), independently of the module's code.
    """
    total = 0.0
    for ell in range(i):
        log_terms = (
            math.log(math.comb(steps, ell)) + (steps - ell) * epsilon - steps * math.log1p(math.exp(epsilon))
        )
        ratio = math.exp((steps - 2 * i + ell) * epsilon - (steps - ell) * epsilon)
        total += math.exp(log_terms) * (1.0 - ratio)
    return total


# -------------------------------------------------------------------- closed forms
@pytest.mark.parametrize(("epsilon", "steps"), [(1.0, 1500), (0.25, 3), (0.0, 10), (2.5, 0)])
def test_basic_composition_is_t_times_epsilon(epsilon: float, steps: int) -> None:
    assert basic_composition(step_counts={epsilon: steps}) == pytest.approx(steps * epsilon)


def test_basic_composition_mixed_and_infinite() -> None:
    assert basic_composition(step_counts={0.5: 4, 0.1: 10}) == pytest.approx(3.0)
    assert basic_composition(step_counts={}) == 0.0
    assert basic_composition(step_counts={math.inf: 1, 1.0: 2}) == math.inf
    assert basic_composition(step_counts={math.inf: 0, 1.0: 2}) == 2.0


@pytest.mark.parametrize(
    ("epsilon", "b", "n"), [(1.0, 10, 150), (0.1, 1, 2), (5.0, 10, 21_000), (3.0, 7, 9), (0.5, 150, 150)]
)
def test_amplification_closed_form(epsilon: float, b: int, n: int) -> None:
    expected = math.log(1.0 + (b / n) * (math.exp(epsilon) - 1.0))
    assert amplify_by_subsampling(epsilon=epsilon, batch_size=b, population=n) == pytest.approx(
        expected, rel=1e-12
    )


def test_amplification_edge_cases() -> None:
    assert amplify_by_subsampling(epsilon=2.0, batch_size=5, population=5) == 2.0
    assert amplify_by_subsampling(epsilon=math.inf, batch_size=1, population=10) == math.inf
    assert amplify_by_subsampling(epsilon=0.0, batch_size=1, population=10) == 0.0
    # no overflow for large epsilon: eps + ln(q) in the limit
    assert amplify_by_subsampling(epsilon=1000.0, batch_size=1, population=2) == pytest.approx(
        1000.0 + math.log(0.5)
    )


@given(
    epsilon=st.floats(min_value=0.0, max_value=50.0),
    b=st.integers(min_value=1, max_value=500),
    extra=st.integers(min_value=0, max_value=5000),
)
def test_amplification_never_increases_epsilon(epsilon: float, b: int, extra: int) -> None:
    amplified = amplify_by_subsampling(epsilon=epsilon, batch_size=b, population=b + extra)
    assert 0.0 <= amplified <= epsilon * (1 + 1e-12)


def test_parallel_composition_is_the_max() -> None:
    assert parallel_composition(epsilons=[1.0] * 15) == 1.0
    assert parallel_composition(epsilons=[0.5, 2.0, 1.0]) == 2.0
    assert parallel_composition(epsilons=[]) == 0.0


# --------------------------------------------------------------- the worked numbers
def test_worked_numbers_from_privacy_facts() -> None:
    step = amplify_by_subsampling(epsilon=1.0, batch_size=10, population=150)
    assert basic_composition(step_counts={1.0: 1500}) == 1500.0
    amplified = basic_composition(step_counts={step: 1500})
    assert amplified == pytest.approx(162.7, abs=0.05)
    exact = optimal_pure_composition(epsilon=step, steps=1500, delta=1e-5)
    assert 20.0 <= exact <= 32.0
    if pld_available():
        tight = pld_composition(step_counts={step: 1500}, delta=1e-5)
        assert 20.0 <= tight <= 32.0
        assert tight <= amplified
        assert tight == pytest.approx(exact, rel=1e-6)


# --------------------------------------------------- exact optimal composition oracle
@pytest.mark.parametrize(
    ("epsilon", "steps", "i"), [(0.1, 50, 20), (0.5, 12, 4), (1.0, 7, 2), (0.05, 400, 180)]
)
def test_optimal_composition_matches_kairouz_closed_form(epsilon: float, steps: int, i: int) -> None:
    delta = kairouz_delta(epsilon, steps, i)
    assert 0.0 < delta < 1.0
    expected = (steps - 2 * i) * epsilon
    assert optimal_pure_composition(epsilon=epsilon, steps=steps, delta=delta) == pytest.approx(
        expected, rel=1e-9
    )
    if pld_available():
        assert pld_composition(step_counts={epsilon: steps}, delta=delta) == pytest.approx(expected, rel=1e-6)


def one_step_epsilon(epsilon: float, delta: float) -> float:
    # One randomized response: delta(E) = e^eps/(1+e^eps) (1 - e^{E-eps}).
    return epsilon + math.log1p(-delta * (1.0 + math.exp(-epsilon)))


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 3.0])
def test_one_step_equals_epsilon(epsilon: float) -> None:
    for delta in (1e-12, 1e-5):
        expected = one_step_epsilon(epsilon, delta)
        value = optimal_pure_composition(epsilon=epsilon, steps=1, delta=delta)
        assert value == pytest.approx(expected, rel=1e-9)
    assert optimal_pure_composition(epsilon=epsilon, steps=1, delta=1e-12) == pytest.approx(epsilon, rel=1e-9)
    assert optimal_pure_composition(epsilon=epsilon, steps=1, delta=0.0) == epsilon


@needs_pld
@pytest.mark.parametrize("epsilon", [0.1, 1.0, 3.0])
def test_pld_one_step_equals_epsilon(epsilon: float) -> None:
    assert pld_composition(step_counts={epsilon: 1}, delta=1e-12) == pytest.approx(epsilon, rel=1e-9)
    assert pld_composition(step_counts={epsilon: 1}, delta=1e-5) == pytest.approx(
        one_step_epsilon(epsilon, 1e-5), rel=1e-9
    )


def test_optimal_composition_edges() -> None:
    assert optimal_pure_composition(epsilon=math.inf, steps=3, delta=1e-5) == math.inf
    assert optimal_pure_composition(epsilon=1.0, steps=0, delta=1e-5) == 0.0
    assert optimal_pure_composition(epsilon=0.3, steps=10, delta=0.0) == pytest.approx(3.0)
    # delta so large that epsilon 0 suffices
    assert optimal_pure_composition(epsilon=0.01, steps=4, delta=0.9) == 0.0


# ------------------------------------------------------------------- PLD properties
def exact_mixture(steps: dict[float, int], delta: float) -> float:
    """Tight epsilon of mixed pure-DP steps by brute force over the flips of each kind.

    Each epsilon-DP step is dominated by randomized response (loss +eps with probability
    e^eps/(1+e^eps), else -eps); the composed loss distribution is enumerated exactly
    (product of binomials), and the hockey stick divergence is solved by bisection.
    """
    losses, probs = np.zeros(1), np.ones(1)
    for eps, count in steps.items():
        j = np.arange(count + 1)
        p_up = 1.0 / (1.0 + math.exp(-eps))
        kind_probs = np.array([math.comb(count, k) for k in range(count + 1)], dtype=float)
        kind_probs *= p_up ** (count - j) * (1.0 - p_up) ** j
        losses = (losses[:, None] + (count - 2 * j)[None, :] * eps).ravel()
        probs = (probs[:, None] * kind_probs[None, :]).ravel()

    def delta_at(total: float) -> float:
        above = losses > total
        return float(np.sum(probs[above] * -np.expm1(total - losses[above])))

    low, high = 0.0, sum(e * c for e, c in steps.items())
    if delta_at(0.0) <= delta:
        return 0.0
    for _ in range(100):
        middle = 0.5 * (low + high)
        if delta_at(middle) > delta:
            low = middle
        else:
            high = middle
    return high


@needs_pld
@settings(max_examples=25, deadline=None)
@given(
    epsilon=st.floats(min_value=1e-3, max_value=3.0),
    steps=st.integers(min_value=1, max_value=400),
    delta=st.sampled_from([1e-9, 1e-6, 1e-5, 1e-3]),
)
def test_pld_never_exceeds_basic_and_is_tight(epsilon: float, steps: int, delta: float) -> None:
    tight = pld_composition(step_counts={epsilon: steps}, delta=delta)
    basic = basic_composition(step_counts={epsilon: steps})
    assert tight <= basic
    exact = optimal_pure_composition(epsilon=epsilon, steps=steps, delta=delta)
    # an upper bound, up to the FFT's rounding of atoms far out in the tail
    assert tight >= exact * (1 - 1e-6)
    if basic < 600:  # beyond ~700 the library's exp(-loss) underflows; basic is returned
        assert tight == pytest.approx(exact, rel=1e-6, abs=1e-9)


@needs_pld
@settings(max_examples=12, deadline=None)
@given(
    small=st.floats(min_value=0.01, max_value=0.5),
    factor=st.floats(min_value=1.01, max_value=4.0),
    a=st.integers(min_value=1, max_value=40),
    b=st.integers(min_value=1, max_value=40),
)
def test_pld_mixed_steps_match_brute_force(small: float, factor: float, a: int, b: int) -> None:
    large = small * factor
    steps = {small: a, large: b}
    interval = 1e-3
    mixed = pld_composition(step_counts=steps, delta=1e-5, value_discretization_interval=interval)
    exact = exact_mixture(steps, 1e-5)
    assert mixed <= basic_composition(step_counts=steps)
    assert mixed >= exact * (1 - 1e-6)  # an upper bound (up to FFT rounding)
    # lattice rounding costs at most one spacing (<= interval) per step
    assert mixed <= exact + (a + b) * interval + 1e-9
    # monotone in each step's epsilon: all-small <= mixed <= all-large (+ rounding)
    assert optimal_pure_composition(epsilon=small, steps=a + b, delta=1e-5) <= exact * (1 + 1e-9)
    assert exact <= optimal_pure_composition(epsilon=large, steps=a + b, delta=1e-5) * (1 + 1e-9)


@needs_pld
@pytest.mark.parametrize("steps", [{0.1: 100, 0.2: 50}, {0.1: 40, 0.15: 40}, {0.3: 20, 0.9: 10}])
def test_pld_commensurate_mixture_is_exact(steps: dict[float, int]) -> None:
    # every epsilon is a multiple of a common spacing: no rounding at all
    mixed = pld_composition(step_counts=steps, delta=1e-5)
    assert mixed == pytest.approx(exact_mixture(steps, 1e-5), rel=1e-6)


@needs_pld
def test_pld_edge_cases() -> None:
    assert pld_composition(step_counts={math.inf: 1}, delta=1e-5) == math.inf
    assert pld_composition(step_counts={math.inf: 0, 0.5: 1}, delta=1e-12) == pytest.approx(0.5, rel=1e-9)
    assert pld_composition(step_counts={}, delta=1e-5) == 0.0
    assert pld_composition(step_counts={0.0: 100}, delta=1e-5) == 0.0
    assert pld_composition(step_counts={0.2: 30}, delta=0.0) == pytest.approx(6.0)
    assert pld_composition(step_counts={800.0: 2}, delta=1e-5) == 1600.0


def test_missing_dp_accounting_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("dp_accounting", "dp_accounting.pld", "dp_accounting.pld.privacy_loss_distribution"):
        monkeypatch.setitem(sys.modules, name, None)
    assert not pld_available()
    with pytest.raises(PLDUnavailableError, match=r"tormentor-engine\[privacy\]"):
        pld_composition(step_counts={0.1: 10}, delta=1e-5)
    # no PLD needed: still answers
    assert pld_composition(step_counts={0.1: 10}, delta=0.0) == pytest.approx(1.0)


# ------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: basic_composition(step_counts={-1.0: 2}), ValueError),
        (lambda: basic_composition(step_counts={1.0: -2}), ValueError),
        (lambda: basic_composition(step_counts={1.0: 2.5}), TypeError),
        (lambda: basic_composition(step_counts=[(1.0, 2)]), TypeError),
        (lambda: basic_composition(step_counts={math.nan: 1}), ValueError),
        (lambda: amplify_by_subsampling(epsilon=1.0, batch_size=11, population=10), ValueError),
        (lambda: amplify_by_subsampling(epsilon=1.0, batch_size=0, population=10), ValueError),
        (lambda: amplify_by_subsampling(epsilon=True, batch_size=1, population=10), TypeError),
        (lambda: optimal_pure_composition(epsilon=1.0, steps=3, delta=1.0), ValueError),
        (lambda: optimal_pure_composition(epsilon=1.0, steps=-1, delta=1e-5), ValueError),
        (lambda: pld_composition(step_counts={1.0: 1}, delta=-1e-5), ValueError),
        (
            lambda: pld_composition(step_counts={1.0: 1}, delta=1e-5, value_discretization_interval=0.0),
            ValueError,
        ),
        (lambda: parallel_composition(epsilons=[1.0, -0.5]), ValueError),
    ],
)
def test_rejects_bad_input(call, error: type) -> None:
    with pytest.raises(error):
        call()


def test_functions_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        amplify_by_subsampling(1.0, 10, 150)  # type: ignore[misc]
    with pytest.raises(TypeError):
        basic_composition({1.0: 2})  # type: ignore[misc]
