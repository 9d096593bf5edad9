"""`tormentor-engine run` through a private Tor network on 127.0.0.1 (real tor daemons).

The broker is a v3 onion service; the curator and every client reach it only through
the clients' tor, each client on its own circuit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import psutil
import pytest

from tormentor.cli.config import load_config
from tormentor.cli.run import run_experiment_async

pytestmark = [pytest.mark.tor, pytest.mark.nats, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
TOR_SCALE = [
    "tor.mode=private",
    "clients.count=12",
    "clients.k=5",
    "clients.epsilon=null",
    "stopping.max_updates=8000",
    "stopping.deadline_s=240",
    "defences.max_latency_s=0",
    "output.progress=off",
    "output.trace_every_s=1.0",
    "transport.request_timeout_s=20",
]


def config(credit_path: Path, *overrides: str):
    return load_config(REPO / "configs" / "credit.yaml", [*TOR_SCALE, f"data.path={credit_path}", *overrides])


def tor_processes(under: Path) -> list[tuple[psutil.Process, str]]:
    """Live tor daemons whose command line mentions ``under``, with that command line.

    The command line is read once, by process_iter: short-lived tors (key generation,
    config checks) may exit at any moment, and asking a zombie again raises.
    """
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        alive = process.info["status"] != psutil.STATUS_ZOMBIE
        if alive and process.info["name"] == "tor" and str(under) in cmdline:
            found.append((process, cmdline))
    return found


def test_training_through_the_onion_service(tmp_path, credit_path):
    summary = asyncio.run(run_experiment_async(config(credit_path), tmp_path)).summary
    assert summary["stop_reason"] == "max_updates"
    assert summary["final_train_error"] <= summary["centralised_train_error"] + 0.01, summary
    tor = summary["tor"]
    assert tor["mode"] == "private" and tor["onion"].endswith(".onion")
    # The curator received the model (model.json is the curator's fetch).
    assert (tmp_path / "model.json").is_file()
    # nats-server saw the 12 clients and the curator only through the onion-service tor.
    seen = tor["connections_seen_by_nats"]
    assert seen["other"] == 0 and seen["onion_service_tor"] >= 13, seen
    # Every client joined with an admission puzzle (16 bits) and finished.
    assert summary["client_stops"] == {"max_updates": 12}
    key = tmp_path / "tor" / "broker.onion-key"
    assert key.stat().st_mode & 0o077 == 0
    assert tor_processes(tmp_path) == []  # no orphan tor


def test_run_goes_on_when_a_relay_dies(tmp_path, credit_path):
    """Kill one relay mid-run: circuits through it break, clients reconnect on new ones."""
    run_config = config(
        credit_path, "tor.relays=3", "stopping.max_updates=12000", "transport.request_timeout_s=10"
    )
    killed: list[str] = []

    def assassin() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            trace = tmp_path / "nats"
            relays = [(p, cmd) for p, cmd in tor_processes(tmp_path) if "relay1" in cmd and "-f " in cmd]
            if relays and trace.exists() and (tmp_path / "tor" / "broker.onion-key").exists():
                time.sleep(8)  # let training get going through the network
                relay, cmdline = relays[0]
                relay.kill()
                killed.append(cmdline)
                return
            time.sleep(0.5)

    thread = threading.Thread(target=assassin, daemon=True)
    thread.start()
    summary = asyncio.run(run_experiment_async(run_config, tmp_path)).summary
    thread.join(timeout=5)
    assert killed, "the relay was never killed"
    assert summary["stop_reason"] == "max_updates", summary
    assert summary["final_train_error"] <= summary["centralised_train_error"] + 0.01
    assert tor_processes(tmp_path) == []
