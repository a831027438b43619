"""What the console accepts from a browser: form posts and query strings, as pydantic models.

Unknown fields, and a field given twice, are refused (``extra="forbid"``), as the API refuses
them: a form that grew a field the server does not read is a bug to see, not to ignore. Every
POST carries the session's CSRF token, in the form's ``csrf`` or the ``X-CSRF-Token`` header
(checked by ``console.guard`` before a handler runs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from multidict import MultiMapping
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from schemas.v1.jobs import USER_ID, Priority
from schemas.v1.statuses import ShownJobStatus as JobStatus

ScheduleType = Literal["once", "cron", "interval"]


def _blank_is_none(value: object) -> object:
    """An empty field or select option means "not given"."""
    return None if isinstance(value, str) and not value.strip() else value


# Text that may be left empty.
MaybeText = Annotated[str | None, BeforeValidator(_blank_is_none)]


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class LoginForm(_Form):
    key: str = Field(min_length=1, max_length=8192)
    # Where to go once logged in: a console path (``console.pages_login.safe_next``).
    next: str = Field(default="", max_length=2000)


class _Posted(_Form):
    # The session's token, when the form carries it (htmx may send it as a header instead);
    # console.guard has checked it before any handler parses the form.
    csrf: str = Field(default="", max_length=200)


class CsrfForm(_Posted):
    """A POST with nothing but its token: logout, and the job actions."""


class TenantForm(_Posted):
    tenant: str = Field(min_length=1, max_length=128, pattern=USER_ID)
    next: str = Field(default="", max_length=2000)


class ReplayForm(_Posted):
    partition: int = Field(ge=0, le=100_000)
    offset: int = Field(ge=0)


class ScheduleForm(_Posted):
    """The schedule editor: a type and the one or two fields that type needs."""

    type: ScheduleType
    expression: MaybeText = Field(default=None, max_length=200)
    timezone: MaybeText = Field(default=None, max_length=100)
    every_seconds: Annotated[float | None, BeforeValidator(_blank_is_none)] = Field(
        default=None, gt=0, le=366 * 86400
    )
    # A local wall time (an HTML datetime-local field) in ``timezone``.
    at: Annotated[datetime | None, BeforeValidator(_blank_is_none)] = None

    def schedule_fields(self) -> dict[str, object]:
        """The schedule's own fields, for the contract's model to validate."""
        if self.type == "cron":
            return {"type": "cron", "expression": self.expression or "", **self._zone()}
        if self.type == "interval":
            return {"type": "interval", "every_seconds": self.every_seconds}
        if self.at is None:
            return {"type": "once"}  # the contract names the missing field
        zone = ZoneInfo(self.timezone or "UTC")
        at = self.at if self.at.tzinfo is not None else self.at.replace(tzinfo=zone)
        return {"type": "once", "at": at}

    def _zone(self) -> dict[str, str]:
        return {} if self.timezone is None else {"timezone": self.timezone}

    def zone_error(self) -> str | None:
        if self.timezone is None:
            return None
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return f"unknown IANA time zone: {self.timezone!r}"
        return None


class JobFilters(_Form):
    """The job list's query string: filters, and the page (a cursor from the previous one)."""

    status: Annotated[JobStatus | None, BeforeValidator(_blank_is_none)] = None
    priority: Annotated[Priority | None, BeforeValidator(_blank_is_none)] = None
    kind: Annotated[ScheduleType | None, BeforeValidator(_blank_is_none)] = None
    q: MaybeText = Field(default=None, max_length=200)
    cursor: MaybeText = Field(default=None, max_length=500)
    # After an action: what was done, shown as a notice (one of a fixed set of words).
    said: MaybeText = Field(default=None, max_length=20)


class PageQuery(_Form):
    """A page's query string: a cursor (job executions) and an action's notice."""

    cursor: MaybeText = Field(default=None, max_length=500)
    said: MaybeText = Field(default=None, max_length=20)


class NextQuery(_Form):
    next: MaybeText = Field(default=None, max_length=2000)


F = TypeVar("F", bound=BaseModel)


class FormError(ValueError):
    """Input that does not fit its form, with one message per field."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))
        self.errors = errors


def parse(model: type[F], data: MultiMapping[Any]) -> F:
    """``data`` (a form or a query string) as ``model``; FormError naming each bad field."""
    items: dict[str, str] = {}
    for name in set(data.keys()):
        values = data.getall(name)
        if len(values) != 1:
            raise FormError([(name, "given more than once")])
        value = values[0]
        if not isinstance(value, str):
            raise FormError([(name, "must be text")])  # a file upload
        items[name] = value
    try:
        return model.model_validate(items)
    except ValidationError as exc:
        raise FormError(
            [
                (
                    ".".join(str(p) for p in e["loc"]) or "form",
                    e["msg"].removeprefix("Value error, "),
                )
                for e in exc.errors(include_url=False)
            ]
        ) from None
