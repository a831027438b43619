"""``python -m infra up|down|status|logs``: the supervisor without the kjs CLI.

``.ci/run`` uses this so that CI can bring the services up even when the CLI is broken, and
so that a failing start can always print the services' logs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from core.settings import InfraSettings, load
from infra import supervisor
from infra.paths import Layout
from infra.process import InfraError, log_tail


def _logs(infra: InfraSettings) -> str:
    layout = Layout.of(infra)
    paths = (layout.kafka_server_log, layout.kafka_out, layout.pg_log)
    return "\n".join(log_tail(p) for p in paths)


async def _main(command: str, infra: InfraSettings) -> int:
    if command == "up":
        await supervisor.up(infra)
    elif command == "down":
        await supervisor.down(infra)
    elif command == "logs":
        print(_logs(infra))
        return 0
    for name, line in (await supervisor.status(infra)).items():
        print(f"{name}: {line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "logs"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return asyncio.run(_main(args.command, load(InfraSettings)))
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
