"""When a job runs: ``once``, ``cron`` (5 or 6 fields, IANA zone) or ``interval``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnceSchedule(_Input):
    type: Literal["once"]
    at: AwareDatetime


class CronSchedule(_Input):
    type: Literal["cron"]
    expression: str = Field(min_length=1, max_length=200, examples=["*/5 * * * *"])
    timezone: str = Field(default="UTC", examples=["Europe/Berlin"])

    @field_validator("expression")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        fields = value.split()
        # A sixth field is seconds, and comes first (as in Quartz, Spring and Dkron).
        if len(fields) not in (5, 6) or not croniter.is_valid(
            value, second_at_beginning=len(fields) == 6
        ):
            raise ValueError(f"not a valid 5- or 6-field cron expression: {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone: {value!r}") from exc
        return value


class IntervalSchedule(_Input):
    type: Literal["interval"]
    every_seconds: float = Field(gt=0, le=366 * 86400)


Schedule = Annotated[OnceSchedule | CronSchedule | IntervalSchedule, Field(discriminator="type")]


def utc(value: datetime) -> datetime:
    return value.astimezone(ZoneInfo("UTC"))
