"""Start, stop and report the local broker and database, as the CLI and test fixtures need.

Both services are started concurrently (the broker's JVM dominates, Postgres hides behind
it), each with the same readiness deadline counted from its launch. Every entry point holds
the data dir's lock, so racing callers (a test fixture and ``.ci/run``, say) see each other's
work instead of duplicating it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from core.settings import InfraSettings
from infra import broker, database, jars
from infra.paths import Layout, exclusive
from infra.process import InfraError

__all__ = ["READY_DEADLINE_S", "InfraError", "down", "status", "up"]

log = logging.getLogger(__name__)

# Readiness deadline once a service is launched. Resolving the broker's jars on a fresh
# machine is not counted: it is a download, bounded separately by jars.MAVEN_TIMEOUT_S.
READY_DEADLINE_S = 120.0
LOCK_TIMEOUT_S = jars.MAVEN_TIMEOUT_S + READY_DEADLINE_S


async def _gather(*aws: asyncio.Future[None] | asyncio.Task[None]) -> None:
    """Run both halves to completion and report every failure, not just the first."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    for err in errors:
        if not isinstance(err, Exception):
            raise err  # cancellation and interrupts are not ours to summarise
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InfraError("\n\n".join(str(e) for e in errors))


async def up(infra: InfraSettings) -> None:
    """Make sure the broker and Postgres run and answer, reusing whatever already does."""
    layout = Layout.of(infra)
    started = time.monotonic()
    async with exclusive(layout, LOCK_TIMEOUT_S):
        # Also when the broker already runs: the Kafka tools (kafka-consumer-groups, used to
        # check the lag monitor) come from the same jars, and a pom change adds some.
        await jars.resolve_jars(layout, infra.kafka_version)
        await _gather(
            asyncio.ensure_future(broker.start(infra, READY_DEADLINE_S)),
            asyncio.ensure_future(database.start(infra, READY_DEADLINE_S)),
        )
    log.info("infra up in %.1f s (data in %s)", time.monotonic() - started, layout.root)


async def down(infra: InfraSettings) -> None:
    """Stop both services by their recorded PIDs; anything kjs did not start is left alone."""
    async with exclusive(Layout.of(infra), LOCK_TIMEOUT_S):
        await _gather(
            asyncio.ensure_future(broker.stop(infra)),
            asyncio.ensure_future(database.stop(infra)),
        )


async def status(infra: InfraSettings) -> dict[str, str]:
    """One line per service, e.g. ``{"kafka": "running pid 123 on 127.0.0.1:9092"}``."""
    kafka, postgres = await asyncio.gather(broker.state(infra), database.state(infra))
    return {"kafka": str(kafka), "postgres": str(postgres)}
