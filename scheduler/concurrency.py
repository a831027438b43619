"""Concurrency limits, enforced by the shard that owns the tenant.

A job may carry ``concurrency: {"key", "limit"}``: at most ``limit`` executions of the
tenant's jobs with that key are in flight (``queued`` or ``running``) at once. The tenant's
tier may cap all of them (``max_running``). The shard fires and queues every execution of its
tenants, and records every result, so it counts slots exactly in Postgres, with no lock beyond
its own fenced transaction:

1. An execution about to be dispatched (just fired, or a pending run just queued) is counted
   in the same transaction that queued it (:meth:`ConcurrencyGate.hold`). Over a limit, it is
   held back: 'pending', with the reason in ``error`` (the API shows it), and not dispatched.
   One that would overtake executions held before it is held too (first come, first served).
2. A result frees a slot; the shard's timer then releases the held executions that fit, the
   longest-waiting first (:meth:`ConcurrencyGate.release`), and dispatches them.
3. A worker that dies keeps its execution 'running' until its lease lapses; the reaper then
   puts it back to 'queued' and dispatches it again, in the same slot. No slot is held by a
   dead worker longer than a lease.

Only executions of a job with a concurrency or of a tenant with ``max_running`` are counted,
so the unlimited case costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from uuid import UUID

import asyncpg

from core.queries import QUERIES
from core.quotas import Quotas
from scheduler.model import Occurrence
from scheduler.store.events import execution_events
from scheduler.store.shards import fenced

# The held executions looked at per release (the longest-waiting first).
RELEASE_BATCH = 1000
# A tenant and a concurrency key (None: the job has none).
Slot = tuple[str, str | None]


def _key(occ: Occurrence) -> tuple[str | None, int | None]:
    c = occ.concurrency
    return (c["key"], int(c["limit"])) if c else (None, None)


def admit(
    candidates: Iterable[Occurrence],
    running: Mapping[Slot, int],
    waiting: Mapping[Slot, int],
    caps: Mapping[str, int],
) -> dict[UUID, str]:
    """Which ``candidates`` to hold back, with the reason each; the others take a slot. Pure.

    ``running`` counts the executions in flight by tenant and key (the candidates not
    included), ``waiting`` those already held (a candidate never overtakes them), ``caps``
    the tenants' ``max_running``. Candidates are served in the order given.
    """
    run = dict(running)
    tenant_run: dict[str, int] = {}
    tenant_wait: dict[str, int] = {}
    for (user, _), n in run.items():
        tenant_run[user] = tenant_run.get(user, 0) + n
    for (user, _), n in waiting.items():
        tenant_wait[user] = tenant_wait.get(user, 0) + n
    held: dict[UUID, str] = {}
    for occ in candidates:
        key, limit = _key(occ)
        user = occ.user_id
        cap = caps.get(user)
        if cap is not None and tenant_run.get(user, 0) + tenant_wait.get(user, 0) >= cap:
            held[occ.execution_id] = (
                f"held: the tenant's max_running ({cap}) executions are in flight; "
                "it runs when one finishes"
            )
        elif (
            key is not None
            and limit is not None
            and run.get((user, key), 0) + waiting.get((user, key), 0) >= limit
        ):
            held[occ.execution_id] = (
                f"held: concurrency key {key!r} has its limit ({limit}) in flight; "
                "it runs when one finishes"
            )
        else:
            run[(user, key)] = run.get((user, key), 0) + 1
            tenant_run[user] = tenant_run.get(user, 0) + 1
    return held


class ConcurrencyGate:
    """Holds back and releases a shard's executions, inside its fenced transactions."""

    def __init__(self, quotas: Quotas | None = None) -> None:
        self._quotas = quotas

    def _caps(self, users: Iterable[str]) -> dict[str, int]:
        if self._quotas is None:
            return {}
        caps = {user: self._quotas.running_cap(user) for user in set(users)}
        return {user: cap for user, cap in caps.items() if cap is not None}

    def _gated(self, occs: list[Occurrence]) -> tuple[list[Occurrence], dict[str, int]]:
        caps = self._caps(o.user_id for o in occs)
        gated = [o for o in occs if o.concurrency or o.user_id in caps]
        return gated, caps

    async def _count(
        self, conn: asyncpg.Connection, users: set[str]
    ) -> tuple[dict[Slot, int], dict[Slot, int]]:
        rows = await conn.fetch(QUERIES["count_slots"], sorted(users))
        running = {(r["user_id"], r["key"]): r["running"] for r in rows}
        held = {(r["user_id"], r["key"]): r["held"] for r in rows}
        return running, held

    async def hold(self, conn: asyncpg.Connection, queued: list[Occurrence]) -> set[UUID]:
        """Of executions just made 'queued' in ``conn``'s transaction, hold back those over a
        limit; returns their ids (not to be dispatched)."""
        gated, caps = self._gated(queued)
        if not gated:
            return set()
        running, held = await self._count(conn, {o.user_id for o in gated})
        for occ in gated:  # counted as in flight already: they are the candidates
            slot = (occ.user_id, _key(occ)[0])
            running[slot] = running.get(slot, 0) - 1
        gated.sort(key=lambda o: (o.due_at or o.scheduled_for, o.execution_id))
        decided = admit(gated, running, held, caps)
        if decided:
            await conn.execute(QUERIES["hold_executions"], list(decided), list(decided.values()))
            await execution_events(conn, list(decided))  # 'execution.pending', with KJS_EVENTS
        return set(decided)

    async def release(
        self, pool: asyncpg.Pool, shard: int, epoch: int
    ) -> tuple[list[Occurrence], bool]:
        """Queue the held executions that fit now (fenced); returns them, to dispatch, and
        whether some are still held."""
        async with fenced(pool, shard, epoch) as conn:
            rows = await conn.fetch(QUERIES["lock_held_executions"], shard, RELEASE_BATCH)
            if not rows:
                return [], False
            held = [Occurrence(**dict(r)) for r in rows]
            running, _ = await self._count(conn, {o.user_id for o in held})
            caps = self._caps(o.user_id for o in held)
            stay = admit(held, running, {}, caps)
            go = [o for o in held if o.execution_id not in stay]
            if go:
                released = [o.execution_id for o in go]
                await conn.execute(QUERIES["release_held_executions"], released)
                await execution_events(conn, released)  # 'execution.queued', with KJS_EVENTS
        return go, bool(stay) or len(rows) == RELEASE_BATCH


async def any_held(pool: asyncpg.Pool, shard: int) -> bool:
    """Whether the shard holds executions back (after a restart: a release is due)."""
    return bool(await pool.fetchval(QUERIES["any_held"], shard))
