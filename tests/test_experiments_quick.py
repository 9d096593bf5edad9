"""The paper's experiments at their quick scale: outputs complete, and the trends that must hold.

Every experiment runs at ``scale="quick"`` of configs/experiments/<name>.yaml, fixed seeds,
into a temporary folder (each once per module; several tests read its results). table2's
two columns run separately: without Tor (real NATS) in one test, with a private Tor
network in a ``tor``-marked one. Trends are checked on medians over the quick seeds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tormentor.cli.config import ConfigError
from tormentor.cli.experiments import get
from tormentor.cli.experiments.inversion import InversionSettings, inversion_shards, run_inversion
from tormentor.cli.experiments.results import normalised, read_results, summarise
from tormentor.cli.experiments.runner import run_experiment
from tormentor.cli.experiments.settings import config_path, load_scale
from tormentor.engine.attacks import InversionAttacker
from tormentor.engine.centralised import zero_one_error
from tormentor.engine.client import LearningClient
from tormentor.engine.curator import curate_request
from tormentor.engine.data import client_shards
from tormentor.engine.protocol import Defences, StoppingRule, TaskSpec
from tormentor.engine.simulation import SimulationSettings, simulate

#: Setting and outcome keys every record of each experiment must carry (the issue's names).
REQUIRED = {
    "fig5": ({"epsilon", "batch", "clients"}, {"final_train_error", "tail_train_error"}),
    "fig8": ({"epsilon", "attacker_sends", "bystanders"}, {"reconstruction_error"}),
    "fig9": ({"epsilon", "attacker_sends", "bystanders"}, {"reconstruction_error"}),
    "fig10": (
        {"poisoner_share", "validator", "roni_threshold", "clients"},
        {"final_train_error", "penalties"},
    ),
    "fig11": ({"poisoner_share", "validator", "roni_threshold"}, {"final_train_error", "penalties"}),
    "honest-dp": (
        {"epsilon", "validator", "roni_threshold", "clients"},
        {"final_train_error", "honest_flagged", "time_to_converge_s"},
    ),
    "sybil": ({"admission_bits", "identities"}, {"cpu_s", "admitted"}),
    "table2": ({"clients", "tor"}, {"time_to_target_s", "final_train_error"}),
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, credit_path):
    """Run an experiment's quick scale once per module; return its output folder."""
    done = {}

    def run(name, *overrides, key=None):
        key = key or name
        if key not in done:
            data = [f"data.path={credit_path}"] if name != "sybil" else []
            done[key] = run_experiment(
                get(name),
                scale="quick",
                out=tmp_path_factory.mktemp(key),
                overrides=[*data, *overrides],
                log=None,
            )
        return done[key]

    return run


def records_of(folder):
    return normalised(read_results(folder))


def median(records, keys, outcome):
    return {k: s.median for k, s in summarise(records, keys, outcome).items()}


# ----------------------------------------------------------------------------- outputs


