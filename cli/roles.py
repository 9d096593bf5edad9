"""``tormentor-engine broker`` and ``tormentor-engine curate``: the roles as separate processes.

The broker runs until stopped; curators and clients come and go::

    host A$ tormentor-engine broker --state broker-state --set tor.mode=system ...
            # prints the address clients use; writes broker-state/curator.json (secret)
    host B$ tormentor-engine curate --broker curator.json --config configs/credit.yaml --out result
            # prints the model id; waits for training; writes result/model.json
    host C$ tormentor-engine client --broker <id>.onion --model <model id> --data mine.csv

The broker's state folder holds, all private to its owner (folder mode 0700):

``curator.json`` (0600)
    What a curator needs: how to reach the bus (``nats://`` URL, or the onion address and
    a SOCKS port) and the curator identity's nkey seed. Hand it to the curator out of
    band; whoever holds it can define models on this broker.
``broker.json``
    The public part: the address clients use (and, for a private Tor network, its SOCKS
    port), the Tor mode and the broker's process id.
``tor/broker.onion-key`` (0600)
    The onion service's private key: a restarted broker keeps its ``.onion`` address.
``nats/``
    The generated nats-server config, its log and ``endpoint.json`` (0600, seeds).

A restarted broker keeps its address but not its models (they live in memory) nor the
curator's seed (a new ``curator.json`` is written on every start).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exit_codes import ExitCode

__all__ = [
    "BROKER_FILE",
    "CURATOR_FILE",
    "CuratorFile",
    "read_curator_file",
    "serve_broker",
    "serve_curator",
    "write_curator_file",
]

#: The curator's credentials in the broker's state folder.
CURATOR_FILE = "curator.json"
#: The broker's public address information in its state folder.
BROKER_FILE = "broker.json"
#: Held (flock) while a broker serves from a state folder.
LOCK_FILE = "broker.lock"
#: Format tag of ``curator.json``.
CURATOR_FORMAT = "tormentor-engine curator v1"
#: Seconds between the broker's status lines.
STATUS_EVERY_S = 5.0
#: How long the curator keeps retrying lost requests before giving up, in seconds:
#: through Tor (circuits break and are rebuilt) and directly (the broker is gone).
CURATOR_PATIENCE_TOR_S = 180.0
CURATOR_PATIENCE_DIRECT_S = 20.0


def _say(text: str) -> None:
    print(text, flush=True)


def _load_config(args: Any) -> Any:
    """The config of ``--config`` (optional) with ``--set`` overrides applied."""
    from .config import apply_overrides, config_from_mapping, load_config

    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "config", None):
        return load_config(args.config, overrides)
    return config_from_mapping(apply_overrides({}, overrides), "--set")


# ----------------------------------------------------------------------------- curator.json


@dataclass(frozen=True)
class CuratorFile:
    """What ``curator.json`` holds: how to reach the broker, and the curator's identity.

    Attributes
    ----------
    url : str or None
        ``nats://host:port`` when the bus is reached directly (Tor off).
    onion : str or None
        ``<56 chars>.onion`` when the broker is an onion service.
    port : int
        The onion's virtual port for NATS.
    socks : str or None
        ``host:port`` of a tor SOCKS port that reaches the onion (the broker's own; a
        curator on another host uses its tor's, see ``tor.socks_port``).
    connect_options : dict
        nats-py sign-in options of the curator identity (secret); empty when the broker
        is attached to an operator's NATS server.
    """

    url: str | None
    onion: str | None = None
    port: int = 4222
    socks: str | None = None
    connect_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def tor_info(self, socks_override: str | None = None) -> dict[str, Any] | None:
        """Dial information for Tor (None when the broker is reached directly)."""
        if self.onion is None:
            return None
        socks = socks_override or self.socks
        if not socks:
            raise ValueError("curator.json names an onion but no SOCKS port: set tor.socks_port")
        host, port = parse_host_port(socks, what="SOCKS address")
        return {"onion": self.onion, "port": self.port, "socks_host": host, "socks_port": port}


def parse_host_port(text: str, *, what: str) -> tuple[str, int]:
    """Parse ``host:port`` (IPv6 in brackets); raise ValueError naming ``what``."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must look like host:port, got {text!r}")
    return host, int(port)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_curator_file(path: Path, dial: CuratorFile) -> None:
    """Write ``curator.json`` with mode 0600 (created private, replaced atomically)."""
    data = {
        "format": CURATOR_FORMAT,
        "broker": ({"url": dial.url} if dial.onion is None
                   else {"onion": dial.onion, "port": dial.port, "socks": dial.socks}),
        "curator": ({"nkeys_seed": dial.connect_options["nkeys_seed_str"],
                     "inbox_prefix": dial.connect_options["inbox_prefix"]}
                    if dial.connect_options else None),
    }
    _write_atomic(path, json.dumps(data, indent=2) + "\n", 0o600)


