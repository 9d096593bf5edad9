"""Figures 10 and 11 (paper 7.5): label-flipping poisoners against RONI and adaptive proof of work.

In process, on the simulator: 8 clients, asynchronous aggregation, no DP, no Tor; each
client holds one of 8 disjoint shards of the training shard; the last
round(share × clients) of them are :class:`~tormentor.engine.attacks.LabelFlippingPoisoner`.
The real broker runs the real RONI validator (rounds with probability
``validation_rate`` per update, true snapshots, running totals, threshold) and adaptive
proof of work: each penalty adds ``penalty_bits`` to the client's per-update puzzle, up
to ``max_bits``.

Why the simulator: the defence works because a penalised poisoner must solve a harder
puzzle *on its own machine* while honest clients keep their pace. On the paper's Azure
VMs every client had its own core; on this 2-core machine real processes would share
the CPU, so a poisoner's puzzle would slow the honest clients too. The simulator gives
each client its own virtual hash rate: a puzzle of ``bits`` costs ``2**bits / hash_rate``
virtual seconds to that client alone (and is really solved, so every proof is checked).
``max_bits`` is capped (16 by default; the run config allows 24) so that the real
solving stays cheap; what matters for the defence is the slowdown of a penalised
poisoner relative to an honest step, reported in each report as ``slowdown_at_max_bits``.

Figure 10: poisoner shares 0/25/50/75 % with RONI threshold 2 % and validation rate 0.1,
and the same without the validator. Figure 11: 50 % poisoners, thresholds 0.5/1/2/5 %.
The x-axis is virtual seconds (the paper plots the first 250 s). Outcomes include the
final and tail training error, the penalties of honest clients and of poisoners, and the
poisoners' final puzzle difficulty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tormentor.engine.attacks import LabelFlippingPoisoner
from tormentor.engine.centralised import fit_logistic_regression, zero_one_error
from tormentor.engine.client import LearningClient
from tormentor.engine.curator import curate_request
from tormentor.engine.data import client_shards
from tormentor.engine.protocol import Defences, StoppingRule, TaskSpec
from tormentor.engine.simulation import simulate

from . import plots
from .curves import band, curve_from_trace, tail_mean, time_average
from .markdown import table
from .results import make_record, normalised, summarise, write_csv
from .runner import Execution, Experiment, Log, PaperRow, Verdict
from .settings import CostSettings, DataSettings, StepSettings

__all__ = [
    "CONVERGED_WITHIN",
    "DIFFERENCES",
    "FIG10",
    "FIG11",
    "PoisoningSettings",
    "draw_error_vs_time",
    "run_poisoning",
    "threshold_text",
]

#: A run "converged" when its tail error is within this of the centralised model's.
CONVERGED_WITHIN = 0.02


@dataclass(frozen=True)
class PoisoningSettings:
    """Settings of Figures 10 and 11.

    Attributes
    ----------
    seeds : tuple of int
        One run per seed and point (shards, client generators, broker draws, timing).
    clients : int
        Clients in all, honest and poisoners (the paper: 8).
    poisoner_shares : tuple of float
        Fractions of poisoners (0..1); round(share × clients) poisoners.
    validator : tuple of bool
        With and/or without the RONI validator.
    roni_thresholds : tuple of float
        RONI thresholds (0.02 = 2 points of validation error); one run each with the validator.
    validation_rate : float
        Probability per update that a validation round starts.
    horizon_s : float
        Virtual seconds per run (the broker's deadline).
    epsilon : float
        Every client's ε ("inf" = no DP, the paper's setting).
    admission_bits, update_bits, penalty_bits, max_bits : int
        Puzzle difficulties (max_bits caps the adaptive difficulty).
    evict_after : int or None
        Evict at this many penalties (None = never, as in the paper).
    client_timeout_s : float
        The broker drops a client silent this long (virtual seconds).
    trace_every : int
        Trace the model every this many versions.
    grid_points : int
        Points of the common time grid of the curves.
    """

    seeds: tuple[int, ...]
    clients: int
    poisoner_shares: tuple[float, ...]
    validator: tuple[bool, ...]
    roni_thresholds: tuple[float, ...]
    validation_rate: float
    horizon_s: float
    epsilon: float = math.inf
    admission_bits: int = 0
    update_bits: int = 4
    penalty_bits: int = 4
    max_bits: int = 16
    evict_after: int | None = None
    client_timeout_s: float = 30.0
    trace_every: int = 50
    grid_points: int = 200
    data: DataSettings = field(default_factory=DataSettings)
    client: StepSettings = field(default_factory=StepSettings)
    costs: CostSettings = field(default_factory=CostSettings)

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ValueError("clients must be >= 1")
        if any(not 0 <= s <= 1 for s in self.poisoner_shares):
            raise ValueError("poisoner_shares must be in [0, 1]")
        if any(not 0 <= t <= 1 for t in self.roni_thresholds):
            raise ValueError("roni_thresholds must be in [0, 1]")
        if not self.horizon_s > 0:
            raise ValueError("horizon_s must be > 0")
        if 2.0**self.max_bits / self.costs.hash_rate > self.client_timeout_s / 2:
            raise ValueError(
                "a puzzle at max_bits must take well under client_timeout_s at costs.hash_rate "
                "(2**max_bits / hash_rate <= client_timeout_s / 2)"
            )
        self.defences(True, 0.02)  # the engine checks the rest

    def defences(self, validator: bool, threshold: float) -> Defences:
        """Return the broker's defences for one point."""
        return Defences(
            admission_bits=self.admission_bits,
            update_bits=self.update_bits,
            adaptive_pow=True,
            penalty_bits=self.penalty_bits,
            max_bits=self.max_bits,
            validator=validator,
            validation_rate=self.validation_rate,
            roni_threshold=threshold,
            evict_after=self.evict_after,
        )

    @property
    def honest_step_s(self) -> float:
        """Virtual seconds of an honest client's cycle (step, puzzle at update_bits, round trip)."""
        return self.costs.compute_s + 2.0**self.update_bits / self.costs.hash_rate + 2 * self.costs.network_s

    @property
    def slowdown_at_max_bits(self) -> float:
        """How many honest cycles one update of a poisoner at max_bits takes."""
        capped = self.costs.compute_s + 2.0**self.max_bits / self.costs.hash_rate + 2 * self.costs.network_s
        return capped / self.honest_step_s


