"""The architecture is what the tree says: the engine never touches the network."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import tormentor.engine

TRANSPORT_LIBRARIES = ("nats", "stem", "python_socks", "msgpack", "nkeys")

CHILD = r"""
import importlib, importlib.abc, pkgutil, sys

BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"engine imported {{name}}")
        return None

sys.meta_path.insert(0, Block())
import tormentor.engine
names = [m.name for m in pkgutil.walk_packages(tormentor.engine.__path__, "tormentor.engine.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def engine_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(tormentor.engine.__path__, "tormentor.engine.")]


def test_every_engine_module_imports_without_any_transport_library():
    child = CHILD.format(blocked=set(TRANSPORT_LIBRARIES))
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip().splitlines()[-1]) == len(engine_modules())


def test_engine_has_the_modules_the_readme_names():
    names = {name.rsplit(".", 1)[-1] for name in engine_modules()}
    expected = {"protocol", "broker", "brokerage", "aggregator", "validator", "pow", "client", "dp_sgd",
                "ledger", "privacy", "curator", "model", "data", "data_fetch", "centralised", "simulation",
                "kernels", "attacks"}
    assert expected <= names, expected - names
