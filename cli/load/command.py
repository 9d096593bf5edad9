"""The ``load`` subcommand: its arguments, one run per client count, the one-line report of each."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from .drive import run_load
from .outputs import write_scaling
from .settings import LoadError, LoadSettings


def _client_counts(text: str) -> list[int]:
    try:
        counts = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError("client counts must be positive")
    return counts


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``load`` subcommand to ``sub``."""
    p = sub.add_parser("load", help="load-test one broker with many logical clients against an echo baseline")
    p.add_argument(
        "--clients",
        type=_client_counts,
        default=[1000],
        help="logical clients; several sizes separated by commas run one after the other (default 1000)",
    )
    p.add_argument(
        "--connections",
        choices=("own", "shared"),
        default="own",
        help="one NATS connection per client (default), or a few shared per generator process",
    )
    p.add_argument(
        "--connections-per-process", type=int, default=4, help="shared mode: connections per generator"
    )
    p.add_argument("--processes", type=int, default=2, help="generator processes (default 2)")
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of broker load and of echo load, each split over --rounds slices (default 10)",
    )
    p.add_argument(
        "--client-work",
        choices=("fixed", "dp"),
        default="fixed",
        help="per update: a fixed tiny delta (default) or one DP-SGD step on a small shard",
    )
    p.add_argument(
        "--features", type=int, default=24, help="model dimension d (default 24, the credit model)"
    )
    p.add_argument("--validation-rows", type=int, default=2000, help="rows of the synthetic validation set")
    p.add_argument("--admission-bits", type=int, default=4, help="admission puzzle difficulty (default 4)")
    p.add_argument("--update-bits", type=int, default=2, help="per-update puzzle difficulty (default 2)")
    p.add_argument(
        "--validation-rate", type=float, default=0.1, help="RONI round rate (0 turns validation off)"
    )
    p.add_argument("--k", type=int, default=2, help="every client's k (the k gate is on)")
    p.add_argument("--no-baseline", action="store_true", help="skip the echo baseline")
    p.add_argument(
        "--rounds", type=int, default=2, help="echo and broker slices alternate this many times (default 2)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=0.2,
        help="share of each slice before acks count toward the rates (default 0.2)",
    )
    p.add_argument("--think", type=float, default=0.0, help="seconds a client pauses before each update")
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--max-connect-s", type=float, default=600.0, help="time cap of the connect phase")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", help="output folder (default runs/load-<timestamp>)")
    p.set_defaults(handler=_load)


def _load(args: argparse.Namespace) -> int:
    from ..exit_codes import ExitCode
    from ..outputs import write_json

    out = Path(args.out) if args.out else Path("runs") / datetime.now().strftime("load-%Y%m%d-%H%M%S")
    summaries = []
    status = ExitCode.OK
    for clients in args.clients:
        try:
            settings = LoadSettings(
                clients=clients,
                connections=args.connections,
                connections_per_process=args.connections_per_process,
                processes=min(args.processes, clients),
                duration_s=args.duration,
                client_work=args.client_work,
                n_features=args.features,
                validation_rows=args.validation_rows,
                admission_bits=args.admission_bits,
                update_bits=args.update_bits,
                validation_rate=args.validation_rate,
                k=min(args.k, clients),
                baseline=not args.no_baseline,
                rounds=args.rounds,
                warmup_fraction=args.warmup,
                think_s=args.think,
                request_timeout_s=args.request_timeout,
                max_connect_s=args.max_connect_s,
                seed=args.seed,
            )
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return ExitCode.USAGE
        folder = out if len(args.clients) == 1 else out / f"clients-{clients}"
        try:
            summary = run_load(settings, folder)
        except LoadError as error:
            print(f"error: {clients:,} clients: {error} (partial summary in {folder})", file=sys.stderr)
            return ExitCode.INTERNAL
        summaries.append(summary)
        print(_one_line(summary, folder))
        if summary["status"] == "capped":
            status = ExitCode.USAGE
    if len(args.clients) > 1:
        write_scaling(out / "scaling.csv", summaries)
        write_json(out / "summaries.json", summaries)
    return status


def _one_line(summary: dict[str, Any], folder: Path) -> str:
    if summary["status"] == "capped":
        return f"{summary['clients']:,} clients: {summary['message']}"

    def num(key: str, fmt: str = ",.0f") -> str:
        value = summary.get(key)
        return "n/a" if value is None else format(value, fmt)

    share = summary.get("broker_share_of_ceiling")
    return (
        f"{summary['clients']:,} clients ({summary['connections']} connections): "
        f"{num('updates_per_s')} updates/s, echo {num('baseline_updates_per_s')}/s"
        f"{'' if share is None else f' (broker {100 * share:.0f}%)'}, joins {num('joins_per_s')}/s, "
        f"p50 {num('p50_ms', '.1f')} ms, p99 {num('p99_ms', '.1f')} ms; "
        f"broker RSS {num('broker_rss_mb', '.0f')} MB, "
        f"nats-server {num('server_rss_mb', '.0f')} MB; {summary['errors']} errors, "
        f"{summary['lost_updates']} lost; outputs in {folder}"
    )