def check_outputs(folder, name):
    records = json.loads((folder / "results.json").read_text())
    assert isinstance(records, list) and records
    setting_keys, outcome_keys = REQUIRED[name]
    for record in records:
        assert record["experiment"] == name
        assert isinstance(record["seed"], int)
        assert setting_keys <= record["settings"].keys()
        assert outcome_keys <= record["outcomes"].keys()
    meta = json.loads((folder / "experiment.json").read_text())
    seeds = meta["seeds"]
    # Several seeds per point: every point has one record per seed.
    points = {}
    for record in records:
        points.setdefault(json.dumps(record["settings"], sort_keys=True), []).append(record["seed"])
    assert all(sorted(s) == sorted(seeds) for s in points.values())
    assert meta["figures"] and meta["scale"] == "quick"
    for figure in meta["figures"]:
        assert (folder / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for csv in meta["csv"]:
        lines = (folder / csv).read_text().splitlines()
        assert len(lines) > 1
    report = (folder / "report.md").read_text()
    assert name in report and "The paper beside ours" in report and "Honest differences" in report
    assert f"seeds: {seeds}" in report


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fig5", "fig8", "fig9", "fig10", "fig11", "honest-dp", "sybil"])
def test_in_process_experiments_write_complete_outputs(quick, name):
    check_outputs(quick(name), name)


# ----------------------------------------------------------------------------- fig5


@pytest.mark.slow
def test_fig5_privacy_and_batch_size_trends(quick):
    records = records_of(quick("fig5"))
    tail = median(records, ("epsilon", "batch"), "tail_train_error")
    central = records[0]["outcomes"]["centralised_train_error"]
    # Without noise, every batch size trains to near the centralised model.
    assert tail[(math.inf, 10)] <= central + 0.015
    # Strong privacy with a batch of 1 does not converge; a larger batch rescues it.
    assert tail[(1.0, 1)] > tail[(math.inf, 1)] + 0.05
    assert tail[(1.0, 1)] > tail[(1.0, 100)] + 0.05
    # The prototype's published pair: eps = 1 fails at b = 10, eps = 5 works.
    assert tail[(1.0, 10)] > central + 0.02
    assert tail[(5.0, 10)] <= central + 0.015


# ----------------------------------------------------------------------------- fig8, fig9


class RecordingVictim(LearningClient):
    """The honest victim, keeping a copy of every delta it sends."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.deltas = []

    def compute_delta(self, weights):
        delta = super().compute_delta(weights)
        self.deltas.append(np.array(delta))
        return delta


class RecordingAttacker(InversionAttacker):
    """The attacker, keeping each single estimate it adds to its shadow model."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inferred = []

    def observe_model(self, weights):
        before, count = self.shadow.copy(), self.estimates
        super().observe_model(weights)
        if self.estimates > count:
            self.inferred.append(self.shadow - before)


def attack_with_recorders(credit_path, *overrides):
    settings = load_scale(
        InversionSettings,
        config_path("fig8"),
        "quick",
        [f"data.path={credit_path}", "iterations=200", *overrides],
    )
    data = settings.data.load()
    shards = inversion_shards(settings, data, 1)
    _, clients = run_inversion(
        settings,
        data,
        shards,
        epsilon=5.0,
        sends="gradients",
        bystanders=0,
        seed=1,
        victim_type=RecordingVictim,
        attacker_type=RecordingAttacker,
    )
    return clients[0], clients[1]


def single_delta_matches(victim, attacker):
    pairs = list(zip(attacker.inferred, victim.deltas, strict=False))
    return [bool(np.allclose(inferred, delta, rtol=0, atol=1e-12)) for inferred, delta in pairs]


@pytest.mark.slow
def test_fig8_setting_alternates_victim_and_attacker_strictly(credit_path):
    victim, attacker = attack_with_recorders(credit_path)
    matches = single_delta_matches(victim, attacker)
    assert len(matches) >= 199
    # Every estimate of the attacker is exactly one victim update: strict alternation.
    assert all(matches)


@pytest.mark.slow
def test_jitter_breaks_the_alternation(credit_path):
    victim, attacker = attack_with_recorders(credit_path, "costs.jitter=0.5")
    matches = single_delta_matches(victim, attacker)
    assert not all(matches)


@pytest.mark.slow
def test_inversion_is_reproducible_from_its_seed(credit_path):
    settings = load_scale(
        InversionSettings, config_path("fig9"), "quick", [f"data.path={credit_path}", "iterations=100"]
    )
    data = settings.data.load()
    shards = inversion_shards(settings, data, 3)
    first, _ = run_inversion(settings, data, shards, epsilon=1.0, sends="gradients", bystanders=1, seed=3)
    second, _ = run_inversion(settings, data, shards, epsilon=1.0, sends="gradients", bystanders=1, seed=3)
    assert first == second


@pytest.mark.slow
def test_fig8_reconstruction_error_rises_as_epsilon_falls(quick):
    records = records_of(quick("fig8"))
    rec = median(records, ("attacker_sends", "epsilon"), "reconstruction_error")
    assert rec[("zeros", 0.5)] > rec[("zeros", 5.0)] + 0.10
    assert rec[("zeros", 5.0)] >= rec[("zeros", math.inf)] - 0.01
    assert rec[("gradients", 0.5)] > rec[("gradients", 5.0)] + 0.02


@pytest.mark.slow
def test_fig9_reconstruction_error_rises_with_bystanders(quick):
    records = records_of(quick("fig9"))
    rec = median(records, ("attacker_sends", "epsilon", "bystanders"), "reconstruction_error")
    epsilons = {k[1] for k in rec}
    assert len(epsilons) >= 2
    for epsilon in epsilons:
        assert rec[("gradients", epsilon, 3)] > rec[("gradients", epsilon, 0)] + 0.10
        assert rec[("gradients", epsilon, 1)] > rec[("gradients", epsilon, 0)]


# ----------------------------------------------------------------------------- fig10, fig11


@pytest.mark.slow
def test_fig10_validator_holds_half_poisoners_off(quick):
    records = records_of(quick("fig10"))
    keys = ("poisoner_share", "validator", "roni_threshold")
    final = median(records, keys, "final_train_error")
    honest = final[(0.0, True, 0.02)]
    with_validator = final[(0.5, True, 0.02)]
    without_validator = final[(0.5, False, None)]
    # The trend: within 2 points of the honest run with the validator ...
    assert with_validator <= honest + 0.02
    # ... and clearly worse without it.
    assert without_validator >= honest + 0.05
    assert without_validator >= with_validator + 0.05
    penalties = median(records, keys, "poisoner_penalties")
    assert penalties[(0.5, True, 0.02)] > 0
    assert penalties[(0.5, False, None)] == 0
    bits = median(records, keys, "poisoner_final_bits_min")
    assert bits[(0.5, True, 0.02)] > 4


@pytest.mark.slow
def test_fig11_lower_threshold_penalises_poisoners_more(quick):
    records = records_of(quick("fig11"))

    def total(threshold):
        return sum(
            r["outcomes"]["poisoner_penalties"]
            for r in records
            if r["settings"]["roni_threshold"] == threshold
        )

    assert total(0.005) > total(0.05)
    mean = median(records, ("roni_threshold",), "mean_train_error")
    assert mean[(0.005,)] < mean[(0.05,)]


# ----------------------------------------------------------------------------- honest-dp


@pytest.mark.slow
def test_honest_dp_flags_come_from_the_validator_and_eps_5_converges(quick):
    records = records_of(quick("honest-dp"))
    keys = ("epsilon", "validator", "roni_threshold")
    flagged = median(records, keys, "honest_flagged")
    tail = median(records, keys, "tail_train_error")
    central = records[0]["outcomes"]["centralised_train_error"]
    # Nobody is flagged without the validator; at 0.5 % it flags honest clients at both ε.
    assert flagged[(1.0, False, None)] == flagged[(5.0, False, None)] == 0
    assert flagged[(1.0, True, 0.005)] > 0 and flagged[(5.0, True, 0.005)] > 0
    # The paper's two outcomes: ε = 5 converges with the validator on, ε = 1 does not ...
    assert tail[(5.0, True, 0.005)] <= central + 0.02
    assert tail[(1.0, True, 0.005)] > central + 0.05
    # ... and at ε = 1 the noise alone already keeps it from converging (the control).
    assert tail[(1.0, False, None)] > central + 0.05
    reached = [r for r in records if r["outcomes"]["time_to_converge_s"] is not None]
    assert all(r["settings"]["epsilon"] == 5.0 for r in reached) and reached


def test_time_to_converge_counts_only_a_curve_that_stays_under_the_target():
    from tormentor.cli.experiments.honest_dp import time_to_converge

    x = np.arange(6.0)
    assert time_to_converge(x, np.array([0.3, 0.2, 0.19, 0.25, 0.19, 0.18]), 0.2) == 4.0
    assert time_to_converge(x, np.array([0.1] * 6), 0.2) == 0.0
    assert time_to_converge(x, np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.3]), 0.2) is None  # climbed back