def read_curator_file(path: str | os.PathLike[str]) -> CuratorFile:
    """Read ``curator.json``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ConfigError
        Not a curator file (the message names the field, never the seed).
    """
    from .config import ConfigError

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError([f"not JSON (line {error.lineno})"], str(path)) from None
    problems: list[str] = []
    if not isinstance(data, dict) or data.get("format") != CURATOR_FORMAT:
        raise ConfigError([f"format: expected {CURATOR_FORMAT!r} (written by `tormentor-engine broker`)"],
                          str(path))
    broker = data.get("broker")
    curator = data.get("curator")
    options: dict[str, Any] = {}
    if curator is not None:
        if not (isinstance(curator, dict) and isinstance(curator.get("nkeys_seed"), str)
                and curator["nkeys_seed"].startswith("SU") and isinstance(curator.get("inbox_prefix"), str)):
            problems.append("curator: expected nkeys_seed (SU...) and inbox_prefix")
        else:
            options = {"nkeys_seed_str": curator["nkeys_seed"], "inbox_prefix": curator["inbox_prefix"]}
    if not isinstance(broker, dict):
        problems.append("broker: expected a mapping with url, or onion/port/socks")
        broker = {}
    url, onion, socks = broker.get("url"), broker.get("onion"), broker.get("socks")
    port = broker.get("port", 4222)
    if (url is None) == (onion is None):
        problems.append("broker: give exactly one of url and onion")
    if url is not None and not (isinstance(url, str) and "://" in url):
        problems.append("broker.url: expected nats://host:port")
    if onion is not None and not (isinstance(onion, str) and onion.endswith(".onion")):
        problems.append("broker.onion: expected <id>.onion")
    if not isinstance(port, int) or not 0 < port < 65536:
        problems.append("broker.port: expected a port number")
    if socks is not None and not isinstance(socks, str):
        problems.append("broker.socks: expected host:port")
    if problems:
        raise ConfigError(problems, str(path))
    return CuratorFile(url=url, onion=onion, port=port, socks=socks, connect_options=options)


# ----------------------------------------------------------------------------- broker


def serve_broker(args: Any) -> int:
    """``tormentor-engine broker``: serve until Ctrl-C or SIGTERM, then stop everything.

    Parameters
    ----------
    args : argparse.Namespace
        ``state`` (folder), ``config`` (optional YAML), ``overrides`` (``--set``),
        ``nats`` (attach to this server instead of starting one).

    Returns
    -------
    int
        ``OK`` after a stop signal (everything started was stopped), ``USAGE`` when
        another broker serves from the same state folder.
    """
    import dataclasses

    from .config import ConfigError

    config = _load_config(args)
    if getattr(args, "nats", None):
        transport = dataclasses.replace(config.transport, nats_url=args.nats)
        config = dataclasses.replace(config, transport=transport)
    if config.transport.nats_url and config.tor.mode != "off":
        raise ConfigError(["tor.mode: Tor needs the embedded nats-server; drop --nats/transport.nats_url "
                           "or set tor.mode=off"], "broker")
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    with open(state / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"error: another broker is serving from {state}", file=sys.stderr)
            return ExitCode.USAGE
        return asyncio.run(_broker(config, state))


