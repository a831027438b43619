"""Database rows into response models, and models into HTTP responses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api.cursor import Cursor, encode_cursor
from api.models import ExecutionView, JobView
from core.secrets import redact_target

_EXECUTION_FIELDS = tuple(ExecutionView.model_fields)
_LATEST = "le_"


def model_response(model: BaseModel, *, status: int = 200, **headers: str) -> web.Response:
    return web.Response(
        text=model.model_dump_json(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def execution_view(row: Mapping[str, Any], prefix: str = "") -> ExecutionView:
    return ExecutionView.model_validate({f: row[prefix + f] for f in _EXECUTION_FIELDS})


def job_view(row: Mapping[str, Any]) -> JobView:
    fields = {f: row[f] for f in JobView.model_fields if f != "last_execution"}
    fields["target"] = redact_target(fields["target"])
    latest = execution_view(row, _LATEST) if row[_LATEST + "execution_id"] is not None else None
    return JobView.model_validate({**fields, "last_execution": latest})


def next_cursor(rows: Sequence[Mapping[str, Any]], limit: int, id_column: str) -> str | None:
    """The cursor after the last row shown, when the query found more than one page.

    Queries fetch ``limit + 1`` rows: the extra one only says that another page exists.
    """
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(Cursor(last["created_at"], last[id_column]))
