"""Run ``tormentor-engine broker``, ``curate`` and ``client`` as real processes, for tests.

Every process writes its stdout and stderr to files in the test's folder (no pipes to
fill up); waits are bounded; :meth:`RoleProcess.stop` and the fixtures' teardowns kill
what is still running, so a failing test leaves no process behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

#: The console script of the environment running the tests.
ENGINE = str(Path(sys.executable).with_name("tormentor-engine"))


def engine_env(data_folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a role process: the data folder and any extra variables."""
    env = dict(os.environ)
    env["TORMENTOR_DATA"] = str(data_folder)
    env.pop("TORMENTOR_CLIENT_REPORT", None)
    env.update(extra)
    return env


def write_config(path: Path, **sections: Any) -> Path:
    """Write a small test config: one seed, tiny shards, cheap puzzles; ``sections`` override."""
    config: dict[str, Any] = {
        "seed": 7,
        "data": {"shards": "bootstrap", "shard_size": 300},
        "task": {"min_clients": 1, "client_timeout_s": 30},
        "stopping": {"max_updates": 150, "deadline_s": 300, "eval_every": 50},
        "defences": {"admission_bits": 8, "update_bits": 2, "max_latency_s": 0.0},
        "output": {"trace_every_s": 0.3, "progress": "off"},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(name, {}).update(values)
        else:
            config[name] = values
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class RoleProcess:
    """One ``tormentor-engine`` process with its output in ``<folder>/<name>.out|.err``."""

    def __init__(self, name: str, args: list[str], folder: Path, env: dict[str, str]) -> None:
        self.name = name
        self.out_path = folder / f"{name}.out"
        self.err_path = folder / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.popen = subprocess.Popen([ENGINE, *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                          env=env, cwd=folder)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def output(self) -> str:
        return f"--- {self.name} stdout\n{self.stdout()}\n--- {self.name} stderr\n{self.stderr()}"

    def wait_for(self, pattern: str, timeout_s: float, *, stream: str = "stdout") -> re.Match:
        """Wait until ``pattern`` appears in the output; fail with the output if the process ends first."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.stdout() if stream == "stdout" else self.stderr()
            found = regex.search(text)
            if found:
                return found
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}) before {pattern!r}\n"
                                     f"{self.output()}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {pattern!r} after {timeout_s} s\n{self.output()}")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} still running after {timeout_s} s\n{self.output()}") from None

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
        return self.wait(timeout_s)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


def descendants(pid: int) -> list[psutil.Process]:
    """Every live process below ``pid`` (nats-server, tors)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def still_alive(processes: list[psutil.Process], timeout_s: float = 15.0) -> list[str]:
    """Names of the processes still running (not zombies) after waiting up to ``timeout_s``."""
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    names = []
    for process in alive:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                names.append(f"{process.pid} {process.name()}")
        except psutil.NoSuchProcess:
            pass
    return names


def start_broker(folder: Path, config: Path, env: dict[str, str], *, state: Path | None = None,
                 extra: tuple[str, ...] = (), ready_timeout_s: float = 60.0,
                 name: str = "broker") -> tuple[RoleProcess, dict[str, Any]]:
    """Start ``tormentor-engine broker``; return it and its ``broker.json`` once it is ready."""
    state = state or folder / "broker-state"
    args = ["broker", "--state", str(state), "--config", str(config), *extra]
    broker = RoleProcess(name, args, folder, env)
    try:
        broker.wait_for(r"^broker ready", ready_timeout_s)
    except BaseException:
        broker.kill()
        raise
    info = json.loads((state / "broker.json").read_text())
    return broker, info


def start_curator(folder: Path, curator_file: Path, config: Path, env: dict[str, str], *,
                  out: Path | None = None, extra: tuple[str, ...] = (), timeout_s: float = 60.0,
                  name: str = "curator") -> tuple[RoleProcess, str]:
    """Start ``tormentor-engine curate``; return it and the model id it printed."""
    out = out or folder / "curator-out"
    curator = RoleProcess(name, ["curate", "--broker", str(curator_file), "--config", str(config),
                                 "--out", str(out), *extra], folder, env)
    try:
        found = curator.wait_for(r"^model id: ([0-9a-f]+)$", timeout_s)
    except BaseException:
        curator.kill()
        raise
    return curator, found.group(1)


def write_shards(folder: Path, config: Path, env: dict[str, str], clients: int) -> list[Path]:
    """Write every client's data file with ``tormentor-engine data shard``."""
    paths = []
    for index in range(clients):
        path = folder / f"client-{index}.csv"
        subprocess.run([ENGINE, "data", "shard", "--config", str(config), "--clients", str(clients),
                        "--index", str(index), "--out", str(path)], check=True, env=env, cwd=folder,
                       capture_output=True, timeout=120)
        paths.append(path)
    return paths


def start_client(folder: Path, broker: str, model: str, data: Path, env: dict[str, str], *args: str,
                 name: str = "client", report: bool = True) -> RoleProcess:
    """Start ``tormentor-engine client``; its JSON report goes to ``<folder>/<name>.json``."""
    client_env = dict(env)
    if report:
        client_env["TORMENTOR_CLIENT_REPORT"] = str(folder / f"{name}.json")
    return RoleProcess(name, ["client", "--broker", broker, "--model", model, "--data", str(data), *args],
                       folder, client_env)


def client_report(folder: Path, name: str = "client") -> dict[str, Any]:
    """The JSON report a client wrote at exit."""
    return json.loads((folder / f"{name}.json").read_text())
