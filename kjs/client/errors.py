"""What the API's refusals become in the client: one exception class per kind of refusal.

Every exception the client raises is a :class:`ClientError`. An answer from the API that is
not a success is an :class:`ApiError` (``status``, ``message``), of the subclass for its
status; a request that never got an answer is :class:`ApiUnreachable`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ValidationError

from api.models import ConflictBody, ErrorBody, FieldErrorsBody

# How much of a body that is not the API's JSON an error message quotes.
_EXCERPT = 200


class ClientError(Exception):
    """Anything that went wrong talking to the kjs API."""


class ApiUnreachable(ClientError):
    """No answer: the API's address refused the connection, does not resolve, or timed out."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the kjs API at {url}: {reason}")
        self.url = url
        self.reason = reason


class UnexpectedResponse(ClientError):
    """A success status whose body is not what the contract says (not kjs's API, or another
    version of it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"unexpected response ({status}): {message}")
        self.status = status
        self.message = message


class ApiError(ClientError):
    """The API answered with an error status; ``message`` is its own explanation."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    @property
    def reason(self) -> str:
        """The status's standard phrase, "Not Found"."""
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


class InvalidRequest(ApiError):
    """400 or 422: the request is wrong; ``errors`` names each wrong field as (field, message),
    the field a dotted path into the body (``schedule.expression``)."""

    def __init__(
        self,
        status: int,
        errors: list[tuple[str, str]],
        *,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        text = message or "; ".join(f"{field}: {msg}" for field, msg in errors) or "bad request"
        super().__init__(status, text, headers=headers)
        self.errors = errors


class Unauthorized(ApiError):
    """401: no API key, or one the API does not know (or that was revoked)."""


class Forbidden(ApiError):
    """403: the key lacks the scope, or may not act for the user_id named."""


class NotFound(ApiError):
    """404: no such job or execution (another tenant's is reported absent too)."""


class Conflict(ApiError):
    """409: the action is illegal for the job's status, which ``job_status`` holds."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        job_status: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.job_status = job_status


class PayloadTooLarge(ApiError):
    """413: the body, or the job's target, is over a size limit."""


class _RetryLater(ApiError):
    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before retrying (the Retry-After header), when the API said."""
        value = next((v for k, v in self.headers.items() if k.lower() == "retry-after"), None)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class TooManyRequests(_RetryLater):
    """429: a quota of the tenant is used up; ``retry_after`` says for how long."""


class Unavailable(_RetryLater):
    """503: Kafka or Postgres is unavailable to the API; retry after ``retry_after``."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: PayloadTooLarge,
    429: TooManyRequests,
    503: Unavailable,
}


def _parse(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError:
        return None


def api_error(status: int, raw: bytes, headers: Mapping[str, str]) -> ApiError:
    """The exception for an error response, its message taken from the API's JSON body."""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = None
    headers = dict(headers)
    fields = _parse(FieldErrorsBody, body)
    if isinstance(fields, FieldErrorsBody):
        errors = [(e.field, e.message) for e in fields.errors]
        return InvalidRequest(status, errors, headers=headers)
    error = _parse(ErrorBody, body)
    conflict = _parse(ConflictBody, body)
    if isinstance(error, ErrorBody):
        message = error.error
    elif isinstance(conflict, ConflictBody):
        message = conflict.error
    elif isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]  # the API's shape with more in it than this client knows
    else:
        text = raw.decode(errors="replace").strip().replace("\n", " ")
        message = text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else "") or "(no body)"
    if status in (400, 422):
        return InvalidRequest(status, [], message=message, headers=headers)
    if status == 409:
        job_status = conflict.status if isinstance(conflict, ConflictBody) else None
        return Conflict(status, message, job_status=job_status, headers=headers)
    return _BY_STATUS.get(status, ApiError)(status, message, headers=headers)
