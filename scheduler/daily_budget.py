"""The executions-per-day quota, applied by the shard in the transaction that fires.

The shard that owns a tenant fires all of its runs, so it alone counts them: today's count is
read from ``kjs_tenant_usage`` and written back in the same fenced transaction as the
execution rows, so a crash, a replay or a failover never counts a run twice or forgets one.
Only tenants whose tier has a daily limit are counted, so the unlimited case costs nothing.

A run past the limit is not lost silently:

- a recurring job's occurrence is skipped, recorded as a 'skipped' execution with the
  reason ``quota: ...``, and the job moves on to its next occurrence;
- a job with no further occurrence (a one-time job, or a recurring job's last run) is
  deferred, not dropped: its run moves to the next UTC midnight, when the budget is full again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

import asyncpg

from core.queries import QUERIES
from core.quotas import QuotaExceeded, Quotas, next_day_start, usage_day
from scheduler.model import Fired, Skip


def ration(
    fired: list[Fired], used: Mapping[str, int], limits: Mapping[str, int], now: datetime
) -> tuple[list[Fired], dict[str, int]]:
    """Trim each limited tenant's runs to what is left of its day; returns the fired jobs as
    they are to be written and the runs each limited tenant spends. Pure.

    ``limits`` holds the tenants with a daily limit only; the others pass untouched. Jobs are
    served in the order given (the timer's due order), so the earliest runs win.
    """
    left = {user: max(0, limit - used.get(user, 0)) for user, limit in limits.items()}
    spent = dict.fromkeys(limits, 0)
    out: list[Fired] = []
    reason = "quota: {} executions per day (UTC) is the limit"
    for f in fired:
        if f.user_id not in left or len(f.occurrences) <= left[f.user_id]:
            if f.user_id in left:
                left[f.user_id] -= len(f.occurrences)
                spent[f.user_id] += len(f.occurrences)
            out.append(f)
            continue
        keep = left[f.user_id]
        left[f.user_id] = 0
        spent[f.user_id] += keep
        dropped = f.occurrences[keep:]
        if f.next_run_at is None and not keep:
            # Nothing after it: defer the run to tomorrow's budget rather than lose it.
            tomorrow = next_day_start(now)
            out.append(
                replace(
                    f,
                    occurrences=[],
                    next_run_at=tomorrow,
                    next_due=tomorrow,
                    cancel_active=False,
                    buffer=None,
                )
            )
            continue
        skips = [Skip(o.scheduled_for, reason.format(limits[f.user_id])) for o in dropped]
        out.append(
            replace(
                f,
                occurrences=f.occurrences[:keep],
                skipped=sorted([*f.skipped, *skips], key=lambda k: k.scheduled_for),
                skipped_total=f.skipped_total + len(skips),
            )
        )
    return out, {user: n for user, n in spent.items() if n}


class DailyBudget:
    """Reads and counts the day's runs of the limited tenants, inside the caller's transaction."""

    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas

    @property
    def quotas(self) -> Quotas:
        return self._quotas

    def _limits(self, users: set[str]) -> dict[str, int]:
        caps = {user: self._quotas.executions_cap(user) for user in users}
        return {user: cap for user, cap in caps.items() if cap is not None}

    async def apply(
        self, conn: asyncpg.Connection, fired: list[Fired], *, now: datetime
    ) -> list[Fired]:
        limits = self._limits({f.user_id for f in fired})
        if not limits:
            return fired
        day = usage_day(now)
        # Created, then locked: see create_usage_rows in queries.sql.
        await conn.execute(QUERIES["create_usage_rows"], day, list(limits))
        rows = await conn.fetch(QUERIES["lock_usage_rows"], day, list(limits))
        out, spent = ration(fired, {r["user_id"]: r["executions"] for r in rows}, limits, now)
        if spent:
            await conn.execute(QUERIES["count_usage"], list(spent), day, list(spent.values()))
        return out

    async def take_one(self, conn: asyncpg.Connection, user_id: str, now: datetime) -> None:
        """Count one triggered run; ``QuotaExceeded`` when today's budget is spent."""
        cap = self._quotas.executions_cap(user_id)
        if cap is None:
            return
        if await conn.fetchval(QUERIES["take_one_run"], user_id, usage_day(now), cap) is None:
            self._quotas.check_executions(user_id, cap, now)

    async def take_runs(
        self, conn: asyncpg.Connection, user_id: str, now: datetime, runs: int
    ) -> None:
        """Count a backfill's ``runs``, all or none; ``QuotaExceeded`` when they would pass
        today's budget."""
        cap = self._quotas.executions_cap(user_id)
        if cap is None or runs == 0:
            return
        if runs > cap or (
            await conn.fetchval(QUERIES["take_runs"], user_id, usage_day(now), cap, runs) is None
        ):
            wait = (next_day_start(now) - now).total_seconds()
            raise QuotaExceeded(f"{runs} runs would pass {cap} executions per day (UTC)", wait)
