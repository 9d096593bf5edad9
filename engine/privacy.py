"""Privacy accounting for a client running epsilon-DP SGD steps: pure functions.

Every DP-SGD step of a client is ``epsilon``-DP with respect to one row of its shard
(Song, Chaudhuri & Sarwate 2013, with per-example clipping; ``docs/privacy-facts.md``).
These functions say how much privacy a sequence of such steps costs in total. They are
keyword-only, hold no state and know nothing of the ledger
(:mod:`tormentor.engine.ledger` records steps and asks them).

Composition, loosest to tightest:

* :func:`basic_composition`: ``T`` steps at ``epsilon_i`` are ``(sum epsilon_i)``-DP
  (Dwork & Roth 2014, Theorem 3.16).
* :func:`amplify_by_subsampling`: a step that uses a batch of ``b`` rows drawn without
  replacement from ``n`` is ``ln(1 + (b/n)(e^epsilon - 1))``-DP with respect to the
  whole shard (Balle, Barthe & Gaboardi 2018, "Privacy amplification by subsampling",
  Table 1: sampling without replacement, substitution relation).
* :func:`parallel_composition`: steps that use disjoint sets of rows (one pass over
  disjoint batches) are ``(max epsilon_i)``-DP together (McSherry 2009, Theorem 4).
* :func:`pld_composition`: tight ``(epsilon, delta)`` composition with Google's
  ``dp-accounting`` privacy-loss distributions (Koskela et al. 2020; Meiser & Mohammadi
  2018). A pure ``epsilon``-DP step is dominated by binary randomized response
  (Kairouz, Oh & Viswanath 2015), whose privacy-loss distribution has two atoms,
  ``+epsilon`` and ``-epsilon``; the function builds that pair with the low-level
  ``pld.privacy_loss_distribution`` API (``create_from_rounded_probability``, on a
  lattice where the atoms are exact), composes with ``self_compose``/``compose`` and
  reads ``epsilon`` for the target ``delta``. (The
  high-level ``PLDAccountant`` returned the one-step value for composed
  randomized-response events, so it is not used.)
* :func:`optimal_pure_composition`: the same tight value in closed form for ``T``
  identical steps (Kairouz, Oh & Viswanath 2015, Theorem 3.3: the ``T``-fold
  composition of randomized response is the worst case). It needs no optional
  dependency and is the independent oracle the tests hold :func:`pld_composition` to.

``dp-accounting`` is optional (extra ``privacy``); it is imported inside
:func:`pld_composition` only, which raises :class:`PLDUnavailableError` without it.

Worked number (one client, shard of 150 rows, batches of 10, epsilon 1 per step,
1,500 steps, delta 1e-5): basic composition 1,500; amplification + basic 162.7;
amplification + tight composition about 26.

>>> step = amplify_by_subsampling(epsilon=1.0, batch_size=10, population=150)
>>> round(basic_composition(step_counts={step: 1500}), 1)
162.7
>>> round(optimal_pure_composition(epsilon=step, steps=1500, delta=1e-5), 1)
26.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "PLDUnavailableError",
    "amplify_by_subsampling",
    "basic_composition",
    "optimal_pure_composition",
    "parallel_composition",
    "pld_available",
    "pld_composition",
    "pld_delta",
]

#: Per-step epsilon above which ``exp(epsilon)`` overflows a float; PLDs are not built.
_MAX_PLD_STEP_EPSILON = 700.0
#: Lattice points a composed privacy-loss distribution may span (run time and memory).
_MAX_LATTICE_POINTS = 1 << 18
#: Width of a composed distribution, in standard deviations of the total loss.
_LATTICE_STD_WIDTH = 20.0
#: Relative distance within which a privacy loss counts as on a lattice point.
_LATTICE_SLACK = 1e-12


class PLDUnavailableError(ImportError):
    """``dp-accounting`` is not installed (``pip install 'tormentor-engine[privacy]'``)."""


def _check_epsilon(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or value < 0.0:
        raise ValueError(f"{name} must be >= 0 (inf allowed), got {value!r}")
    return value


def _check_count(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_delta(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"delta must be a number, got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {value!r}")
    return value


def _check_step_counts(step_counts: Any) -> dict[float, int]:
    """Validate ``{per-step epsilon: number of steps}`` and merge equal epsilons."""
    if not isinstance(step_counts, Mapping):
        raise TypeError(
            f"step_counts must be a mapping epsilon -> steps, got {type(step_counts).__name__}"
        )
    merged: dict[float, int] = {}
    for epsilon, count in step_counts.items():
        eps = _check_epsilon("step_counts epsilon", epsilon)
        merged[eps] = merged.get(eps, 0) + _check_count("step_counts count", count, minimum=0)
    return merged


def basic_composition(*, step_counts: Mapping[float, int]) -> float:
    """Total epsilon of a sequence of pure-DP steps by basic composition.

    ``T`` steps at ``epsilon_i`` each are ``(sum_i epsilon_i)``-DP (Dwork & Roth 2014,
    Theorem 3.16). Exact for ``delta = 0``.

    Parameters
    ----------
    step_counts : mapping of float to int
        Per-step epsilon (>= 0, may be ``inf``) -> number of such steps (>= 0).

    Returns
    -------
    float
        ``sum(epsilon * count)``; ``inf`` if any counted step has infinite epsilon.

    >>> basic_composition(step_counts={1.0: 1500})
    1500.0
    """
    counts = _check_step_counts(step_counts)
    return math.fsum(eps * count for eps, count in counts.items() if count > 0)


def amplify_by_subsampling(*, epsilon: float, batch_size: int, population: int) -> float:
    """Epsilon of a step run on a random batch drawn without replacement.

    If a mechanism is ``epsilon``-DP on its batch, running it on ``b`` rows drawn
    uniformly without replacement from ``n`` is ``epsilon'``-DP with respect to the
    ``n`` rows, with (Balle, Barthe & Gaboardi 2018, Table 1, substitution relation)

    ``epsilon' = ln(1 + (b / n) (e^epsilon - 1))``.

    Parameters
    ----------
    epsilon : float
        Per-step epsilon on the batch (>= 0, may be ``inf``).
    batch_size : int
        ``b``, rows in the batch (>= 1).
    population : int
        ``n``, rows it was drawn from (>= ``batch_size``).

    Returns
    -------
    float
        ``epsilon'`` (<= ``epsilon``; equal when ``b == n``; ``inf`` for ``inf``).

    >>> round(amplify_by_subsampling(epsilon=1.0, batch_size=10, population=150), 5)
    0.10845
    """
    eps = _check_epsilon("epsilon", epsilon)
    b = _check_count("batch_size", batch_size, minimum=1)
    n = _check_count("population", population, minimum=1)
    if b > n:
        raise ValueError(f"batch_size ({b}) must not exceed population ({n})")
    if b == n or eps == 0.0 or math.isinf(eps):
        return eps
    q = b / n
    if eps <= 1.0:
        return math.log1p(q * math.expm1(eps))
    # ln(1 + q(e^eps - 1)) = eps + ln(q + (1 - q) e^-eps): no overflow for large eps.
    return eps + math.log(q + (1.0 - q) * math.exp(-eps))


def parallel_composition(*, epsilons: Iterable[float]) -> float:
    """Total epsilon of steps that each touch a disjoint set of rows.

    One pass over disjoint batches of a shard is ``(max_i epsilon_i)``-DP in total
    (McSherry 2009, Theorem 4): any one row is used by at most one step.

    Parameters
    ----------
    epsilons : iterable of float
        Per-step epsilons (>= 0).

    Returns
    -------
    float
        The largest epsilon; ``0.0`` for no steps.

    >>> parallel_composition(epsilons=[1.0] * 15)
    1.0
    """
    values = [_check_epsilon("epsilons item", e) for e in epsilons]
    return max(values, default=0.0)


def optimal_pure_composition(*, epsilon: float, steps: int, delta: float) -> float:
    """Smallest total epsilon of ``steps`` identical ``epsilon``-DP steps at ``delta``.

    The ``T``-fold composition of ``epsilon``-DP mechanisms is dominated by that of
    binary randomized response, and this bound is attained (Kairouz, Oh & Viswanath
    2015, Theorem 3.3). With ``j`` of the ``T`` responses flipped, the privacy loss is
    ``L_j = (T - 2j) epsilon`` with probability
    ``P_j = C(T, j) e^{(T - j) epsilon} / (1 + e^epsilon)^T``, and

    ``delta(E) = sum_{j : L_j > E} P_j (1 - e^{E - L_j})``.

    The result is the smallest ``E >= 0`` with ``delta(E) <= delta``: ``delta`` is
    evaluated at every lattice point ``L_k`` with cumulative sums (in log space), and on
    the bracketing interval ``delta(E) = A - e^E B`` is solved in closed form. Cost:
    ``O(T)`` time and memory (about 5 ms for ``T = 100,000``).

    Parameters
    ----------
    epsilon : float
        Per-step epsilon (>= 0, may be ``inf``).
    steps : int
        ``T`` (>= 0).
    delta : float
        Target delta in ``[0, 1)``.

    Returns
    -------
    float
        The tight total epsilon (``T * epsilon`` when ``delta == 0``).

    >>> optimal_pure_composition(epsilon=0.5, steps=1, delta=0.0)
    0.5
    """
    eps = _check_epsilon("epsilon", epsilon)
    t = _check_count("steps", steps, minimum=0)
    target = _check_delta(delta)
    if t == 0 or eps == 0.0:
        return 0.0
    if math.isinf(eps):
        return math.inf
    if target == 0.0:
        return t * eps
    j = np.arange(t + 1, dtype=np.float64)
    # log C(T, j) by a running sum of log((T - k + 1) / k), k = 1..j.
    log_binom = np.concatenate(([0.0], np.cumsum(np.log((t - j[1:] + 1.0) / j[1:]))))
    log_prob = log_binom + (t - j) * eps - t * np.logaddexp(0.0, eps)
    loss = (t - 2.0 * j) * eps  # descending in j
    # With the atoms j < k above E: delta(E) = A_{k-1} - e^E B_{k-1}, where
    # A = cumsum(P_j) and B = cumsum(P_j e^{-L_j}) (kept in log space).
    mass = np.cumsum(np.exp(log_prob))
    log_weighted = np.logaddexp.accumulate(log_prob - loss)
    positive = int(np.count_nonzero(loss > 0.0))  # atoms j < positive have L_j > 0
    if positive == 0 or mass[positive - 1] - math.exp(log_weighted[positive - 1]) <= target:
        return 0.0  # delta(0) <= target
    # delta at each lattice point L_k, k = 1..positive - 1 (all > 0), non-decreasing in k
    k = np.arange(1, positive)
    at_lattice = mass[k - 1] - np.exp(loss[k] + log_weighted[k - 1])
    above = np.flatnonzero(at_lattice > target)
    first = int(k[above[0]]) if above.size else positive  # E lies in [max(L_first, 0), L_{first-1})
    solved = math.log(mass[first - 1] - target) - float(log_weighted[first - 1])
    return float(min(max(solved, loss[first] if first < positive else 0.0, 0.0), loss[first - 1]))


def _import_pld() -> ModuleType:
    try:
        from dp_accounting.pld import privacy_loss_distribution
    except ImportError as exc:
        raise PLDUnavailableError(
            "tight privacy accounting needs dp-accounting: "
            "pip install 'tormentor-engine[privacy]'"
        ) from exc
    return privacy_loss_distribution


def pld_available() -> bool:
    """Return True when ``dp-accounting`` is installed (:func:`pld_composition` works).

    Looks the package up without importing it: the import pulls in SciPy (about a second
    and 60 MB), which a client whose steps the closed forms answer never needs.
    """
    import importlib.util

    return importlib.util.find_spec("dp_accounting") is not None


def _lattice(
    step_counts: Mapping[float, int], interval: float
) -> tuple[float, dict[float, tuple[int, int]]]:
    """Put the privacy-loss atoms ``+-epsilon`` of each kind of step on one lattice.

    Returns the spacing ``s`` and, per epsilon, the lattice indices of its ``+epsilon``
    and ``-epsilon`` atoms. Losses are rounded up (``+epsilon`` to ``ceil``,
    ``-epsilon`` towards zero), so the composition is an upper bound; a value within
    1e-12 (relative) of a lattice point counts as on it, so that float noise does not
    move an atom a whole step.

    The lattice is anchored on the epsilon with the most steps: ``s = anchor / K``.
    ``K`` is the smallest integer that puts every atom on the lattice (``K = 1`` for one
    distinct epsilon; ``s = 0.05`` for ``0.1`` and ``0.15``), so that the composition is
    exact and cheap. When no ``K`` up to ``anchor / interval`` does, ``K`` is that bound and
    the other kinds' atoms are rounded up, costing at most ``s`` per step of those
    kinds. ``s`` is widened where needed to keep the composed distribution within about
    260,000 lattice points (many steps of several unrelated epsilons): then each
    composition takes well under a second, and the result is looser by at most ``s``
    per step of the minority kinds (0.2 % on 700 + 700 steps of 0.108 and 0.5).
    """
    epsilons = sorted(step_counts)
    anchor = max(epsilons, key=lambda eps: (step_counts[eps], -eps))
    largest = epsilons[-1]
    spread = math.sqrt(math.fsum(count * eps * eps for eps, count in step_counts.items()))
    coarsest_allowed = (_LATTICE_STD_WIDTH * spread + 2.0 * largest) / _MAX_LATTICE_POINTS

    def on_lattice(ratio: float) -> bool:
        return abs(ratio - round(ratio)) <= _LATTICE_SLACK * ratio

    finest = max(1, min(math.ceil(anchor / interval), math.floor(anchor / coarsest_allowed)))
    spacing = anchor / finest
    # Smallest K putting every atom on the lattice: the lcm of the denominators of the
    # ratios epsilon / anchor, when these are fractions with denominators <= finest.
    parts = 1
    for eps in epsilons:
        ratio = Fraction(eps / anchor).limit_denominator(finest)
        parts = parts * ratio.denominator // math.gcd(parts, ratio.denominator)
        if parts > finest:
            break
    if parts <= finest and all(on_lattice(eps / (anchor / parts)) for eps in epsilons):
        spacing = anchor / parts
    indices = {}
    for eps in epsilons:
        ratio = eps / spacing
        if on_lattice(ratio):
            up = down = round(ratio)
        else:
            up, down = math.ceil(ratio), math.floor(ratio)
        indices[eps] = (up, -down)
    return spacing, indices


def pld_composition(
    *,
    step_counts: Mapping[float, int],
    delta: float,
    value_discretization_interval: float = 1e-4,
) -> float:
    """Tight total epsilon of pure-DP steps, by privacy-loss distributions.

    Each ``epsilon``-DP step is represented by its dominating pair, binary randomized
    response: privacy loss ``+epsilon`` with probability ``e^epsilon / (1 + e^epsilon)``
    and ``-epsilon`` otherwise (``dp-accounting``'s "pessimistic estimate" of an
    ``(epsilon, 0)``-DP mechanism). The pair is built with the low-level
    ``PrivacyLossDistribution.create_from_rounded_probability`` on a lattice chosen so
    that the atoms are exact when possible (see ``_lattice``), composed with
    ``self_compose`` and ``compose`` (pessimistic tail truncation), and the epsilon for
    ``delta`` is read off with ``get_epsilon_for_delta``. The answer is capped by
    :func:`basic_composition`, which is also a valid bound.

    Parameters
    ----------
    step_counts : mapping of float to int
        Per-step epsilon (>= 0, may be ``inf``) -> number of steps (>= 0). Pass
        amplified epsilons (:func:`amplify_by_subsampling`) for subsampled steps.
    delta : float
        Target delta in ``[0, 1)``; ``0`` gives basic composition (exact for pure DP).
    value_discretization_interval : float
        Finest lattice spacing when the epsilons are not integer multiples of the
        smallest (> 0); unused otherwise. Smaller is tighter and slower (about 1 s for
        1,500 steps of two unrelated epsilons near 0.1 at 1e-4).

    Returns
    -------
    float
        Total epsilon at ``delta``. Totals above about 700 (where ``exp(-loss)``
        underflows inside the library) come back as the basic bound.

    Raises
    ------
    PLDUnavailableError
        If ``dp-accounting`` is not installed (only raised when a PLD is needed).
    """
    counts = _check_step_counts(step_counts)
    target = _check_delta(delta)
    interval = _check_interval(value_discretization_interval)
    active = {eps: count for eps, count in counts.items() if count > 0 and eps > 0.0}
    basic = basic_composition(step_counts=active)
    if not active or math.isinf(basic) or target == 0.0:
        return basic
    if max(active) > _MAX_PLD_STEP_EPSILON:
        return basic  # exp(epsilon) overflows; basic composition is still sound
    # Near total losses of ~700 the library's exp(-loss) underflows and a ratio
    # overflows (it then answers inf); silence NumPy there and keep the basic bound.
    with np.errstate(all="ignore"):
        tight = float(_composed_pld(active, interval).get_epsilon_for_delta(target))
    if math.isnan(tight):
        return basic
    return min(tight, basic)


def pld_delta(
    *,
    step_counts: Mapping[float, int],
    epsilon: float,
    value_discretization_interval: float = 1e-4,
) -> float:
    """Smallest delta for which the composed steps are ``(epsilon, delta)``-DP.

    The dual of :func:`pld_composition` (same privacy-loss distribution, read as the
    hockey-stick divergence at ``epsilon`` with ``get_delta_for_epsilon``): the steps
    are ``(E, delta)``-DP for ``E = pld_composition(delta=...)`` exactly when
    ``pld_delta(epsilon=E) <= delta``. It is several times cheaper to evaluate, which
    is why the ledger checks budgets with it.

    Parameters
    ----------
    step_counts : mapping of float to int
        As in :func:`pld_composition`.
    epsilon : float
        Total epsilon (>= 0, may be ``inf``).
    value_discretization_interval : float
        As in :func:`pld_composition`.

    Returns
    -------
    float
        ``delta`` in ``[0, 1]``: 0 when ``epsilon`` reaches the basic bound, 1 when a
        step with infinite epsilon is counted and ``epsilon`` is finite.

    Raises
    ------
    PLDUnavailableError
        If ``dp-accounting`` is not installed (only raised when a PLD is needed).
    """
    counts = _check_step_counts(step_counts)
    total = _check_epsilon("epsilon", epsilon)
    interval = _check_interval(value_discretization_interval)
    active = {eps: count for eps, count in counts.items() if count > 0 and eps > 0.0}
    if total >= basic_composition(step_counts=active):
        return 0.0
    if max(active) > _MAX_PLD_STEP_EPSILON:
        return 1.0  # covers inf: no finite-epsilon guarantee is claimed
    with np.errstate(all="ignore"):
        value = float(_composed_pld(active, interval).get_delta_for_epsilon(total))
    if math.isnan(value):
        return 1.0
    return min(max(value, 0.0), 1.0)


def _check_interval(value: Any) -> float:
    interval = _check_epsilon("value_discretization_interval", value)
    if interval == 0.0 or math.isinf(interval):
        raise ValueError("value_discretization_interval must be positive and finite")
    return interval


def _composed_pld(active: Mapping[float, int], interval: float) -> Any:
    """Compose randomized-response PLDs for ``{epsilon: count}`` (all > 0, finite)."""
    pld_module = _import_pld()
    spacing, indices = _lattice(active, interval)
    composed = None
    for eps, count in sorted(active.items()):
        up, down = indices[eps]
        pmf = {up: 1.0 / (1.0 + math.exp(-eps))}
        pmf[down] = pmf.get(down, 0.0) + 1.0 / (1.0 + math.exp(eps))
        single = pld_module.PrivacyLossDistribution.create_from_rounded_probability(
            pmf, 0.0, spacing
        )
        part = single.self_compose(count) if count > 1 else single
        composed = part if composed is None else composed.compose(part)
    return composed
