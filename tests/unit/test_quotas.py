"""core.quotas: the pure decisions the API and the owning shard share."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from core.quotas import (
    PayloadTooLarge,
    QuotaExceeded,
    Quotas,
    next_day_start,
    target_bytes,
    usage_day,
)
from core.settings import QuotaLimits, SecuritySettings
from schemas.v1.targets import KafkaTarget


def quotas(**limits: float) -> Quotas:
    return Quotas(
        SecuritySettings(
            quota_default=QuotaLimits(**limits),  # type: ignore[arg-type]
            quota_tiers={"pro": QuotaLimits(active_jobs=10_000)},
            quota_tenant_tiers={"big": "pro"},
        )
    )


def test_unlimited_by_default() -> None:
    q = Quotas(SecuritySettings())
    for _ in range(10_000):
        q.take_submission("u", 0.0)
    q.check_active("u", 10**9)
    assert q.active_cap("u") is None


def test_a_burst_then_the_sustained_rate_and_the_time_to_wait() -> None:
    q = quotas(submissions_per_s=2, burst=3)
    for _ in range(3):
        q.take_submission("u", 100.0)
    with pytest.raises(QuotaExceeded) as refused:
        q.take_submission("u", 100.0)
    assert refused.value.retry_after_s == pytest.approx(0.5)
    assert refused.value.retry_after_header == 1
    q.take_submission("u", 100.5)  # one token came back
    q.take_submission("other", 100.5)  # buckets are per tenant


def test_time_running_backwards_does_not_mint_tokens() -> None:
    q = quotas(submissions_per_s=1, burst=1)
    q.take_submission("u", 50.0)
    with pytest.raises(QuotaExceeded):
        q.take_submission("u", 10.0)


def test_active_jobs_limit_and_tiers() -> None:
    q = quotas(active_jobs=3)
    q.check_active("u", 2)
    with pytest.raises(QuotaExceeded, match="3 active jobs"):
        q.check_active("u", 3)
    assert q.active_cap("big") == 10_000
    q.check_active("big", 9_999)
    assert q.active_cap("anyone") == 3  # a tenant without a tier has the default


def test_a_tenant_tier_that_does_not_exist_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match=r"KJS_QUOTA_TENANT_TIERS names tiers .*'pr0'.*known: pro"):
        SecuritySettings(
            quota_tiers={"pro": QuotaLimits(active_jobs=1)}, quota_tenant_tiers={"acme": "pr0"}
        )


def test_the_bucket_table_is_bounded() -> None:
    q = Quotas(SecuritySettings(quota_default=QuotaLimits(submissions_per_s=1, burst=1)), 10)
    for n in range(100):
        q.take_submission(f"u{n}", 0.0)
    assert len(q._buckets) == 10


def test_executions_per_day_refuse_at_the_limit_until_the_next_utc_midnight() -> None:
    q = quotas(executions_per_day=100)
    now = datetime(2026, 12, 1, 23, 59, 30, tzinfo=UTC)
    q.check_executions("u", 99, now)
    with pytest.raises(QuotaExceeded) as refused:
        q.check_executions("u", 100, now)
    assert refused.value.retry_after_s == pytest.approx(30.0)
    assert q.executions_cap("u") == 100
    assert q.executions_cap("big") is None  # the pro tier sets no daily limit


def test_the_usage_day_is_the_utc_day_whatever_the_offset() -> None:
    tokyo = timezone(timedelta(hours=9))
    at = datetime(2026, 12, 2, 8, 0, tzinfo=tokyo)  # still 1 December in UTC
    assert usage_day(at) == date(2026, 12, 1)
    assert next_day_start(at) == datetime(2026, 12, 2, tzinfo=UTC)


def test_the_payload_limit_measures_the_target_as_json() -> None:
    q = quotas(payload_bytes=200)
    small = KafkaTarget(type="kafka", topic="out", value="x" * 10)
    large = KafkaTarget(type="kafka", topic="out", value="x" * 200)
    q.check_payload("u", target_bytes(small))
    with pytest.raises(PayloadTooLarge, match=r"the target is \d+ bytes as JSON; the limit is 200"):
        q.check_payload("u", target_bytes(large))
    assert target_bytes(large) == len(large.model_dump_json())
    Quotas(SecuritySettings()).check_payload("u", 10**9)  # unlimited by default
