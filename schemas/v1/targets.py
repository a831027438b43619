"""What a job does when it fires."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from core.secrets import PLACEHOLDER, json_strings

# How deeply a JSON value in a target (a body, a record value, SQL parameters) may nest. Real
# payloads nest a handful of levels; a deeper one is a mistake or an attack on every parser
# and serializer it passes through (the API's, the command log's, the worker's).
MAX_JSON_DEPTH = 64

# The validation context of a target read back from kjs's own hops (a due event, a target
# whose secrets the worker just opened): it was checked in full at the door, so the checks
# that only tell a user what is wrong with what they wrote are not run again per attempt.
# Every check that guards the worker (the target policy, the SSRF guard) still runs.
TRUSTED_HOP = {"kjs_trusted_hop": True}


def _plain_json(value: Any) -> Any:
    """``value`` if it is JSON that every consumer reads the same: finite numbers, bounded depth.

    NaN and Infinity are not JSON (RFC 8259); Python's parser accepts them, and pydantic would
    write them out as ``null``, so the job would send something else than it was given.
    Walked with an explicit stack, so a deep value cannot exhaust the interpreter's.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (NaN and Infinity are not JSON)")
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"must not nest deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


# Any JSON value, with finite numbers and at most MAX_JSON_DEPTH levels of nesting.
JsonData = Annotated[Any, AfterValidator(_plain_json)]


# {{secrets.NAME}}: a reference from an HTTP target's headers or body to one of its secrets.
SecretName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


def _placeholders(value: Any) -> set[str]:
    return {name for text in json_strings(value) for name in PLACEHOLDER.findall(text)}


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpTarget(_Input):
    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    url: AnyHttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    # A JSON value is sent as JSON; a string is sent as it is.
    body: JsonData = None
    timeout_s: float = Field(default=10.0, gt=0, le=3600)
    # The statuses that count as success; empty means any 2xx.
    success_statuses: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    # Values sealed at rest and never shown back; header values and body strings refer to
    # them as {{secrets.NAME}}, filled in by the worker just before the request.
    # (Values are not bounded here: the same model carries them sealed, a third longer.)
    secrets: dict[SecretName, str] = Field(default_factory=dict, max_length=32)

    @model_validator(mode="after")
    def _placeholders_name_secrets(self, info: ValidationInfo) -> HttpTarget:
        if info.context == TRUSTED_HOP:
            return self
        for part, value in (("headers", self.headers), ("body", self.body)):
            unknown = sorted(_placeholders(value) - set(self.secrets))
            if unknown:
                raise ValueError(
                    f"{part} refers to {{{{secrets.{unknown[0]}}}}}, which is not in secrets"
                )
        return self


class ScriptTarget(_Input):
    type: Literal["script"]
    command: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0, le=86400)
    # A nonzero exit is retried, except these codes (the script's own "do not retry" signal).
    non_retryable_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        default_factory=list
    )


class SqlTarget(_Input):
    type: Literal["sql"]
    # The name of an operator-configured connection; a DSN never travels in a job.
    connection: str = Field(min_length=1, max_length=100)
    statement: str = Field(min_length=1, max_length=100_000)
    params: Annotated[list[Any], AfterValidator(_plain_json)] = Field(default_factory=list)
    timeout_s: float = Field(default=30.0, gt=0, le=86400)


class KafkaTarget(_Input):
    type: Literal["kafka"]
    topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    key: str | None = None
    value: JsonData = None
    headers: dict[str, str] = Field(default_factory=dict)
    # How long the broker may take to acknowledge the delivery.
    timeout_s: float = Field(default=10.0, gt=0, le=3600)


Target = Annotated[HttpTarget | ScriptTarget | SqlTarget | KafkaTarget, Field(discriminator="type")]
