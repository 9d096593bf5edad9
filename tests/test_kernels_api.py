"""The public kernel API: names, lazy families, and no module shadowing an export."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tormentor.engine import kernels

KERNEL_DIR = Path(kernels.__file__).parent


def test_all_lists_every_exported_kernel():
    assert set(kernels.__all__) == {"BACKEND", "reference", *kernels._FAMILIES}


@pytest.mark.parametrize("name", sorted(kernels._FAMILIES))
def test_every_export_resolves_on_both_backends(name):
    assert callable(getattr(kernels, name))
    assert callable(kernels.reference(name))


def test_no_module_is_named_like_an_export():
    modules = {path.stem for path in KERNEL_DIR.glob("*.py")}
    assert not modules & set(kernels._FAMILIES), modules & set(kernels._FAMILIES)


def test_every_family_module_exists_and_defines_its_names():
    for name, (fast, ref) in kernels._FAMILIES.items():
        for module_name in (ref,) if kernels.BACKEND == "reference" else (fast, ref):
            module = importlib.import_module(f"tormentor.engine.kernels.{module_name}")
            assert hasattr(module, name), (module_name, name)
