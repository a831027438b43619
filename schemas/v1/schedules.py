"""When a job runs: ``once``, ``cron`` (5 or 6 fields, IANA zone) or ``interval``."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# A croniter "random" field: R, R(1-5), R/3 (hashed H needs a hash id and is refused anyway).
_RANDOM = re.compile(r"[Rr](\(\d+-\d+\))?(/\d+)?")

# The instants a schedule may name. Python's datetime ends at 9999-12-31 in every zone, so
# 9999-12-31T23:00-14:00 (year 10000 in UTC) or 0001-01-01T00:00+14:00 (year 0) cannot even
# be converted to UTC, and occurrences computed near the end of time overflow. Far inside
# both ends, so schedule arithmetic (an interval step, a cron search, jitter) never leaves
# the representable range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _within_range(value: datetime) -> datetime:
    # Comparing aware datetimes subtracts their offsets, which overflows at the very ends:
    # compare naive UTC wall times computed without leaving the range.
    offset = value.utcoffset()
    assert offset is not None  # AwareDatetime
    naive = value.replace(tzinfo=None)
    if (
        naive.year <= 1
        or naive.year >= 9999
        or not (EARLIEST.replace(tzinfo=None) <= naive - offset < LATEST.replace(tzinfo=None))
    ):
        raise ValueError(
            f"must be between {EARLIEST.isoformat()} and {LATEST.isoformat()} (exclusive)"
        )
    return value


# An aware date-time (RFC 3339 with an offset) between EARLIEST and LATEST.
Instant = Annotated[
    AwareDatetime,
    AfterValidator(_within_range),
    Field(
        description="RFC 3339 date-time with an offset, from 1970-01-01 to before 9000-01-01 UTC"
    ),
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DstPolicy(_Input):
    """What a cron does with local times that a daylight-saving change removes or repeats.

    - ``gap``: a local time that does not exist (clocks jump forward over it). ``shift``
      runs it at the same distance after the jump (02:30 in a 02:00->03:00 jump runs at
      03:30); ``skip`` drops it. A shifted run that lands on another run's instant is one run.
    - ``fold``: a local time that occurs twice (clocks fall back). ``first`` runs at its
      first occurrence only; ``both`` runs at each.
    ``fold`` left unset is ``both`` when the hour field is ``*`` (or ``*/1``, ``0-23``: an
    hourly or every-N-minutes cron keeps its rhythm in absolute time) and ``first`` otherwise
    (a daily 02:30 job runs once a day).
    """

    gap: Literal["shift", "skip"] = "shift"
    fold: Literal["first", "both"] | None = None


# When the previous run is still running at the next tick.
Overlap = Literal["allow", "forbid", "replace", "buffer_one"]


def check_cron(value: str) -> str:
    """``value`` if it is a 5- or 6-field cron expression that matches some date."""
    fields = value.split()
    # A sixth field is seconds, and comes first (as in Quartz, Spring and Dkron).
    seconds_first = len(fields) == 6
    if len(fields) not in (5, 6) or not croniter.is_valid(value, second_at_beginning=seconds_first):
        raise ValueError(f"not a valid 5- or 6-field cron expression: {value!r}")
    # croniter accepts "R" and picks a random value each time it parses the expression:
    # the next run would move on every recomputation.
    if any(_RANDOM.fullmatch(part) for field in fields for part in field.split(",")):
        raise ValueError(f"random cron fields (R) are not supported: {value!r}")
    # "0 0 30 2 *" parses but never fires; say so now rather than at the first fire.
    try:
        croniter(value, datetime(2000, 1, 1), second_at_beginning=seconds_first).get_next()
    except CroniterBadDateError as exc:
        raise ValueError(f"cron expression matches no date: {value!r}") from exc
    return value


CronExpression = Annotated[
    str,
    Field(min_length=1, max_length=200, examples=["*/5 * * * *"]),
    AfterValidator(check_cron),
]


class DateRange(_Input):
    """Local dates ``from`` to ``to``, both included, in the job's zone."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    from_: date = Field(alias="from", examples=["2026-12-24"])
    to: date = Field(examples=["2026-12-26"])

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.to < self.from_:
            raise ValueError("to must not be before from")
        return self


