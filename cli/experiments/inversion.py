"""Figures 8 and 9 (paper 7.4): the inversion attack against ε, bystanders and random latency.

In process, on the simulator, with the real broker and clients. The data are the
paper's: the 21,000-row training shard is split into ``partitions`` disjoint shards; the
victim holds shard 0 with every label flipped (so its model is far from the global one),
the attacker holds shard 1, bystander j holds shard 2 + j. The *true victim model* is
the regularised logistic regression fitted (Newton) on the victim's shard alone; the
reconstruction error is the share of test rows on which the attacker's shadow model and
the true victim model disagree (:func:`~tormentor.engine.attacks.reconstruction_error`).

Figure 8 (the ideal setting of Figure 4): victim and attacker only (k = 2), no latency,
no validator, and ``costs.jitter = 0``: both clients' steps take exactly ``compute_s``,
so the broker applies victim and attacker updates in strict alternation (the test suite
checks that every attacker estimate is exactly one victim delta). The attacker either
sends real gradients or zeros.

Figure 9: one victim, one attacker and 0..N bystanders, everyone choosing k = bystanders
+ 2 (so the broker holds exactly k clients), asynchronous, with the broker's random
reply latency U(0, max_latency_s) (the paper's 0.5 s) and jittered compute times.

ε is the victim's per-step privacy (bystanders use the same ε unless
``bystander_epsilon`` is set). The attacker trains without noise (``attacker_epsilon``
= ∞): it subtracts its own delta exactly, so noise on its own update would not hide
anything from it and would only perturb the victim's path; no DP is what the paper's
baseline assumes. Each run lasts ``iterations`` updates per client (k × iterations
accepted updates in all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tormentor.engine.attacks import InversionAttacker, reconstruction_error
from tormentor.engine.centralised import fit_logistic_regression, zero_one_error
from tormentor.engine.client import LearningClient
from tormentor.engine.curator import curate_request
from tormentor.engine.data import client_shards, flip_labels
from tormentor.engine.protocol import Defences, StoppingRule, TaskSpec
from tormentor.engine.simulation import simulate

from . import plots
from .markdown import epsilon_text, table
from .results import Spread, make_record, normalised, summarise
from .runner import Execution, Experiment, Log, PaperRow, Verdict
from .settings import CostSettings, DataSettings, StepSettings

__all__ = ["FIG8", "FIG9", "InversionSettings", "InversionShards", "inversion_shards", "run_inversion"]

SENDS = ("gradients", "zeros")
#: Published numbers (prototype-findings "Its published results"; paper 7.4).
PAPER_FIG8 = {"gradients": (0.37, 0.06), "zeros": (0.33, 0.01)}  # at ε = 0.5 and ε = 5
PAPER_GLOBAL_VS_VICTIM = 0.954
PAPER_BYSTANDER = (0.20, 0.40)  # k = 2 -> k = 3


@dataclass(frozen=True)
class InversionSettings:
    """Settings of Figures 8 and 9.

    Attributes
    ----------
    seeds : tuple of int
        One run per seed and point (partition, client generators, broker draws).
    epsilons : tuple of float
        The victim's ε per step ("inf" = no DP).
    attacker_sends : tuple of str
        ``gradients`` and/or ``zeros``.
    bystanders : tuple of int
        Numbers of bystanders (k = bystanders + 2).
    iterations : int
        Updates per client (the paper: 4,000).
    partitions : int
        Disjoint shards of the training shard (victim, attacker, bystanders).
    max_latency_s : float
        The broker's random reply latency bound (0 = off).
    attacker_epsilon : float
        The attacker's own ε ("inf": no noise).
    bystander_epsilon : float or None
        Bystanders' ε (None: the victim's).
    """

    seeds: tuple[int, ...]
    epsilons: tuple[float, ...]
    attacker_sends: tuple[str, ...]
    bystanders: tuple[int, ...]
    iterations: int
    partitions: int = 10
    max_latency_s: float = 0.0
    attacker_epsilon: float = math.inf
    bystander_epsilon: float | None = None
    data: DataSettings = field(default_factory=DataSettings)
    client: StepSettings = field(default_factory=StepSettings)
    costs: CostSettings = field(default_factory=CostSettings)

    def __post_init__(self) -> None:
        if any(s not in SENDS for s in self.attacker_sends):
            raise ValueError(f"attacker_sends must be among {SENDS}")
        if any(b < 0 for b in self.bystanders) or max(self.bystanders) + 2 > self.partitions:
            raise ValueError("bystanders must be >= 0 and at most partitions - 2")
        if self.iterations < 1:
            raise ValueError("iterations must be >= 1")
        if any(not e > 0 for e in self.epsilons) or not self.attacker_epsilon > 0:
            raise ValueError("epsilons must be > 0 (inf = no DP)")
        if not 0 <= self.max_latency_s <= 60:
            raise ValueError("max_latency_s must be in [0, 60]")


@dataclass(frozen=True)
class InversionShards:
    """One seed's data: the victim's flipped shard, the attacker's, the bystanders', the true victim model."""

    victim: tuple[np.ndarray, np.ndarray]
    attacker: tuple[np.ndarray, np.ndarray]
    bystanders: list[tuple[np.ndarray, np.ndarray]]
    victim_model: np.ndarray


def inversion_shards(settings: InversionSettings, data, seed: int) -> InversionShards:
    """Split the training shard for ``seed``; flip the victim's labels; fit the true victim model."""
    parts = client_shards(data.X_train, data.y_train, settings.partitions, mode="disjoint", seed=seed)
    victim = flip_labels(*parts[0])
    model = fit_logistic_regression(*victim, l2=settings.client.lam)
    return InversionShards(victim, parts[1], parts[2:], model)


