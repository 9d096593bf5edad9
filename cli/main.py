"""``tormentor-engine``: the command line. Parses arguments, dispatches, maps errors to exit codes.

Subcommands import what they need only when chosen, so ``tormentor-engine client`` on a
small device never imports YAML, plotting or the broker.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from .exit_codes import HELP, ExitCode

__all__ = ["main"]

log = logging.getLogger("tormentor")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a whole experiment on this machine (NATS, broker, curator, clients)")
    p.add_argument("config", help="YAML config, e.g. configs/credit.yaml")
    p.add_argument("--out", help="output folder (default runs/<timestamp>)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (repeatable), e.g. --set tor.mode=off",
    )
    p.set_defaults(handler=_run)


def _add_broker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "broker", help="serve as the broker: nats-server + broker, optionally as an onion service"
    )
    p.add_argument("--config", help="YAML config (transport and tor sections are used)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("--state", default="broker-state", help="folder for the onion key and server files")
    p.add_argument("--nats", help="attach to an existing NATS server/cluster instead of starting one")
    p.set_defaults(handler=_broker)


def _add_curate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curate", help="define a model on a broker, wait for training, save the model")
    p.add_argument(
        "--broker", required=True, help="broker file written by `tormentor-engine broker` (curator.json)"
    )
    p.add_argument("--config", default=None, help="YAML config (task, stopping, defences, data sections)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("--out", default="curator-out", help="folder for model.json and summary.json")
    p.set_defaults(handler=_curate)


def _add_client(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="one headless client (for IoT-class devices)")
    p.add_argument("--broker", required=True, help="nats://HOST:PORT, or ONION.onion[:PORT] through tor")
    p.add_argument("--model", required=True, help="model id (from the curator, out of band)")
    p.add_argument(
        "--data", required=True, help="CSV with the client's rows: features..., label (+1/-1 or 1/0)"
    )
    p.add_argument("--epsilon", type=float, default=None, help="DP epsilon per step (default: no DP)")
    p.add_argument("--batch", type=int, default=10, help="batch size b")
    p.add_argument("--k", type=int, default=1, help="minimum number of clients you require")
    p.add_argument(
        "--budget", type=float, default=None, help="total privacy budget epsilon (needs --epsilon)"
    )
    p.add_argument("--delta", type=float, default=1e-5, help="budget delta")
    p.add_argument("--accounting", choices=("pld", "amplified", "basic"), default=None,
                   help="how the budget composes (default pld: tight; needs the privacy extra)")
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate")
    p.add_argument("--socks", default="127.0.0.1:9050", help="tor SOCKS address for .onion brokers")
    p.add_argument("--timeout", type=float, default=None, help="request timeout in seconds")
    p.add_argument("--max-updates", type=int, default=None)
    p.set_defaults(handler=_client)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="manage the credit-card data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download creditcard.csv and check its SHA-256")
    fetch.add_argument("--dest", help="folder to put it in (default: the user cache folder)")
    fetch.add_argument("--url", help="download address (default: the TorML repository)")
    fetch.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when the data is already found ($TORMENTOR_DATA or the cache)",
    )
    fetch.set_defaults(handler=_data_fetch)


def _add_warmup(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("warmup", help="compile every Numba kernel into the cache, once")
    p.set_defaults(handler=_warmup)


def _add_exit_codes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exit-codes", help="list the exit codes and what each means")
    p.set_defaults(handler=_exit_codes)


def _add_optional(sub: argparse._SubParsersAction) -> None:
    """Subcommands defined by their own modules (experiments, reports, load tests)."""
    from . import extra_commands

    extra_commands.register(sub)


# ----------------------------------------------------------------------------- handlers


def _run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .run import run_experiment

    config = load_config(args.config, args.overrides)
    return run_experiment(config, out=args.out)


def _broker(args: argparse.Namespace) -> int:
    from .roles import serve_broker

    return serve_broker(args)


def _curate(args: argparse.Namespace) -> int:
    from .roles import serve_curator

    return serve_curator(args)


def _client(args: argparse.Namespace) -> int:
    from .headless import run_headless_client

    return run_headless_client(args)


def _data_fetch(args: argparse.Namespace) -> int:
    from tormentor.engine.data import DataMissingError, default_data_dir, resolve_data_path
    from tormentor.engine.data_fetch import DEFAULT_URL, fetch_credit

    if args.if_missing:
        try:
            path = resolve_data_path(None)
        except DataMissingError:
            pass
        else:
            print(f"data found: {path}")
            return ExitCode.OK
    dest = args.dest or default_data_dir()
    path = fetch_credit(dest, url=args.url or DEFAULT_URL)
    print(f"data ready: {path}")
    return ExitCode.OK


def _warmup(args: argparse.Namespace) -> int:
    from tormentor.engine.kernels import BACKEND
    from tormentor.engine.kernels._jit import cache_dir
    from tormentor.engine.kernels.warmup import warm

    print(f"kernel backend: {BACKEND}; cache: {cache_dir()}")
    for family, seconds in warm().items():
        print(f"  {family:16s} {seconds:7.2f} s")
    return ExitCode.OK


def _exit_codes(args: argparse.Namespace) -> int:
    for code in ExitCode:
        print(f"{int(code):3d}  {code.name.lower():20s} {HELP[code]}")
    return ExitCode.OK


# ----------------------------------------------------------------------------- errors -> exit codes


def _exit_code_for(error: BaseException) -> tuple[ExitCode, str]:
    """Map a library exception to an exit code and a one-line message (no traceback)."""
    from tormentor.engine.data import DataFormatError, DataMissingError
    from tormentor.engine.data_fetch import ChecksumMismatchError, DownloadError

    from .config import ConfigError

    table: list[tuple[type[BaseException], ExitCode]] = [
        (ConfigError, ExitCode.CONFIG_INVALID),
        (DataMissingError, ExitCode.DATA_MISSING),
        (ChecksumMismatchError, ExitCode.DATA_CHECKSUM),
        (DownloadError, ExitCode.DATA_DOWNLOAD),
        (DataFormatError, ExitCode.DATA_FORMAT),
    ]
    table.extend(_transport_table())
    for cls, code in table:
        if isinstance(error, cls):
            return code, str(error)
    if isinstance(error, FileNotFoundError):
        return ExitCode.CONFIG_NOT_FOUND, str(error)
    return ExitCode.INTERNAL, f"{type(error).__name__}: {error}"


def _transport_table() -> list[tuple[type[BaseException], ExitCode]]:
    """Transport and Tor exceptions, imported only if their modules are importable."""
    table: list[tuple[type[BaseException], ExitCode]] = []
    try:
        from tormentor.transport import errors as nats_errors
    except ImportError:
        nats_errors = None
    if nats_errors is not None:
        table += [
            (nats_errors.ServerStartError, ExitCode.NATS_START),
            (nats_errors.PermissionDenied, ExitCode.NATS_PERMISSION),
            (nats_errors.PayloadTooLarge, ExitCode.NATS_PAYLOAD),
            (nats_errors.RequestTimeout, ExitCode.BROKER_UNREACHABLE),
            (nats_errors.NoResponders, ExitCode.BROKER_UNREACHABLE),
            (nats_errors.ConnectionClosed, ExitCode.BROKER_UNREACHABLE),
            (nats_errors.ConnectError, ExitCode.NATS_CONNECT),
        ]
    try:
        from tormentor.transport.tor import errors as tor_errors
    except ImportError:
        tor_errors = None
    if tor_errors is not None:
        table += [
            (tor_errors.TorNotInstalled, ExitCode.TOR_MISSING),
            (tor_errors.TorBootstrapTimeout, ExitCode.TOR_BOOTSTRAP),
            (tor_errors.OnionPublishError, ExitCode.TOR_ONION),
            (tor_errors.OnionUnreachable, ExitCode.TOR_ONION),
            (tor_errors.TorError, ExitCode.TOR_PROCESS),
        ]
    return table


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tormentor-engine",
        description="Brokered learning: anonymous, differentially private multi-party training (TorMentor).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_run, _add_broker, _add_curate, _add_client, _add_data, _add_warmup, _add_exit_codes):
        add(sub)
    _add_optional(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tormentor-engine`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # stem resets its own logger to TRACE when imported; the Tor facade caps it at this level.
    if args.verbose >= 2:
        os.environ.setdefault("TORMENTOR_STEM_LOG", "DEBUG")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        print("interrupted; stopped everything", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return ExitCode.OK
    except Exception as error:  # the one place errors become exit codes
        code, message = _exit_code_for(error)
        if code == ExitCode.INTERNAL:
            log.exception("internal error")
        print(f"error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
