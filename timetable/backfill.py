"""Which past occurrences a backfill runs: a pure function of the schedule and the clock.

The API (to answer 422 before it publishes) and the owning shard (which decides, and
dead-letters a refusal) ask the same function, so they cannot disagree.
"""

from __future__ import annotations

from datetime import datetime

from schemas.v1.schedules import OnceSchedule
from timetable.exclusions import excluded, has_exclusions
from timetable.occurrences import MICROSECOND, Schedule, occurrences

# The most occurrences one backfill request runs; a larger range is refused, not truncated,
# so that a request either does what it says or nothing.
BACKFILL_CAP = 1000


class BackfillRefused(ValueError):
    """A backfill that cannot run; ``field`` is the request's field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def backfill_occurrences(
    schedule: Schedule,
    from_: datetime,
    to: datetime,
    now: datetime,
    anchor: datetime,
    cap: int = BACKFILL_CAP,
) -> list[datetime]:
    """The occurrences in ``[from_, to)``, oldest first; ``BackfillRefused`` when the job is
    not recurring, the range is reversed or reaches past ``now``, or holds more than ``cap``.

    The schedule's own bounds (``start_at``, ``end_at``) and its exclusions (dates, cron
    rules, calendars: an excluded occurrence is not run, nor counted) hold; ``max_runs`` and
    catch-up do not (a backfill runs what it is asked for, and its runs are not counted as
    the job's).
    ``anchor`` is the job's creation time, the origin of an interval without ``start_at``.
    """
    if isinstance(schedule, OnceSchedule):
        raise BackfillRefused("job_id", "only a recurring (cron or interval) job has a backfill")
    if to <= from_:
        raise BackfillRefused("to", "must be after from")
    if to > now:
        raise BackfillRefused("to", f"is in the future (now is {now.isoformat()})")
    found = occurrences(schedule, from_ - MICROSECOND, anchor, cap + 1, until=to - MICROSECOND)
    if len(found) > cap:
        raise BackfillRefused(
            "to", f"the range holds more than {cap} occurrences; split it into smaller ones"
        )
    if has_exclusions(schedule):
        # Regular firing records these as skipped; a backfill must not turn them into runs.
        found = [at for at in found if excluded(schedule, at) is None]
    return found
