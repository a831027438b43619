"""scheduler.quotas: the pure decisions the API and the owning shard share."""

from __future__ import annotations

import pytest

from kjs.settings import QuotaLimits, SecuritySettings
from scheduler.quotas import QuotaExceeded, Quotas


def quotas(**limits: float) -> Quotas:
    return Quotas(
        SecuritySettings(
            quota_default=QuotaLimits(**limits),  # type: ignore[arg-type]
            quota_tiers={"pro": QuotaLimits(active_jobs=10_000)},
            quota_tenant_tiers={"big": "pro", "lost": "no-such-tier"},
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
    assert q.active_cap("lost") == 3  # an unknown tier falls back to the default


def test_the_bucket_table_is_bounded() -> None:
    q = Quotas(SecuritySettings(quota_default=QuotaLimits(submissions_per_s=1, burst=1)), 10)
    for n in range(100):
        q.take_submission(f"u{n}", 0.0)
    assert len(q._buckets) == 10
