"""`tormentor-engine run` end to end: real nats-server, broker service, curator and client
processes, at a CI-sized scale of configs/credit.yaml."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tormentor.cli.config import load_config
from tormentor.cli.run import run_experiment_async

pytestmark = [pytest.mark.nats, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CI_SCALE = [
    "tor.mode=off",
    "clients.count=10",
    "clients.k=5",
    "stopping.max_updates=20000",
    "stopping.deadline_s=150",
    "defences.max_latency_s=0",
    "output.progress=off",
    "output.trace_every_s=1.0",
]


def run(tmp_path: Path, credit_path: Path, *overrides: str):
    config = load_config(
        REPO / "configs" / "credit.yaml", [*CI_SCALE, f"data.path={credit_path}", *overrides]
    )
    return asyncio.run(run_experiment_async(config, tmp_path))


def test_credit_run_reaches_the_centralised_error(tmp_path, credit_path):
    result = run(tmp_path, credit_path, "clients.epsilon=null")
    summary = result.summary
    assert summary["stop_reason"] == "max_updates"
    assert summary["updates_accepted"] == 20_000
    assert summary["final_train_error"] <= summary["centralised_train_error"] + 0.005, summary
    assert summary["evictions"] == 0
    assert set(summary["client_stops"]) == {"max_updates"}  # every client was told "done"
    # The outputs a user reads.
    written = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "config",
        "clients",
        "updates_accepted",
        "updates_rejected",
        "wall_seconds",
        "final_train_error",
        "final_test_error",
        "final_validation_error",
        "time_to_target_s",
        "penalties",
        "transport",
        "tor",
    ):
        assert key in written, key
    assert written["tor"] == {"mode": "off"} and written["transport"]["nats_server_version"].startswith("2.")
    rows = list(csv.DictReader((tmp_path / "trace.csv").read_text().splitlines()))
    assert list(rows[0]) == [
        "time_s",
        "version",
        "train_error",
        "test_error",
        "validation_error",
        "active_clients",
    ]
    assert float(rows[-1]["train_error"]) < float(rows[0]["train_error"])
    model = json.loads((tmp_path / "model.json").read_text())
    assert len(model["weights"]) == len(model["feature_names"]) == 24
    assert (tmp_path / "loss.png").stat().st_size > 10_000


def test_credit_run_with_dp_converges(tmp_path, credit_path):
    summary = run(tmp_path, credit_path, "clients.epsilon=5.0").summary
    assert summary["final_train_error"] < 0.20, summary
    assert summary["config"]["clients"]["epsilon"] == 5.0


def test_ctrl_c_stops_everything(tmp_path, credit_path):
    env = {**os.environ, "TORMENTOR_DATA": str(credit_path)}
    command = [
        sys.executable,
        "-m",
        "tormentor.cli.main",
        "run",
        str(REPO / "configs" / "credit.yaml"),
        "--out",
        str(tmp_path),
        *(arg for item in CI_SCALE for arg in ("--set", item)),
        "--set",
        "stopping.max_updates=10000000",
        "--set",
        "stopping.deadline_s=600",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 60
    children: list[psutil.Process] = []
    while time.monotonic() < deadline:  # wait until nats-server and the client worker run
        children = parent.children(recursive=True)
        names = {c.name() for c in children}
        if "nats-server" in names and len(children) >= 2 and (tmp_path / "nats").exists():
            break
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the run never started its server and workers")
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 3, output.decode(errors="replace")[-2000:]
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], [p.name() for p in alive]
