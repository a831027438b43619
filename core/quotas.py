"""Per-tenant quotas: pure decisions, no I/O, shared by the API and the owning shard.

The shard that owns a tenant sees every create command of that tenant, in order, so its
decision is the authoritative one and needs no distributed counter. The API applies the same
limits first, per API instance, so that an HTTP client is told at once (429 + Retry-After)
instead of finding a dead letter later.

- **Active jobs**: scheduled, paused or queued jobs at once (counted in Postgres, capped).
- **Submissions per second**: a token bucket per tenant (``submissions_per_s`` sustained,
  ``burst`` above it). On the Kafka path the clock is the record's own timestamp, so a backlog
  that built up while the scheduler was down is judged at the pace it was submitted, and a
  replay of the same records decides the same way.
- **Executions per day**: occurrences fired and runs triggered per UTC day, counted in
  ``kjs_tenant_usage`` by the owning shard in the transaction that fires them
  (``scheduler.daily_budget``). Retries of a run are not counted: the run was.
- **Executions in flight** (``max_running``): queued or running at once, held back by the
  owning shard beyond it (``scheduler.concurrency``), as a job's own concurrency limit is.
- **Payload size**: the job's target as JSON (body, arguments, statement, parameters).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel

from core.settings import QuotaLimits, SecuritySettings

# How long a client refused for its active-job count is told to wait.
ACTIVE_RETRY_AFTER_S = 60
_MAX_TENANTS = 100_000


def usage_day(now: datetime) -> date:
    """The UTC day a run counts against (``now`` must be aware)."""
    return now.astimezone(UTC).date()


def next_day_start(now: datetime) -> datetime:
    """When the daily budget is full again: the next UTC midnight."""
    return datetime.combine(usage_day(now) + timedelta(days=1), time(0), tzinfo=UTC)


def target_bytes(target: BaseModel) -> int:
    """A target's size for the payload limit: its JSON, as the shard stores it."""
    return len(target.model_dump_json().encode())


class QuotaExceeded(Exception):
    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s

    @property
    def retry_after_header(self) -> int:
        return max(1, math.ceil(self.retry_after_s))


@dataclass
class _Bucket:
    tokens: float
    at: float


class Quotas:
    """The limits of every tenant, and the submission buckets of the tenants seen lately."""

    def __init__(self, security: SecuritySettings, max_tenants: int = _MAX_TENANTS) -> None:
        self._security = security
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max_tenants = max_tenants

    def limits_for(self, user_id: str) -> QuotaLimits:
        tier = self._security.quota_tenant_tiers.get(user_id)
        if tier is not None and tier in self._security.quota_tiers:
            return self._security.quota_tiers[tier]
        return self._security.quota_default

    def take_submission(self, user_id: str, now: float) -> None:
        """Spend one submission token at time ``now`` (seconds); raise when none is left."""
        limits = self.limits_for(user_id)
        rate = limits.submissions_per_s
        if rate <= 0:
            return
        capacity = max(1.0, float(limits.burst) or rate)
        bucket = self._buckets.pop(user_id, None) or _Bucket(capacity, now)
        # Time never runs backwards for a bucket (records from several producers interleave).
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(capacity, bucket.tokens + elapsed * rate)
        bucket.at = max(bucket.at, now)
        self._buckets[user_id] = bucket
        while len(self._buckets) > self._max_tenants:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / rate
            raise QuotaExceeded(
                f"more than {rate:g} submissions per second (burst {capacity:g})", wait
            )
        bucket.tokens -= 1.0

    def counts_creates(self, user_id: str) -> bool:
        """Whether a create of this tenant needs counting (an active-job or rate limit)."""
        limits = self.limits_for(user_id)
        return bool(limits.active_jobs or limits.submissions_per_s)

    def active_cap(self, user_id: str) -> int | None:
        """The active-job limit, or None when unlimited (then nothing needs counting)."""
        limit = self.limits_for(user_id).active_jobs
        return limit or None

    def check_active(self, user_id: str, active: int) -> None:
        """Refuse one more job when ``active`` jobs already reach the limit."""
        limit = self.limits_for(user_id).active_jobs
        if limit and active >= limit:
            raise QuotaExceeded(
                f"{limit} active jobs (scheduled, paused or queued) is the limit",
                ACTIVE_RETRY_AFTER_S,
            )

    def executions_cap(self, user_id: str) -> int | None:
        """The executions-per-day limit, or None when unlimited (then nothing is counted)."""
        return self.limits_for(user_id).executions_per_day or None

    def check_executions(self, user_id: str, used: int, now: datetime) -> None:
        """Refuse one more run today when ``used`` runs already reach the daily limit."""
        limit = self.limits_for(user_id).executions_per_day
        if limit and used >= limit:
            wait = (next_day_start(now) - now).total_seconds()
            raise QuotaExceeded(f"{limit} executions per day (UTC) is the limit", wait)

    def running_cap(self, user_id: str) -> int | None:
        """The executions in flight at once (``max_running``), or None when unlimited."""
        return self.limits_for(user_id).max_running or None

    def check_payload(self, user_id: str, size: int) -> None:
        """Refuse a target whose JSON is larger than the tenant's payload limit."""
        limit = self.limits_for(user_id).payload_bytes
        if limit and size > limit:
            raise PayloadTooLarge(f"the target is {size} bytes as JSON; the limit is {limit}")


class PayloadTooLarge(Exception):
    """A target over the tenant's payload limit: waiting does not help (413, not 429)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
