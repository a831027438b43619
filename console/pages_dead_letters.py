"""Dead letters of the tenant, newest first, and replaying one as a new run.

Letters are read from ``jobs.dlq`` through ``topics.dead_letters`` (as ``kjs dlq`` reads
them) and shown only to their tenant (``letter_owner``). A replay goes through the API's own
trigger (``apply``): the job must be visible to the credential and allow a trigger, and the
tenant's runs per day are counted, as for ``POST /v1/jobs/{id}/trigger``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from aiokafka.errors import KafkaError

from api.errors import ApiError, FieldError, NotFound, ServiceUnavailable
from api.handlers_lifecycle import apply
from api.tenancy import resolve_tenant
from console.forms import FormError, ReplayForm, parse
from console.guard import acting_tenant
from console.render import render
from console.sessions import PATH
from core.secrets import redact_target
from core.settings import KafkaSettings
from topics.catalog import Catalog
from topics.dead_letters import (
    Letter,
    NotReplayable,
    letter_owner,
    read_letter,
    read_letters,
    replay_command,
)

# The newest letters read per partition, of which the tenant's are shown.
READ_PER_PARTITION = 1000
SHOWN = 100
KAFKA_TIMEOUT_S = 10.0
_NOT_FOUND = "dead letter not found"
T = TypeVar("T")


@dataclass(frozen=True)
class DeadLetterSource:
    """Where the console reads dead letters."""

    kafka: KafkaSettings
    catalog: Catalog


LETTERS: web.AppKey[DeadLetterSource] = web.AppKey("kjs_console_letters", DeadLetterSource)


@dataclass(frozen=True)
class LetterRow:
    letter: Letter
    job_id: str | None
    replayable: bool
    record: str


def letter_row(letter: Letter) -> LetterRow:
    value = letter.value
    job_id = value.get("job_id") if isinstance(value, dict) else None
    try:
        replay_command(letter)
        replayable = True
    except NotReplayable:
        replayable = False
    record = json.dumps(redacted(value), indent=2) if not isinstance(value, str) else value
    return LetterRow(letter, job_id if isinstance(job_id, str) else None, replayable, record)


def redacted(value: Any) -> Any:
    """The record with every target's secrets ``[redacted]``: a create or update command that
    was refused before the shard sealed it holds its secrets as they were sent."""
    if isinstance(value, dict):
        return {
            k: redact_target(v) if k == "target" and isinstance(v, dict) else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


async def _kafka(work: Awaitable[T]) -> T:
    """``work`` on Kafka, bounded: a broker that is down or slow is a 503 page, not a hang."""
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            return await work
    except (KafkaError, OSError, TimeoutError) as exc:
        raise ServiceUnavailable(f"Kafka is unavailable ({type(exc).__name__})") from exc


async def tenant_letters(request: web.Request, tenant: str) -> list[LetterRow]:
    source = request.app[LETTERS]
    letters = await _kafka(read_letters(source.kafka, source.catalog, READ_PER_PARTITION))
    mine = [x for x in letters if letter_owner(x, source.catalog) == tenant]
    mine.sort(key=lambda x: (x.timestamp or 0.0, x.partition, x.offset), reverse=True)
    return [letter_row(x) for x in mine[:SHOWN]]


async def dead_letters_page(
    request: web.Request, *, status: int = 200, error: str | None = None
) -> web.Response:
    tenant = await resolve_tenant(request, acting_tenant(request))
    rows = await tenant_letters(request, tenant)
    return render(request, "dead_letters.html", status=status, rows=rows, error=error)


async def replay(request: web.Request) -> web.StreamResponse:
    tenant = await resolve_tenant(request, acting_tenant(request))
    try:
        form = parse(ReplayForm, await request.post())
    except FormError as exc:
        raise FieldError(exc.errors) from None
    source = request.app[LETTERS]
    letter = await _kafka(read_letter(source.kafka, source.catalog, form.partition, form.offset))
    # Another tenant's letter is not found either, so offsets cannot be probed.
    if letter is None or letter_owner(letter, source.catalog) != tenant:
        raise NotFound(_NOT_FOUND)
    try:
        command = replay_command(letter)
        await apply(request, "trigger", command.job_id)
    except NotReplayable as exc:
        return await dead_letters_page(request, status=409, error=str(exc))
    except ApiError as exc:
        return await dead_letters_page(request, status=exc.status, error=exc.message)
    raise web.HTTPSeeOther(f"{PATH}jobs/{command.job_id}?said=replay")
