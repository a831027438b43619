"""``kjs shards resize --partitions N``: more shards, online, behind one short fence.

A shard is a partition of ``jobs.commands`` (and the same partition of the co-partitioned
``jobs.results``); a tenant's shard is ``murmur2(user_id) % partitions``, so a new count
moves tenants. The due topics are keyed by job_id and do not change. The protocol:

1. Lock: take the resize lock (a Postgres session lock; a crash frees it). Held by another
   ``kjs shards resize``: refused. An unfinished resize (a crash left its row) to the same
   count is resumed from its step; to another count, refused. Otherwise a count not above
   the topics' is refused (Kafka cannot remove partitions), and a row records the resize.
2. Grow: add partitions to ``jobs.results`` and ``jobs.commands`` up to N (a topic that has
   them is left alone). Nothing moves yet: Postgres still routes by the old count, and the
   schedulers, which learn the count only from the shard rows, re-route any record that a
   producer with fresh metadata puts on a new partition back to its old-count shard. The
   group rebalances onto the new partitions as its metadata refreshes (5 s in the
   scheduler); a scheduler that claims a new shard now finds no jobs on it, and routes by
   the old count. The resize waits (up to ``--wait``) until a scheduler owns every new
   shard, so that step 4 needs no rebalance and the fence is short.
3. Fence and move, in one transaction: bump the epoch of every shard 0..N-1 in the name
   "kjs resize", with ``partitions = N`` on each row. The bump waits for the in-flight write
   of every old owner and fences each later one. Then move every job and unfinished
   execution to ``murmur2(user_id) % N`` and record the step. All or nothing: a crash here
   rolls back to step 2's state, and a re-run does it again.
4. Resume: the schedulers are not told; each finds out on its next write to a shard, which
   the fence refuses, or within a second by looking for its shards held in the resize's
   name (``Shards._watch_resizes``; a shard with nothing to write would otherwise not
   notice). The instance Kafka assigns the shard to takes it back if the row still names
   the resize (a new epoch, with the count N: ``Shards.reclaim``), restarts the shard's
   timer, which reloads the moved jobs and re-sends the moved outbox, and applies the
   refused batch of commands or results again (idempotent). A claim on a rebalance learns
   N from the row as well.
   From then on commands and results on a partition that is not their tenant's under N
   (producers that learn of the new partitions within their metadata age) are re-routed to
   it, so an in-flight result reaches the shard its execution moved to. The resize waits
   (up to ``--wait``) until a scheduler holds every shard, then records that it is done; a
   shard nobody took back by then (no scheduler running) resumes when one claims it.

Jobs due during the resize fire once, late by at most the time from step 3 to their shard's
timer restarting: before step 3 the old owners fire them; an execution fired and not yet
marked dispatched moves with its job and is re-sent (a worker runs an execution once, by its
claim); after step 4 the new owners fire them. Re-running the command after a crash at any
point finishes the same resize.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from core.settings import KafkaSettings
from scheduler.store import resize as store
from topics.admin import grow_topics, topic_partitions
from topics.catalog import catalog
from topics.partitioner import partition_for

DEADLOCK_TRIES = 3


class ResizeRefused(RuntimeError):
    """The resize cannot be done as asked; nothing was changed."""


class ResizeInterrupted(RuntimeError):
    """A run stopped on purpose after a step (``stop_after``), as a crash would stop it."""


@dataclass(frozen=True)
class Plan:
    commands: str
    results: str
    from_partitions: int
    to_partitions: int
    jobs: int
    jobs_moving: int
    executions: int
    executions_moving: int
    tenants_moving: int
    # The step an interrupted resize of the same count got past, when this run resumes it.
    resuming: str | None = None

    def lines(self) -> list[str]:
        p, n = self.from_partitions, self.to_partitions
        head = f"resize from {p} to {n} partitions"
        if self.resuming is not None:
            head += f" (resuming an interrupted run after step {self.resuming!r})"
        return [
            head + ":",
            "  1. lock the resize (one at a time) and record it in kjs_resizes",
            f"  2. grow {self.results} and {self.commands} from {p} to {n} partitions",
            f"  3. fence shards 0..{n - 1} (epochs bumped) and move {self.jobs_moving} of "
            f"{self.jobs} jobs and {self.executions_moving} of {self.executions} unfinished "
            f"executions ({self.tenants_moving} tenants) to murmur2(user_id) % {n}",
            f"  4. wait for the schedulers to take the {n} shards back; set "
            f"KJS_COMMAND_PARTITIONS={n} for the processes started from now on",
        ]


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    fence_s: float  # the fence-and-move transaction (step 3); 0 when resumed past it
    # From the fence until every shard is owned again: how late a job due meanwhile can be.
    paused_s: float
    total_s: float  # step 1 to every shard claimed again (or the wait gave up)
    unclaimed: list[int]  # shards no scheduler took back within the wait


async def resize(
    dsn: str,
    kafka: KafkaSettings,
    partitions: int,
    *,
    dry_run: bool = False,
    resume_timeout_s: float = 60.0,
    stop_after: str | None = None,
) -> Plan | Outcome:
    """Run the protocol above (the plan only, with ``dry_run``); :class:`ResizeRefused` with
    the reason before anything changed."""
    began = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        if not await store.try_lock(conn):
            running = await store.unfinished(conn)
            what = "" if running is None else f" (to {running.to_partitions} partitions)"
            raise ResizeRefused(f"another resize is running{what}; wait for it to finish")
        prior = await store.unfinished(conn)
        plan = await _plan(conn, kafka, partitions, prior)
        if dry_run:
            return plan

        def stop(step: str) -> None:
            if stop_after == step:
                raise ResizeInterrupted(f"stopped after step {step!r}")

        resize_id = (
            prior.resize_id if prior else await store.start(conn, plan.from_partitions, partitions)
        )
        step = prior.step if prior else store.STARTED
        stop(store.STARTED)
        if step == store.STARTED:
            await grow_topics(kafka, [plan.results, plan.commands], partitions)
            await store.record_step(conn, resize_id, store.GROWN)
            step = store.GROWN
        stop(store.GROWN)
        fence_s = 0.0
        fenced_at = time.monotonic()
        if step == store.GROWN:
            await _wait_claimed(conn, partitions, resume_timeout_s)
            fenced_at = time.monotonic()
            await _fence_and_move(conn, resize_id, partitions)
            fence_s = time.monotonic() - fenced_at
        stop(store.MOVED)
        unclaimed = await _wait_claimed(conn, partitions, resume_timeout_s)
        paused_s = time.monotonic() - fenced_at
        await store.finish(conn, resize_id)
        return Outcome(plan, fence_s, paused_s, time.monotonic() - began, unclaimed)
    finally:
        await conn.close()


async def _fence_and_move(conn: asyncpg.Connection, resize_id: int, partitions: int) -> None:
    """Step 3, again if Postgres chose it as a deadlock's victim: the move updates many
    execution rows, in no order a worker's batched claim could agree with."""
    for attempt in range(1, DEADLOCK_TRIES + 1):
        try:
            await store.fence_and_move(conn, resize_id, partitions, _shard_of(partitions))
            return
        except asyncpg.DeadlockDetectedError:
            if attempt == DEADLOCK_TRIES:
                raise


