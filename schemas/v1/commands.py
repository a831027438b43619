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


class TriggerCommand(_Command):
    """Run a job once more, now, without moving its schedule (also how a dead letter is
    replayed: its record names the job)."""

    type: Literal["trigger"]
    user_id: UserId = USER_ID_FIELD
    job_id: UUID


AnyCommand = CreateCommand | CancelCommand | TriggerCommand
Command = Annotated[AnyCommand, Field(discriminator="type")]
COMMAND = TypeAdapter[AnyCommand](Command)
