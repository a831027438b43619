"""``kjs``: the one entry point. Each subcommand reads its settings once, here or below."""

from __future__ import annotations

import argparse
import asyncio
import sys

from core.settings import DatabaseSettings, InfraSettings, KafkaSettings, load
from kjs import jobs_command, shards_command
from schemas.v1.statuses import LANES


def _infra(args: argparse.Namespace) -> int:
    from infra.__main__ import main as infra_main

    return infra_main([args.action])


def _topics(args: argparse.Namespace) -> int:
    from topics.admin import KafkaRefused, TopicLayoutError, create_topics
    from topics.catalog import catalog

    kafka = load(KafkaSettings)
    try:
        created = asyncio.run(create_topics(kafka, catalog(kafka)))
    except (TopicLayoutError, KafkaRefused) as exc:
        print(f"kjs: {exc}", file=sys.stderr)
        return 2
    for name in created:
        print(f"created {name}")
    if not created:
        print("all topics exist with the expected layout")
    return 0


def _db(args: argparse.Namespace) -> int:
    from core.db import migrate_url

    applied = asyncio.run(migrate_url(load(DatabaseSettings).database_url.get_secret_value()))
    print("\n".join(f"applied {n}" for n in applied) or "database is up to date")
    return 0


def _keys(args: argparse.Namespace) -> int:
    import uuid

    from api.keys import ActsFor, KeyError_
    from kjs.keys_command import create, listing, revoke

    dsn = load(DatabaseSettings).database_url.get_secret_value()
    if args.action == "create":
        tenants = tuple(t for arg in (args.tenants or []) for t in arg.split(",") if t)
        try:
            acts_for = ActsFor(args.user_id, tenants, args.all_tenants)
        except KeyError_ as exc:
            print(
                f"kjs: keys create needs one of --user-id, --tenants, --all-tenants: {exc}",
                file=sys.stderr,
            )
            return 2
        scopes = [s for arg in (args.scope or ["read,write"]) for s in arg.split(",") if s]
        return asyncio.run(create(dsn, acts_for, scopes, args.name))
    if args.action == "list":
        return asyncio.run(listing(dsn, args.user_id, args.json))
    if not args.key_id:
        print("kjs: keys revoke needs a KEY_ID", file=sys.stderr)
        return 2
    try:
        key_id = uuid.UUID(args.key_id)
    except ValueError:
        print(f"kjs: {args.key_id!r} is not a key id", file=sys.stderr)
        return 2
    return asyncio.run(revoke(dsn, key_id))


def _scheduler(args: argparse.Namespace) -> int:
    from scheduler.main import run

    run(loglevel=args.loglevel, metrics_port=args.metrics_port)
    return 0


def _worker(args: argparse.Namespace) -> int:
    if args.processes > 1:
        return asyncio.run(_worker_processes(args))
    import uvloop

    from workers.main import run

    uvloop.run(run(args.lane, metrics_port=args.metrics_port))
    return 0


async def _worker_processes(args: argparse.Namespace) -> int:
    """``kjs worker --processes N``: N worker processes of one lane, one per core, each a
    member of the lane's group (Python runs one core per process). Child i serves its
    metrics on ``--metrics-port`` + i, and is worker ``<KJS_WORKER_ID>-i`` when an id is set
    (else host-pid, unique as it is)."""
    from core.settings import WorkerSettings
    from kjs.children import run_until_stopped, start_children

    base_id = load(WorkerSettings).worker_id
    argvs, env = {}, {}
    for i in range(args.processes):
        name = f"worker-{args.lane}-{i}"
        argv = [sys.executable, "-m", "kjs.cli"]
        if args.loglevel:
            argv += ["--loglevel", args.loglevel]
        argv += ["worker", "--lane", args.lane]
        if args.metrics_port is not None:
            argv += ["--metrics-port", str(args.metrics_port + i)]
        argvs[name] = argv
        if base_id:
            env[name] = {"KJS_WORKER_ID": f"{base_id}-{i}"}
    return await run_until_stopped(await start_children(argvs, env))


def _processes(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"--processes must be 1 to 256, not {n}")
    return n


def _api(args: argparse.Namespace) -> int:
    from api.main import run
    from console.app import mount_console

    # The web console under /ui/, mounted here so that the API knows nothing of it.
    asyncio.run(run(extend=mount_console))
    return 0


def _lag(args: argparse.Namespace) -> int:
    from lag.command import LagOptions, run
    from lag.status import Thresholds

    options = LagOptions(
        groups=args.group or (),
        include_kjs=not args.no_kjs_groups,
        json=args.json,
        watch_s=args.watch,
        serve=args.serve,
        host=args.host,
        port=args.port,
        samples=args.samples,
        interval_s=args.interval,
        thresholds=Thresholds(
            window=args.window, min_samples=args.min_samples, stop_after_s=args.stop_after
        ),
        drain_target_s=args.drain_target,
    )
    return asyncio.run(run(load(KafkaSettings), options))


def _dlq(args: argparse.Namespace) -> int:
    from kjs.dlq import list_letters, replay_letter
    from topics.catalog import catalog

    kafka = load(KafkaSettings)
    cat = catalog(kafka)
    if args.action == "replay":
        if args.offset is None:
            print("kjs: dlq replay needs --offset (and --partition)", file=sys.stderr)
            return 2
        return asyncio.run(replay_letter(kafka, cat, args.partition, args.offset, sys.stdout))
    return asyncio.run(list_letters(kafka, cat, args.limit, sys.stdout))


