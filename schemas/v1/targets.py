"""What a job does when it fires."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpTarget(_Input):
    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    url: AnyHttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    # A JSON value is sent as JSON; a string is sent as it is.
    body: Any = None
    timeout_s: float = Field(default=10.0, gt=0, le=3600)
    # The statuses that count as success; empty means any 2xx.
    success_statuses: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)


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
    params: list[Any] = Field(default_factory=list)
    timeout_s: float = Field(default=30.0, gt=0, le=86400)


class KafkaTarget(_Input):
    type: Literal["kafka"]
    topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    key: str | None = None
    value: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    # How long the broker may take to acknowledge the delivery.
    timeout_s: float = Field(default=10.0, gt=0, le=3600)


Target = Annotated[HttpTarget | ScriptTarget | SqlTarget | KafkaTarget, Field(discriminator="type")]
