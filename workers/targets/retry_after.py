"""Reading an HTTP ``Retry-After`` header (RFC 9110 section 10.2.3) into seconds.

The worker only reads it; the owning scheduler shard decides the next attempt's time, taking
the longer of its backoff and this (capped by the job's ``max_delay_s``). Workers never sleep
to wait for a retry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# The statuses whose Retry-After means "try again later" (3xx use it for redirects).
RETRY_AFTER_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from ``now``, or None when the header is absent or not valid.

    Both forms are read: delta-seconds (``120``) and an HTTP-date
    (``Wed, 21 Oct 2015 07:28:00 GMT``). A date in the past means "now" (0). A malformed
    value is ignored rather than guessed at, so the shard's own backoff applies.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        at = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if at.tzinfo is None:
        # RFC 850 and asctime dates carry no zone; HTTP dates are always GMT.
        at = at.replace(tzinfo=UTC)
    return max(0.0, (at - now).total_seconds())
