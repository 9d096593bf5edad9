"""Load benchmark: 1,000 clients on their own connections, broker against the echo baseline.

One run of ``tormentor-engine load`` (real nats-server, auth callout, broker service,
two generator processes): the echo baseline and the broker take turns for 10 s each,
in two rounds. The timed value is the whole run's wall time (the phases have fixed
lengths, so it says little); the numbers to read are in ``extra_info`` and printed:
updates/s of the broker and of the echo, the broker's share of that transport
ceiling (goal: at least 0.5), p50/p99 round trips, RSS.

With ``--benchmark-disable`` (the CI smoke test) the run shrinks to 100 clients and 2 s.
Run: .venv/bin/pytest -q bench/test_bench_load.py -s
"""

from __future__ import annotations

import pytest

from tormentor.cli.load import LoadSettings, run_load

pytestmark = [pytest.mark.nats, pytest.mark.slow]

#: What ``extra_info`` records from the run's summary.
RECORDED = (
    "clients",
    "connections",
    "updates_per_s",
    "baseline_updates_per_s",
    "broker_share_of_ceiling",
    "joins_per_s",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "broker_rss_mb",
    "server_rss_mb",
    "broker_state_bytes_per_client_traced",
    "broker_cpu_pct",
    "server_cpu_pct",
    "generators_cpu_pct",
    "errors",
    "lost_updates",
)


@pytest.mark.benchmark(group="load-1000-own")
def test_bench_load_1000_clients_own_connections(benchmark, request, tmp_path):
    disabled = request.config.getoption("benchmark_disable", default=False)
    settings = LoadSettings(
        clients=100 if disabled else 1000,
        connections="own",
        processes=2,
        duration_s=2.0 if disabled else 20.0,
        rounds=2,
    )
    summary = benchmark.pedantic(run_load, args=(settings, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info["impl"] = "broker-and-echo-run"
    for key in RECORDED:
        value = summary.get(key)
        benchmark.extra_info[key] = round(value, 3) if isinstance(value, float) else value
    share = summary["broker_share_of_ceiling"]
    print(
        f"\n{summary['clients']:,} clients, own connections: "
        f"broker {summary['updates_per_s']:,.0f} updates/s, "
        f"echo {summary['baseline_updates_per_s']:,.0f}/s, share {share:.2f} (goal >= 0.5); "
        f"p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms; per round: "
        + ", ".join(f"{r['broker_share_of_ceiling']:.2f}" for r in summary["rounds_updates_per_s"])
    )
    assert summary["status"] == "ok"
    assert summary["errors"] == 0 and summary["lost_updates"] == 0
