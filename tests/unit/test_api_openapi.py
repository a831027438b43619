"""The generated OpenAPI document: complete, self-consistent, and built from the models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from api.openapi import build_openapi
from api.routes import ROUTES
from schemas.v1.jobs import JobSpec


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_it_is_openapi_3_1_and_json_serialisable() -> None:
    doc = build_openapi(ROUTES)
    assert doc["openapi"] == "3.1.0"
    assert json.loads(json.dumps(doc)) == doc


def test_every_route_is_documented_once() -> None:
    doc = build_openapi(ROUTES)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in ROUTES}
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_every_reference_resolves() -> None:
    doc = build_openapi(ROUTES)
    schemas = doc["components"]["schemas"]
    refs = set(_refs(doc))
    assert refs, "expected component references"
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_the_submit_body_is_the_contract_model_with_an_optional_user_id() -> None:
    doc = build_openapi(ROUTES)
    body = doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/JobSubmission"}
    generated = doc["components"]["schemas"]["JobSubmission"]
    assert set(generated["properties"]) == set(JobSpec.model_fields)
    assert generated["additionalProperties"] is False
    # Left out, user_id is the credential's tenant; everything else the contract requires is.
    contract = set(JobSpec.model_json_schema()["required"])
    assert set(generated["required"]) == contract - {"user_id"}


def test_path_and_query_parameters_are_declared() -> None:
    doc = build_openapi(ROUTES)
    get_job = doc["paths"]["/v1/jobs/{job_id}"]["get"]
    assert get_job["parameters"] == [
        {
            "name": "job_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        }
    ]
    listing = {p["name"]: p for p in doc["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert set(listing) == {"user_id", "status", "limit", "cursor"}
    # Left out, the listing is of the credential's tenant.
    assert listing["user_id"]["required"] is False
    assert listing["limit"]["schema"]["maximum"] == 500