async def _broker(config: Any, state: Path) -> int:
    import numpy as np

    from tormentor.engine.brokerage import Brokerage

    from .services import start_broker_service, start_bus, start_front

    for name in (CURATOR_FILE, BROKER_FILE):
        with contextlib.suppress(FileNotFoundError):
            (state / name).unlink()
    task = asyncio.current_task()
    assert task is not None
    stop = asyncio.Event()
    serving = False
    signalled = False

    def on_signal() -> None:
        nonlocal signalled
        signalled = True
        if serving:
            stop.set()
        else:
            task.cancel()  # still starting: unwind what has started

    from .signals import on_stop_signals

    with on_stop_signals(on_signal):
        try:
            async with contextlib.AsyncExitStack() as stack:
                bus = await start_bus(config, stack, state / "nats")
                if config.tor.mode == "private":
                    # The previous run's private network (left for its logs); the key stays.
                    shutil.rmtree(state / "tor" / "network", ignore_errors=True)
                if config.tor.mode != "off":
                    _say(f"starting tor ({config.tor.mode}); a private network takes about a minute")
                front = await start_front(config, stack, state / "tor", bus)
                # Never from the config's seed: a client who knew it could predict when
                # validation rounds come (and time its poison around them).
                brokerage = Brokerage(rng=np.random.default_rng(None))
                await start_broker_service(config, stack, bus, brokerage)
                _announce(state, bus, front)
                serving = True
                if signalled:
                    stop.set()
                await _watch(brokerage, stop)
                parts = ["broker service", *(["Tor"] if front.tor else []),
                         *(["nats-server"] if bus.embedded else [])]
                _say(f"stopping: {', '.join(parts)} (models in memory are dropped)")
        except asyncio.CancelledError:
            if signalled:
                raise KeyboardInterrupt from None
            raise
    _say("stopped")
    return ExitCode.OK


def _announce(state: Path, bus: Any, front: Any) -> None:
    """Write curator.json and broker.json; print what clients and the curator need."""
    if front.tor is None:
        client_address, socks = bus.url, None
        dial = CuratorFile(url=bus.url, connect_options=bus.curator_options)
    else:
        client_address = front.tor["onion"]
        socks = f"{front.tor['socks_host']}:{front.tor['socks_port']}"
        dial = CuratorFile(url=None, onion=front.tor["onion"], port=front.tor["port"], socks=socks,
                           connect_options=bus.curator_options)
    write_curator_file(state / CURATOR_FILE, dial)
    public = {"broker": client_address, "socks": socks, "tor": front.mode, "pid": os.getpid(),
              "nats_server": bus.version if bus.embedded else "external"}
    _write_atomic(state / BROKER_FILE, json.dumps(public, indent=2) + "\n", 0o644)
    _say(f"broker ready (tor {front.mode})")
    dial_flags = f"--broker {client_address}"
    if socks is not None and front.mode == "private":
        dial_flags += f" --socks {socks}"
    _say(f"  clients:  tormentor-engine client {dial_flags} --model ID --data FILE")
    _say(f"  curator:  hand {state / CURATOR_FILE} to the curator out of band (it holds a secret key)")
    if not bus.curator_options:
        _say("  (attached to an operator's NATS server: the curator signs in as the operator allows)")
    _say("  stop with Ctrl-C or SIGTERM")