# ----------------------------------------------------------------------------- sybil


@pytest.mark.slow
def test_sybil_cost_grows_with_difficulty(quick):
    records = records_of(quick("sybil"))
    assert all(r["outcomes"]["admitted"] == r["settings"]["identities"] for r in records)
    per = median(records, ("admission_bits",), "cpu_s_per_identity")
    # 2^8 = 256 times the expected work; allow a large margin for fixed per-identity overhead.
    assert per[(16,)] > 10 * per[(8,)]


# ----------------------------------------------------------------------------- table2 (real transport)


@pytest.mark.slow
@pytest.mark.nats
def test_table2_time_to_target_falls_as_clients_are_added(quick):
    folder = quick("table2", 'tor=["off"]', key="table2-off")
    check_outputs(folder, "table2")
    records = records_of(folder)
    assert all(r["outcomes"]["reached_target"] for r in records)
    ttt = median(records, ("clients",), "time_to_target_s")
    counts = sorted(k[0] for k in ttt)
    assert len(counts) >= 2
    assert ttt[(counts[-1],)] < ttt[(counts[0],)]


@pytest.mark.slow
@pytest.mark.nats
@pytest.mark.tor
def test_table2_tor_is_slower_than_direct(quick):
    direct = records_of(quick("table2", 'tor=["off"]', key="table2-off"))
    smallest = min(r["settings"]["clients"] for r in direct)
    through_tor = records_of(quick("table2", f"clients=[{smallest}]", 'tor=["private"]', key="table2-tor"))
    by_mode = {
        r["settings"]["tor_mode"]: r["outcomes"]
        for r in [*direct, *through_tor]
        if r["settings"]["clients"] == smallest
    }
    assert by_mode["private"]["reached_target"] and by_mode["off"]["reached_target"]
    assert by_mode["private"]["time_to_target_s"] > by_mode["off"]["time_to_target_s"]
    assert by_mode["private"]["training_updates_per_s"] < by_mode["off"]["training_updates_per_s"]
    assert by_mode["private"]["tor_bootstrap_s"] > 0 and by_mode["off"]["tor_bootstrap_s"] is None


