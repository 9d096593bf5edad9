"""``tormentor-engine client``: the headless client, its exit codes and what it imports.

The process tests run real clients (the console script) against a real broker and
curator (:mod:`_role_processes`); each client writes its resource report
(``TORMENTOR_CLIENT_REPORT``), which lists the modules it had imported at exit.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest
from _role_processes import (
    client_report,
    descendants,
    engine_env,
    start_broker,
    start_client,
    start_curator,
    still_alive,
    write_config,
    write_shards,
)

from tormentor.cli.exit_codes import ExitCode
from tormentor.cli.headless import BrokerAddress, exit_code_for_stop, parse_broker_address
from tormentor.cli.shard_file import read_shard_csv, write_shard_csv
from tormentor.engine.client import Stop
from tormentor.engine.data import DataFormatError


def forbidden(modules):
    """Modules a headless client must never load: YAML, plotting, RONI kernels, parallel search."""
    found = []
    for name in modules:
        top = name.split(".")[0]
        leaf = name.rsplit(".", 1)[-1]
        kernel = name.startswith("tormentor.engine.kernels.")
        if top in ("yaml", "matplotlib") or (kernel and ("roni" in leaf or "parallel" in leaf)):
            found.append(name)
    return found


def kernel_modules(*names):
    """The Numba modules behind the public kernel ``names`` (module names follow the kernel map)."""
    from tormentor.engine import kernels

    return {f"tormentor.engine.kernels.{kernels._FAMILIES[name][0]}" for name in names}


# ----------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("text", "expected"), [
    ("nats://127.0.0.1:4222", BrokerAddress(url="nats://127.0.0.1:4222")),
    ("abc.onion", BrokerAddress(onion="abc.onion", port=4222)),
    ("abc.onion:5000", BrokerAddress(onion="abc.onion", port=5000)),
    ("tor://abc.onion", BrokerAddress(onion="abc.onion", port=4222)),
])
def test_broker_addresses(text, expected):
    assert parse_broker_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:4222", "http://x:1", "abc.onion:0", "abc.onion:x", ".onion", ""])
def test_bad_broker_addresses_are_refused(text):
    with pytest.raises(ValueError, match="--broker must be"):
        parse_broker_address(text)


@pytest.mark.parametrize(("stop", "stopped_for", "code"), [
    (Stop("max_updates", True), "", ExitCode.OK),
    (Stop("left", True), "max_updates", ExitCode.OK),
    (Stop("left", True), "budget", ExitCode.CLIENT_BUDGET_SPENT),
    (Stop("no model with that id", False, "unknown_model"), "", ExitCode.CLIENT_REJECTED),
    (Stop("wrong columns", False, "schema_mismatch"), "", ExitCode.CLIENT_REJECTED),
    (Stop("evicted", False, "evicted"), "", ExitCode.CLIENT_EVICTED),
    (Stop("gave up", False, "RequestTimeout"), "", ExitCode.BROKER_UNREACHABLE),
    (Stop("gave up", False, "ConnectionClosed"), "", ExitCode.BROKER_UNREACHABLE),
    (Stop("broker unreachable for 30 s", False, "unreachable"), "", ExitCode.BROKER_UNREACHABLE),
    (Stop("transport: denied", False, "PermissionDenied"), "", ExitCode.NATS_PERMISSION),
    (Stop("unexpected reply Final", False, "protocol"), "", ExitCode.CLIENT_REJECTED),
    (Stop("transport: bad reply", False, "WireError"), "", ExitCode.CLIENT_REJECTED),
])
def test_every_stop_maps_to_an_exit_code(stop, stopped_for, code):
    assert exit_code_for_stop(stop, stopped_for) == code


def test_shard_file_round_trip_and_label_forms(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 4))
    y = np.where(rng.random(7) < 0.5, -1.0, 1.0)
    path = write_shard_csv(tmp_path / "s.csv", x, y, ["a", "b", "c", "bias"])
    assert path.read_text().splitlines()[0] == "a,b,c,bias,label"
    x2, y2 = read_shard_csv(path)
    assert np.array_equal(x2, x) and np.array_equal(y2, y) and x2.flags.c_contiguous
    no_header = tmp_path / "plain.csv"
    no_header.write_text("1.5,2,1\n-3,4,0\n")
    x3, y3 = read_shard_csv(no_header)
    assert x3.tolist() == [[1.5, 2.0], [-3.0, 4.0]] and y3.tolist() == [1.0, -1.0]


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty file"),
    ("a,b,label\n", "no data rows"),
    ("1,2,1\n3,x,1\n", "comma-separated numbers"),
    ("1,2,1\n3,4\n", "comma-separated numbers"),
    ("1\n2\n", "at least 2 columns"),
    ("1,nan,1\n", "non-finite"),
    ("1,2,2\n", "label"),
])
def test_bad_shard_files_are_refused_by_name(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_shard_csv(path)


# ----------------------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def live(tmp_path_factory, credit_path):
    """A broker serving one long-running model, with a curator waiting on it, and client data."""
    folder = tmp_path_factory.mktemp("live")
    env = engine_env(credit_path)
    config = write_config(folder / "test.yaml", stopping={"max_updates": 1_000_000, "deadline_s": 900})
    shards = write_shards(folder, config, env, clients=2)
    broker, info = start_broker(folder, config, env)
    try:
        curator, model = start_curator(folder, folder / "broker-state" / "curator.json", config, env)
    except BaseException:
        broker.kill()
        raise
    yield {"folder": folder, "env": env, "url": info["broker"], "model": model, "shards": shards}
    curator.stop(signal.SIGTERM)
    broker.stop(signal.SIGTERM)


def _run_client(live, tmp_path, *args, model=None, data=None, env=None, name="client", timeout_s=120):
    client = start_client(tmp_path, live["url"], model or live["model"], data or live["shards"][0],
                          env or live["env"], *args, name=name)
    return client, client.wait(timeout_s)


@pytest.mark.nats
@pytest.mark.slow
def test_client_trains_and_loads_only_what_it_needs(live, tmp_path):
    client, code = _run_client(live, tmp_path, "--max-updates", "5", "--epsilon", "1")
    assert code == ExitCode.OK, client.output()
    assert "--max-updates reached" in client.stdout()
    assert "first update accepted" in client.stderr() and "Traceback" not in client.stderr()
    report = client_report(tmp_path)
    assert report["exit_code"] == 0 and report["updates_accepted"] == 5
    assert report["backend"] == "numba" and report["maxrss_kib"] > 0 and report["cpu_per_update_s"] > 0
    modules = set(report["modules"])
    assert {"numba", *kernel_modules("logistic_gradient", "laplace_noise", "pow_search")} <= modules
    assert forbidden(modules) == []


@pytest.mark.nats
@pytest.mark.slow
def test_cold_client_compiles_only_its_own_kernels(live, tmp_path):
    cache = tmp_path / "numba-cache"
    env = {**live["env"], "NUMBA_CACHE_DIR": str(cache)}
    client, code = _run_client(live, tmp_path, "--max-updates", "2", "--epsilon", "1", env=env)
    assert code == ExitCode.OK, client.output()
    compiled = {path.name.split(".")[0] for path in cache.rglob("*.nbi")}
    assert compiled == {name.rsplit(".", 1)[-1] for name in
                        kernel_modules("logistic_gradient", "laplace_noise", "pow_search")}


@pytest.mark.nats
@pytest.mark.slow
def test_client_without_numba_never_imports_it(live, tmp_path):
    env = {**live["env"], "TORMENTOR_NO_NUMBA": "1"}
    client, code = _run_client(live, tmp_path, "--max-updates", "3", env=env)
    assert code == ExitCode.OK, client.output()
    report = client_report(tmp_path)
    assert report["backend"] == "reference" and report["updates_accepted"] == 3
    modules = set(report["modules"])
    assert "numba" not in modules and "llvmlite" not in modules
    assert forbidden(modules) == []


@pytest.mark.nats
def test_unknown_model_is_rejected(live, tmp_path):
    client, code = _run_client(live, tmp_path, model="0123456789abcdef")
    assert code == ExitCode.CLIENT_REJECTED, client.output()
    assert "unknown_model" in client.stdout() + client.stderr()


@pytest.mark.nats
def test_data_with_the_wrong_columns_is_rejected_by_the_broker(live, tmp_path):
    narrow = write_shard_csv(tmp_path / "narrow.csv", np.ones((4, 5)), np.array([1.0, -1.0, 1.0, -1.0]))
    client, code = _run_client(live, tmp_path, data=narrow)
    assert code == ExitCode.CLIENT_REJECTED, client.output()
    assert "schema_mismatch" in client.stdout() + client.stderr()


@pytest.mark.nats
@pytest.mark.slow
def test_spent_budget_ends_the_client(live, tmp_path):
    client, code = _run_client(live, tmp_path, "--epsilon", "1", "--budget", "0.3")
    assert code == ExitCode.CLIENT_BUDGET_SPENT, client.output()
    assert "privacy budget spent" in client.stdout()
    assert 0 < client_report(tmp_path)["updates_accepted"] < 1000


@pytest.mark.nats
def test_bad_input_gets_a_clear_code_before_any_connection(live, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("LIMIT_BAL,label\n1,2,3\nfoo\n")
    client, code = _run_client(live, tmp_path, data=bad, name="bad")
    assert code == ExitCode.DATA_FORMAT, client.output()
    assert "bad.csv" in client.stderr() and "Traceback" not in client.stderr()
    client, code = _run_client(live, tmp_path, data=tmp_path / "missing.csv", name="missing")
    assert code == ExitCode.DATA_MISSING, client.output()
    client, code = _run_client(live, tmp_path, "--budget", "1", name="usage")
    assert code == ExitCode.USAGE, client.output()
    assert "--budget needs --epsilon" in client.stderr()


@pytest.mark.nats
def test_no_broker_at_the_address(live, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = start_client(tmp_path, f"nats://127.0.0.1:{port}", live["model"], live["shards"][0], live["env"])
    assert client.wait(120) == ExitCode.NATS_CONNECT, client.output()
    assert "Traceback" not in client.stderr()


@pytest.mark.nats
@pytest.mark.slow
def test_sigterm_makes_the_client_leave(live, tmp_path):
    client = start_client(tmp_path, live["url"], live["model"], live["shards"][1], live["env"])
    client.wait_for("first update accepted", 60, stream="stderr")
    assert client.stop(signal.SIGTERM) == ExitCode.INTERRUPTED, client.output()


@pytest.mark.nats
@pytest.mark.slow
def test_broker_killed_mid_run(tmp_path, credit_path):
    env = engine_env(credit_path)
    config = write_config(tmp_path / "test.yaml", stopping={"max_updates": 1_000_000, "deadline_s": 900})
    [shard] = write_shards(tmp_path, config, env, clients=1)
    broker, info = start_broker(tmp_path, config, env)
    server = descendants(broker.pid)
    curator = client = None
    try:
        curator, model = start_curator(tmp_path, tmp_path / "broker-state" / "curator.json", config, env)
        client = start_client(tmp_path, info["broker"], model, shard, env, "--timeout", "1")
        client.wait_for("first update accepted", 60, stream="stderr")
        broker.kill()  # SIGKILL: no goodbye to anyone
        assert client.wait(90) == ExitCode.BROKER_UNREACHABLE, client.output()
        assert curator.wait(120) == ExitCode.BROKER_UNREACHABLE, curator.output()
    finally:
        for process in (client, curator, broker):
            if process is not None:
                process.kill()
    assert still_alive(server) == []  # nats-server dies with its parent
