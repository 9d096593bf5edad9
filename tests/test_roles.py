"""``broker``, ``curate``, ``client`` and ``data shard`` as separate, real processes.

A broker (real nats-server, auth callout; one test with a private Tor network), a curator
and headless clients, each started with the console script, talk over loopback exactly
as they would across hosts. Processes are stopped with the signals a person would use,
and psutil checks that nothing they started outlives them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess

import numpy as np
import pytest
from _role_processes import (
    ENGINE,
    RoleProcess,
    descendants,
    engine_env,
    start_broker,
    start_client,
    start_curator,
    still_alive,
    write_config,
    write_shards,
)

from tormentor.cli.config import ConfigError
from tormentor.cli.exit_codes import ExitCode
from tormentor.cli.roles import CuratorFile, read_curator_file, write_curator_file
from tormentor.cli.shard_file import read_shard_csv

HAVE_TOR = shutil.which("tor") is not None and shutil.which("tor-gencert") is not None


@pytest.fixture
def env(credit_path):
    return engine_env(credit_path)


def engine(env, *args, timeout_s=120):
    """Run one ``tormentor-engine`` command to its end."""
    command = [ENGINE, *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)


# ----------------------------------------------------------------------------- curator.json


def test_curator_file_round_trips_with_mode_0600(tmp_path):
    path = tmp_path / "curator.json"
    seed = "SU" + "A" * 56
    dial = CuratorFile(url=None, onion="a" * 56 + ".onion", port=4222, socks="127.0.0.1:9050",
                       connect_options={"nkeys_seed_str": seed, "inbox_prefix": "_C"})
    write_curator_file(path, dial)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = read_curator_file(path)
    assert again == dial
    assert again.connect_options == dial.connect_options
    assert again.tor_info() == {"onion": dial.onion, "port": 4222,
                                "socks_host": "127.0.0.1", "socks_port": 9050}
    assert again.tor_info("127.0.0.1:9150")["socks_port"] == 9150
    assert seed not in repr(again)


def test_curator_file_problems_are_listed_without_the_seed(tmp_path):
    path = tmp_path / "curator.json"
    seed = "SU" + "B" * 56
    path.write_text(json.dumps({"format": "tormentor-engine curator v1",
                                "broker": {"url": "nats://127.0.0.1:1", "onion": "x.onion", "port": 0},
                                "curator": {"nkeys_seed": seed}}))
    with pytest.raises(ConfigError) as caught:
        read_curator_file(path)
    text = str(caught.value)
    assert "exactly one of url and onion" in text and "broker.port" in text and "curator:" in text
    assert seed not in text
    path.write_text(json.dumps({"broker": {"url": "nats://127.0.0.1:1"}}))
    with pytest.raises(ConfigError, match="format"):
        read_curator_file(path)


# ----------------------------------------------------------------------------- data shard


@pytest.mark.slow
def test_data_shard_writes_rows_the_curator_preprocessing_agrees_with(tmp_path, env, credit_path):
    from tormentor.engine.data import load_credit

    config = write_config(tmp_path / "test.yaml", data={"shards": "disjoint", "shard_size": None})
    paths = write_shards(tmp_path, config, env, clients=3)
    header = paths[0].read_text().splitlines()[0].split(",")
    assert len(header) == 25 and header[-2:] == ["bias", "label"]
    shards = [read_shard_csv(path) for path in paths]
    data = load_credit(credit_path, seed=7)  # the curator's split and statistics (same seed)
    assert sum(len(y) for _, y in shards) == len(data.y_train)
    train_rows = {row.tobytes() for row in data.X_train}
    for x, y in shards:
        assert x.shape[1] == 24 and np.all(x[:, -1] == 1.0) and set(np.unique(y)) == {-1.0, 1.0}
        assert all(row.tobytes() in train_rows for row in x)  # exact float64 round trip
    again = tmp_path / "again.csv"
    run = engine(env, "data", "shard", "--config", config, "--clients", 3, "--index", 1, "--out", again)
    assert run.returncode == 0, run.stderr
    assert again.read_bytes() == paths[1].read_bytes()


def test_data_shard_needs_a_seed_and_a_valid_index(tmp_path, env):
    no_seed = write_config(tmp_path / "no-seed.yaml", seed=None)
    out = tmp_path / "x.csv"
    run = engine(env, "data", "shard", "--config", no_seed, "--clients", 2, "--index", 0, "--out", out)
    assert run.returncode == ExitCode.CONFIG_INVALID, run.stderr
    assert "--seed" in run.stderr
    config = write_config(tmp_path / "test.yaml")
    run = engine(env, "data", "shard", "--config", config, "--clients", 2, "--index", 2, "--out", out)
    assert run.returncode == ExitCode.USAGE, run.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- three roles


@pytest.mark.nats
@pytest.mark.slow
def test_broker_curator_and_three_clients_train_a_model(tmp_path, env):
    # Long enough that every client trains: the first ones to join wait (k gate) and retry
    # after 0.5 s, while the last one could do a few hundred updates alone in that time.
    config = write_config(tmp_path / "test.yaml", task={"min_clients": 3}, stopping={"max_updates": 3000})
    shards = write_shards(tmp_path, config, env, clients=3)
    broker, info = start_broker(tmp_path, config, env)
    started = descendants(broker.pid)
    clients = []
    try:
        state = tmp_path / "broker-state"
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE((state / "curator.json").stat().st_mode) == 0o600
        assert info["broker"].startswith("nats://127.0.0.1:")
        assert info["tor"] == "off" and info["socks"] is None
        assert "SU" not in (state / "broker.json").read_text()  # no seed in the public file
        assert info["broker"] in broker.stdout() and "curator.json" in broker.stdout()
        assert any(p.name() == "nats-server" for p in started)

        curator, model = start_curator(tmp_path, state / "curator.json", config, env)
        clients = [start_client(tmp_path, info["broker"], model, shard, env, name=f"client-{i}")
                   for i, shard in enumerate(shards)]
        for client in clients:
            assert client.wait(120) == ExitCode.OK, client.output()
            assert "training over (max_updates)" in client.stdout()
        assert curator.wait(60) == ExitCode.OK, curator.output()

        model_file = json.loads((tmp_path / "curator-out" / "model.json").read_text())
        assert len(model_file["weights"]) == 24 and model_file["feature_names"][-1] == "bias"
        summary = json.loads((tmp_path / "curator-out" / "summary.json").read_text())
        assert summary["model_id"] == model and summary["updates_accepted"] == 3000
        assert summary["stop_reason"] == "max_updates" and summary["broker"] == "direct"
        assert not {"clients", "client_stops", "latency_p50_ms"} & set(summary)  # aggregate only
        sent = [json.loads((tmp_path / f"client-{i}.json").read_text())["updates_accepted"] for i in range(3)]
        assert all(n > 0 for n in sent)  # min_clients 3: nobody trains alone
        broker.wait_for(rf"^model {model}: done \(max_updates\)", 10)
    finally:
        for client in clients:
            client.kill()
        code = broker.stop(signal.SIGTERM)
    assert code == ExitCode.OK, broker.output()
    assert broker.stdout().rstrip().endswith("stopped")
    assert still_alive(started) == []


@pytest.mark.nats
def test_broker_stops_on_ctrl_c_and_refuses_a_second_broker_on_its_state(tmp_path, env):
    config = write_config(tmp_path / "test.yaml")
    broker, _ = start_broker(tmp_path, config, env)
    started = descendants(broker.pid)
    try:
        second = RoleProcess("second", ["broker", "--state", str(tmp_path / "broker-state"),
                                        "--config", str(config)], tmp_path, env)
        assert second.wait(60) == ExitCode.USAGE, second.output()
        assert "another broker" in second.stderr()
    finally:
        code = broker.stop(signal.SIGINT)
    assert code == ExitCode.OK, broker.output()
    assert started and still_alive(started) == []


@pytest.mark.nats
def test_curate_exit_codes_for_a_bad_file_and_a_gone_broker(tmp_path, env):
    config = write_config(tmp_path / "test.yaml")
    out = tmp_path / "out"
    missing = engine(env, "curate", "--broker", tmp_path / "no.json", "--config", config, "--out", out)
    assert missing.returncode == ExitCode.CONFIG_NOT_FOUND, missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    broken = engine(env, "curate", "--broker", bad, "--config", config, "--out", out)
    assert broken.returncode == ExitCode.CONFIG_INVALID, broken.stderr
    # A broker that was stopped: its curator.json points at a closed port.
    broker, _ = start_broker(tmp_path, config, env)
    assert broker.stop() == ExitCode.OK
    gone = engine(env, "curate", "--broker", tmp_path / "broker-state" / "curator.json", "--config", config,
                  "--out", out)
    assert gone.returncode == ExitCode.NATS_CONNECT, gone.stderr
    assert "Traceback" not in gone.stderr


@pytest.mark.nats
@pytest.mark.slow
def test_broker_attached_to_an_operators_nats_server(tmp_path, env):
    """``--nats URL``: the broker starts no server; the operator's config admits everyone."""
    import socket

    from tormentor.transport.nats_server import find_nats_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "operator.conf").write_text(f"listen: 127.0.0.1:{port}\nmax_payload: 8MB\n")
    server = subprocess.Popen([str(find_nats_server()), "-c", str(tmp_path / "operator.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = None
    try:
        url = f"nats://127.0.0.1:{port}"
        config = write_config(tmp_path / "test.yaml", stopping={"max_updates": 40})
        [shard] = write_shards(tmp_path, config, env, clients=1)
        broker, info = start_broker(tmp_path, config, env, extra=("--nats", url))
        assert info["broker"] == url and info["nats_server"] == "external"
        assert descendants(broker.pid) == []  # no nats-server of its own
        dial = read_curator_file(tmp_path / "broker-state" / "curator.json")
        assert dial.url == url and dial.connect_options == {}
        curator, model = start_curator(tmp_path, tmp_path / "broker-state" / "curator.json", config, env)
        client = start_client(tmp_path, url, model, shard, env)
        assert client.wait(120) == ExitCode.OK, client.output()
        assert curator.wait(60) == ExitCode.OK, curator.output()
        assert broker.stop() == ExitCode.OK, broker.output()
        assert server.poll() is None  # the operator's server is not ours to stop
    finally:
        if broker is not None:
            broker.kill()
        server.terminate()
        server.wait(10)


# ----------------------------------------------------------------------------- through Tor


@pytest.mark.tor
@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TOR, reason="tor / tor-gencert not installed (Debian package `tor`)")
def test_roles_through_a_private_tor_network_keep_the_onion_address(tmp_path, env):
    config = write_config(tmp_path / "test.yaml", tor={"mode": "private", "bootstrap_timeout_s": 240},
                          task={"min_clients": 2}, stopping={"max_updates": 60},
                          transport={"request_timeout_s": 60})
    shards = write_shards(tmp_path, config, env, clients=2)
    state = tmp_path / "broker-state"
    broker, info = start_broker(tmp_path, config, env, ready_timeout_s=300)
    started = descendants(broker.pid)
    clients = []
    try:
        onion = info["broker"]
        assert onion.endswith(".onion") and info["tor"] == "private"
        assert info["socks"].startswith("127.0.0.1:")
        key = state / "tor" / "broker.onion-key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE((state / "curator.json").stat().st_mode) == 0o600
        assert f"--broker {onion} --socks {info['socks']}" in broker.stdout()
        assert sum(p.name() == "tor" for p in started) >= 5
        assert any(p.name() == "nats-server" for p in started)

        curator, model = start_curator(tmp_path, state / "curator.json", config, env, timeout_s=180)
        clients = [start_client(tmp_path, onion, model, shard, env, "--socks", info["socks"],
                                name=f"client-{i}") for i, shard in enumerate(shards)]
        for client in clients:
            assert client.wait(300) == ExitCode.OK, client.output()
        assert curator.wait(120) == ExitCode.OK, curator.output()
        summary = json.loads((tmp_path / "curator-out" / "summary.json").read_text())
        assert summary["broker"] == "onion" and summary["updates_accepted"] >= 60
    finally:
        for client in clients:
            client.kill()
        code = broker.stop(signal.SIGTERM, timeout_s=60)
    assert code == ExitCode.OK, broker.output()
    assert still_alive(started) == []

    restarted, again = start_broker(tmp_path, config, env, ready_timeout_s=300, name="broker-again")
    started = descendants(restarted.pid)
    code = restarted.stop(signal.SIGTERM, timeout_s=60)
    assert again["broker"] == onion  # the kept key keeps the address
    assert code == ExitCode.OK, restarted.output()
    assert still_alive(started) == []
    assert os.stat(key).st_mode & 0o077 == 0
