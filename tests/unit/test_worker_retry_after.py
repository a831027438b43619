"""Retry-After, in both of its forms, read against a fixed "now"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workers.targets.http import is_retryable_status
from workers.targets.retry_after import parse_retry_after

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Sunday, 01-Mar-26 12:01:00 GMT", 60.0),  # RFC 850
        ("Sun Mar  1 12:00:05 2026", 5.0),  # asctime, no zone: GMT
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # in the past: now
    ],
)
def test_delta_seconds_and_http_dates_are_read(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "٣"])
def test_anything_else_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (429, True), (400, False), (404, False), (409, False)],
)
def test_only_5xx_and_429_are_retryable(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
