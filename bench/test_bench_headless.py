"""The headless client on a small device: memory, CPU per update, time to the first update.

A real broker and curator (``tormentor-engine broker`` / ``curate``, Tor off, the
credit config's defences: 16-bit admission puzzle, 4-bit update puzzles, reply latency
up to 50 ms) serve one model; each sample starts a fresh ``tormentor-engine client``
process that sends 200 updates and exits. The client's own report
(``TORMENTOR_CLIENT_REPORT``) gives:

- ``maxrss_mb``: peak resident memory (``VmHWM``; ``ru_maxrss`` would be the parent's),
  and ``anonymous_mb``: the part that is private anonymous memory (heap, Python
  objects), i.e. without the pages of shared libraries such as LLVM's, which other
  processes share and the kernel can drop;
- ``cpu_per_update_ms``: process CPU time between the first and the last accepted
  update, per update (DP step, puzzle, encoding, I/O);
- ``first_update_s``: from the start of the process (before ``exec``) to the first
  accepted update.

Modes (the ``impl`` of each benchmark):

``numba``
    the user's Numba cache already holds the client's kernels (after one untimed run);
``numba-cold-cache``
    ``NUMBA_CACHE_DIR`` is an empty folder: the client compiles its kernels (logistic,
    Laplace, serial SHA-256 search; never RONI or the parallel search);
``reference``
    ``TORMENTOR_NO_NUMBA=1``: NumPy and hashlib only;
``numba-budget``
    warm, with a privacy budget (``--epsilon 1 --budget 5``, room for about 19,000
    steps): the ledger's tight accounting loads ``dp-accounting`` and SciPy, and plans
    the steps that fit (its cost grows with the budget: a budget of 100 took 21 s and
    300 MiB on this machine).

Goals (issue 7): RSS under 150 MB with Numba, under 60 MB without; first update
within 2 s on a warm cache. Nothing here asserts them: the numbers are printed (run with
``-s``) and saved to ``.benchmarks/headless-client.json`` for the README table. Timings
come from a shared 2-core machine and vary.

Run: ``.venv/bin/pytest bench/test_bench_headless.py -s``; smoke: ``--benchmark-disable``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENGINE = str(Path(sys.executable).with_name("tormentor-engine"))
UPDATES = 200
RESULTS: dict[str, dict] = {}

pytestmark = pytest.mark.nats


def _data_folder() -> Path:
    for folder in (os.environ.get("TORMENTOR_DATA"), REPO.parent / "shared" / "data" / "credit"):
        if folder and (Path(folder) / "creditcard.csv").is_file():
            return Path(folder)
    pytest.fail("creditcard.csv not found: set TORMENTOR_DATA to the folder that holds it")


def _wait_for_line(path: Path, prefix: str, process: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        if process.poll() is not None:
            raise RuntimeError(f"{path.name}: exited {process.returncode} before {prefix!r}:\n"
                               f"{path.read_text()}")
        time.sleep(0.1)
    raise RuntimeError(f"{path.name}: no {prefix!r} after {timeout_s} s")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A broker and a curator serving one long model; one client's data file."""
    folder = tmp_path_factory.mktemp("headless")
    env = {**os.environ, "TORMENTOR_DATA": str(_data_folder())}
    config = ["--config", str(REPO / "configs" / "credit.yaml"), "--set", "tor.mode=off",
              "--set", "task.min_clients=1", "--set", "stopping.max_updates=100000000",
              "--set", "stopping.deadline_s=3600", "--set", "output.progress=off"]
    data = folder / "client.csv"
    subprocess.run([ENGINE, "data", "shard", "--clients", "10", "--index", "0", "--out", str(data), *config],
                   env=env, check=True, capture_output=True, timeout=120)
    processes = []
    try:
        with (folder / "broker.out").open("wb") as out:
            broker = subprocess.Popen([ENGINE, "broker", "--state", str(folder / "state"), *config],
                                      stdout=out, stderr=subprocess.STDOUT, env=env)
        processes.append(broker)
        _wait_for_line(folder / "broker.out", "broker ready", broker, 60)
        url = json.loads((folder / "state" / "broker.json").read_text())["broker"]
        with (folder / "curator.out").open("wb") as out:
            curator = subprocess.Popen([ENGINE, "curate", "--broker", str(folder / "state" / "curator.json"),
                                        "--out", str(folder / "result"), *config],
                                       stdout=out, stderr=subprocess.DEVNULL, env=env)
        processes.append(curator)
        model = _wait_for_line(folder / "curator.out", "model id:", curator, 60).split()[-1]
        yield {"folder": folder, "env": env, "url": url, "model": model, "data": data}
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def run_client(service, env_overrides: dict[str, str], *args: str) -> dict:
    """Start one client process; return its report with start-relative times."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        env = {**service["env"], **env_overrides, "TORMENTOR_CLIENT_REPORT": str(report_path)}
        started = time.time()
        done = subprocess.run([ENGINE, "client", "--broker", service["url"], "--model", service["model"],
                               "--data", str(service["data"]), "--max-updates", str(UPDATES), *args],
                              env=env, capture_output=True, text=True, timeout=600)
        wall = time.time() - started
        assert done.returncode == 0, done.stderr
        report = json.loads(report_path.read_text())
    report.pop("modules")
    report["wall_s"] = wall
    report["first_update_from_exec_s"] = report["first_update_epoch"] - started
    return report


MODES = {
    "numba": ({}, ()),
    "numba-cold-cache": (None, ()),  # NUMBA_CACHE_DIR: a fresh empty folder per sample
    "reference": ({"TORMENTOR_NO_NUMBA": "1"}, ()),
    "numba-budget": ({}, ("--epsilon", "1", "--budget", "5")),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_headless_client(benchmark, service, mode):
    overrides, args = MODES[mode]
    if mode.startswith("numba") and mode != "numba-cold-cache":
        run_client(service, overrides, *args)  # make sure the user cache holds the client's kernels
    samples: list[dict] = []

    def one_client():
        if overrides is None:
            with tempfile.TemporaryDirectory() as cache:
                samples.append(run_client(service, {"NUMBA_CACHE_DIR": cache}, *args))
        else:
            samples.append(run_client(service, overrides, *args))

    benchmark.group = f"headless client: start, {UPDATES} updates, exit"
    benchmark.extra_info["impl"] = mode
    rounds = 1 if benchmark.disabled or mode == "numba-cold-cache" else 3
    benchmark.pedantic(one_client, rounds=rounds, iterations=1, warmup_rounds=0)
    summary = {
        "samples": len(samples),
        "backend": samples[0]["backend"],
        "maxrss_mb": round(max(s["maxrss_kib"] for s in samples) / 1024, 1),
        "anonymous_mb": round(max(s["anonymous_kib"] or 0 for s in samples) / 1024, 1),
        "cpu_per_update_ms": round(1e3 * min(s["cpu_per_update_s"] for s in samples), 3),
        "first_update_s": round(min(s["first_update_from_exec_s"] for s in samples), 2),
        "first_update_s_max": round(max(s["first_update_from_exec_s"] for s in samples), 2),
        "wall_s": round(min(s["wall_s"] for s in samples), 2),
    }
    benchmark.extra_info.update(summary)
    RESULTS[mode] = summary
    _save()


def _save() -> None:
    out = REPO / ".benchmarks" / "headless-client.json"
    out.parent.mkdir(exist_ok=True)
    saved = json.loads(out.read_text()).get("modes", {}) if out.is_file() else {}
    saved.update(RESULTS)  # a run of some modes keeps the others' last numbers
    out.write_text(json.dumps({"updates": UPDATES, "machine_cores": os.cpu_count(), "modes": saved},
                              indent=2) + "\n")
    print("\n" + render_table(saved))


def render_table(results: dict[str, dict]) -> str:
    """Markdown table of the modes measured so far (MiB; seconds; milliseconds)."""
    lines = ["| client | peak RSS (MiB) | of which private anonymous | CPU per update "
             "| first update from exec |", "|---|---|---|---|---|"]
    for mode, r in results.items():
        lines.append(f"| {mode} | {r['maxrss_mb']} | {r['anonymous_mb']} | {r['cpu_per_update_ms']} ms | "
                     f"{r['first_update_s']} s (worst {r['first_update_s_max']} s) |")
    return "\n".join(lines)
