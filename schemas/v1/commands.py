"""Commands on the submit topic ``jobs.commands`` (key = user_id, value = JSON)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.v1.jobs import USER_ID_FIELD, SubmittedJob, UserId


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1


class CreateCommand(_Command):
    type: Literal["create"]
    job: SubmittedJob

    @property
    def user_id(self) -> str:
        return self.job.user_id


class CancelCommand(_Command):
    type: Literal["cancel"]
    user_id: UserId = USER_ID_FIELD
    job_id: UUID


Command = Annotated[CreateCommand | CancelCommand, Field(discriminator="type")]
COMMAND = TypeAdapter[CreateCommand | CancelCommand](Command)
