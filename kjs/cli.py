"""``kjs``: the one entry point. Each subcommand reads its settings once, here or below."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from kjs.settings import LANES, DatabaseSettings, InfraSettings, KafkaSettings, load


def _infra(args: argparse.Namespace) -> int:
    from infra.__main__ import main as infra_main

    return infra_main([args.action])


def _topics(args: argparse.Namespace) -> int:
    from topics.admin import TopicLayoutError, create_topics
    from topics.catalog import catalog

    kafka = load(KafkaSettings)
    try:
        created = asyncio.run(create_topics(kafka.kafka_bootstrap, catalog(kafka)))
    except TopicLayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in created:
        print(f"created {name}")
    if not created:
        print("all topics exist with the expected layout")
    return 0


def _db(args: argparse.Namespace) -> int:
    from schemas.db import migrate_url

    applied = asyncio.run(migrate_url(load(DatabaseSettings).database_url.get_secret_value()))
    print("\n".join(f"applied {n}" for n in applied) or "database is up to date")
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    from scheduler.main import run

    run(loglevel=args.loglevel)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from workers.main import run

    asyncio.run(run(args.lane))
    return 0


def _api(args: argparse.Namespace) -> int:
    from api.main import run

    asyncio.run(run())
    return 0


def _lag(args: argparse.Namespace) -> int:
    from topics.lag import group_lag, kjs_groups

    kafka = load(KafkaSettings)
    groups = args.group or kjs_groups(kafka)
    rows = asyncio.run(group_lag(kafka.kafka_bootstrap, groups))
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    print(f"{'GROUP':32} {'TOPIC':28} {'PART':>4} {'COMMITTED':>10} {'END':>10} {'LAG':>8}")
    for r in rows:
        committed = "-" if r.committed is None else str(r.committed)
        print(f"{r.group:32} {r.topic:28} {r.partition:>4} {committed:>10} {r.end:>10} {r.lag:>8}")
    return 0


def _dev(args: argparse.Namespace) -> int:
    from kjs.dev import run_dev

    return asyncio.run(run_dev(load(InfraSettings)))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kjs", description="kjs, the Kafka-native job scheduler")
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="run Kafka, Postgres, scheduler, workers and API locally")
    sub.add_parser("scheduler", help="run a scheduler instance")
    w = sub.add_parser("worker", help="run a worker for one lane")
    w.add_argument("--lane", choices=LANES, default="normal")
    sub.add_parser("api", help="run the HTTP API")
    i = sub.add_parser("infra", help="the local broker and database")
    i.add_argument("action", choices=("up", "down", "status", "logs"))
    t = sub.add_parser("topics", help="topic management")
    t.add_argument("action", choices=("create",))
    d = sub.add_parser("db", help="database management")
    d.add_argument("action", choices=("migrate",))
    lag = sub.add_parser("lag", help="consumer lag of kjs's groups (or --group)")
    lag.add_argument("--group", action="append", help="a consumer group (repeatable)")
    lag.add_argument("--json", action="store_true")
    return p


HANDLERS = {
    "dev": _dev,
    "scheduler": _scheduler,
    "worker": _worker,
    "api": _api,
    "infra": _infra,
    "topics": _topics,
    "db": _db,
    "lag": _lag,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return HANDLERS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
