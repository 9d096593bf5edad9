"""Regenerate the README's generated sections: the wire schema and the performance table.

    .venv/bin/python scripts/update_readme.py            # both
    .venv/bin/python scripts/update_readme.py --schema   # the wire schema only

The schema comes from the message dataclasses (tormentor.transport.codec.schema_markdown),
the performance table from the newest saved benchmark run (bench/perf_table.py). A test
checks that the README's schema section matches the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ("<!-- wire-schema:start -->", "<!-- wire-schema:end -->")
PERF = ("<!-- perf-table:start -->", "<!-- perf-table:end -->")


def schema_section() -> str:
    """The wire schema as it appears in the README (headings one level down)."""
    from tormentor.transport.codec import schema_markdown

    lines = schema_markdown().strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(("#" + line) if line.startswith("#") else line for line in lines).strip()


def replace_between(text: str, markers: tuple[str, str], body: str) -> str:
    """Return ``text`` with the part between the two markers replaced by ``body``."""
    start, end = markers
    if start not in text or end not in text:
        raise SystemExit(f"README has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", action="store_true", help="only the wire schema")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    text = replace_between(readme.read_text(encoding="utf-8"), SCHEMA, schema_section())
    if not args.schema:
        sys.path.insert(0, str(ROOT / "bench"))
        from perf_table import newest_run, render

        run = newest_run(ROOT / ".benchmarks")
        text = replace_between(text, PERF, render(json.loads(run.read_text(encoding="utf-8"))))
        print(f"performance table from {run}")
    readme.write_text(text, encoding="utf-8")
    print(f"{readme}: generated sections rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
