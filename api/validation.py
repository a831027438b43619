"""Turning a request body into a ``JobSpec``, or into field errors a client can act on.

Field names are dotted paths into the submitted JSON (``schedule.expression``). Pydantic puts
the tag of a discriminated union into its error locations (``schedule.cron.expression``); that
tag is not a field the client wrote, so it is dropped here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from api.errors import FieldError
from api.models import QueryModel
from core.settings import TargetSettings
from schemas.v1.commands import integral_float
from schemas.v1.jobs import JobSubmission
from schemas.v1.schedules import OnceSchedule
from schemas.v1.target_policy import check_target

# Every union in contract v1 is discriminated by this field.
DISCRIMINATOR = "type"
BODY_FIELD = "body"
_TAG_ERRORS = {"union_tag_invalid", "union_tag_not_found"}

M = TypeVar("M", bound=BaseModel)


def field_path(loc: Sequence[int | str], data: Any) -> str:
    """The dotted path of an error location, walking the input to recognise union tags."""
    parts: list[str] = []
    current: Any = data
    for segment in loc:
        if isinstance(current, dict):
            if segment in current:
                current = current[segment]
            elif segment == current.get(DISCRIMINATOR):
                continue  # the union tag pydantic inserted, not a key of the input
            else:
                current = None
        elif isinstance(current, list) and isinstance(segment, int) and segment < len(current):
            current = current[segment]
        else:
            current = None
        parts.append(str(segment))
    return ".".join(parts) or BODY_FIELD


def error_message(error: ErrorDetails) -> str:
    return error["msg"].removeprefix("Value error, ")


def field_errors(exc: ValidationError, data: Any) -> list[tuple[str, str]]:
    return _field_errors(exc.errors(include_url=False), data)


def _field_errors(errors: Iterable[ErrorDetails], data: Any) -> list[tuple[str, str]]:
    found = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] in _TAG_ERRORS:
            # A bad or missing tag is the client's mistake in the tag field itself.
            loc += (str((error.get("ctx") or {}).get("discriminator", DISCRIMINATOR)).strip("'"),)
        found.append((field_path(loc, data), error_message(error)))
    return found


def validate_model(model: type[M], data: Any) -> M:
    """``data`` as ``model``, or a ``FieldError`` naming every wrong field.

    A request body (parsed JSON) is validated strictly, as JSON: a number must be a JSON
    number (not ``"30"``, not ``true``), a date-time must be an RFC 3339 string (not a Unix
    timestamp), as the published schemas say, so nothing the contract forbids is accepted by
    being coerced. The one exception is JSON Schema's own: ``3.0`` is an integer. A query
    string has nothing but strings, so its models (``api.models.QueryModel``) are validated
    leniently (``limit=10``).
    """
    if issubclass(model, QueryModel):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise FieldError(field_errors(exc, data)) from exc
    try:
        return model.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        errors = [e for e in exc.errors(include_url=False) if not integral_float(e)]
        if errors:
            raise FieldError(_field_errors(errors, data)) from exc
    # Only integral floats were refused: the lenient validation takes 3.0 for 3, and nothing
    # else differs, since every other field passed the strict one.
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FieldError(field_errors(exc, data)) from exc


def _not_json(constant: str) -> Any:
    # Python's parser takes NaN, Infinity and -Infinity; JSON (RFC 8259) has no such values.
    raise ValueError(f"{constant} is not a JSON value")


def parse_json(raw: bytes) -> Any:
    """The body as JSON (RFC 8259, UTF-8), or a ``FieldError`` on ``body``.

    A body that nests deeper than the interpreter's recursion limit is refused like any
    other malformed one (the limit on what a target may hold is the model's, and smaller).
    """
    try:
        return json.loads(raw, parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise FieldError([(BODY_FIELD, f"not valid JSON: {exc}")]) from exc
    except RecursionError:
        raise FieldError([(BODY_FIELD, "not valid JSON: nested too deeply")]) from None


def past_errors(spec: JobSubmission, now: datetime, grace: timedelta) -> Iterable[tuple[str, str]]:
    """A ``once`` job too far in the past would fire at once or never: refuse it.

    The model cannot check this, because it does not know "now"; ``now`` is passed in so that
    the rule is tested without a clock.
    """
    schedule = spec.schedule
    if isinstance(schedule, OnceSchedule) and schedule.at < now - grace:
        at = schedule.at.astimezone(UTC).isoformat()
        yield (
            "schedule.at",
            f"{at} is more than {grace.total_seconds():g}s in the past",
        )


def parse_submission(
    raw: bytes,
    *,
    now: datetime,
    grace: timedelta,
    policy: TargetSettings | None = None,
    reserved_topics: Collection[str] = (),
) -> JobSubmission:
    """The body as a ``JobSubmission``, or a ``FieldError`` naming every field that is wrong.

    1. Parse and validate the shape (pydantic): types, ranges, union tags.
    2. Check what the model cannot know: the time (``now``) and the operator's target
       policy (``schemas.v1.target_policy``), the same rules the scheduler and the
       workers enforce later, so a job that would be refused there is refused here.
    """
    spec = validate_model(JobSubmission, parse_json(raw))
    problems = list(past_errors(spec, now, grace))
    if policy is not None:
        problems.extend(check_target(spec.target, policy, reserved_topics))
    if problems:
        raise FieldError(problems)
    return spec
