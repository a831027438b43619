"""The fault-injection suite as a soak: every scenario of ``tests/faults`` with more jobs.

    .venv/bin/python -m bench.soak --scale 10 --runs 1

Runs ``pytest tests/faults`` ``--runs`` times with ``FAULT_SCALE`` (each scenario submits
``scale`` times as many jobs over the same span; the worker-kill scenario keeps its dozen slow
jobs), collects each scenario's report and prints the README's reliability table (Markdown),
with the median recovery per scenario over the runs. Exits non-zero if a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any


def run(scale: int, runs: int, pytest_args: list[str]) -> tuple[list[dict[str, Any]], int]:
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reports.jsonl"
        env = {**os.environ, "FAULT_SCALE": str(scale), "FAULT_REPORT_FILE": str(path)}
        for i in range(runs):
            print(f"soak run {i + 1}/{runs} (scale {scale})", file=sys.stderr, flush=True)
            argv = [sys.executable, "-m", "pytest", "tests/faults", "-q", "-p", "no:cacheprovider"]
            rc = subprocess.call([*argv, *pytest_args], env=env)
            failures += rc != 0
        text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()], failures


def table(reports: list[dict[str, Any]]) -> str:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in reports:  # a run's details in parentheses (shards, outage) are not the name
        by[re.sub(r"\s*\([^)]*\)$", "", str(r["scenario"]))].append(r)
    lines = [
        "| scenario | runs | submitted | fired | executed | lost | executed twice "
        "| re-delivered, same key | max lateness | recovery (median) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in by.items():
        rec = [float(r["recovery_s"]) for r in rs if r["recovery_s"] is not None]
        lines.append(
            f"| {name} | {len(rs)} | {sum(r['submitted'] for r in rs)} "
            f"| {sum(r['fired'] for r in rs)} | {sum(r['executed'] for r in rs)} "
            f"| {sum(r['lost'] for r in rs)} | {sum(r['executed_twice'] for r in rs)} "
            f"| {sum(r['redelivered_same_key'] for r in rs)} "
            f"| {max(float(r['max_lateness_s']) for r in rs):.2f} s "
            f"| {f'{statistics.median(rec):.2f} s' if rec else '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=10, help="jobs per scenario multiplier")
    parser.add_argument("--runs", type=int, default=1, help="times to run the whole suite")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    reports, failures = run(args.scale, args.runs, args.pytest_args)
    print(table(reports))
    if failures:
        print(f"{failures} of {args.runs} run(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