def _shard_of(partitions: int) -> Callable[[str], int]:
    return lambda user_id: partition_for(user_id.encode(), partitions)


async def _plan(
    conn: asyncpg.Connection, kafka: KafkaSettings, partitions: int, prior: store.Unfinished | None
) -> Plan:
    cat = catalog(kafka)
    names = [cat.commands.name, cat.results.name]
    counts = await topic_partitions(kafka, names)
    missing = [n for n in names if n not in counts]
    if missing:
        raise ResizeRefused(f"no topic {', '.join(missing)}: run `kjs topics create` first")
    if prior is not None:
        if prior.to_partitions != partitions:
            raise ResizeRefused(
                f"an interrupted resize from {prior.from_partitions} to {prior.to_partitions} "
                f"partitions is unfinished (after step {prior.step!r}); finish it first: "
                f"kjs shards resize --partitions {prior.to_partitions}"
            )
        current = prior.from_partitions
    else:
        current = counts[cat.commands.name]
        if counts[cat.results.name] != current:
            raise ResizeRefused(
                f"{cat.commands.name} ({current}) and {cat.results.name} "
                f"({counts[cat.results.name]}) have different partition counts; they must be "
                "co-partitioned (see docs/architecture.md, changing the partition count)"
            )
        if partitions < current:
            raise ResizeRefused(
                f"cannot shrink {cat.commands.name} from {current} to {partitions} partitions: "
                "Kafka cannot remove a topic's partitions"
            )
        if partitions == current:
            raise ResizeRefused(
                f"{cat.commands.name} has {current} partitions already; nothing to resize "
                "(a resize only grows)"
            )
    who = await store.tenants(conn)
    jobs_moving, runs_moving, tenants_moving = who.moves(_shard_of(partitions))
    return Plan(
        commands=cat.commands.name,
        results=cat.results.name,
        from_partitions=current,
        to_partitions=partitions,
        jobs=sum(n for _, _, n in who.jobs),
        jobs_moving=jobs_moving,
        executions=sum(n for _, _, n in who.executions),
        executions_moving=runs_moving,
        tenants_moving=tenants_moving,
        resuming=None if prior is None else prior.step,
    )


async def _wait_claimed(conn: asyncpg.Connection, partitions: int, timeout_s: float) -> list[int]:
    """Wait until a scheduler owns every shard (none missing, none in the resize's name);
    the shards still without one when ``timeout_s`` ran out."""
    deadline = time.monotonic() + timeout_s
    while True:
        unclaimed = await store.unclaimed_shards(conn, partitions)
        if not unclaimed or time.monotonic() >= deadline:
            return unclaimed
        await asyncio.sleep(0.05)
