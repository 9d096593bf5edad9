"""``tormentor-engine data shard``: write one client's share of the credit data as its data file.

For the three-terminal example (and any test bed): each client gets the file
``tormentor-engine client --data`` reads (:mod:`tormentor.cli.shard_file`), holding its
preprocessed rows, 24 columns (23 standardised features and the bias) and the label.

The split, the standardisation (the training rows' mean and standard deviation) and the
shards all derive from one seed, so the curator (``curate`` with the same config and
seed: its validation set is the test shard) and every client agree on what the columns
mean without exchanging data. In a real deployment each party has its own data and the
preprocessing statistics are agreed out of band.

Registered through :mod:`tormentor.cli.extra_commands` under the existing ``data`` command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .exit_codes import ExitCode

__all__ = ["register", "write_client_shard"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``shard`` to the ``data`` command's subcommands (if ``data`` exists)."""
    data_parser = sub.choices.get("data")
    if data_parser is None:
        return
    data_sub = next((a for a in data_parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if data_sub is None:
        return
    p = data_sub.add_parser("shard", help="write one client's preprocessed rows as its --data CSV")
    p.add_argument("--clients", type=int, required=True, help="number of clients N sharing the training set")
    p.add_argument("--index", type=int, required=True, help="this client's index, 0..N-1")
    p.add_argument("--out", required=True, help="CSV to write (24 feature columns incl. bias, then label)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the split and shards (default: the config's; the curator's must match)")
    p.add_argument("--config", default=None, help="YAML config (its data section and seed are used)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.set_defaults(handler=_shard)


def _shard(args: argparse.Namespace) -> int:
    from .config import ConfigError, apply_overrides, config_from_mapping, load_config

    config = (load_config(args.config, args.overrides) if args.config
              else config_from_mapping(apply_overrides({}, args.overrides), "--set"))
    seed = args.seed if args.seed is not None else config.seed
    if seed is None:
        raise ConfigError(["seed: give --seed or set seed in the config: every client's shard and the "
                           "curator's preprocessing must come from the same split"], "data shard")
    if args.clients < 1 or not 0 <= args.index < args.clients:
        print(f"error: need --clients >= 1 and 0 <= --index < --clients, got {args.clients} and {args.index}",
              file=sys.stderr)
        return ExitCode.USAGE
    rows, columns = write_client_shard(config, seed=seed, clients=args.clients, index=args.index,
                                       out=args.out)
    print(f"wrote {args.out}: client {args.index} of {args.clients}, {rows:,} rows, "
          f"{columns} feature columns (bias included) + label; seed {seed}")
    return ExitCode.OK


def write_client_shard(config: Any, *, seed: int, clients: int, index: int, out: str) -> tuple[int, int]:
    """Write client ``index``'s shard of the training set to ``out``; return (rows, feature columns).

    Parameters
    ----------
    config : RunConfig
        Uses ``data`` (path, train_fraction, shards, shard_size).
    seed : int
        Seed of the split and of the shards (the same for every client and the curator).
    clients, index : int
        Number of shards and which one to write.
    out : str
        The CSV to write.
    """
    from tormentor.engine.data import client_shards, load_credit, resolve_data_path

    from .shard_file import write_shard_csv

    data = load_credit(resolve_data_path(config.data.path), seed=seed,
                       train_fraction=config.data.train_fraction)
    shards = client_shards(data.X_train, data.y_train, clients, mode=config.data.shards,
                           size=config.data.shard_size, seed=seed)
    x, y = shards[index]
    write_shard_csv(out, x, y, data.feature_names)
    return int(x.shape[0]), int(x.shape[1])
