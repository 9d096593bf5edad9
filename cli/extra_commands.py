"""Registry of the subcommands that live in their own modules (experiments, reports, load).

Each entry names a module with a ``register(subparsers)`` function; a module that does
not exist yet in this checkout is simply not offered.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["register"]

_MODULES = (
    "tormentor.cli.experiments",
    "tormentor.cli.report",
    "tormentor.cli.load",
    "tormentor.cli.data_commands",
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add every available optional subcommand to ``sub``."""
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.register(sub)
