"""The one jit decorator every kernel goes through, and the choice of backend.

Every Numba kernel in this package is compiled with the same options: an explicit
signature, ``cache=True`` (the on-disk cache lives in a writable user directory, so a
read-only install still caches), ``nogil=True`` and never ``fastmath`` (it lets LLVM
delete the ``isnan`` checks that guard the broker against poisoned input).

Backends
--------
``numba``
    The default when Numba imports.
``reference``
    Plain NumPy / hashlib implementations that sit beside every kernel. They are the
    test oracle, the benchmark baseline and the fallback. Chosen when Numba is missing,
    or forced with the environment variable ``TORMENTOR_NO_NUMBA=1``.

Numba reads ``NUMBA_CACHE_DIR`` once, when it is first imported, so :func:`kernel`
sets it (unless the user did) before the first ``import numba`` in this process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["BACKEND", "cache_dir", "kernel", "numba_disabled"]


def numba_disabled() -> bool:
    """Return True when ``TORMENTOR_NO_NUMBA`` asks for the reference backend."""
    return os.environ.get("TORMENTOR_NO_NUMBA", "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    """Return the directory that holds Numba's compiled-kernel cache.

    ``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/tormentor-engine/numba``
    (``~/.cache/tormentor-engine/numba`` when ``XDG_CACHE_HOME`` is unset).
    """
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tormentor-engine" / "numba"


def _numba_importable() -> bool:
    if numba_disabled():
        return False
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir()))
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


#: ``"numba"`` or ``"reference"``, fixed for the life of the process.
BACKEND: str = "numba" if _numba_importable() else "reference"


def kernel(signature: Any, *, parallel: bool = False) -> Callable[[Callable], Callable]:
    """Compile a function with the project's fixed Numba options.

    Parameters
    ----------
    signature : numba signature or str
        The explicit signature, e.g. ``"float64[::1](float64[::1], float64[:, ::1])"``.
        Compilation (or loading from the cache) happens when the module is imported,
        so kernel families are imported lazily by :mod:`tormentor.engine.kernels`.
    parallel : bool
        Enable ``prange`` parallel loops. Only for kernels that gain from two or more
        threads; it raises the compile cost and the memory of a process.

    Raises
    ------
    RuntimeError
        If called while the reference backend is active (a Numba module was imported
        by mistake).
    """
    if BACKEND != "numba":
        raise RuntimeError("a Numba kernel module was imported while the reference backend is active")
    import numba

    return numba.njit(
        signature,
        cache=True,
        parallel=parallel,
        nogil=True,
        fastmath=False,
        boundscheck=False,
        error_model="numpy",
    )