def run_inversion(
    settings: InversionSettings,
    data,
    shards: InversionShards,
    *,
    epsilon: float,
    sends: str,
    bystanders: int,
    seed: int,
    victim_type: type = LearningClient,
    attacker_type: type = InversionAttacker,
) -> tuple[dict, list[LearningClient]]:
    """Run one attack; return its outcomes and the clients (victim, attacker, bystanders...).

    The attacker's ``shadow`` is its estimate of the victim's model. ``victim_type`` and
    ``attacker_type`` let a test instrument the two (subclasses of the defaults).
    """
    k = bystanders + 2
    task = TaskSpec(
        n_features=data.n_weights,
        max_clients=k,
        stopping=StoppingRule(max_updates=settings.iterations * k),
        defences=Defences(
            admission_bits=0, update_bits=0, validator=False, max_latency_s=settings.max_latency_s
        ),
    )
    victim_step = settings.client.step_config(epsilon)
    attacker_step = settings.client.step_config(settings.attacker_epsilon)
    bystander_eps = epsilon if settings.bystander_epsilon is None else settings.bystander_epsilon
    bystander_step = settings.client.step_config(bystander_eps)
    attacker: list[InversionAttacker] = []

    def make(model_id: str) -> list[LearningClient]:
        victim = victim_type(
            *shards.victim, model_id=model_id, k=k, step=victim_step, rng=np.random.default_rng([seed, 0])
        )
        spy = attacker_type(
            *shards.attacker,
            sends=sends,
            model_id=model_id,
            k=k,
            step=attacker_step,
            rng=np.random.default_rng([seed, 1]),
        )
        attacker.append(spy)
        others = [
            LearningClient(
                *shards.bystanders[j],
                model_id=model_id,
                k=k,
                step=bystander_step,
                rng=np.random.default_rng([seed, 2 + j]),
            )
            for j in range(bystanders)
        ]
        return [victim, spy, *others]

    result = simulate(
        curate_request(task, data.X_test, data.y_test),
        make,
        seed=seed,
        settings=settings.costs.simulation(trace_every=10**9),
    )
    spy = attacker[0]
    final = np.array(result.final.weights)
    outcomes = {
        "reconstruction_error": reconstruction_error(spy.shadow, shards.victim_model, data.X_test),
        "global_vs_victim_error": reconstruction_error(final, shards.victim_model, data.X_test),
        "final_train_error": zero_one_error(final, data.X_train, data.y_train),
        "attacker_estimates": spy.estimates,
        "victim_updates": result.clients[0].stats.updates_sent,
        "attacker_updates": spy.stats.updates_sent,
        "updates_accepted": result.final.progress.updates_accepted,
        "virtual_time_s": result.time_s,
    }
    return outcomes, list(result.clients)


