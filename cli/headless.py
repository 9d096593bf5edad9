"""``tormentor-engine client``: one headless client, for IoT-class devices.

It joins one model, trains on its own data file until the broker says training is over
(or its own budget or ``--max-updates`` runs out) and exits with a code that says how it
ended (``tormentor-engine exit-codes`` lists them)::

    0   OK                   training over (the broker said done), or --max-updates reached
    20  DATA_MISSING         no file at --data
    23  DATA_FORMAT          --data is not a CSV of numbers with +1/-1 (or 1/0) labels
    31  NATS_CONNECT         the broker's address does not answer
    32  BROKER_UNREACHABLE   the broker stopped answering (gone): after 3 x --timeout of
                             lost replies, or 120 s without --timeout
    42  TOR_ONION            the .onion could not be reached through the SOCKS port
    50  CLIENT_REJECTED      the broker refused the client (its error code is printed),
                             e.g. an unknown model id or a schema mismatch
    51  CLIENT_BUDGET_SPENT  one more step would exceed the client's privacy budget
    52  CLIENT_EVICTED       the broker evicted the client (RONI penalties)
    3   INTERRUPTED          Ctrl-C or SIGTERM (the client says Leave first)

What it loads is kept small: no YAML, no plotting, no broker, no RONI kernels and no
parallel puzzle search (one core searches). Numba's kernels come from the user's cache
folder (``$XDG_CACHE_HOME/tormentor-engine/numba``), so a read-only install works;
``TORMENTOR_NO_NUMBA=1`` runs the NumPy/hashlib references instead (a third of the
memory, about the same CPU per update; puzzles of many bits take much longer).

It logs plain lines on stderr; only on a terminal does it redraw one status line
instead. A ``.onion`` broker is dialled through the tor SOCKS port of ``--socks``.

Setting ``TORMENTOR_CLIENT_REPORT=FILE`` writes, at exit, a JSON report of what the
process used (peak RSS, CPU time per update, time to the first accepted update, the
modules it imported): the benchmarks and tests read it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exit_codes import ExitCode

__all__ = [
    "REPORT_ENV",
    "BrokerAddress",
    "exit_code_for_stop",
    "parse_broker_address",
    "run_headless_client",
]

#: Environment variable naming the JSON report file written at exit.
REPORT_ENV = "TORMENTOR_CLIENT_REPORT"
#: The onion's virtual port for NATS (as published by ``tormentor-engine broker``).
ONION_PORT = 4222
#: Default request timeouts (seconds): direct, and through Tor.
DIRECT_TIMEOUT_S = 10.0
TOR_TIMEOUT_S = 60.0
#: Seconds between progress lines when not on a terminal, and between redraws on one.
LOG_EVERY_S = 10.0
REDRAW_EVERY_S = 0.2

#: Stop codes of lost contact with the broker (transport error class names).
_UNREACHABLE = frozenset({"unreachable", "RequestTimeout", "NoResponders", "ConnectionClosed", "ConnectError",
                          "TransportError", "SlowConsumer", "OnionUnreachable"})
#: With ``--timeout T`` the client gives up after this many times T of lost contact.
PATIENCE_TIMEOUTS = 3


# ----------------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is: a NATS URL, or an onion address and port."""

    url: str | None = None
    onion: str | None = None
    port: int = ONION_PORT

    @property
    def through_tor(self) -> bool:
        """Whether the broker is dialled through Tor."""
        return self.onion is not None


def parse_broker_address(text: str) -> BrokerAddress:
    """Parse ``--broker``: ``nats://HOST:PORT``, ``ID.onion[:PORT]`` or ``tor://ID.onion[:PORT]``.

    Raises
    ------
    ValueError
        Anything else (the message shows the accepted forms).
    """
    value = text.strip()
    if value.startswith("tor://"):
        value = value[len("tor://"):]
    if "://" in value:
        scheme = value.split("://", 1)[0]
        if scheme not in ("nats", "tls") or not value.split("://", 1)[1]:
            raise ValueError(f"--broker must be nats://HOST:PORT or ID.onion[:PORT], got {text!r}")
        return BrokerAddress(url=value)
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(ONION_PORT)
    if not host.endswith(".onion") or len(host) <= len(".onion") or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise ValueError(f"--broker must be nats://HOST:PORT or ID.onion[:PORT], got {text!r}")
    return BrokerAddress(onion=host, port=int(port))


