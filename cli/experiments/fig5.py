"""Figure 5 (paper 7.2): training error of DP-SGD for ε ∈ {1, 2, 5, ∞} × b ∈ {1, 10, 100}.

In process, on the simulator: ONE client holds the whole 21,000-row training shard and
trains through the real broker (no puzzles, no validator: nothing else is measured) with
real DP noise (exact isotropic Laplace, per-example clipping). The x-axis is updates,
not time: with one client the simulator's clock is only a multiple of the update count.
The training error is the 0-1 error on the whole training shard, measured by the
harness at regular versions; "tail" is its mean over the last 10 % of the updates, a
less noisy "final". A run "converged" when its tail is within 1 percentage point of the
centralised (Newton) logistic regression on the same shard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tormentor.engine.centralised import fit_logistic_regression, zero_one_error
from tormentor.engine.client import LearningClient
from tormentor.engine.curator import curate_request
from tormentor.engine.protocol import Defences, StoppingRule, TaskSpec
from tormentor.engine.simulation import simulate

from . import plots
from .curves import band, curve_from_trace, tail_mean
from .markdown import epsilon_text, table
from .results import make_record, normalised, summarise, write_csv
from .runner import Execution, Experiment, Log, PaperRow, Verdict
from .settings import CostSettings, DataSettings, StepSettings

__all__ = ["FIG5", "Fig5Settings"]

#: A run converged when its tail error is within this of the centralised model's.
CONVERGED_WITHIN = 0.01


@dataclass(frozen=True)
class Fig5Settings:
    """Settings of Figure 5.

    Attributes
    ----------
    seeds : tuple of int
        One run per seed and point (the client's batches and noise, the broker's draws).
    epsilons : tuple of float
        ε per step ("inf" = no DP).
    batches : tuple of int
        Batch sizes b.
    updates : int
        Updates per run.
    trace_points : int
        Training-error samples per run.
    """

    seeds: tuple[int, ...]
    epsilons: tuple[float, ...]
    batches: tuple[int, ...]
    updates: int
    trace_points: int = 100
    data: DataSettings = field(default_factory=DataSettings)
    client: StepSettings = field(default_factory=StepSettings)
    costs: CostSettings = field(default_factory=CostSettings)

    def __post_init__(self) -> None:
        if any(not e > 0 for e in self.epsilons):
            raise ValueError("epsilons must be > 0 (inf = no DP)")
        if any(b < 1 for b in self.batches):
            raise ValueError("batches must be >= 1")
        if not 2 <= self.trace_points <= self.updates:
            raise ValueError("need 2 <= trace_points <= updates")


def _run_point(settings: Fig5Settings, data, epsilon: float, batch: int, seed: int):
    task = TaskSpec(
        n_features=data.n_weights,
        stopping=StoppingRule(max_updates=settings.updates),
        defences=Defences(admission_bits=0, update_bits=0, validator=False),
    )
    step = settings.client.step_config(epsilon, batch=batch)

    def make(model_id: str) -> list[LearningClient]:
        return [
            LearningClient(
                data.X_train,
                data.y_train,
                model_id=model_id,
                k=1,
                step=step,
                rng=np.random.default_rng([seed, 0]),
            )
        ]

    result = simulate(
        curate_request(task, data.X_test, data.y_test),
        make,
        seed=seed,
        settings=settings.costs.simulation(trace_every=max(settings.updates // settings.trace_points, 1)),
    )
    return result, curve_from_trace(result.trace, data.X_train, data.y_train, x="version")


def execute(settings: Fig5Settings, out_dir: Path, log: Log) -> Execution:
    """Run every (ε, b, seed); write curves.csv and fig5.png; return the records."""
    data = settings.data.load()
    w_central = fit_logistic_regression(data.X_train, data.y_train, l2=settings.client.lam)
    central = zero_one_error(w_central, data.X_train, data.y_train)
    majority = float(min(np.mean(data.y_train > 0), np.mean(data.y_train < 0)))
    records, curves, rows = [], {}, []
    for epsilon in settings.epsilons:
        for batch in settings.batches:
            for seed in settings.seeds:
                result, curve = _run_point(settings, data, epsilon, batch, seed)
                final = np.array(result.final.weights)
                tail = tail_mean(curve)
                outcomes = {
                    "final_train_error": zero_one_error(final, data.X_train, data.y_train),
                    "final_test_error": zero_one_error(final, data.X_test, data.y_test),
                    "tail_train_error": tail,
                    "min_train_error": float(curve.y.min()),
                    "converged": bool(tail <= central + CONVERGED_WITHIN),
                    "updates": result.final.progress.updates_accepted,
                    "centralised_train_error": central,
                    "majority_train_error": majority,
                }
                records.append(
                    make_record(
                        "fig5",
                        seed,
                        {"epsilon": epsilon, "batch": batch, "clients": 1, "updates": settings.updates},
                        outcomes,
                    )
                )
                curves.setdefault((epsilon, batch), []).append(curve)
                rows.extend((epsilon, batch, seed, int(x), y) for x, y in zip(curve.x, curve.y, strict=True))
                log(f"  eps={epsilon_text(epsilon)} b={batch} seed={seed}: tail {100 * tail:.1f}%")
    write_csv(out_dir / "curves.csv", ("epsilon", "batch", "seed", "updates", "train_error"), rows)
    grid = np.linspace(settings.updates / settings.trace_points, settings.updates, settings.trace_points)
    panels = []
    for batch in settings.batches:
        lines = []
        for epsilon in settings.epsilons:
            b = band(curves[(epsilon, batch)], grid)
            lines.append(plots.Line(f"ε = {epsilon_text(epsilon)}", grid, b.median, b.low, b.high))
        references = (
            plots.RefLine(f"centralised {100 * central:.1f}%", central),
            plots.RefLine(f"majority class {100 * majority:.1f}%", majority, ":"),
        )
        panels.append(plots.Panel(f"b = {batch}", lines, references=references))
    plots.draw(
        out_dir / "fig5.png",
        panels,
        xlabel="updates (one client, whole training shard)",
        ylabel="training error (%)",
        title="Figure 5: DP-SGD, ε × batch size (median, min–max over seeds)",
        ylim=(0.15, 0.65),
    )
    return Execution(records, figures=["fig5.png"], csv=["curves.csv"])


def tables(records) -> list[str]:
    """One row per (ε, b): tail and final training error, converged runs."""
    records = normalised(records)
    tail = summarise(records, ("epsilon", "batch"), "tail_train_error")
    final = summarise(records, ("epsilon", "batch"), "final_train_error")
    rows = []
    for key, spread in tail.items():
        rows.append(
            (
                epsilon_text(key[0]),
                key[1],
                spread.percent(),
                final[key].percent(),
                f"{_converged_count(records, key)}/{spread.n}",
            )
        )
    reference = records[0]["outcomes"] if records else {}
    note = (
        f"Centralised logistic regression: {100 * reference.get('centralised_train_error', math.nan):.1f}%; "
        f"majority class: {100 * reference.get('majority_train_error', math.nan):.1f}%. Converged: tail "
        f"within {100 * CONVERGED_WITHIN:.0f} point of the centralised error.\n"
    )
    return [table(("ε", "b", "tail training error", "final training error", "converged"), rows), note]


def _converged_count(records, key) -> int:
    """Number of converged runs at (ε, b) = ``key``."""
    return sum(
        bool(r["outcomes"].get("converged"))
        for r in records
        if (r["settings"]["epsilon"], r["settings"]["batch"]) == key
    )


def compare(records) -> list[PaperRow]:
    """The paper's (and its prototype's) DP convergence claims beside ours."""
    records = normalised(records)
    tail = summarise(records, ("epsilon", "batch"), "tail_train_error")
    rows = []
    if not records:
        return rows
    central = records[0]["outcomes"]["centralised_train_error"]

    def at(epsilon, batch):
        return tail.get((epsilon, batch))

    for epsilon, expect_converge in ((1.0, False), (5.0, True)):
        spread = at(epsilon, 10)
        if spread is None or spread.n == 0:
            continue
        converged = spread.median <= central + CONVERGED_WITHIN
        paper = "converges" if expect_converge else "does not converge"
        verdict = Verdict.AGREES if converged == expect_converge else Verdict.CONTRADICTS
        rows.append(
            PaperRow(
                f"ε = {epsilon:g}, b = 10 (prototype's published result)",
                paper,
                f"tail error {spread.percent()} ({'converged' if converged else 'not converged'})",
                verdict,
            )
        )
    epsilons = sorted({k[0] for k in tail})
    batches = sorted({k[1] for k in tail})
    tolerance = 0.005
    by_batch = all(
        tail[(e, b2)].median <= tail[(e, b1)].median + tolerance
        for e in epsilons
        for b1, b2 in zip(batches, batches[1:], strict=False)
        if (e, b1) in tail and (e, b2) in tail
    )
    by_epsilon = all(
        tail[(e2, b)].median <= tail[(e1, b)].median + tolerance
        for b in batches
        for e1, e2 in zip(epsilons, epsilons[1:], strict=False)
        if (e1, b) in tail and (e2, b) in tail
    )
    rows.append(
        PaperRow(
            "higher b converges faster and more reliably",
            "yes (Figure 5)",
            "tail error falls with b at every ε" if by_batch else "not monotone in b at every ε",
            Verdict.AGREES if by_batch else Verdict.DIFFERS,
        )
    )
    rows.append(
        PaperRow(
            "higher ε (less privacy) converges faster",
            "yes (Figure 5)",
            "tail error falls with ε at every b" if by_epsilon else "not monotone in ε at every b",
            Verdict.AGREES if by_epsilon else Verdict.DIFFERS,
        )
    )
    low = at(min(epsilons), min(batches))
    if low is not None and low.n:
        rows.append(
            PaperRow(
                f"low ε and low b (ε = {epsilon_text(min(epsilons))}, b = {min(batches)})",
                "model does not converge",
                f"tail error {low.percent()}",
                Verdict.AGREES if low.median > central + CONVERGED_WITHIN else Verdict.CONTRADICTS,
            )
        )
    return rows


FIG5 = Experiment(
    name="fig5",
    title="training error vs updates under DP-SGD, ε × batch size",
    paper_ref="Figure 5, section 7.2",
    method=(
        "In process on the simulator (`engine.simulation.simulate`): one honest client with the whole "
        "21,000-row training shard, the real broker (admission and update puzzles at 0 bits, no validator: "
        "only DP is studied) and real DP-SGD noise. x = accepted updates; the training error is the 0-1 "
        "error on the whole training shard (paper 7.1). Deterministic from the seed."
    ),
    settings_type=Fig5Settings,
    execute=execute,
    tables=tables,
    compare=compare,
    differences=(
        "Leak-free data: the prototype had the label among its features, so its curves fall below 1 %; "
        "ours level off near the centralised 18.8 %. Compare shapes, not levels.",
        "x-axis is updates, not wall-clock seconds (one client: time is a multiple of updates).",
        "DP noise is exact isotropic Laplace with per-example clipping (the prototype reused a pool of "
        "MCMC samples and clipped the batch mean, which does not give the stated ε).",
        "Learning rate 0.05/sqrt(1 + t/1000) (configurable) instead of the prototype's constant 0.01.",
    ),
)