def _execute(name: str, settings: InversionSettings, out_dir: Path, log: Log) -> Execution:
    data = settings.data.load()
    w_central = fit_logistic_regression(data.X_train, data.y_train, l2=settings.client.lam)
    records = []
    for seed in settings.seeds:
        shards = inversion_shards(settings, data, seed)
        central_vs_victim = reconstruction_error(w_central, shards.victim_model, data.X_test)
        for sends in settings.attacker_sends:
            for bystanders in settings.bystanders:
                for epsilon in settings.epsilons:
                    outcomes, _ = run_inversion(
                        settings, data, shards, epsilon=epsilon, sends=sends, bystanders=bystanders, seed=seed
                    )
                    outcomes["centralised_vs_victim_error"] = central_vs_victim
                    point = {
                        "epsilon": epsilon,
                        "attacker_sends": sends,
                        "bystanders": bystanders,
                        "k": bystanders + 2,
                        "max_latency_s": settings.max_latency_s,
                        "iterations": settings.iterations,
                    }
                    records.append(make_record(name, seed, point, outcomes))
                    log(
                        f"  seed={seed} {sends} bystanders={bystanders} eps={epsilon_text(epsilon)}: "
                        f"reconstruction error {100 * outcomes['reconstruction_error']:.1f}%"
                    )
    return Execution(records)


def _line(label: str, x: np.ndarray, spreads: list[Spread], points: bool = True) -> plots.Line:
    return plots.Line(
        label,
        x,
        np.array([s.median for s in spreads]),
        np.array([s.low for s in spreads]),
        np.array([s.high for s in spreads]),
        points=points,
    )


def execute_fig8(settings: InversionSettings, out_dir: Path, log: Log) -> Execution:
    """Run every (attacker variant, ε, seed) with k = 2; draw fig8.png."""
    execution = _execute("fig8", settings, out_dir, log)
    summary = summarise(execution.records, ("attacker_sends", "epsilon"), "reconstruction_error")
    epsilons = sorted(settings.epsilons)
    positions, labels = plots.epsilon_positions(epsilons)
    lines = [
        _line(f"attacker sends {sends}", positions, [summary[(sends, e)] for e in epsilons])
        for sends in settings.attacker_sends
    ]
    markers = [
        plots.Markers(f"paper, {sends}", [0.5, 5.0], list(PAPER_FIG8[sends]))
        for sends in settings.attacker_sends
    ]
    plots.draw(
        out_dir / "fig8.png",
        [plots.Panel("victim + attacker, strict alternation (k = 2)", lines, markers)],
        xlabel="victim's ε per step",
        ylabel="reconstruction error (%)",
        xticks=(positions, labels),
        title="Figure 8: inversion in the ideal setting (median, min–max over seeds)",
        ylim=(0.0, 0.6),
    )
    return Execution(execution.records, figures=["fig8.png"])


def execute_fig9(settings: InversionSettings, out_dir: Path, log: Log) -> Execution:
    """Run every (attacker variant, bystanders, ε, seed) with random latency; draw fig9.png."""
    execution = _execute("fig9", settings, out_dir, log)
    summary = summarise(
        execution.records, ("attacker_sends", "epsilon", "bystanders"), "reconstruction_error"
    )
    x = np.array(sorted(settings.bystanders), dtype=np.float64)
    panels = []
    for sends in settings.attacker_sends:
        lines = [
            _line(f"ε = {epsilon_text(e)}", x, [summary[(sends, e, int(b))] for b in x])
            for e in settings.epsilons
        ]
        markers = [plots.Markers("paper (≈, ε not stated)", [0, 1], list(PAPER_BYSTANDER))]
        panels.append(
            plots.Panel(f"attacker sends {sends}; latency U(0, {settings.max_latency_s:g} s)", lines, markers)
        )
    plots.draw(
        out_dir / "fig9.png",
        panels,
        xlabel="bystanders (k − 2)",
        ylabel="reconstruction error (%)",
        title="Figure 9: inversion vs bystanders and ε (median, min–max over seeds)",
        ylim=(0.0, 1.0),
    )
    return Execution(execution.records, figures=["fig9.png"])