async def _watch(brokerage: Any, stop: asyncio.Event) -> None:
    """Print a line per model whose aggregate progress changed, until ``stop`` is set."""
    seen: dict[str, tuple[int, int, bool]] = {}
    while True:
        for model_id, broker in list(brokerage.brokers.items()):
            progress = broker.progress()
            key = (progress.updates_accepted, progress.active_clients, progress.done)
            if model_id not in seen:
                _say(f"model {model_id}: curated ({broker.task.n_features} features, "
                     f"min_clients {broker.task.min_clients})")
            if seen.get(model_id) != key:
                state = f"done ({progress.stop_reason})" if progress.done else "training"
                _say(f"model {model_id}: {state}, {progress.updates_accepted:,} updates, "
                     f"{progress.active_clients} clients, "
                     f"validation error {100 * progress.validation_error:.2f}%")
                seen[model_id] = key
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), STATUS_EVERY_S)
        if stop.is_set():
            return


# ----------------------------------------------------------------------------- curator


def serve_curator(args: Any) -> int:
    """``tormentor-engine curate``: define a model, follow training, save the model.

    Loads the data of the config's ``data`` section (its test shard is the validation
    set), sends ``curate`` (through Tor when ``curator.json`` names an onion), prints the
    model id for the clients, shows aggregate progress, fetches the final model and
    writes ``model.json`` and ``summary.json`` (aggregate statistics only) to ``--out``.

    Returns
    -------
    int
        ``OK``; ``CURATOR_REJECTED`` when the broker refuses the task or the status
        request (the broker's error code is printed); ``BROKER_UNREACHABLE`` when the
        broker stops answering. Connection failures are raised (``NATS_CONNECT``,
        ``TOR_ONION``).
    """
    from tormentor.engine.data import load_credit, resolve_data_path

    config = _load_config(args)
    dial = read_curator_file(args.broker)
    if dial.connect_options and os.stat(args.broker).st_mode & 0o077:
        print(f"warning: {args.broker} is readable by others; it holds the curator's secret key "
              "(chmod 600 it)", file=sys.stderr)
    socks_override = f"127.0.0.1:{config.tor.socks_port}" if config.tor.socks_port else None
    tor = dial.tor_info(socks_override)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_credit(resolve_data_path(config.data.path), seed=config.seed,
                       train_fraction=config.data.train_fraction)
    from tormentor.transport.errors import ConnectionClosed, NoResponders, PayloadTooLarge, RequestTimeout

    from .signals import run_until_signalled

    try:
        return asyncio.run(run_until_signalled(_curate(config, dial, tor, data, out)))
    except (RequestTimeout, NoResponders, ConnectionClosed) as error:
        print(f"error: lost the broker ({type(error).__name__}); a model lives on the broker only "
              "while it runs", file=sys.stderr)
        return ExitCode.BROKER_UNREACHABLE
    except PayloadTooLarge:
        size = 8 * data.X_test.size + 8 * data.y_test.size
        print(f"error: the NATS server refused the curate request (its validation set is about "
              f"{size:,} bytes): raise the server's max_payload", file=sys.stderr)
        return ExitCode.NATS_PAYLOAD