# ----------------------------------------------------------------------------- hostile updates


class NonFiniteClient(LearningClient):
    def compute_delta(self, weights):
        delta = super().compute_delta(weights)
        delta[0] = np.nan
        return delta


class WrongShapeClient(LearningClient):
    def compute_delta(self, weights):
        return np.zeros(weights.shape[0] + 1)


@pytest.mark.slow
def test_nan_and_wrong_shape_updates_are_refused_not_applied(credit, centralised_train_error):
    task = TaskSpec(
        n_features=credit.n_weights,
        stopping=StoppingRule(max_updates=3000),
        defences=Defences(admission_bits=0, update_bits=0, validator=False),
    )
    shards = client_shards(credit.X_train, credit.y_train, 5, mode="disjoint", seed=1)
    kinds = [LearningClient, LearningClient, LearningClient, NonFiniteClient, WrongShapeClient]

    def make(model_id):
        return [
            kind(x, y, model_id=model_id, rng=np.random.default_rng([1, i]))
            for i, (kind, (x, y)) in enumerate(zip(kinds, shards, strict=True))
        ]

    result = simulate(
        curate_request(task, credit.X_test, credit.y_test),
        make,
        seed=1,
        settings=SimulationSettings(trace_every=500),
    )
    progress = result.final.progress
    assert progress.updates_rejected.get("non_finite") == 1
    assert progress.updates_rejected.get("bad_shape") == 1
    assert [stop.code for stop in result.stops[3:]] == ["non_finite", "bad_shape"]
    # Only the honest clients' updates were applied, and the model is finite and trained.
    assert progress.updates_accepted <= sum(c.stats.updates_sent for c in result.clients[:3])
    assert [c.stats.updates_sent for c in result.clients[3:]] == [1, 1]
    final = np.array(result.final.weights)
    assert np.isfinite(final).all()
    assert zero_one_error(final, credit.X_train, credit.y_train) <= centralised_train_error + 0.02


# ----------------------------------------------------------------------------- settings


def test_settings_problems_are_all_reported_with_paths(tmp_path):
    path = tmp_path / "fig8.yaml"
    path.write_text(config_path("fig8").read_text())
    with pytest.raises(ConfigError) as caught:
        load_scale(
            InversionSettings,
            path,
            "quick",
            ["epsilons=[1, five]", "client.lr_powr=1", "attacker_sends=[gradient]", "bogus=1"],
        )
    text = "\n".join(caught.value.problems)
    assert "epsilons[1]: expected a number, got 'five'" in text
    assert "client.lr_powr: unknown key" in text
    assert "bogus: unknown key" in text
    with pytest.raises(ConfigError) as caught:
        load_scale(InversionSettings, path, "quick", ["attacker_sends=[gradient]"])
    assert "attacker_sends must be among" in str(caught.value)
    with pytest.raises(ConfigError, match="no such scale"):
        load_scale(InversionSettings, path, "huge")


def test_quick_scale_is_full_merged_with_its_changes():
    settings = load_scale(InversionSettings, config_path("fig8"), "quick")
    full = load_scale(InversionSettings, config_path("fig8"), "full")
    assert settings.iterations < full.iterations
    assert settings.partitions == full.partitions and settings.costs == full.costs
    assert settings.costs.jitter == 0.0