def tables_fig8(records) -> list[str]:
    """Reconstruction error per attacker variant and ε."""
    records = normalised(records)
    rec = summarise(records, ("attacker_sends", "epsilon"), "reconstruction_error")
    glob = summarise(records, ("attacker_sends", "epsilon"), "global_vs_victim_error")
    rows = [
        (sends, epsilon_text(eps), s.percent(), f"{100 * s.std:.1f}", glob[(sends, eps)].percent())
        for (sends, eps), s in sorted(rec.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]
    central = summarise(records, (), "centralised_vs_victim_error").get((), None)
    note = ""
    if central is not None and central.n:
        note = (
            "A centralised model trained on the whole training shard disagrees with the true victim model "
            f"on {central.percent()} of test rows (paper: 95.4%).\n"
        )
    return [
        table(
            ("attacker sends", "ε", "reconstruction error", "std (points)", "final global model vs victim"),
            rows,
        ),
        note,
    ]


def tables_fig9(records) -> list[str]:
    """Reconstruction error per attacker variant, ε and number of bystanders."""
    records = normalised(records)
    rec = summarise(records, ("attacker_sends", "epsilon", "bystanders"), "reconstruction_error")
    bystanders = sorted({k[2] for k in rec})
    out = []
    for sends in sorted({k[0] for k in rec}):
        rows = []
        for eps in sorted({k[1] for k in rec if k[0] == sends}):
            rows.append(
                (
                    epsilon_text(eps),
                    *[rec[(sends, eps, b)].percent() if (sends, eps, b) in rec else "–" for b in bystanders],
                )
            )
        out.append(f"Attacker sends {sends}; columns: bystanders (k − 2).\n\n")
        out.append(table(("ε", *[str(b) for b in bystanders]), rows))
    return out


def _trend_row(
    claim: str, paper: tuple[float, float], ours: tuple[Spread, Spread], labels: tuple[str, str]
) -> PaperRow:
    first, second = ours
    text = f"{labels[0]}: {first.percent()} → {labels[1]}: {second.percent()}"
    same_direction = (second.median - first.median) * (paper[1] - paper[0]) > 0
    close = abs(first.median - paper[0]) <= 0.07 and abs(second.median - paper[1]) <= 0.07
    verdict = (
        Verdict.AGREES
        if same_direction and close
        else (Verdict.DIFFERS if same_direction else Verdict.CONTRADICTS)
    )
    return PaperRow(claim, f"{100 * paper[0]:.0f}% → {100 * paper[1]:.0f}%", text, verdict)


def compare_fig8(records) -> list[PaperRow]:
    """Figure 8's published numbers beside ours."""
    records = normalised(records)
    rec = summarise(records, ("attacker_sends", "epsilon"), "reconstruction_error")
    rows = []
    for sends, paper in PAPER_FIG8.items():
        if (sends, 0.5) in rec and (sends, 5.0) in rec:
            rows.append(
                _trend_row(
                    f"attacker sends {sends}: ε 0.5 → 5",
                    paper,
                    (rec[(sends, 0.5)], rec[(sends, 5.0)]),
                    ("ε 0.5", "ε 5"),
                )
            )
    if ("gradients", 1.0) in rec:
        low = rec[("gradients", 1.0)].low
        rows.append(
            PaperRow(
                "ε = 1 (attacker sends gradients)",
                "consistently above 10%",
                f"lowest of the seeds {100 * low:.1f}%",
                Verdict.AGREES if low > 0.10 else Verdict.CONTRADICTS,
            )
        )
    high = [e for (s, e) in rec if s == "zeros" and e > 2 and ("gradients", e) in rec]
    if high:
        wins = sum(rec[("zeros", e)].median < rec[("gradients", e)].median for e in high)
        rows.append(
            PaperRow(
                "for ε > 2, sending zeros beats sending gradients",
                "consistently",
                f"at {wins} of {len(high)} ε values > 2",
                Verdict.AGREES if wins == len(high) else Verdict.DIFFERS,
            )
        )
    central = summarise(records, (), "centralised_vs_victim_error").get(())
    if central is not None and central.n:
        rows.append(
            PaperRow(
                "a globally trained model vs the true victim model",
                f"{100 * PAPER_GLOBAL_VS_VICTIM:.1f}%",
                central.percent(),
                Verdict.AGREES if abs(central.median - PAPER_GLOBAL_VS_VICTIM) < 0.05 else Verdict.DIFFERS,
            )
        )
    return rows


def compare_fig9(records) -> list[PaperRow]:
    """Figure 9's claims beside ours (the attacker sending gradients, the paper's realistic case)."""
    records = normalised(records)
    rec = summarise(records, ("attacker_sends", "epsilon", "bystanders"), "reconstruction_error")
    variants = sorted({k[0] for k in rec})
    if not variants:
        return []
    sends = "gradients" if "gradients" in variants else variants[0]
    epsilons = sorted({k[1] for k in rec if k[0] == sends})
    bystanders = sorted({k[2] for k in rec if k[0] == sends})
    rows: list[PaperRow] = []
    if not epsilons or len(bystanders) < 2:
        return rows
    if 0 in bystanders and 1 in bystanders:
        for epsilon in epsilons:
            rows.append(
                _trend_row(
                    f"one bystander (k = 2 → 3), attacker sends {sends}, ε = {epsilon_text(epsilon)}",
                    PAPER_BYSTANDER,
                    (rec[(sends, epsilon, 0)], rec[(sends, epsilon, 1)]),
                    ("k = 2", "k = 3"),
                )
            )
    most = bystanders[-1]
    rising = [e for e in epsilons if rec[(sends, e, most)].median > rec[(sends, e, bystanders[0])].median]
    rows.append(
        PaperRow(
            f"as k grows, inversion gets harder ({bystanders[0]} → {most} bystanders)",
            "reconstruction error rises",
            f"rises at {len(rising)} of {len(epsilons)} ε values",
            Verdict.AGREES if len(rising) == len(epsilons) else Verdict.DIFFERS,
        )
    )
    if 0 in bystanders and len(epsilons) > 1:
        low, high = rec[(sends, epsilons[0], 0)], rec[(sends, epsilons[-1], 0)]
        rows.append(
            PaperRow(
                "no bystanders: lower ε raises the reconstruction error",
                "yes",
                f"ε {epsilon_text(epsilons[0])}: {low.percent()}; ε {epsilon_text(epsilons[-1])}: "
                f"{high.percent()}",
                _margin_verdict(low.median - high.median),
            )
        )
    return rows


def _margin_verdict(rise: float, margin: float = 0.02) -> str:
    """Agrees when ``rise`` exceeds ``margin`` (2 points); a smaller rise only differs (within noise)."""
    if rise > margin:
        return Verdict.AGREES
    return Verdict.DIFFERS if rise > 0 else Verdict.CONTRADICTS


_DIFFERENCES = (
    "Leak-free data: the prototype's label was one of its features, which makes any two models that weigh "
    "it positively agree on almost every test row; its reconstruction errors are therefore optimistic for "
    "the attacker. Ours are not comparable in absolute value; compare trends.",
    "The shadow model starts at zero and accumulates the inferred victim deltas; the true victim model is "
    "the exact (Newton) L2-regularised fit on the victim's shard, λ as the clients use.",
    "In process on the simulator's virtual clock: the ordering of updates comes from the modelled compute "
    "time, jitter and the broker's random latency, not from a network.",
)

FIG8 = Experiment(
    name="fig8",
    title="inversion: reconstruction error vs ε, attacker sending gradients or zeros",
    paper_ref="Figure 8, section 7.4",
    method=(
        "In process on the simulator with jitter 0: victim and attacker only (k = 2), no latency, no "
        "validator, strict alternation of their updates (the ideal setting of Figure 4). Victim shard = "
        "one of `partitions` disjoint shards with all labels flipped; true victim model = Newton fit on "
        "it; reconstruction error = share of test rows where the attacker's shadow model and the true "
        "victim model disagree. The attacker trains without DP (it subtracts its own update exactly)."
    ),
    settings_type=InversionSettings,
    execute=execute_fig8,
    tables=tables_fig8,
    compare=compare_fig8,
    differences=_DIFFERENCES,
)

FIG9 = Experiment(
    name="fig9",
    title="inversion: reconstruction error vs bystanders (k − 2) and ε, random latency",
    paper_ref="Figure 9, section 7.4",
    method=(
        "In process on the simulator: one victim, one attacker and 0..N honest bystanders, all choosing k "
        "= bystanders + 2, asynchronous, with the broker's random reply latency U(0, max_latency_s) and "
        "jittered compute times. Same shards, victim model and error as Figure 8. Bystanders use the "
        "victim's ε."
    ),
    settings_type=InversionSettings,
    execute=execute_fig9,
    tables=tables_fig9,
    compare=compare_fig9,
    differences=_DIFFERENCES,
)
