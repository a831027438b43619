"""The OpenAPI 3.1 document, generated from the route table and the pydantic models.

Nothing here is written by hand but the route summaries: schemas come from the same models
that validate requests and build responses, so the document cannot drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import core_schema

from api.routing import Route

OPENAPI = web.AppKey("kjs_api_openapi", dict[str, Any])

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{(\w+)\}")
_UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
_PATH_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {"job_id": _UUID, "execution_id": _UUID}


# An ISO 8601 date-time whose offset may be missing, as pydantic writes a naive ``datetime``.
_WALL_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$"


class _Schemas(GenerateJsonSchema):
    """Pydantic's JSON Schemas, with ``format: date-time`` only where an offset is certain.

    ``format: date-time`` is RFC 3339, which requires an offset. A field typed plain
    ``datetime`` may hold a naive wall time (``PreviewFire.nominal``) and is written without
    one, so documenting it as ``date-time`` would make valid answers violate the document.
    """

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        if schema.get("tz_constraint") == "aware":
            return super().datetime_schema(schema)
        return {"type": "string", "pattern": _WALL_TIME}


def _models(routes: Sequence[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for route in routes:
        if route.body is not None:
            wanted[(route.body, "validation")] = None
        for reply in route.replies.values():
            if reply.model is not None:
                wanted[(reply.model, "serialization")] = None
    return list(wanted)


def _query_parameters(model: type[BaseModel]) -> Iterable[dict[str, Any]]:
    schema = model.model_json_schema(
        mode="validation", ref_template=_REF, schema_generator=_Schemas
    )
    required = set(schema.get("required", ()))
    for name, prop in schema["properties"].items():
        yield {"name": name, "in": "query", "required": name in required, "schema": prop}


def _path_parameters(path: str) -> Iterable[dict[str, Any]]:
    for name in _PATH_PARAM.findall(path):
        schema = _PATH_PARAM_SCHEMAS.get(name, {"type": "string"})
        yield {"name": name, "in": "path", "required": True, "schema": schema}


def _operation(route: Route, refs: Mapping[tuple[Any, JsonSchemaMode], Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, reply in sorted(route.replies.items()):
        response: dict[str, Any] = {"description": reply.description}
        if reply.model is not None:
            schema = refs[(reply.model, "serialization")]
            response["content"] = {reply.media_type: {"schema": schema}}
        elif reply.media_type != "application/json":
            response["content"] = {reply.media_type: {"schema": {"type": "string"}}}
        if reply.headers:
            response["headers"] = {
                h: {"schema": {"type": "integer" if h == "Retry-After" else "string"}}
                for h in reply.headers
            }
        responses[str(status)] = response
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "tags": list(route.tags),
        "responses": responses,
    }
    if route.path.startswith("/v1/"):
        operation["security"] = [{"apiKey": []}]
    parameters = [*_path_parameters(route.path)]
    if route.query is not None:
        parameters.extend(_query_parameters(route.query))
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema = refs[(route.body, "validation")]
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return operation


def build_openapi(routes: Sequence[Route], version: str = "1") -> dict[str, Any]:
    refs, definitions = models_json_schema(
        _models(routes), ref_template=_REF, schema_generator=_Schemas
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kjs",
            "version": version,
            "description": "Kafka-native job scheduler, contract v1 (additive changes only).",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A kjs API key (`kjs keys create`), or a JWT of the "
                    "configured issuer when KJS_JWT_ISSUER is set.",
                }
            },
        },
    }