def _points(settings: PoisoningSettings) -> list[tuple[float, bool, float | None]]:
    points = []
    for share in settings.poisoner_shares:
        for validator in settings.validator:
            for threshold in settings.roni_thresholds if validator else (None,):
                points.append((share, validator, threshold))
    return points


def run_poisoning(
    settings: PoisoningSettings, data, *, share: float, validator: bool, threshold: float | None, seed: int
):
    """Run one point; return (outcomes, training-error curve vs virtual time)."""
    poisoners = int(round(share * settings.clients))
    honest = settings.clients - poisoners
    task = TaskSpec(
        n_features=data.n_weights,
        max_clients=settings.clients,
        client_timeout_s=settings.client_timeout_s,
        stopping=StoppingRule(max_updates=None, deadline_s=settings.horizon_s),
        defences=settings.defences(validator, threshold if threshold is not None else 0.0),
    )
    shards = client_shards(data.X_train, data.y_train, settings.clients, mode="disjoint", seed=seed)
    step = settings.client.step_config(settings.epsilon)

    def make(model_id: str) -> list[LearningClient]:
        return [
            (LearningClient if i < honest else LabelFlippingPoisoner)(
                x, y, model_id=model_id, k=1, step=step, rng=np.random.default_rng([seed, i])
            )
            for i, (x, y) in enumerate(shards)
        ]

    result = simulate(
        curate_request(task, data.X_test, data.y_test),
        make,
        seed=seed,
        settings=settings.costs.simulation(
            trace_every=settings.trace_every, max_time_s=settings.horizon_s + 1.0
        ),
    )
    curve = curve_from_trace(result.trace, data.X_train, data.y_train, x="time_s")
    broker = result.broker

    def known(method, client):
        try:
            return method(client.token)
        except KeyError:  # left or dropped: no longer known to the broker
            return None

    penalties = [known(broker.penalties_of, c) for c in result.clients]
    bits = [known(broker.bits_of, c) for c in result.clients]
    sent = [c.stats.updates_sent for c in result.clients]
    final = np.array(result.final.weights)
    progress = result.final.progress
    outcomes = {
        "final_train_error": zero_one_error(final, data.X_train, data.y_train),
        "final_test_error": zero_one_error(final, data.X_test, data.y_test),
        "tail_train_error": tail_mean(curve),
        "mean_train_error": time_average(curve, settings.horizon_s),
        "penalties": progress.penalties,
        "honest_penalties": sum(p or 0 for p in penalties[:honest]),
        "honest_flagged": sum(1 for p in penalties[:honest] if p),
        "poisoner_penalties": sum(p or 0 for p in penalties[honest:]),
        "honest_final_bits_max": max((b for b in bits[:honest] if b is not None), default=None),
        "poisoner_final_bits_min": min((b for b in bits[honest:] if b is not None), default=None),
        "poisoner_final_bits_max": max((b for b in bits[honest:] if b is not None), default=None),
        "poisoner_update_share": sum(sent[honest:]) / max(sum(sent), 1),
        "updates_accepted": progress.updates_accepted,
        "updates_rejected": progress.updates_rejected,
        "evictions": progress.evictions,
        "virtual_time_s": result.time_s,
    }
    return outcomes, curve