def _dev(args: argparse.Namespace) -> int:
    from kjs.dev import run_dev

    return asyncio.run(run_dev(load(InfraSettings), args.loglevel))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kjs", description="kjs, the Kafka-native job scheduler")
    p.add_argument(
        "--loglevel",
        choices=("debug", "info", "warning", "error"),
        help="overrides KJS_LOG_LEVEL",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="run Kafka, Postgres, scheduler, workers and API locally")
    sc = sub.add_parser("scheduler", help="run a scheduler instance")
    sc.add_argument("--metrics-port", type=int, help="serve /metrics, /healthz, /readyz")
    w = sub.add_parser("worker", help="run a worker for one lane")
    w.add_argument("--lane", choices=LANES, default="normal")
    w.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics, /healthz, /readyz (process i of --processes on this port + i)",
    )
    w.add_argument(
        "--processes",
        type=_processes,
        default=1,
        help="run N worker processes of the lane, to use N cores (default 1)",
    )
    sub.add_parser("api", help="run the HTTP API and the web console (/ui/)")
    i = sub.add_parser("infra", help="the local broker and database")
    i.add_argument("action", choices=("up", "down", "status", "logs"))
    t = sub.add_parser("topics", help="topic management")
    t.add_argument("action", choices=("create",))
    d = sub.add_parser("db", help="database management")
    d.add_argument("action", choices=("migrate",))
    k = sub.add_parser(
        "keys",
        help="API keys: create (prints the key once), list, revoke",
        description="An API key acts for one tenant (--user-id), or, as a service key, for "
        "several (--tenants a,b) or all (--all-tenants), with scopes read, write, admin "
        "(admin covers read and write). Only a hash of each key is stored.",
    )
    k.add_argument("action", choices=("create", "list", "revoke"))
    k.add_argument("key_id", nargs="?", help="the key to revoke")
    k.add_argument("--user-id", help="the tenant the key acts for (list: keys covering it)")
    k.add_argument(
        "--tenants",
        action="append",
        metavar="A,B",
        help="a service key for these tenants (repeatable or comma-separated)",
    )
    k.add_argument("--all-tenants", action="store_true", help="a service key for every tenant")
    k.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="read, write or admin; repeatable or comma-separated (default read,write)",
    )
    k.add_argument("--name", default="", help="a label for the key")
    k.add_argument("--json", action="store_true", help="list as JSON lines")
    q = sub.add_parser("dlq", help="dead letters: list them, or replay one as a new run")
    q.add_argument("action", choices=("list", "replay"))
    q.add_argument("--partition", type=int, default=0)
    q.add_argument("--offset", type=int, help="the dead letter to replay")
    q.add_argument("--limit", type=int, default=100, help="newest letters per partition")
    lag = sub.add_parser(
        "lag",
        help="consumer lag and status of kjs's groups (and --group ones); --serve exports it",
        description="Offset lag, time lag and a Burrow-like status per group and partition. "
        "A one-shot run takes --samples samples --interval seconds apart; --watch refreshes; "
        "--serve runs the Prometheus exporter. See the README's 'Consumer lag'.",
    )
    lag.add_argument(
        "--group", action="append", metavar="NAME", help="also this consumer group (repeatable)"
    )
    lag.add_argument(
        "--no-kjs-groups", action="store_true", help="only the --group groups, not kjs's own"
    )
    lag.add_argument("--json", action="store_true", help="JSON (one document per sample)")
    mode = lag.add_mutually_exclusive_group()
    mode.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=5.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 5) until Ctrl-C",
    )
    mode.add_argument("--serve", action="store_true", help="serve Prometheus gauges on --port")
    lag.add_argument("--host", default="127.0.0.1", help="exporter listen address")
    lag.add_argument("--port", type=int, default=9468, help="exporter port (default 9468)")
    lag.add_argument("--samples", type=int, default=3, help="one-shot samples (default 3)")
    lag.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="seconds between samples: one-shot 1.5, exporter 10 by default",
    )
    lag.add_argument("--window", type=int, default=10, help="samples per status window")
    lag.add_argument(
        "--min-samples", type=int, default=3, help="samples STALL and WARN need (default 3)"
    )
    lag.add_argument(
        "--stop-after",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="lag without progress for this long is STOP (default 120)",
    )
    lag.add_argument(
        "--drain-target",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="the workers-needed hint drains the lag within this (default 60)",
    )
    jobs_command.add_parser(sub)
    shards_command.add_parser(sub)
    return p


HANDLERS = {
    "dev": _dev,
    "scheduler": _scheduler,
    "worker": _worker,
    "api": _api,
    "infra": _infra,
    "topics": _topics,
    "db": _db,
    "dlq": _dlq,
    "keys": _keys,
    "lag": _lag,
    "jobs": jobs_command.run,
    "shards": shards_command.run,
}


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. A mistake the user can make (an unknown or invalid ``KJS_*``
    setting, a service that cannot be reached) is one line on stderr and a non-zero exit,
    never a traceback: 2 for settings and usage, 1 for an unreachable service."""
    from pydantic import ValidationError

    from core.logs import configure
    from core.settings import ObservabilitySettings, UnknownSettingError, settings_error
    from core.tracing import TracingConfigError

    args = parser().parse_args(argv)
    try:
        configure(load(ObservabilitySettings), args.loglevel)
        return HANDLERS[args.command](args)
    except UnknownSettingError as exc:
        return _fail(str(exc), 2)
    except ValidationError as exc:
        return _fail(settings_error(exc), 2)
    except TracingConfigError as exc:
        return _fail(str(exc), 2)
    except ConnectionError as exc:  # refused or reset: a service is not running
        return _fail(f"cannot connect: {exc} (`kjs infra up` starts the local services)", 1)
    except OSError as exc:  # host not found, no such file
        return _fail(str(exc) or type(exc).__name__, 1)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, status: int) -> int:
    print(f"kjs: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
