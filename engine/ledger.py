"""A client's own privacy ledger: records its DP steps and enforces its budget.

Each client keeps one :class:`PrivacyLedger` (the broker never sees a client's epsilon).
Before every DP-SGD step the client asks :meth:`PrivacyLedger.can_spend`; when the step
would take its total past its own ``(epsilon, delta)`` budget it stops contributing.
After sending a step it calls :meth:`PrivacyLedger.record_step`. The ledger only records
events; the arithmetic lives in :mod:`tormentor.engine.privacy`.

Accounting (``accounting=``)
----------------------------
``"basic"``
    ``T`` steps at ``epsilon`` cost ``T * epsilon``; subsampling is ignored.
``"amplified"``
    Each step sampled without replacement costs its amplified epsilon
    ``ln(1 + (b/n)(e^epsilon - 1))``; steps add up (basic composition).
``"pld"`` (default)
    Amplified steps composed tightly with privacy-loss distributions at the budget's
    delta. Needs the optional ``dp-accounting``; without it the ledger falls back to
    ``"amplified"`` (a sound, looser upper bound) and :meth:`PrivacyLedger.report` says
    so.

Cost of the per-step check
--------------------------
Steps are kept as counts per distinct kind (a run of thousands of identical steps is one
entry), and :meth:`~PrivacyLedger.can_spend` does not compose anything from scratch each
step. It answers from a *plan*: the largest total number of steps of the asked kind that
fits in the budget beside the other kinds recorded. The composed epsilon is
non-decreasing in that number, so the plan is found once by a galloping and binary
search; after that each check is a comparison of counts (microseconds) until another
kind of step is recorded.

The search is cheap because, under ``"pld"``, it is first bracketed by exact closed
forms (:func:`~tormentor.engine.privacy.optimal_pure_composition`, the tight value for
``T`` identical pure-DP steps, O(T)): for one kind of step the bracket is the answer and
no privacy-loss distribution is built at all (10-20 ms for 1,500 steps). With several
kinds the bracket leaves about ``log2`` of its width PLD compositions, 0.05 to 0.5 s
each, so a plan is made for a new kind only after 64 checks of it in a row with the
other kinds unchanged (a run that settled on it). Until then, and whenever kinds
alternate, each check is decided on its own by basic composition or the closed-form
bounds (milliseconds), and only near the budget by one composition (a 1,552-step run
with a smaller last batch every 15th step: 9.6 s of checks in all, 51 of them over
10 ms). Timings measured on a shared 2-core machine: noisy. Composed values are cached
by step counts.

Budgets are compared with a relative tolerance of ``1e-12`` so that float rounding in a
sum of equal steps (``10 * 0.1``) does not refuse the last step.

>>> ledger = PrivacyLedger(budget_epsilon=1.0, budget_delta=1e-5, accounting="basic")
>>> ledger.can_spend(epsilon=0.5, batch_size=10, shard_size=150)
True
>>> for _ in range(2):
...     ledger.record_step(epsilon=0.5, batch_size=10, shard_size=150)
>>> ledger.can_spend(epsilon=0.5, batch_size=10, shard_size=150)
False
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .privacy import (
    amplify_by_subsampling,
    basic_composition,
    optimal_pure_composition,
    pld_available,
    pld_composition,
    pld_delta,
)

__all__ = [
    "ACCOUNTING_MODES",
    "BudgetExceededError",
    "LedgerStateError",
    "PrivacyLedger",
    "StepKind",
]

#: The accounting methods a ledger can be asked for.
ACCOUNTING_MODES = ("basic", "amplified", "pld")
_STATE_VERSION = 1
_BUDGET_TOLERANCE = 1e-12
_CACHE_ENTRIES = 256
#: Unsettled checks of one kind, other kinds unchanged, before a plan is made for it.
_PLAN_AFTER_CHECKS = 64


class BudgetExceededError(RuntimeError):
    """Recording this step would take the client past its privacy budget."""


class LedgerStateError(ValueError):
    """A saved ledger state is malformed; the message names the offending field."""


@dataclass(frozen=True)
class StepKind:
    """One kind of DP step: its epsilon and how its batch was drawn.

    Attributes
    ----------
    epsilon : float
        Per-step epsilon with respect to the batch (>= 0, may be ``inf``).
    batch_size : int
        ``b``, rows in the batch (>= 1).
    shard_size : int
        ``n``, rows in the client's shard (>= ``batch_size``).
    sampled_without_replacement : bool
        True when the batch is a uniformly random subset of the shard, drawn without
        replacement: only then is amplification by subsampling claimed. False: the
        step costs its full epsilon.
    """

    epsilon: float
    batch_size: int
    shard_size: int
    sampled_without_replacement: bool = True

    def __post_init__(self) -> None:
        """Validate the fields (raises ``TypeError``/``ValueError`` naming the field)."""
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
            raise TypeError(f"epsilon must be a number, got {type(eps).__name__}")
        if math.isnan(eps) or eps < 0:
            raise ValueError(f"epsilon must be >= 0 (inf allowed), got {eps!r}")
        object.__setattr__(self, "epsilon", float(eps))
        for name in ("batch_size", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
            object.__setattr__(self, name, int(value))
        if self.batch_size > self.shard_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must not exceed shard_size ({self.shard_size})"
            )
        if not isinstance(self.sampled_without_replacement, bool):
            raise TypeError("sampled_without_replacement must be a bool")

    def cost(self, accounting: str) -> float:
        """Epsilon this step contributes before composition, under ``accounting``."""
        if accounting == "basic" or not self.sampled_without_replacement:
            return self.epsilon
        return amplify_by_subsampling(
            epsilon=self.epsilon, batch_size=self.batch_size, population=self.shard_size
        )


#: Sorted ``(per-step cost, count)`` pairs: the steps that compose.
_Costs = tuple[tuple[float, int], ...]


@dataclass(frozen=True)
class _Plan:
    """Largest affordable count of one step cost, given the other costs recorded.

    ``max_count`` is ``None`` when any number fits (zero-cost steps), ``-1`` when even
    the other steps alone exceed the budget.
    """

    cost: float
    others: tuple[tuple[float, int], ...]
    max_count: int | None


def _check_budget(budget_epsilon: Any, budget_delta: Any) -> tuple[float, float]:
    if isinstance(budget_epsilon, bool) or not isinstance(budget_epsilon, (int, float)):
        raise TypeError(f"budget_epsilon must be a number, got {type(budget_epsilon).__name__}")
    if math.isnan(budget_epsilon) or budget_epsilon < 0:
        raise ValueError(f"budget_epsilon must be >= 0 (inf allowed), got {budget_epsilon!r}")
    if isinstance(budget_delta, bool) or not isinstance(budget_delta, (int, float)):
        raise TypeError(f"budget_delta must be a number, got {type(budget_delta).__name__}")
    if not 0.0 <= budget_delta < 1.0:
        raise ValueError(f"budget_delta must be in [0, 1), got {budget_delta!r}")
    return float(budget_epsilon), float(budget_delta)


def _check_interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value_discretization_interval must be a number, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"value_discretization_interval must be > 0, got {value!r}")
    return float(value)


def _largest_true(predicate: Callable[[int], bool], low: int, high: int | None) -> int:
    """Largest ``m`` in ``[low, high)`` with ``predicate(m)``, for a monotone predicate.

    ``predicate(low)`` must hold; ``predicate(high)`` is assumed false (``None``: found
    by galloping up from ``low``, doubling the step). About ``2 log2(answer - low)``
    calls.
    """
    if high is None:
        step = max(1, low)
        high = low + step
        while predicate(high):
            low, step = high, step * 2
            high = low + step
    while high - low > 1:
        middle = (low + high) // 2
        if predicate(middle):
            low = middle
        else:
            high = middle
    return low


class PrivacyLedger:
    """Per-client record of DP steps against an ``(epsilon, delta)`` budget.

    Parameters
    ----------
    budget_epsilon : float
        The client's total epsilon (>= 0; ``inf`` for no limit).
    budget_delta : float
        The client's total delta, in ``[0, 1)``. Only ``"pld"`` accounting uses it:
        the other methods give pure ``epsilon``-DP (delta 0).
    accounting : {"basic", "amplified", "pld"}
        How steps compose (module docstring). ``"pld"`` falls back to ``"amplified"``
        when ``dp-accounting`` is not installed.
    value_discretization_interval : float
        Passed to :func:`tormentor.engine.privacy.pld_composition` (matters only when
        steps of unrelated epsilons are mixed).

    Raises
    ------
    TypeError, ValueError
        On a malformed parameter (the message names it).
    """

    def __init__(
        self,
        *,
        budget_epsilon: float,
        budget_delta: float,
        accounting: str = "pld",
        value_discretization_interval: float = 1e-4,
    ) -> None:
        self._budget_epsilon, self._budget_delta = _check_budget(budget_epsilon, budget_delta)
        if accounting not in ACCOUNTING_MODES:
            raise ValueError(f"accounting must be one of {ACCOUNTING_MODES}, got {accounting!r}")
        self._requested = accounting
        self._fallback_reason: str | None = None
        if accounting == "pld" and not pld_available():
            self._method = "amplified"
            self._fallback_reason = (
                "dp-accounting is not installed (pip install 'tormentor-engine[privacy]'): "
                "using amplification by subsampling + basic composition, a sound but looser "
                "upper bound"
            )
        else:
            self._method = accounting
        self._interval = _check_interval(value_discretization_interval)
        self._steps: dict[StepKind, int] = {}
        self._costs: dict[float, int] = {}
        self._plan: _Plan | None = None
        self._cache: dict[tuple[tuple[tuple[float, int], ...], float], float] = {}
        self._delta_cache: dict[tuple[tuple[tuple[float, int], ...], float], float] = {}
        # (cost, others) of the last unsettled can_spend calls, and how many in a row
        self._streak: tuple[tuple[float, _Costs] | None, int] = (None, 0)

    # ------------------------------------------------------------------ properties
    @property
    def budget_epsilon(self) -> float:
        """The total epsilon this client allows."""
        return self._budget_epsilon

    @property
    def budget_delta(self) -> float:
        """The total delta this client allows."""
        return self._budget_delta

    @property
    def accounting(self) -> str:
        """The accounting method asked for."""
        return self._requested

    @property
    def accounting_used(self) -> str:
        """The accounting method in force (``"amplified"`` after a PLD fallback)."""
        return self._method

    @property
    def steps(self) -> int:
        """Total number of steps recorded (all kinds)."""
        return sum(self._steps.values())

    def step_counts(self) -> dict[StepKind, int]:
        """Return a copy of the recorded steps: kind -> number of steps."""
        return dict(self._steps)

    # ------------------------------------------------------------------ accounting
    def _composed(self, costs: _Costs, delta: float) -> float:
        """Total epsilon of ``costs`` (sorted (cost, count) pairs) under the method.

        For ``"pld"``: the smaller of the PLD value and the closed-form upper bound of
        :meth:`_closed_form_bounds` (both valid; the closed form is exact for one kind
        of step and spares the PLD's lattice rounding).
        """
        key = (costs, delta)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        counts = dict(costs)
        if self._method == "pld" and len(costs) == 1 and delta > 0.0:
            # One kind of step: the closed form is the exact tight value, no PLD needed.
            value = self._closed_form_bounds(costs, delta)[1]
        elif self._method == "pld":
            value = pld_composition(
                step_counts=counts, delta=delta, value_discretization_interval=self._interval
            )
            if costs and delta > 0.0:
                value = min(value, self._closed_form_bounds(costs, delta)[1])
        else:
            value = basic_composition(step_counts=counts)
        if len(self._cache) >= _CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = value
        return value

    @staticmethod
    def _closed_form_bounds(costs: _Costs, delta: float) -> tuple[float, float]:
        """Cheap bounds on the tight composed epsilon of ``costs`` at ``delta`` (O(T)).

        Composition is monotone in each step's epsilon and in the set of steps. With
        ``n`` steps in all and ``optimal(e, T)`` the exact value for ``T`` identical
        ``e``-DP steps (:func:`~tormentor.engine.privacy.optimal_pure_composition`):

        * lower: ``max(optimal(min e, n), max_k optimal(e_k, n_k))``;
        * upper: ``min(optimal(max e, n), min_k optimal(e_k, n_k) + basic(rest))``,
          since an ``(e1, delta)``- and an ``(e2, 0)``-DP part compose to
          ``(e1 + e2, delta)``.

        For one kind of step both are the exact value. ``costs``: non-empty, sorted by
        cost (zero and infinite costs are handled: they give 0 and ``inf`` terms).
        """

        def exact(epsilon: float, steps: int) -> float:
            return optimal_pure_composition(epsilon=epsilon, steps=steps, delta=delta)

        n_total = sum(n for _, n in costs)
        total_basic = basic_composition(step_counts=dict(costs))
        per_kind = [(exact(e, n), e * n) for e, n in costs]
        lower = max(exact(costs[0][0], n_total), *(tight for tight, _ in per_kind))
        upper = min(
            exact(costs[-1][0], n_total),
            *(tight + (total_basic - own_basic) for tight, own_basic in per_kind),
        )
        return lower, upper

    def spent(self, delta: float | None = None) -> float:
        """Total epsilon of the steps recorded so far.

        Costs one composition (cached until the next step): milliseconds for one kind
        of step, up to about a second for tens of thousands of steps of several kinds.

        Parameters
        ----------
        delta : float, optional
            The delta to state epsilon at (default: the budget's delta). Ignored by
            ``"basic"`` and ``"amplified"`` accounting (pure DP).

        Returns
        -------
        float
            Epsilon spent (0 before any step).
        """
        if delta is None:
            delta = self._budget_delta
        elif isinstance(delta, bool) or not isinstance(delta, (int, float)):
            raise TypeError(f"delta must be a number, got {type(delta).__name__}")
        elif not 0.0 <= delta < 1.0:
            raise ValueError(f"delta must be in [0, 1), got {delta!r}")
        costs = tuple(sorted((c, n) for c, n in self._costs.items() if n > 0))
        return self._composed(costs, float(delta))

    # ------------------------------------------------------------- budget checks
    def _limit(self) -> float:
        return self._budget_epsilon * (1.0 + _BUDGET_TOLERANCE)

    def _fits(self, cost: float, others: _Costs, count: int) -> bool:
        """Whether ``others`` plus ``count`` steps of ``cost`` stay within the budget.

        Equivalent to ``spent <= budget_epsilon`` after those steps, decided by the
        cheapest test that settles it: basic composition; for ``"pld"``, then the
        closed-form bounds of :meth:`_closed_form_bounds`; last, the composed PLD delta
        at the budget's epsilon against the budget's delta (cheaper than solving for
        epsilon).
        """
        merged = dict(others)
        if count > 0:
            merged[cost] = merged.get(cost, 0) + count
        limit = self._limit()
        if basic_composition(step_counts=merged) <= limit:
            return True
        if self._method != "pld" or self._budget_delta == 0.0:
            return False
        costs = tuple(sorted(merged.items()))
        lower, upper = self._closed_form_bounds(costs, self._budget_delta)
        if upper <= limit:
            return True
        if lower > limit * (1.0 + 1e-9):  # 1e-9: the PLD's FFT may land a hair below
            return False
        key = (costs, limit)
        cached = self._delta_cache.get(key)
        if cached is None:
            cached = pld_delta(
                step_counts=merged, epsilon=limit, value_discretization_interval=self._interval
            )
            if len(self._delta_cache) >= _CACHE_ENTRIES:
                self._delta_cache.clear()
            self._delta_cache[key] = cached
        return cached <= self._budget_delta

    def _make_plan(self, cost: float, others: _Costs) -> _Plan:
        """Largest total count of ``cost`` steps that fits beside ``others``.

        Starts from the count that basic composition allows (it bounds every method),
        narrows the search for ``"pld"`` with :meth:`_closed_form_bounds`, and settles
        it with a galloping and binary search on :meth:`_fits`. One kind of step: no
        PLD at all (the bounds meet). Several kinds: about ``log2`` of the bounds' gap
        compositions (up to a few seconds for long runs).
        """
        if not self._fits(cost, others, 0):
            return _Plan(cost, others, -1)
        if cost == 0.0:
            return _Plan(cost, others, None)
        if math.isinf(cost):
            return _Plan(cost, others, 0)
        spent_others = basic_composition(step_counts=dict(others))
        low = max(0, math.floor((self._budget_epsilon - spent_others) / cost))
        while low > 0 and not self._fits(cost, others, low):
            low -= 1
        high = None
        if self._method == "pld" and self._budget_delta > 0.0:
            # Bracket the answer with the closed-form bounds before any PLD is built.
            limit = self._limit()

            def bounds(m: int) -> tuple[float, float]:
                merged = dict(others)
                merged[cost] = merged.get(cost, 0) + m
                return self._closed_form_bounds(tuple(sorted(merged.items())), self._budget_delta)

            high = 1 + _largest_true(lambda m: bounds(m)[0] <= limit * (1.0 + 1e-9), low, None)
            low = _largest_true(lambda m: bounds(m)[1] <= limit, low, high)
        return _Plan(cost, others, _largest_true(lambda m: self._fits(cost, others, m), low, high))

    def _others(self, cost: float) -> _Costs:
        return tuple(sorted((c, n) for c, n in self._costs.items() if c != cost and n > 0))

    def _plan_for(self, cost: float, others: _Costs) -> _Plan:
        plan = self._plan
        if plan is None or plan.cost != cost or plan.others != others:
            plan = self._make_plan(cost, others)
            self._plan = plan
        return plan

    def remaining_steps(
        self,
        *,
        epsilon: float,
        batch_size: int,
        shard_size: int,
        sampled_without_replacement: bool = True,
    ) -> int | None:
        """How many more steps of this kind fit in the budget (``None``: no limit).

        Parameters are those of :meth:`can_spend`. Makes (or reuses) the plan for this
        kind of step, see :meth:`can_spend`.
        """
        kind = StepKind(epsilon, batch_size, shard_size, sampled_without_replacement)
        if math.isinf(self._budget_epsilon):
            return None
        cost = kind.cost(self._method)
        plan = self._plan_for(cost, self._others(cost))
        if plan.max_count is None:
            return None
        return max(0, plan.max_count - self._costs.get(cost, 0))

    def can_spend(
        self,
        *,
        epsilon: float,
        batch_size: int,
        shard_size: int,
        sampled_without_replacement: bool = True,
    ) -> bool:
        """Whether one more step of this kind keeps the total within the budget.

        Answered from a plan (the largest affordable count of this kind of step, given
        the other kinds recorded) in microseconds. The plan is made at once when this is
        the only kind of step recorded (cheap: closed forms only), or after 64 checks of
        this kind in a row with the other kinds unchanged (a run that settled on a new
        kind; a few seconds). Otherwise, e.g. when kinds alternate, each call is
        decided on its own: by basic composition or closed-form bounds (milliseconds),
        or, near the budget, by one composition (0.05-0.5 s).

        Parameters
        ----------
        epsilon : float
            The step's epsilon with respect to its batch (>= 0).
        batch_size : int
            ``b``, rows in the batch.
        shard_size : int
            ``n``, rows in the client's shard.
        sampled_without_replacement : bool
            Whether the batch is a uniformly random subset drawn without replacement.

        Returns
        -------
        bool
            True when the budget allows the step.
        """
        kind = StepKind(epsilon, batch_size, shard_size, sampled_without_replacement)
        return self._allows(kind, asked=True)

    def _allows(self, kind: StepKind, *, asked: bool) -> bool:
        """:meth:`can_spend` for a validated kind; ``asked`` counts towards the streak."""
        if math.isinf(self._budget_epsilon):
            return True
        cost = kind.cost(self._method)
        count = self._costs.get(cost, 0)
        others = self._others(cost)
        plan = self._plan
        settled = plan is not None and plan.cost == cost and plan.others == others
        if asked and not settled:
            same = self._streak[0] == (cost, others)
            self._streak = ((cost, others), self._streak[1] + 1 if same else 1)
        if not settled and (not others or self._streak[1] >= _PLAN_AFTER_CHECKS):
            plan = self._plan_for(cost, others)
            settled = True
        if settled:
            return plan.max_count is None or count + 1 <= plan.max_count
        return self._fits(cost, others, count + 1)

    def record_step(
        self,
        *,
        epsilon: float,
        batch_size: int,
        shard_size: int,
        sampled_without_replacement: bool = True,
    ) -> None:
        """Record one step that was (or is about to be) released.

        Parameters are those of :meth:`can_spend`.

        Raises
        ------
        BudgetExceededError
            If the step does not fit in the budget; nothing is recorded.
        """
        kind = StepKind(epsilon, batch_size, shard_size, sampled_without_replacement)
        if not self._allows(kind, asked=False):
            raise BudgetExceededError(
                f"one more step at epsilon={kind.epsilon} would exceed the budget "
                f"(epsilon={self._budget_epsilon}, delta={self._budget_delta})"
            )
        cost = kind.cost(self._method)
        self._steps[kind] = self._steps.get(kind, 0) + 1
        self._costs[cost] = self._costs.get(cost, 0) + 1

    def report(self) -> dict[str, Any]:
        """Summarise the ledger for logs and the run report.

        Returns
        -------
        dict
            ``accounting`` (asked), ``accounting_used``, ``fallback_reason`` (``None``
            unless PLD accounting was unavailable), ``steps``, ``spent_epsilon`` (at the
            budget's delta), ``budget_epsilon``, ``budget_delta``.
        """
        return {
            "accounting": self._requested,
            "accounting_used": self._method,
            "fallback_reason": self._fallback_reason,
            "steps": self.steps,
            "spent_epsilon": self.spent(),
            "budget_epsilon": self._budget_epsilon,
            "budget_delta": self._budget_delta,
        }

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Return the ledger's state as plain data (dicts, lists, str, int, float, bool).

        The ``accounting`` saved is the one asked for; a ledger loaded where
        ``dp-accounting`` is missing falls back again.
        """
        return {
            "version": _STATE_VERSION,
            "budget_epsilon": self._budget_epsilon,
            "budget_delta": self._budget_delta,
            "accounting": self._requested,
            "value_discretization_interval": self._interval,
            "steps": [
                {
                    "epsilon": kind.epsilon,
                    "batch_size": kind.batch_size,
                    "shard_size": kind.shard_size,
                    "sampled_without_replacement": kind.sampled_without_replacement,
                    "count": count,
                }
                for kind, count in self._steps.items()
            ],
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PrivacyLedger:
        """Rebuild a ledger saved by :meth:`state_dict` (validated, see :meth:`load_state_dict`)."""
        ledger = cls(budget_epsilon=math.inf, budget_delta=0.0, accounting="basic")
        ledger.load_state_dict(state)
        return ledger

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace this ledger's budget, accounting and steps with a saved state.

        The whole state is validated before anything changes. The recorded steps are
        restored as saved, even if they exceed the saved budget (then no further step
        is allowed).

        Raises
        ------
        LedgerStateError
            If ``state`` is not a mapping with exactly the saved fields, of the right
            types and ranges, with a known ``version``.
        """
        if not isinstance(state, Mapping):
            raise LedgerStateError(f"state must be a mapping, got {type(state).__name__}")
        expected = {
            "version",
            "budget_epsilon",
            "budget_delta",
            "accounting",
            "value_discretization_interval",
            "steps",
        }
        if set(state) != expected:
            missing = sorted(expected - set(state))
            unknown = sorted(set(state) - expected)
            raise LedgerStateError(f"state fields: missing {missing}, unknown {unknown}")
        if state["version"] != _STATE_VERSION or isinstance(state["version"], bool):
            raise LedgerStateError(f"state.version: expected {_STATE_VERSION}")
        try:
            fresh = PrivacyLedger(
                budget_epsilon=state["budget_epsilon"],
                budget_delta=state["budget_delta"],
                accounting=state["accounting"],
                value_discretization_interval=state["value_discretization_interval"],
            )
        except (TypeError, ValueError) as exc:
            raise LedgerStateError(f"state: {exc}") from None
        steps = state["steps"]
        if not isinstance(steps, (list, tuple)):
            raise LedgerStateError("state.steps must be a list")
        step_fields = {
            "epsilon",
            "batch_size",
            "shard_size",
            "sampled_without_replacement",
            "count",
        }
        for index, entry in enumerate(steps):
            where = f"state.steps[{index}]"
            if not isinstance(entry, Mapping) or set(entry) != step_fields:
                raise LedgerStateError(f"{where} must have exactly the fields {sorted(step_fields)}")
            count = entry["count"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise LedgerStateError(f"{where}.count must be a positive int")
            try:
                kind = StepKind(
                    entry["epsilon"],
                    entry["batch_size"],
                    entry["shard_size"],
                    entry["sampled_without_replacement"],
                )
            except (TypeError, ValueError) as exc:
                raise LedgerStateError(f"{where}: {exc}") from None
            if kind in fresh._steps:
                raise LedgerStateError(f"{where} repeats an earlier step kind")
            fresh._steps[kind] = count
            cost = kind.cost(fresh._method)
            fresh._costs[cost] = fresh._costs.get(cost, 0) + count
        self.__dict__.update(fresh.__dict__)
