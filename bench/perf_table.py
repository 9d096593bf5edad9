"""Render the README's performance table from a saved pytest-benchmark JSON run.

    python bench/perf_table.py                      # newest run under .benchmarks/, to stdout
    python bench/perf_table.py RUN.json --readme README.md   # rewrite the README's table

The table is generated, never typed: the README holds it between the markers
``<!-- perf-table:start -->`` and ``<!-- perf-table:end -->``. Each row is one
implementation in one benchmark group, with its median, its rate when the benchmark
counted work items, and its ratio to the Numba kernel of the same group.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

START = "<!-- perf-table:start -->"
END = "<!-- perf-table:end -->"
FAST_IMPL = "numba"
#: extra_info keys shown in the notes column (a benchmark's own measurements).
NOTE_KEYS = (
    "max_rss_mb", "maxrss_mb", "anonymous_mb", "first_update_s", "cpu_per_update_ms", "threads",
    "updates_per_s", "baseline_updates_per_s", "broker_share_of_ceiling", "p50_ms", "p99_ms",
    "broker_state_bytes_per_client_traced", "tau_steps",
)


def newest_run(storage: Path) -> Path:
    """Return the newest saved benchmark JSON under ``storage``."""
    runs = sorted(storage.rglob("*.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"no saved benchmark run under {storage}; run `make bench` first")
    return runs[-1]


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rate(items_per_s: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if items_per_s >= scale:
            return f"{items_per_s / scale:.3g} {unit}/s"
    return f"{items_per_s:.3g} /s"


def render(run: dict) -> str:
    """Return the markdown table for one pytest-benchmark JSON document."""
    groups: dict[str, list[dict]] = {}
    for bench in run.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        impl = info.get("impl", bench.get("name", "?"))
        notes = [f"{key} {_number(info[key])}" for key in NOTE_KEYS if info.get(key) is not None]
        if info.get("effective_items") and info.get("items"):
            effective, items = _number(info["effective_items"]), _number(info["items"])
            notes.append(f"independent samples {effective} of {items}")
        groups.setdefault(bench.get("group") or bench["name"], []).append(
            {"impl": impl, "median": bench["stats"]["median"], "items": info.get("items"),
             "effective": info.get("effective_items"), "notes": ", ".join(notes)}
        )
    machine = run.get("machine_info", {})
    cpu = (machine.get("cpu") or {}).get("brand_raw") or platform.processor() or "unknown CPU"
    lines = [
        f"Measured {run.get('datetime', '?')[:19]} on {cpu}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores, "
        f"Python {machine.get('python_version', '?')}. Medians; a shared machine varies by up to 1.5x.",
        "",
        "| benchmark | implementation | median per call | rate | vs numba | notes |",
        "|---|---|---|---|---|---|",
    ]
    for group in sorted(groups):
        entries = groups[group]
        fast = next((e for e in entries if e["impl"] == FAST_IMPL), None)
        for entry in sorted(entries, key=lambda e: e["median"]):
            per_item = entry["median"] / entry["items"] if entry["items"] else None
            rate = _rate(1.0 / per_item) if per_item else ""
            ratio = ""
            if fast is not None and entry is not fast:
                mine = per_item if per_item else entry["median"]
                base = fast["median"] / fast["items"] if per_item and fast["items"] else fast["median"]
                ratio = f"{mine / base:.2f}x slower" if mine >= base else f"{base / mine:.2f}x faster"
                if entry["effective"] and fast["items"]:
                    effective = (entry["median"] / entry["effective"]) / (fast["median"] / fast["items"])
                    ratio += f" ({effective:,.0f}x per independent sample)"
            cells = (group, entry["impl"], _seconds(entry["median"]), rate, ratio, entry["notes"])
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_table(readme: Path, table: str) -> None:
    """Rewrite the text between the markers in ``readme``."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="saved benchmark JSON (default: newest under .benchmarks/)")
    parser.add_argument("--storage", default=".benchmarks", help="where `make bench` saves runs")
    parser.add_argument("--readme", help="rewrite the table in this README instead of printing it")
    args = parser.parse_args(argv)
    path = Path(args.run) if args.run else newest_run(Path(args.storage))
    table = render(json.loads(path.read_text(encoding="utf-8")))
    if args.readme:
        replace_table(Path(args.readme), table)
        print(f"{args.readme}: performance table rewritten from {path}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
