"""Public kernel API: logistic regression, Laplace noise, RONI scores and SHA-256 search.

Each name resolves, on first use, to the Numba kernel or to its NumPy/hashlib reference
(see :mod:`._jit` for how the backend is chosen). Kernel families are imported lazily,
one module per family, so a process only compiles (or loads from the cache) what it
calls: a headless client never builds the RONI kernels or the parallel nonce search.

>>> from tormentor.engine import kernels
>>> kernels.BACKEND in ("numba", "reference")
True
"""

from __future__ import annotations

import importlib
from typing import Any

from ._jit import BACKEND

#: exported name -> (Numba module, reference module), both relative to this package.
_FAMILIES: dict[str, tuple[str, str]] = {
    "logistic_gradient": ("logistic", "logistic_reference"),
    "logistic_gradient_into": ("logistic", "logistic_reference"),
    "logistic_loss": ("logistic", "logistic_reference"),
    "error_count": ("logistic", "logistic_reference"),
    "error_rate": ("logistic", "logistic_reference"),
    "sgd_steps": ("logistic", "logistic_reference"),
    "laplace_noise": ("laplace", "laplace_reference"),
    "prepare_validation": ("roni", "roni_reference"),
    "roni_scores": ("roni", "roni_reference"),
    "roni_scores_prepared": ("roni", "roni_reference"),
    "sha256": ("sha256_pow", "sha256_pow_reference"),
    "pow_search": ("sha256_pow", "sha256_pow_reference"),
    "pow_verify": ("sha256_pow", "sha256_pow_reference"),
    "pow_scan": ("sha256_pow", "sha256_pow_reference"),
}

__all__ = ["BACKEND", "reference", *sorted(_FAMILIES)]


def reference(name: str) -> Any:
    """Return the NumPy/hashlib reference implementation of kernel ``name``.

    The references are the oracle of the tests and the baseline of the benchmarks,
    whatever backend is active.
    """
    try:
        module = _FAMILIES[name][1]
    except KeyError:
        raise AttributeError(f"no kernel named {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __getattr__(name: str) -> Any:
    try:
        numba_module, reference_module = _FAMILIES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = numba_module if BACKEND == "numba" else reference_module
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FAMILIES))
