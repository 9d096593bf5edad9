"""Load tests at CI scale: real nats-server, auth callout, broker service and generator processes.

The measuring pieces (latency histogram, timeline, machine caps) are checked on their own;
the runs check the accounting a load test exists for: every update a client saw acked
is counted by the broker (RONI refusals included), nothing errors, the echo baseline ran.
No timing is asserted (speeds are in bench/test_bench_load.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import resource

import numpy as np
import pytest

from tormentor.cli.load import (
    LoadSettings,
    connection_caps,
    register,
    run_load,
    traced_broker_growth,
    traced_state_bytes_per_client,
)
from tormentor.transport.load_clients import LatencyHistogram, MachineLimits, Timeline

SUMMARY_KEYS = (
    "clients",
    "updates_per_s",
    "baseline_updates_per_s",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "broker_rss_mb",
    "server_rss_mb",
    "errors",
    "lost_updates",
    "joins_per_s",
    "generator_processes",
    "connections",
    "fd_limit",
    "broker_state_bytes_per_client",
    "rejected_by_reason",
    "broker_share_of_ceiling",
)


# ----------------------------------------------------------------------------- measuring pieces


@pytest.mark.parametrize("q", [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0])
def test_histogram_quantiles_are_within_half_a_percent_of_the_samples(q):
    rng = np.random.default_rng(3)
    samples = rng.lognormal(mean=np.log(0.02), sigma=1.0, size=20_011)  # q * n never a whole number
    histogram = LatencyHistogram()
    for value in samples:
        histogram.record(float(value))
    exact = np.percentile(samples, 100 * q, method="inverted_cdf")
    assert histogram.count == samples.size
    assert histogram.quantile(q) == pytest.approx(exact, rel=0.0051)
    assert histogram.max_s == samples.max()
    assert histogram.mean() == pytest.approx(samples.mean(), rel=1e-9)


def test_histograms_merge_like_one():
    rng = np.random.default_rng(4)
    a, b = rng.exponential(0.01, 5000), rng.exponential(0.1, 3000)
    left, right, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for value in a:
        left.record(float(value))
        both.record(float(value))
    for value in b:
        right.record(float(value))
        both.record(float(value))
    left.merge(right)
    np.testing.assert_array_equal(left.counts, both.counts)
    assert left.quantile(0.99) == both.quantile(0.99)
    assert LatencyHistogram().quantile(0.5) != LatencyHistogram().quantile(0.5)  # NaN when empty
    with pytest.raises(ValueError, match="q must be"):
        both.quantile(1.5)
    with pytest.raises(ValueError, match="shape"):
        LatencyHistogram(np.zeros(3))


def test_timeline_bins_by_second_and_keeps_late_events_in_the_last_bin():
    timeline = Timeline(start=100.0, seconds=3)
    for when in (99.0, 100.2, 100.9, 101.5, 102.0, 250.0):
        timeline.record(when)
    assert timeline.counts.tolist() == [3, 1, 2]
    with pytest.raises(ValueError, match="seconds"):
        Timeline(0.0, 0)


def test_caps_name_descriptors_ports_and_memory():
    small = MachineLimits(fd_soft=1024, fd_hard=1024, ephemeral_ports=2000, memory_available_bytes=2**28)
    caps = connection_caps(LoadSettings(clients=5000, connections="own"), small)
    assert any(c.startswith("file descriptors: nats-server") for c in caps)
    assert any(c.startswith("file descriptors: a generator") for c in caps)
    assert any(c.startswith("local ports") for c in caps)
    assert any(c.startswith("memory") for c in caps)
    # The same logical clients on a few shared connections fit.
    assert connection_caps(LoadSettings(clients=5000, connections="shared"), small) == []
    roomy = MachineLimits(fd_soft=65536, fd_hard=65536, ephemeral_ports=28232, memory_available_bytes=2**34)
    assert connection_caps(LoadSettings(clients=10_000, connections="own"), roomy) == []


def test_settings_refuse_impossible_runs():
    with pytest.raises(ValueError, match="connections"):
        LoadSettings(connections="many")
    with pytest.raises(ValueError, match="k must not exceed"):
        LoadSettings(clients=3, processes=1, k=5)
    with pytest.raises(ValueError, match="processes"):
        LoadSettings(clients=1, processes=2, k=1)
    with pytest.raises(ValueError, match="duration_s"):
        LoadSettings(duration_s=0)


def test_a_run_beyond_the_descriptor_limit_is_reported_not_started(tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 200_000:
        pytest.skip("no file-descriptor cap on this machine")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["load", "--clients", str(hard + 1000), "--out", str(tmp_path)])
    assert args.handler(args) == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "capped"
    assert any("file descriptors" in cap for cap in summary["caps"])
    assert "--connections shared" in summary["message"]
    assert summary["fd_limit"]["hard"] == hard


@pytest.mark.parametrize("validation_rate", [0.0, 0.1])
def test_broker_memory_does_not_grow_with_updates(validation_rate):
    settings = LoadSettings(clients=300, processes=1, validation_rate=validation_rate)
    growth = traced_broker_growth(settings, clients=300, rounds=40)
    assert len(growth) == 40
    # 20 more rounds (6,000 updates) add less than 16 KB over the first 20 rounds' peak:
    # a leak of even 3 bytes per update would exceed it. RONI rounds make it alternate.
    assert max(growth[20:]) <= max(growth[:20]) + 16_384, growth


def test_broker_state_per_client_is_small_and_measured():
    per_client = traced_state_bytes_per_client(LoadSettings(clients=500, processes=1), 500)
    # Token digest, puzzle, _Client record, ordered-dict slot, RONI membership: well under 4 KB.
    assert 100 < per_client < 4096


# ----------------------------------------------------------------------------- runs


def _check_run(summary, out, clients):
    for key in SUMMARY_KEYS:
        assert key in summary, key
    assert summary["status"] == "ok"
    assert summary["clients"] == clients
    assert summary["errors"] == 0, summary["errors_by_kind"]
    assert summary["baseline_errors"] == 0, summary["baseline_errors_by_kind"]
    assert summary["lost_updates"] == 0
    assert summary["clients_admitted"] == clients
    accounting = summary["update_accounting"]
    # Exact: every Work reply to an update is an update the broker applied or scored and refused.
    assert accounting["client_work_replies"] == accounting["broker_counted"]
    assert accounting["client_updates_sent"] == accounting["client_work_replies"]
    assert accounting["broker_accepted"] == summary["progress"]["updates_accepted"] > 0
    assert summary["baseline_updates_per_s"] > 0 and summary["updates_per_s"] > 0
    assert summary["echo_answered"] >= summary["latency_ms"]["echo"]["count"] > 0
    assert summary["p50_ms"] <= summary["p99_ms"] <= summary["p999_ms"]
    assert summary["broker_rss_mb"] > 0 and summary["server_rss_mb"] > 0
    assert summary["progress"]["active_clients"] == clients
    assert summary["server_counters"]["slow_consumers"] == 0
    assert summary["server_counters"]["in_msgs"] > accounting["client_updates_sent"]
    assert summary["broker_connection_events"] == {}
    assert summary["validation_rounds_started"] > 0
    rows = list(csv.DictReader((out / "timeline.csv").read_text().splitlines()))
    assert {row["phase"] for row in rows} == {"echo", "broker"}
    latency = list(csv.DictReader((out / "latency.csv").read_text().splitlines()))
    assert [row["phase"] for row in latency] == ["echo", "join", "steady"]
    assert int(latency[2]["count"]) == accounting["client_work_replies"]
    assert (out / "load.png").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text())["lost_updates"] == 0


@pytest.mark.slow
@pytest.mark.nats
def test_two_hundred_clients_on_their_own_connections(tmp_path):
    settings = LoadSettings(clients=200, processes=2, duration_s=2.0, seed=5)
    summary = run_load(settings, tmp_path)
    _check_run(summary, tmp_path, 200)
    assert summary["connections_made"] == 200
    assert summary["auth_callout_granted"] >= 200  # one anonymous grant per connection
    assert summary["rejected_by_reason"]["auth_callout"] == {}
    assert 0 < summary["broker_state_bytes_per_client_traced"] < 4096


@pytest.mark.slow
@pytest.mark.nats
def test_dp_clients_on_shared_connections_with_frequent_validation(tmp_path):
    # Real DP steps make RONI score (and possibly refuse) updates: the accounting must stay exact.
    settings = LoadSettings(
        clients=300,
        connections="shared",
        connections_per_process=2,
        processes=2,
        duration_s=2.0,
        client_work="dp",
        validation_rate=0.5,
        validation_rows=500,
        seed=6,
    )
    summary = run_load(settings, tmp_path)
    _check_run(summary, tmp_path, 300)
    assert summary["connections_made"] == 4
    rejected = summary["rejected_by_reason"]["updates"]
    assert set(rejected) <= {"roni"}, rejected  # nothing but RONI refuses an honest client's update
