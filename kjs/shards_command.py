"""``kjs shards resize --partitions N``: grow the shards (scheduler/resize.py has the protocol).

Exit status: 0 done (or the plan, with ``--dry-run``); 2 refused (the reason on stderr, one
line, nothing changed); 3 stopped on purpose after a step (``--stop-after``, which tests use
to stand in for a crash; a re-run finishes the resize).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from core.settings import DatabaseSettings, KafkaSettings, load


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``kjs shards`` on ``kjs``'s subparsers."""
    shards = sub.add_parser(
        "shards",
        help="shards: resize --partitions N grows jobs.commands/jobs.results and moves tenants",
        description="Grow jobs.commands and jobs.results to N partitions and move every job "
        "and unfinished execution to its new shard, behind a short fence, while the "
        "schedulers run (docs/operations.md, resizing the shards).",
    )
    shards.add_argument("action", choices=("resize",))
    shards.add_argument("--partitions", type=int, required=True, help="the new count (larger)")
    shards.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    shards.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the schedulers to take the shards back (default 60)",
    )
    shards.add_argument(
        "--stop-after", choices=("started", "grown", "moved"), help=argparse.SUPPRESS
    )


def run(args: argparse.Namespace) -> int:
    from scheduler.resize import Outcome, ResizeInterrupted, ResizeRefused, resize
    from topics.admin import KafkaRefused, TopicLayoutError

    dsn = load(DatabaseSettings).database_url.get_secret_value()
    try:
        done = asyncio.run(
            resize(
                dsn,
                load(KafkaSettings),
                args.partitions,
                dry_run=args.dry_run,
                resume_timeout_s=args.wait,
                stop_after=args.stop_after,
            )
        )
    except (ResizeRefused, TopicLayoutError, KafkaRefused) as exc:
        print(f"kjs: refusing to resize: {exc}", file=sys.stderr)
        return 2
    except ResizeInterrupted as exc:
        print(f"kjs: resize {exc}; run it again to finish", file=sys.stderr)
        return 3
    if not isinstance(done, Outcome):
        print("\n".join(["dry run, nothing changed; the plan:", *done.lines()]))
        return 0
    n = done.plan.to_partitions
    print("\n".join(done.plan.lines()))
    print(
        f"resized to {n} partitions in {done.total_s:.2f} s; shards paused "
        f"{done.paused_s:.2f} s (fence and move {done.fence_s:.2f} s, then taken back)"
    )
    if done.unclaimed:
        print(
            f"kjs: shards {done.unclaimed} were not taken back within {args.wait:g} s; they "
            "are fired once a scheduler claims them (is one running?)",
            file=sys.stderr,
        )
    print(f"set KJS_COMMAND_PARTITIONS={n} for the processes started from now on")
    return 0