def _execute(name: str, settings: PoisoningSettings, log: Log):
    data = settings.data.load()
    w_central = fit_logistic_regression(data.X_train, data.y_train, l2=settings.client.lam)
    central = zero_one_error(w_central, data.X_train, data.y_train)
    records, curves, rows = [], {}, []
    for share, validator, threshold in _points(settings):
        for seed in settings.seeds:
            outcomes, curve = run_poisoning(
                settings, data, share=share, validator=validator, threshold=threshold, seed=seed
            )
            outcomes["centralised_train_error"] = central
            point = {
                "poisoner_share": share,
                "poisoners": int(round(share * settings.clients)),
                "clients": settings.clients,
                "validator": validator,
                "roni_threshold": threshold,
                "validation_rate": settings.validation_rate if validator else None,
                "max_bits": settings.max_bits,
                "horizon_s": settings.horizon_s,
            }
            records.append(make_record(name, seed, point, outcomes))
            curves.setdefault((share, validator, threshold), []).append(curve)
            rows.extend(
                (share, validator, threshold, seed, t, e) for t, e in zip(curve.x, curve.y, strict=True)
            )
            log(
                f"  share={share:g} validator={validator} threshold={threshold} seed={seed}: final "
                f"{100 * outcomes['final_train_error']:.1f}%, penalties honest "
                f"{outcomes['honest_penalties']} poisoners {outcomes['poisoner_penalties']}"
            )
    return data, central, records, curves, rows


def _write(out_dir: Path, rows) -> str:
    write_csv(
        out_dir / "curves.csv",
        ("poisoner_share", "validator", "roni_threshold", "seed", "virtual_time_s", "train_error"),
        rows,
    )
    return "curves.csv"


def _notes(settings: PoisoningSettings) -> list[str]:
    costs = settings.costs
    return [
        f"Virtual costs: honest cycle {settings.honest_step_s * 1e3:.0f} ms (compute "
        f"{costs.compute_s * 1e3:g} ms, network {costs.network_s * 1e3:g} ms each way, puzzle "
        f"2^{settings.update_bits} hashes at {costs.hash_rate:g} hashes/s); a poisoner at max_bits = "
        f"{settings.max_bits} needs {settings.slowdown_at_max_bits:.1f}x an honest cycle per update "
        "(slowdown_at_max_bits).",
    ]


def draw_error_vs_time(
    path: Path, panels: list[tuple[str, list[plots.Line]]], central: float, title: str
) -> None:
    """Draw training error vs virtual time, one panel per ``(title, lines)``, with the centralised error."""
    centralised = plots.RefLine(f"centralised {100 * central:.1f}%", central)
    plots.draw(
        path,
        [plots.Panel(panel_title, lines, references=(centralised,)) for panel_title, lines in panels],
        xlabel="virtual time (s)",
        ylabel="training error (%)",
        title=title,
        ylim=(0.0, 1.0),
    )


def execute_fig10(settings: PoisoningSettings, out_dir: Path, log: Log) -> Execution:
    """Run every (share, validator, seed); draw fig10.png (validator on | off)."""
    _, central, records, curves, rows = _execute("fig10", settings, log)
    grid = np.linspace(0.0, settings.horizon_s, settings.grid_points)
    panels = []
    for validator in settings.validator:
        for threshold in settings.roni_thresholds if validator else (None,):
            lines = []
            for share in settings.poisoner_shares:
                b = band(curves[(share, validator, threshold)], grid)
                lines.append(plots.Line(f"{100 * share:.0f}% poisoners", grid, b.median, b.low, b.high))
            title = (
                f"validator on: RONI {100 * threshold:g}%, rate {settings.validation_rate:g}"
                if validator
                else "validator off"
            )
            panels.append((title, lines))
    draw_error_vs_time(
        out_dir / "fig10.png",
        panels,
        central,
        "Figure 10: poisoners vs RONI + adaptive PoW, 8 clients (median, min–max over seeds)",
    )
    return Execution(records, figures=["fig10.png"], csv=[_write(out_dir, rows)], notes=_notes(settings))


