"""``tormentor-engine experiment NAME``: the paper's evaluation (section 7), one command per figure.

Experiments and how each runs (the reasons are in each module's docstring)::

    fig5    DP-SGD, ε × batch size              in process, simulator (x = updates)
    table2  time to target, clients × Tor       real runs: NATS, client processes, private Tor
    fig8    inversion vs ε (ideal setting)      in process, simulator, strict alternation
    fig9    inversion vs bystanders and ε       in process, simulator, random broker latency
    fig10   poisoners 0-75 %, validator on/off  in process, simulator (x = virtual seconds)
    fig11   50 % poisoners, RONI thresholds     in process, simulator (x = virtual seconds)
    honest-dp  honest DP clients vs RONI 0.5 %  in process, simulator (the paper's two extra runs)
    sybil   CPU to admit N identities           in process Brokerage, real puzzle CPU time
    all     every one of them, then one report

Each writes ``results.json``, ``experiment.json``, CSV, PNG and ``report.md`` into
``--out`` (default ``runs/experiments/<name>-<timestamp>``). ``--quick`` runs the small
scale of ``configs/experiments/<name>.yaml``.
"""

from __future__ import annotations

import argparse
import importlib
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Experiment

__all__ = ["EXPERIMENTS", "ORDER", "get", "register", "run_all"]

#: name -> (module, attribute); imported only when chosen.
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "fig5": ("tormentor.cli.experiments.fig5", "FIG5"),
    "table2": ("tormentor.cli.experiments.table2", "TABLE2"),
    "fig8": ("tormentor.cli.experiments.inversion", "FIG8"),
    "fig9": ("tormentor.cli.experiments.inversion", "FIG9"),
    "fig10": ("tormentor.cli.experiments.poisoning", "FIG10"),
    "fig11": ("tormentor.cli.experiments.poisoning", "FIG11"),
    "honest-dp": ("tormentor.cli.experiments.honest_dp", "HONEST_DP"),
    "sybil": ("tormentor.cli.experiments.sybil", "SYBIL"),
}
#: The order of ``experiment all``: the in-process ones first, the real-transport one last.
ORDER = ("fig5", "fig8", "fig9", "fig10", "fig11", "honest-dp", "sybil", "table2")


def get(name: str) -> Experiment:
    """Return the experiment called ``name``.

    Raises
    ------
    KeyError
        No experiment has that name.
    """
    if name not in EXPERIMENTS:
        raise KeyError(f"no experiment named {name!r}; known: {', '.join(EXPERIMENTS)}")
    module, attribute = EXPERIMENTS[name]
    return getattr(importlib.import_module(module), attribute)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``experiment`` subcommand to ``sub``."""
    p = sub.add_parser(
        "experiment",
        help="run one of the paper's experiments (fig5, table2, fig8, fig9, fig10, fig11, honest-dp, "
        "sybil, all)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=[*EXPERIMENTS, "all"], help="which experiment")
    p.add_argument("--out", help="output folder (default runs/experiments/<name>-<timestamp>)")
    p.add_argument("--quick", action="store_true", help="the small scale: every experiment in a few minutes")
    p.add_argument("--scale", help="a named scale of the YAML file (default full; --quick = quick)")
    p.add_argument("--config", help="settings file (default configs/experiments/<name>.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a setting of the scale (repeatable), e.g. --set seeds=[1,2]; with 'all' it "
        "applies to every experiment, so use keys they all have",
    )
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from tormentor.cli.exit_codes import ExitCode

    from .runner import run_experiment

    scale = args.scale or ("quick" if args.quick else "full")
    if args.name == "all":
        if args.config:
            from tormentor.cli.config import ConfigError

            raise ConfigError(
                ["--config: names one experiment's file; it cannot be used with 'all'"], "experiment"
            )
        out = run_all(scale=scale, out=args.out, overrides=args.overrides)
        print(f"report: {out / 'report.md'}")
        return ExitCode.OK
    out = run_experiment(
        get(args.name), scale=scale, out=args.out, overrides=args.overrides, config=args.config
    )
    print(f"outputs in {out} (report.md, results.json)")
    return ExitCode.OK


def run_all(
    *, scale: str = "full", out: str | Path | None = None, overrides: list[str] | None = None
) -> Path:
    """Run every experiment (in :data:`ORDER`) into ``out/<name>``; write ``out/report.md``."""
    from tormentor.cli.report import write_report

    from .runner import run_experiment, stderr_log

    root = (
        Path(out) if out else Path("runs") / "experiments" / f"all-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    started = time.perf_counter()
    folders = []
    for name in ORDER:
        folders.append(run_experiment(get(name), scale=scale, out=root / name, overrides=overrides or []))
    path = write_report(folders, root)
    stderr_log(f"all: {time.perf_counter() - started:.0f} s; report {path}")
    return root