async def _curate(config: Any, dial: CuratorFile, tor: dict[str, Any] | None, data: Any, out: Path) -> int:
    from tormentor.engine.curator import CuratorSession, curate_request
    from tormentor.engine.protocol import Curated, Error, Final, Wait

    from .outputs import write_json, write_model
    from .progress import Progress as ProgressDisplay
    from .services import connect_curator, task_spec

    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        curator = await connect_curator(
            stack, url=dial.url, connect_options=dial.connect_options, tor=tor,
            connect_timeout_s=config.tor.connect_timeout_s if tor else 10.0,
            request_timeout_s=config.transport.request_timeout_s,
        )
        task = task_spec(config, data.n_weights)
        reply = await curator.request(curate_request(task, data.X_test, data.y_test))
        if not isinstance(reply, Curated):
            return _refused("curate", reply)
        session = CuratorSession.from_reply(reply)
        if not tor:  # status and fetch are small: notice a gone broker sooner than curate would
            curator.timeout_s = config.transport.request_timeout_s
        _say(f"model id: {session.model_id}")
        print("give the model id to the clients out of band: "
              f"tormentor-engine client --model {session.model_id} ...", file=sys.stderr, flush=True)
        display = ProgressDisplay(config.stopping.max_updates, mode=config.output.progress)
        patient = _Patience(CURATOR_PATIENCE_TOR_S if tor else CURATOR_PATIENCE_DIRECT_S)
        try:
            while True:
                status = await patient.request(curator, session.status())
                if isinstance(status, Error):
                    return _refused("status", status)
                if status is not None:
                    display.update(status.updates_accepted, status.validation_error, status.active_clients)
                    if status.done:
                        break
                await asyncio.sleep(config.output.trace_every_s)
        finally:
            display.close()
        while True:
            final = await patient.request(curator, session.fetch())
            if isinstance(final, Final):
                break
            if final is not None and not isinstance(final, Wait):
                return _refused("fetch", final)
            await asyncio.sleep(final.retry_after_s if final is not None else 1.0)
    progress = final.progress
    write_model(out / "model.json", final.weights, data.feature_names, data.mean, data.std, data.clip)
    write_json(out / "summary.json", _curator_summary(config, session.model_id, progress, data,
                                                      time.monotonic() - started, tor is not None))
    _say(f"done ({progress.stop_reason}): {progress.updates_accepted:,} updates, validation error "
         f"{100 * progress.validation_error:.2f}%; model in {out / 'model.json'}")
    return ExitCode.OK


class _Patience:
    """Retry lost curator requests until the broker has been silent for ``patience_s``.

    A reply lost on a broken Tor circuit is routine: the request is sent again (status
    and fetch are idempotent). After ``patience_s`` of consecutive failures the transport
    error is raised (the command exits with ``BROKER_UNREACHABLE``).
    """

    def __init__(self, patience_s: float) -> None:
        self.patience_s = patience_s
        self.failing_since: float | None = None

    async def request(self, curator: Any, message: Any) -> Any:
        """The reply to ``message``, or None when this attempt was lost (try again later)."""
        from tormentor.transport.errors import ConnectionClosed, NoResponders, RequestTimeout

        try:
            reply = await curator.request(message)
        except (RequestTimeout, NoResponders, ConnectionClosed) as error:
            now = time.monotonic()
            self.failing_since = self.failing_since if self.failing_since is not None else now
            if now - self.failing_since >= self.patience_s:
                raise
            if now == self.failing_since:
                print(f"warning: lost a reply from the broker ({type(error).__name__}); retrying for up to "
                      f"{self.patience_s:.0f} s", file=sys.stderr, flush=True)
            return None
        self.failing_since = None
        return reply


def _refused(what: str, reply: Any) -> int:
    code = getattr(reply, "code", type(reply).__name__)
    message = getattr(reply, "message", "")
    print(f"error: the broker refused {what}: {code}: {message}", file=sys.stderr, flush=True)
    return ExitCode.CURATOR_REJECTED


def _curator_summary(config: Any, model_id: str, progress: Any, data: Any, wall_s: float,
                     through_tor: bool) -> dict[str, Any]:
    """Aggregate statistics only: what the broker told the curator, never per-client data."""
    from .config import config_to_mapping

    return {
        "model_id": model_id,
        "broker": "onion" if through_tor else "direct",
        "stop_reason": progress.stop_reason,
        "updates_accepted": progress.updates_accepted,
        "updates_rejected": progress.updates_rejected,
        "validation_error": progress.validation_error,
        "validation_rows": int(data.X_test.shape[0]),
        "penalties": progress.penalties,
        "evictions": progress.evictions,
        "training_seconds": progress.elapsed_s,
        "wall_seconds": wall_s,
        "seed": config.seed,
        "task": config_to_mapping(config.task),
        "stopping": config_to_mapping(config.stopping),
        "defences": config_to_mapping(config.defences),
    }