def execute_fig11(settings: PoisoningSettings, out_dir: Path, log: Log) -> Execution:
    """Run every (threshold, seed) at the configured share(s); draw fig11.png."""
    _, central, records, curves, rows = _execute("fig11", settings, log)
    grid = np.linspace(0.0, settings.horizon_s, settings.grid_points)
    panels = []
    for share in settings.poisoner_shares:
        lines = []
        for validator in settings.validator:
            for threshold in settings.roni_thresholds if validator else (None,):
                b = band(curves[(share, validator, threshold)], grid)
                label = f"RONI {100 * threshold:g}%" if validator else "validator off"
                lines.append(plots.Line(label, grid, b.median, b.low, b.high))
        panels.append((f"{100 * share:.0f}% poisoners", lines))
    draw_error_vs_time(
        out_dir / "fig11.png", panels, central, "Figure 11: RONI thresholds (median, min–max over seeds)"
    )
    return Execution(records, figures=["fig11.png"], csv=[_write(out_dir, rows)], notes=_notes(settings))


def threshold_text(value) -> str:
    """A RONI threshold as a percentage (``0.005`` -> ``0.5%``), or ``–`` for none."""
    return "–" if value is None else f"{100 * float(value):g}%"


def tables(records) -> list[str]:
    """Per point: final and tail error, penalties of honest clients and poisoners, poisoners' bits."""
    records = normalised(records)
    keys = ("poisoner_share", "validator", "roni_threshold")
    final = summarise(records, keys, "final_train_error")
    tail = summarise(records, keys, "tail_train_error")
    mean = summarise(records, keys, "mean_train_error")
    honest = summarise(records, keys, "honest_penalties")
    poisoner = summarise(records, keys, "poisoner_penalties")
    bits = summarise(records, keys, "poisoner_final_bits_min")
    share_updates = summarise(records, keys, "poisoner_update_share")
    rows = []
    for key, spread in final.items():
        rows.append(
            (
                f"{100 * key[0]:.0f}%",
                "on" if key[1] else "off",
                threshold_text(key[2]),
                spread.percent(),
                tail[key].percent(),
                mean[key].percent(),
                honest[key].plain(),
                poisoner[key].plain(),
                bits[key].plain(),
                share_updates[key].percent(0),
            )
        )
    headers = (
        "poisoners",
        "validator",
        "RONI",
        "final training error",
        "tail (last 10%)",
        "time-average",
        "honest penalties",
        "poisoner penalties",
        "poisoners' lowest final bits",
        "poisoners' share of updates",
    )
    reference = records[0]["outcomes"].get("centralised_train_error") if records else None
    note = f"Centralised logistic regression: {100 * reference:.1f}%.\n" if reference is not None else ""
    return [table(headers, rows), note]


def _final(records, share, validator, threshold=0.02):
    final = summarise(
        normalised(records), ("poisoner_share", "validator", "roni_threshold"), "final_train_error"
    )
    return final.get((share, validator, threshold if validator else None))


def compare_fig10(records) -> list[PaperRow]:
    """Figure 10's claims beside ours."""
    records = normalised(records)
    if not records:
        return []
    central = records[0]["outcomes"]["centralised_train_error"]
    thresholds = sorted({r["settings"]["roni_threshold"] for r in records if r["settings"]["validator"]})
    threshold = 0.02 if 0.02 in thresholds else (thresholds[0] if thresholds else None)
    rows = []
    converging = [s for s in (0.0, 0.25, 0.5) if _final(records, s, True, threshold) is not None]
    if converging:
        ok = [
            s for s in converging if _final(records, s, True, threshold).median <= central + CONVERGED_WITHIN
        ]
        ours = "; ".join(
            f"{100 * s:.0f}%: {_final(records, s, True, threshold).percent()}" for s in converging
        )
        rows.append(
            PaperRow(
                "with the validator, 0/25/50% poisoners converge",
                "all converge",
                ours,
                Verdict.AGREES if ok == converging else Verdict.CONTRADICTS,
            )
        )
    at75 = [
        r
        for r in records
        if r["settings"]["poisoner_share"] == 0.75
        and r["settings"]["validator"]
        and r["settings"]["roni_threshold"] == threshold
    ]
    if at75:
        # Above 50 % is worse than a coin: the model learned the flipped labels.
        diverged = sum(r["outcomes"]["final_train_error"] > 0.5 for r in at75)
        rows.append(
            PaperRow(
                "with the validator, 75% poisoners",
                "compromised: 2 of 3 runs diverge",
                f"{diverged} of {len(at75)} runs end above 50% error",
                Verdict.AGREES if diverged > 0 else Verdict.CONTRADICTS,
            )
        )
    with_v, without_v = _final(records, 0.5, True, threshold), _final(records, 0.5, False)
    if with_v is not None and without_v is not None:
        rows.append(
            PaperRow(
                "50% poisoners: the validator's effect (not plotted in the paper)",
                "defended: the model recovers",
                f"with {with_v.percent()}, without {without_v.percent()}",
                Verdict.AGREES if with_v.median + 0.02 < without_v.median else Verdict.CONTRADICTS,
            )
        )
    bits = summarise(records, ("poisoner_share", "validator", "roni_threshold"), "poisoner_final_bits_min")
    b50 = bits.get((0.5, True, threshold))
    if b50 is not None and b50.n:
        start = min(r["settings"]["max_bits"] for r in records)
        rows.append(
            PaperRow(
                "50% poisoners: PoW of all poisoners raised",
                "within 30 s",
                f"poisoners' lowest final difficulty {b50.plain()} bits (cap {start})",
                Verdict.AGREES if b50.median > 4 else Verdict.CONTRADICTS,
            )
        )
    return rows