class Exclusions(_Input):
    """Occurrences a recurring schedule skips (recorded as skipped, with the rule), read in
    the job's zone (UTC for an interval): on the ``dates`` (holidays), or at a wall time a
    ``cron`` expression matches (``"* * * * 0,6"``: not on weekends). A named calendar holds
    the same two lists."""

    dates: list[DateRange] = Field(default_factory=list, max_length=1000)
    cron: list[CronExpression] = Field(default_factory=list, max_length=50)


CALENDAR_NAME = r"^[A-Za-z0-9._-]+$"
CalendarName = Annotated[str, Field(min_length=1, max_length=64, pattern=CALENDAR_NAME)]


class Exclude(Exclusions):
    """A schedule's exclusions: its own, and the tenant's named ``calendars``
    (``/v1/calendars``), whose rules the owning shard copies into ``resolved`` when the job
    is created or updated (an unknown name is refused then)."""

    calendars: list[CalendarName] = Field(default_factory=list, max_length=20)
    # Filled in by the scheduler, never by a client: each named calendar's rules as they were
    # when the job was stored.
    resolved: dict[CalendarName, Exclusions] | None = None


class _Recurring(_Input):
    """Bounds and policies shared by recurring schedules."""

    start_at: Instant | None = None
    end_at: Instant | None = None
    max_runs: int | None = Field(default=None, ge=1)
    # Each occurrence starts a random delay in [0, jitter_s) after its time; the delay is a
    # function of (job, occurrence), so a restart does not move it.
    jitter_s: float = Field(default=0.0, ge=0, le=86400)
    # Occurrences missed while a shard was down (or the job paused) and later than
    # misfire_grace_s: "none" skips them, "latest" runs the most recent one, "all" runs up to
    # max_catchup of them. Skipped occurrences are recorded, never silently dropped.
    catchup: Literal["none", "latest", "all"] = "latest"
    misfire_grace_s: float = Field(default=60.0, ge=0, le=7 * 86400)
    max_catchup: int = Field(default=10, ge=1, le=1000)
    overlap: Overlap = "allow"
    # Occurrences to skip: dates, cron expressions, named calendars (Exclude).
    exclude: Exclude | None = None

    @model_validator(mode="after")
    def _bounds(self) -> _Recurring:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self


class OnceSchedule(_Input):
    type: Literal["once"]
    at: Instant


class CronSchedule(_Recurring):
    type: Literal["cron"]
    expression: str = Field(min_length=1, max_length=200, examples=["*/5 * * * *"])
    timezone: str = Field(default="UTC", examples=["Europe/Berlin"])
    dst: DstPolicy = Field(default_factory=DstPolicy)

    @field_validator("expression")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone: {value!r}") from exc
        return value


class IntervalSchedule(_Recurring):
    type: Literal["interval"]
    every_seconds: float = Field(gt=0, le=366 * 86400)

    @field_validator("every_seconds")
    @classmethod
    def _at_least_a_millisecond(cls, value: float) -> float:
        # Occurrences are computed in whole microseconds; below a millisecond a "schedule"
        # is a busy loop through Kafka and Postgres.
        if value < 0.001:
            raise ValueError("every_seconds must be at least 0.001 (1 ms)")
        return value

    @model_validator(mode="after")
    def _jitter_below_interval(self) -> IntervalSchedule:
        if self.jitter_s >= self.every_seconds:
            raise ValueError("jitter_s must be smaller than every_seconds")
        return self


Schedule = Annotated[OnceSchedule | CronSchedule | IntervalSchedule, Field(discriminator="type")]