def _parse_socks(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--socks must be HOST:PORT, got {text!r}")
    return host, int(port)


# ----------------------------------------------------------------------------- exit codes


def exit_code_for_stop(stop: Any, stopped_for: str) -> ExitCode:
    """Map how a :class:`~tormentor.engine.client.LearningClient` stopped to an exit code.

    Parameters
    ----------
    stop : Stop
        The client's final action (``reason``, ``ok``, ``code``).
    stopped_for : str
        The client's ``stopped_for``: ``"budget"``, ``"max_updates"`` or ``""``.

    Returns
    -------
    ExitCode
        ``CLIENT_BUDGET_SPENT`` when the client left because of its budget; ``OK`` for
        any other normal end; ``CLIENT_EVICTED``; ``BROKER_UNREACHABLE`` for lost
        contact; ``NATS_PERMISSION``; otherwise ``CLIENT_REJECTED`` (a broker error code,
        an unexpected or undecodable reply, repeated expiry).
    """
    if stopped_for == "budget":
        return ExitCode.CLIENT_BUDGET_SPENT
    if stop.ok:
        return ExitCode.OK
    if stop.code == "evicted":
        return ExitCode.CLIENT_EVICTED
    if stop.code in _UNREACHABLE:
        return ExitCode.BROKER_UNREACHABLE
    if stop.code == "PermissionDenied":
        return ExitCode.NATS_PERMISSION
    return ExitCode.CLIENT_REJECTED


# ----------------------------------------------------------------------------- output


class _Lines:
    """Log lines on stderr; on a terminal, one redrawn status line between them."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._status_shown = False
        self._last_progress = -math.inf

    def say(self, text: str) -> None:
        if self._status_shown:
            self.stream.write("\r\x1b[K")
            self._status_shown = False
        self.stream.write(f"{time.strftime('%H:%M:%S')} client: {text}\n")
        self.stream.flush()

    def progress(self, text: str) -> None:
        now = time.monotonic()
        if self.live:
            if now - self._last_progress >= REDRAW_EVERY_S:
                self._last_progress = now
                self.stream.write("\r\x1b[K" + text)
                self.stream.flush()
                self._status_shown = True
            return
        if now - self._last_progress >= LOG_EVERY_S:
            self._last_progress = now
            self.say(text)

    def close(self) -> None:
        if self._status_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._status_shown = False


@dataclass
class _Report:
    """What the process used; written as JSON to ``$TORMENTOR_CLIENT_REPORT`` at exit."""

    started_perf: float
    started_epoch: float
    exit_code: int | None = None
    stop: dict[str, Any] = field(default_factory=dict)
    updates_accepted: int = 0
    first_update_s: float | None = None
    first_update_epoch: float | None = None
    cpu_at_first_update_s: float | None = None
    cpu_at_last_update_s: float | None = None

    def accepted(self) -> None:
        self.updates_accepted += 1
        cpu = time.process_time()
        if self.first_update_s is None:
            self.first_update_s = time.perf_counter() - self.started_perf
            self.first_update_epoch = time.time()
            self.cpu_at_first_update_s = cpu
        self.cpu_at_last_update_s = cpu

    def write_if_asked(self) -> None:
        path = os.environ.get(REPORT_ENV)
        if not path:
            return
        backend = None
        kernels = sys.modules.get("tormentor.engine.kernels")
        if kernels is not None:
            backend = getattr(kernels, "BACKEND", None)
        cpu_per_update = None
        if self.updates_accepted >= 2 and self.cpu_at_first_update_s is not None:
            spent = self.cpu_at_last_update_s - self.cpu_at_first_update_s
            cpu_per_update = spent / (self.updates_accepted - 1)
        data = {
            "exit_code": self.exit_code,
            "stop": self.stop,
            "backend": backend,
            "updates_accepted": self.updates_accepted,
            "first_update_s": self.first_update_s,
            "first_update_epoch": self.first_update_epoch,
            "started_epoch": self.started_epoch,
            "cpu_s": time.process_time(),
            "cpu_per_update_s": cpu_per_update,
            "maxrss_kib": _peak_rss_kib(),
            "rss_kib": _current_rss_kib(),
            "anonymous_kib": _anonymous_kib(),
            "modules": sorted(name for name, module in sys.modules.items() if module is not None),
        }
        Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _peak_rss_kib() -> int:
    """Peak resident memory of this process image, in KiB.

    ``VmHWM`` from /proc: ``ru_maxrss`` is inherited across fork and exec on Linux, so a
    client started by a big parent (a test runner) would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _anonymous_kib() -> int | None:
    """Private anonymous memory (heap, Python objects), without file-backed library pages."""
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _current_rss_kib() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            resident_pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


# ----------------------------------------------------------------------------- the client


def run_headless_client(args: Any) -> int:
    """``tormentor-engine client``: run one client to its end; return its exit code.

    Parameters
    ----------
    args : argparse.Namespace
        ``broker``, ``model``, ``data``, ``epsilon``, ``batch``, ``k``, ``budget``,
        ``delta``, ``lr``, ``socks``, ``timeout``, ``max_updates`` (see ``--help``).

    Returns
    -------
    int
        An :class:`~tormentor.cli.exit_codes.ExitCode`. Connection and data-format
        failures are raised, and the command line maps them (``NATS_CONNECT``,
        ``TOR_ONION``, ``DATA_FORMAT``).
    """
    report = _Report(started_perf=time.perf_counter(), started_epoch=time.time())
    _keep_imports_small(allow_scipy=args.budget is not None)
    try:
        code = _run(args, report)
        report.exit_code = int(code)
        return code
    finally:
        report.write_if_asked()


def _keep_imports_small(*, allow_scipy: bool) -> None:
    """Hide optional packages that Numba imports on its own but a client never uses.

    ``import numba`` imports PyYAML when it is installed (to read an optional
    ``.numba_config.yaml``) and SciPy (to check its version), about 25 MB of memory on a
    machine that has them. The client marks them absent (``sys.modules[name] = None``,
    so their import raises ImportError, which Numba handles) before Numba loads. SciPy
    stays available when a privacy budget is kept: ``dp-accounting`` needs it.
    """
    hidden = ["yaml"] if allow_scipy else ["yaml", "scipy"]
    for name in hidden:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


def _usage_problem(args: Any) -> str | None:
    if args.batch < 1:
        return "--batch must be >= 1"
    if args.k < 1:
        return "--k must be >= 1"
    if args.epsilon is not None and not (args.epsilon > 0 and math.isfinite(args.epsilon)):
        return "--epsilon must be a positive number"
    if args.budget is not None and args.epsilon is None:
        return "--budget needs --epsilon (a budget without differential privacy means nothing)"
    if args.budget is not None and not args.budget > 0:
        return "--budget must be > 0"
    if not 0 < args.delta < 1:
        return "--delta must be in (0, 1)"
    if not args.lr > 0:
        return "--lr must be > 0"
    if args.timeout is not None and not args.timeout > 0:
        return "--timeout must be > 0"
    if args.max_updates is not None and args.max_updates < 0:
        return "--max-updates must be >= 0"
    return None


def _run(args: Any, report: _Report) -> int:
    lines = _Lines()
    if logging.getLogger().level > logging.DEBUG:
        # nats-py logs every failed (re)connect attempt with a traceback: keep lines short.
        logging.getLogger("nats").setLevel(logging.CRITICAL)
    problem = _usage_problem(args)
    try:
        address = parse_broker_address(args.broker)
        socks = _parse_socks(args.socks) if address.through_tor else None
    except ValueError as error:
        problem = problem or str(error)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    data_path = Path(args.data)
    if not data_path.is_file():
        print(f"error: client data file not found: {data_path}", file=sys.stderr)
        return ExitCode.DATA_MISSING
    client = _build_client(args, data_path)
    lines.say(f"{client.x.shape[0]:,} rows x {client.n_features} columns from {data_path.name}; "
              f"model {args.model}; broker {'onion' if address.through_tor else address.url}")
    timeout = args.timeout or (TOR_TIMEOUT_S if address.through_tor else DIRECT_TIMEOUT_S)
    patience_s = PATIENCE_TIMEOUTS * args.timeout if args.timeout else None
    try:
        outcome = asyncio.run(_drive(client, address, socks, timeout, patience_s, lines, report))
    finally:
        lines.close()
    if outcome is None:
        report.exit_code = int(ExitCode.INTERRUPTED)
        raise KeyboardInterrupt  # the command line reports it as INTERRUPTED
    stop = outcome.stop
    report.stop = {"reason": stop.reason, "ok": stop.ok, "code": stop.code, "stopped_for": client.stopped_for}
    code = exit_code_for_stop(stop, client.stopped_for)
    print(f"stopped: {_ending(stop, client.stopped_for)}; {outcome.updates_sent:,} updates sent, "
          f"{outcome.waits} waits, {outcome.rejoins} rejoins; exit {int(code)} {code.name.lower()}",
          flush=True)
    return code


def _ending(stop: Any, stopped_for: str) -> str:
    """One phrase for how the client ended (never a secret: broker messages hold none)."""
    if stopped_for == "budget":
        return "privacy budget spent (left the model)"
    if stopped_for == "max_updates":
        return "--max-updates reached (left the model)"
    if stop.ok:
        return f"training over ({stop.reason})"
    return f"{stop.reason} ({stop.code})" if stop.code else stop.reason


def _build_client(args: Any, data_path: Path) -> Any:
    from tormentor.engine.client import LearningClient
    from tormentor.engine.dp_sgd import LearningRate, StepConfig

    from .shard_file import read_shard_csv

    x, y = read_shard_csv(data_path)
    step = StepConfig(
        batch=args.batch,
        epsilon=math.inf if args.epsilon is None else float(args.epsilon),
        clip=1.0,
        lam=0.001,
        learning_rate=LearningRate(initial=args.lr, decay_steps=1000.0, power=0.5),
    )
    budget = None
    if args.budget is not None:
        from tormentor.engine.ledger import PrivacyLedger

        budget = PrivacyLedger(budget_epsilon=args.budget, budget_delta=args.delta,
                               accounting=getattr(args, "accounting", None) or "pld")
    return LearningClient(x, y, model_id=args.model, k=args.k, step=step, budget=budget,
                          max_updates=args.max_updates, pow_threads=1)


@dataclass
class _Connection:
    """The client's connection, filled in once it is open (closed by :func:`_drive`)."""

    nc: Any = None
    requester: Any = None
    forwarders: list[Any] = field(default_factory=list)


async def _drive(client: Any, address: BrokerAddress, socks: tuple[str, int] | None, timeout: float,
                 patience_s: float | None, lines: _Lines, report: _Report) -> Any:
    """Run the client to its end; return its outcome, or None when a stop signal ended it.

    On SIGINT or SIGTERM the client stops where it is, sends ``Leave`` (so the broker's
    count of active clients stays honest) and closes its connection. The training runs
    in its own task and is not awaited for long after its cancellation: before Python
    3.12, ``asyncio.wait_for`` can swallow a cancellation that races with a reply.
    """
    from .signals import on_stop_signals

    connection = _Connection()
    stop = asyncio.Event()
    work = asyncio.create_task(_connect_and_train(client, address, socks, timeout, patience_s, lines, report,
                                                  connection))
    signalled = asyncio.create_task(stop.wait())
    try:
        with on_stop_signals(stop.set):
            await asyncio.wait({work, signalled}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                return work.result()
            lines.say("stopping: leaving the model")
            work.cancel()
            await asyncio.wait({work}, timeout=2.0)
            await _leave(client, connection)
            return None
    finally:
        signalled.cancel()
        await _close(connection)
        if not work.done():
            work.cancel()
            await asyncio.wait({work}, timeout=2.0)


async def _leave(client: Any, connection: _Connection) -> None:
    from tormentor.engine.protocol import Leave

    if client.token is None or connection.requester is None:
        return
    try:
        leave = Leave(model_id=client.model_id, token=client.token)
        await asyncio.wait_for(connection.requester.request(leave), 2.0)
    except Exception:  # best effort: the broker may be gone too
        pass


async def _close(connection: _Connection) -> None:
    if connection.nc is not None:
        try:
            await asyncio.wait_for(connection.nc.close(), 2.0)
        except Exception:
            pass
    for forwarder in connection.forwarders:
        try:
            await forwarder.close()
        except Exception:
            pass


async def _connect_and_train(client: Any, address: BrokerAddress, socks: tuple[str, int] | None,
                             timeout: float, patience_s: float | None, lines: _Lines, report: _Report,
                             connection: _Connection) -> Any:
    from tormentor.engine.protocol import Admitted, Challenge, Error, Wait, Work
    from tormentor.transport.client_runner import NatsRequester, connect_client, drive_client

    if address.through_tor:
        from tormentor.transport.tor_client import connect_through_tor

        assert socks is not None
        info = {"onion": address.onion, "port": address.port, "socks_host": socks[0], "socks_port": socks[1]}
        lines.say(f"dialling the onion through tor's SOCKS port {socks[0]}:{socks[1]}")
        connection.nc = await connect_through_tor(info, connect_timeout_s=timeout,
                                                  forwarders=connection.forwarders, name="client")
    else:
        connection.nc = await connect_client(address.url, connect_timeout_s=min(timeout, DIRECT_TIMEOUT_S),
                                             name="client")
    connection.requester = NatsRequester(connection.nc, timeout_s=timeout)
    waiting = False
    started = time.monotonic()

    def on_reply(_index: int, reply: Any) -> None:
        nonlocal waiting
        if isinstance(reply, Work):
            report.accepted()
            if report.updates_accepted == 1:
                lines.say(f"first update accepted after {report.first_update_s:.2f} s")
            rate = report.updates_accepted / max(time.monotonic() - started, 1e-9)
            lines.progress(f"{report.updates_accepted:,} updates accepted ({rate:.1f}/s), "
                           f"{client.stats.waits} waits")
        if isinstance(reply, Wait):
            if not waiting:
                lines.say(f"waiting: {reply.reason or 'the broker asks to wait'}")
            waiting = True
            return
        waiting = False
        if isinstance(reply, Challenge):
            lines.say(f"joining: admission puzzle of {reply.bits} bits")
        elif isinstance(reply, Admitted):
            lines.say("admitted")
        elif isinstance(reply, Error):
            lines.say(f"broker says {reply.code}: {reply.message}")

    patience = {} if patience_s is None else {"patience_s": patience_s}
    return await drive_client(client, connection.requester, on_reply=on_reply, **patience)
