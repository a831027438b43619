"""A shard's timer: the jobs and pending runs due within a window, fired a short lead before
their time.

Memory is bounded by the window (invariant 4): a job due later than the horizon stays only
in Postgres and is loaded by a later refresh. The in-memory heap is a cache of
``kjs_jobs.next_run_at``; the fire query re-checks every job in Postgres, so a stale entry
(cancelled, already fired) costs a no-op and never a wrong fire.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from uuid import UUID

import asyncpg

from core.clock import SYSTEM_CLOCK, Clock
from core.settings import SchedulerSettings
from scheduler.concurrency import ConcurrencyGate, any_held
from scheduler.daily_budget import DailyBudget
from scheduler.fair_dispatch import FairDispatch
from scheduler.firing import Dispatcher, due_of, fires_close, plan, resend_outbox
from scheduler.metrics import DUE_NOT_FIRED, SKIPPED, TIMER_HELD
from scheduler.model import Occurrence
from scheduler.outages import until_available
from scheduler.store.firing import due_jobs, fire_due, overdue
from scheduler.store.leases import requeue_expired
from scheduler.store.pending import due_pending, queue_pending

log = logging.getLogger(__name__)

# Executions older than this without a Kafka acknowledgement are considered abandoned
# by a dispatch that failed, and re-sent by the periodic refresh.
OUTBOX_AGE_S = 5.0
FIRE_BATCH = 1000
# Jobs due this much beyond the lead fire with the ones due at the lead: under a steady
# stream, a fire then costs its round trips once per tick, not once per job (at 1,000 jobs/s
# spread over 6 shards, about 80 jobs per transaction instead of one or two). They are only
# produced early; the worker still claims a second ahead and starts each on its instant.
FIRE_TICK = timedelta(milliseconds=500)
# How often the shard looks for lapsed worker leases (an indexed query, kjs_executions_leased):
# with the workers' 7 s lease, a killed worker's execution runs again within about 8.5 s.
REAP_INTERVAL_S = 1.0
# A recurring job with an overlap policy other than "allow" fires this close to its instant,
# not a whole lead ahead: its policy looks at whether the previous run is still running,
# which must be asked when the new run is about to start (firing.fires_close).
CLOSE_LEAD = timedelta(milliseconds=250)
# Fired batches whose due events are still being sent while the next batch is written.
# One: more made the burst bench bimodal (1.8 s or 5.7 s to drain 10k), one is steady (2.2 s).
DISPATCHES_IN_FLIGHT = 1
# The two kinds of timer entries: a job's next occurrence (keyed by job id), and a pending run
# (keyed by execution id: a retry, a triggered run or a buffered run).
JOB, PENDING = "job", "pending"


class ShardTimer:
    def __init__(
        self,
        shard: int,
        epoch: int,
        pool: asyncpg.Pool,
        dispatcher: Dispatcher,
        settings: SchedulerSettings,
        budget: DailyBudget | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.shard = shard
        # Every "now" of the timer's decisions (what is due, which lease lapsed); a test
        # passes a clock it steps. Pacing (refresh and reap intervals) is monotonic time.
        self._clock = clock
        # The clock's time when the timer last found nothing more due (every entry due by
        # then is fired and committed): a test waits on it after stepping its clock.
        self.idle_at: datetime | None = None
        # The clock's time of the last look for lapsed leases (everything lapsed by then is
        # re-queued and dispatched).
        self.reaped_at: datetime | None = None
        self._budget = budget
        self.epoch = epoch
        self._pool = pool
        self._dispatcher = dispatcher
        self._lead = timedelta(milliseconds=settings.lead_ms)
        self._window = timedelta(seconds=settings.window_s)
        # Two kinds of entries (JOB, PENDING), each with when it is due.
        self._due: dict[tuple[str, UUID], datetime] = {}
        # (when to fire it, kind, key, due, close): see _pop_due.
        self._heap: list[tuple[datetime, str, UUID, datetime, bool]] = []
        self._horizon = datetime.min.replace(tzinfo=UTC)
        # Half the loaded window, on the clock: past it, reload even if the monotonic half
        # window has not passed (the clock jumped forward, or a test stepped it).
        self._stale_at = self._horizon
        self._wake = asyncio.Event()
        self._dispatch_slots = asyncio.Semaphore(DISPATCHES_IN_FLIGHT)
        self._dispatches: set[asyncio.Task[None]] = set()
        # Concurrency limits: whether executions are held back (a release is worth a look),
        # and whether a result freed a slot since the last release.
        self._gate = ConcurrencyGate(budget.quotas if budget is not None else None)
        self._holding = False
        self._freed = False
        # Fair sharing of the lanes; None: every fired batch is sent at once, as fired.
        self._fair = (
            FairDispatch(
                dispatcher,
                shard,
                epoch,
                settings.dispatch_window,
                settings.dispatch_window_s,
                clock,
            )
            if settings.fair_dispatch
            else None
        )

    @property
    def held(self) -> int:
        return len(self._due)

    def offer(self, job_id: UUID, due_at: datetime, *, close: bool = False) -> None:
        """Hold a job if it falls inside the loaded window; otherwise a refresh finds it.
        ``close``: fire it ``CLOSE_LEAD`` before ``due_at`` instead of the whole lead."""
        self._hold(JOB, job_id, due_at, close)

    def offer_pending(self, execution_id: UUID, due_at: datetime) -> None:
        """Hold a pending run (a retry, a triggered run, a buffered run) due at ``due_at``,
        if it falls inside the loaded window; otherwise a refresh finds it."""
        self._hold(PENDING, execution_id, due_at)

    def wake(self) -> None:
        """Look at the held entries again now (a test's clock was stepped)."""
        self._wake.set()

    def forget(self, job_id: UUID) -> None:
        self._due.pop((JOB, job_id), None)

    def finished(self, execution_ids: list[UUID]) -> None:
        """Results of these executions were recorded: their concurrency slots and their
        places in the lane's dispatch window are free."""
        if self._fair is not None:
            self._fair.finished(execution_ids)
        if self._holding:
            self._freed = True
            self._wake.set()

    def _hold(self, kind: str, key: UUID, due_at: datetime, close: bool = False) -> None:
        if due_at <= self._horizon and self._due.get((kind, key)) != due_at:
            self._due[(kind, key)] = due_at
            fire_at = due_at - (min(CLOSE_LEAD, self._lead) if close else self._lead)
            heapq.heappush(self._heap, (fire_at, kind, key, due_at, close))
            self._wake.set()

    async def run(self) -> None:
        """Fire due jobs until cancelled.

        1. Re-send this shard's outbox (executions a previous owner wrote but never sent).
        2. Every half window (monotonic time, or the clock's time if that passes it first),
           reload the jobs and pending runs due within the window and re-send outbox entries
           that a failed dispatch left behind.
        3. Every ``REAP_INTERVAL_S``, re-dispatch executions whose worker's lease lapsed.
        4. While executions are held back for a concurrency slot: when a result freed one
           (or every ``REAP_INTERVAL_S``), queue and dispatch those that fit now.
        5. In between, sleep until the earliest held job is a lead away (``CLOSE_LEAD`` for
           a close one), then fire it with every job due within the next ``FIRE_TICK``, in
           one batch.
        Postgres or Kafka being down delays firing; it never drops a held job.
        """
        if self._fair is not None:
            self._dispatches.add(asyncio.create_task(self._fair.run()))
        try:
            await self._loop()
        finally:
            for task in list(self._dispatches):
                task.cancel()

    async def _loop(self) -> None:
        await self._until_available(partial(self._resend, 0))
        next_refresh = next_reap = next_release = 0.0
        while True:
            if time.monotonic() >= next_refresh or self._clock() >= self._stale_at:
                await self._until_available(self._refresh)
                next_refresh = time.monotonic() + self._window.total_seconds() / 2
            if time.monotonic() >= next_reap:
                await self._until_available(self._reap)
                next_reap = time.monotonic() + REAP_INTERVAL_S
            if self._holding and (self._freed or time.monotonic() >= next_release):
                await self._until_available(self._release)
                next_release = time.monotonic() + REAP_INTERVAL_S
            now = self._clock()
            batch = self._pop_due(now)
            if batch:
                await self._until_available(partial(self._fire, batch))
                continue
            if now >= self._stale_at:
                continue  # the clock passed half the loaded window since the check: reload
            self.idle_at = now
            await self._sleep(min(next_refresh, next_reap))

    async def _refresh(self) -> None:
        now = self._clock()
        horizon = now + self._window
        self._horizon = horizon
        self._stale_at = now + self._window / 2
        for job in await due_jobs(self._pool, self.shard, horizon):
            self._hold(JOB, job.job_id, due_of(job), fires_close(job.schedule))
        for run in await due_pending(self._pool, self.shard, horizon):
            self._hold(PENDING, run.execution_id, run.due_at)
        self._holding = self._holding or await any_held(self._pool, self.shard)
        await self._resend(OUTBOX_AGE_S)
        DUE_NOT_FIRED.labels(str(self.shard)).set(await overdue(self._pool, self.shard, now))
        TIMER_HELD.labels(str(self.shard)).set(self.held)

    async def _resend(self, age_s: float) -> None:
        """Re-send the outbox older than ``age_s``: through the fair queue when there is
        one (which ignores those it holds already, waiting for their turn)."""
        if self._fair is None:
            await resend_outbox(self._dispatcher, self._pool, self.shard, self.epoch, age_s)
        else:
            await resend_outbox(
                self._dispatcher, self._pool, self.shard, self.epoch, age_s, self._fair.put
            )

    async def _release(self) -> None:
        self._freed = False
        released, self._holding = await self._gate.release(self._pool, self.shard, self.epoch)
        await self._dispatch_in_background(released)

    async def _reap(self) -> None:
        now = self._clock()
        # Leases are stamped by the workers with Postgres's now(): on the system clock they
        # are judged on that same clock (no assumption about the hosts' clocks agreeing); a
        # test's clock replaces both.
        judged_at = None if self._clock is SYSTEM_CLOCK else now
        expired = await requeue_expired(self._pool, self.shard, self.epoch, judged_at)
        if expired:
            log.warning(
                "shard %s: %d executions lost their worker; re-running", self.shard, len(expired)
            )
            await self._dispatcher.dispatch(self.shard, self.epoch, expired)
        self.reaped_at = now

    def _pop_due(self, now: datetime) -> dict[str, list[UUID]]:
        """Once the earliest entry's fire time has come, take it and every entry whose fire
        time is within ``FIRE_TICK`` (up to ``FIRE_BATCH``): the next fire is then a tick
        away at the earliest, so a steady stream is fired a tick at a time, not a job at a
        time. A close entry (``CLOSE_LEAD``) is never taken before its own fire time."""
        if not self._heap or self._heap[0][0] > now:
            return {}
        batch: dict[str, list[UUID]] = {JOB: [], PENDING: []}
        taken = 0
        not_yet = []
        until = now + FIRE_TICK
        while self._heap and self._heap[0][0] <= until and taken < FIRE_BATCH:
            entry = heapq.heappop(self._heap)
            fire_at, kind, key, due_at, close = entry
            if self._due.get((kind, key)) != due_at:
                continue  # superseded or forgotten
            if close and fire_at > now:
                not_yet.append(entry)
                continue
            del self._due[(kind, key)]
            batch[kind].append(key)
            taken += 1
        for entry in not_yet:
            heapq.heappush(self._heap, entry)
        return batch if taken else {}

    async def _fire(self, batch: dict[str, list[UUID]]) -> None:
        now = self._clock()
        ahead = self._lead + FIRE_TICK
        until = now + ahead
        occurrences: list[Occurrence] = []
        if batch[JOB]:
            fired = await fire_due(
                self._pool,
                self.shard,
                self.epoch,
                batch[JOB],
                until,
                partial(plan, now=now, lead=ahead, close_lead=min(CLOSE_LEAD, self._lead)),
                None if self._budget is None else partial(self._budget.apply, now=now),
                self._hold_back,
            )
            for f in fired:
                occurrences += f.occurrences
                for skip in f.skipped[:1]:
                    SKIPPED.labels(skip.reason.split(":", 1)[0]).inc(f.skipped_total)
                if f.next_due is not None:
                    self.offer(f.job_id, f.next_due, close=f.close)
        if batch[PENDING]:
            occurrences += await queue_pending(
                self._pool, self.shard, self.epoch, batch[PENDING], until, self._hold_back
            )
        await self._dispatch_in_background(occurrences)

    async def _hold_back(self, conn: asyncpg.Connection, queued: list[Occurrence]) -> set[UUID]:
        held = await self._gate.hold(conn, queued)
        # Set before the commit: a result recorded meanwhile then asks for a release.
        self._holding = self._holding or bool(held)
        return held

    async def _dispatch_in_background(self, occurrences: list[Occurrence]) -> None:
        """Send a fired batch while the next one is being written (a burst is a pipeline,
        not a queue of round trips). The rows are committed already: a dispatch that fails
        or is cut off by a revocation leaves them in the outbox, re-sent by the refresh."""
        if not occurrences:
            return
        if self._fair is not None:
            self._fair.put(occurrences)
            return
        await self._dispatch_slots.acquire()

        async def send() -> None:
            try:
                await self._dispatcher.dispatch(self.shard, self.epoch, occurrences)
            except Exception as exc:
                log.warning(
                    "shard %s: dispatch failed (%s); the outbox will re-send", self.shard, exc
                )
            finally:
                self._dispatch_slots.release()

        task = asyncio.create_task(send())
        self._dispatches.add(task)
        task.add_done_callback(self._dispatches.discard)

    async def _sleep(self, wake_at: float) -> None:
        timeout = wake_at - time.monotonic()
        if self._heap:
            until_fire = (self._heap[0][0] - self._clock()).total_seconds()
            timeout = min(timeout, until_fire)
        self._wake.clear()
        if timeout <= 0:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _until_available(self, step: Callable[[], Awaitable[object]]) -> None:
        await until_available(step, f"shard {self.shard}")