def compare_fig11(records) -> list[PaperRow]:
    """Figure 11's claims beside ours."""
    records = normalised(records)
    keys = ("poisoner_share", "validator", "roni_threshold")
    mean = summarise(records, keys, "mean_train_error")
    honest = summarise(records, keys, "honest_penalties")
    poisoner = summarise(records, keys, "poisoner_penalties")
    on = sorted(k for k in mean if k[1])
    rows = []
    if len(on) >= 2:
        low, high = on[0], on[-1]
        rows.append(
            PaperRow(
                f"lower threshold removes poisoners sooner (RONI {threshold_text(low[2])} vs "
                f"{threshold_text(high[2])})",
                "yes: the model recovers sooner",
                f"time-average error {mean[low].percent()} vs {mean[high].percent()}; poisoner penalties "
                f"{poisoner[low].plain()} vs {poisoner[high].plain()}",
                Verdict.AGREES if mean[low].median < mean[high].median else Verdict.DIFFERS,
            )
        )
        rows.append(
            PaperRow(
                "too low a threshold penalises honest clients",
                "false positives at 0.5%",
                f"honest penalties {honest[low].plain()} at {threshold_text(low[2])} vs "
                f"{honest[high].plain()} at {threshold_text(high[2])}",
                Verdict.AGREES if honest[low].median > honest[high].median else Verdict.DIFFERS,
            )
        )
    return rows


DIFFERENCES = (
    "Leak-free data: the prototype's error curves fall towards 0 because the label was a feature; ours "
    "level off near the centralised 18.8 %, and a model poisoned towards the flipped labels ends near 80 %.",
    "Virtual time: the x-axis is the simulator's clock with modelled per-client costs (compute, network, "
    "hash rate), not seconds on Azure VMs; the poisoners' slowdown at the capped difficulty is stated in "
    "the observations.",
    "Per-update puzzles really advance and RONI scores against a true snapshot, on the curator's "
    "validation set supplied with curate (the prototype's puzzles did not advance, its snapshot aliased "
    "the live model and its broker loaded the test set itself).",
    "Penalties raise the difficulty up to max_bits (capped to keep the real puzzle work small); the "
    "paper's had no cap.",
)

FIG10 = Experiment(
    name="fig10",
    title="poisoning: training error vs time with 0/25/50/75% poisoners, with and without the validator",
    paper_ref="Figure 10, section 7.5",
    method=(
        "In process on the simulator: 8 clients (disjoint shards), asynchronous, no DP, no Tor; "
        "label-flipping poisoners; the real broker's RONI validator and adaptive proof of work. Each "
        "simulated client has its own virtual hash rate, so a penalised poisoner slows down alone, as on "
        "the paper's separate VMs (on this 2-core machine real processes would share the CPU). Puzzles are "
        "really solved; their virtual cost is 2^bits / hash_rate."
    ),
    settings_type=PoisoningSettings,
    execute=execute_fig10,
    tables=tables,
    compare=compare_fig10,
    differences=DIFFERENCES,
)

FIG11 = Experiment(
    name="fig11",
    title="poisoning: 50% poisoners with RONI thresholds 0.5, 1, 2, 5%",
    paper_ref="Figure 11, section 7.5",
    method=FIG10.method,
    settings_type=PoisoningSettings,
    execute=execute_fig11,
    tables=tables,
    compare=compare_fig11,
    differences=DIFFERENCES,
)
