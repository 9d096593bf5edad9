"""Shared benchmark helpers: tag each timing with its implementation, print speed-ups.

Benchmarks compare implementations of one computation inside one pytest-benchmark
*group*. Each benchmark says which implementation it times, in ``extra_info``:

``impl``
    Name of the implementation (``"numba"``, ``"reference"``, ``"hashlib"``, ...).
``items`` (optional)
    Work items done by one call (samples drawn, hashes tried, steps run): the summary
    then also gives the time per item, and ratios compare time per item, so calls of
    different sizes in one group stay comparable.
``effective_items`` (optional)
    Items that count after a discount, e.g. *independent* samples of an MCMC chain
    (samples / autocorrelation time); the summary prints a second, effective ratio.
any other key
    Printed as a note next to the implementation.

The :func:`bench` fixture sets these for you. At the end of the session a summary
prints, for every group, the median of each implementation and the ratio
``median(other) / median(FAST_IMPL)`` (per item when ``items`` is given): how many times
faster the fast implementation is. Timings are medians of a noisy shared machine.
Nothing here asserts a speed: benchmarks document, tests assert.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

# OpenBLAS's worker threads spin for about 2**28 cycles (~0.1 s) after every call before
# they sleep. In a benchmark session the NumPy baselines' BLAS calls then hold the second
# core while the next parallel Numba kernel runs (RONI, C = 1,000: 12 ms became 18-24 ms).
# With a short timeout BLAS keeps both its threads; they only go to sleep at once. OpenBLAS
# reads this when NumPy loads, so it must be set before the first ``import numpy``.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

#: the implementation every other one in a group is compared with
FAST_IMPL = "numba"

_RESERVED = ("impl", "items", "effective_items")


@pytest.fixture
def bench(benchmark) -> Callable[..., Any]:
    """Return ``run(impl, fn, *args, items=None, effective_items=None, rounds=None, **kw)``.

    ``run`` tags the benchmark with ``impl`` (and ``items``/``effective_items``) and times
    ``fn(*args, **kw)``: with pytest-benchmark's calibration, or, when ``rounds`` is given
    (slow calls), exactly ``rounds`` rounds of one call after one warm-up call. Returns
    what ``fn`` returned. ``effective_items`` may also be set later, in
    ``benchmark.extra_info``, once it is known.
    """

    def run(impl, fn, *args, items=None, effective_items=None, rounds=None, **kwargs):
        benchmark.extra_info["impl"] = impl
        if items is not None:
            benchmark.extra_info["items"] = items
        if effective_items is not None:
            benchmark.extra_info["effective_items"] = effective_items
        if rounds is None:
            return benchmark(fn, *args, **kwargs)
        return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=rounds, iterations=1, warmup_rounds=1)

    return run


def _format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _collect(config) -> dict[str, list[dict[str, Any]]]:
    session = getattr(config, "_benchmarksession", None)
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in getattr(session, "benchmarks", None) or []:
        stats = getattr(result, "stats", None)
        median = getattr(stats, "median", None)
        info = dict(getattr(result, "extra_info", {}) or {})
        if median is None or "impl" not in info:
            continue
        groups.setdefault(result.group or result.name, []).append({"median": median, **info})
    return groups


def _per(entry: dict[str, Any], key: str) -> float | None:
    count = entry.get(key)
    return entry["median"] / count if count else None


def summary_lines(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Format the per-group medians and speed-up ratios (one line per implementation)."""
    lines: list[str] = []
    for group in sorted(groups):
        entries = groups[group]
        fast = next((e for e in entries if e["impl"] == FAST_IMPL), None)
        lines.append(f"{group}:")
        for entry in entries:
            text = f"  {entry['impl']:<18} median {_format_seconds(entry['median']):>9}"
            per_item = _per(entry, "items")
            if per_item is not None:
                text += f"  ({_format_seconds(per_item)}/item, {1 / per_item:,.0f} items/s)"
            if fast is not None and entry is not fast:
                mine = per_item if per_item is not None else entry["median"]
                base = _per(fast, "items") if per_item is not None else fast["median"]
                if base:
                    text += f"  ratio {entry['impl']}/{FAST_IMPL} = {mine / base:.2f}x"
                per_effective = _per(entry, "effective_items")
                base_effective = _per(fast, "effective_items") or _per(fast, "items")
                if per_effective is not None and base_effective:
                    text += f"  effective ratio = {per_effective / base_effective:,.0f}x"
            notes = {k: v for k, v in entry.items() if k not in (*_RESERVED, "median")}
            if notes:
                text += "  [" + ", ".join(f"{k}={v}" for k, v in sorted(notes.items())) + "]"
            lines.append(text)
    return lines


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the speed-up summary after pytest-benchmark's own tables."""
    lines = summary_lines(_collect(config))
    if not lines:
        return
    terminalreporter.write_sep("-", f"speed-ups (medians; ratio = other / {FAST_IMPL})")
    for line in lines:
        terminalreporter.write_line(line)
