"""Hostile input at the HTTP door: schemathesis against the real API and its OpenAPI document.

The API runs for real (a Postgres pool, the Kafka publisher, authentication on) on a free
port of 127.0.0.1, in a thread with its own event loop, because schemathesis calls it
synchronously. The document fuzzed is the one the app serves (``build_openapi(ROUTES)``; the
first test checks that ``/openapi.json`` is exactly it), loaded at import so that pytest
parametrizes one test per operation. Every operation is fuzzed:

- positive data (what the document allows) must never get a 5xx, must answer a status the
  document declares, with a content type, headers and body matching the declared ones;
- negative data (what the document forbids) must get a 4xx: nothing the contract forbids is
  accepted;
- without credentials, with a bad key and with a read-only key, 401 and 403 never turn into
  a 5xx, nor into a 2xx for a write.

A few jobs and executions are stored for the fuzzing tenant, and generated ids and user ids are
replaced by them part of the time, so the handlers behind the 404 and 403 are reached too (the
last fuzz test checks, on its own, that every operation can answer a 2xx). Runs are
derandomized and bounded, so CI sees the same cases every time. The inputs that fuzzing found
to crash or to be wrongly accepted are pinned as plain tests at the end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import strategies as st
from schemathesis.specs.openapi import checks

from api.app import build_app
from api.deps import ApiDeps
from api.keys import new_key
from api.openapi import build_openapi
from api.publisher import CommandPublisher
from api.routes import ROUTES
from core.db import create_pool
from core.settings import DatabaseSettings, KafkaSettings
from tests.conftest import RUN_ID, bearer, make_api_key
from tests.integration.test_api_read import insert_execution, insert_job
from topics.admin import create_topics
from topics.catalog import Catalog, catalog

pytestmark = pytest.mark.services

MAX_EXAMPLES = 40
# The tenant pattern of contract v1 (schemas.v1.jobs.USER_ID_FIELD).
_TENANT_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-")

POSITIVE_CHECKS = [
    schemathesis.checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
NEGATIVE_CHECKS = [schemathesis.checks.not_a_server_error, checks.negative_data_rejection]


@dataclass(frozen=True)
class _Seed:
    tenant: str
    admin_key: str
    read_key: str
    job_ids: tuple[uuid.UUID, ...]
    execution_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class LiveApi(_Seed):
    """The seeded tenant, and where the API that serves it listens."""

    base_url: str


@pytest.fixture(scope="module")
async def seed(pool: asyncpg.Pool) -> _Seed:
    """A tenant with keys, and jobs in every status an action can start from (or not)."""
    tenant = f"fuzz-{uuid.uuid4().hex[:10]}"
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    jobs = []
    executions = []
    for i, status in enumerate(("scheduled", "paused", "queued", "succeeded", "cancelled")):
        stored = "scheduled" if status == "paused" else status
        job_id = await insert_job(pool, tenant, status=stored, created_at=t0 + timedelta(hours=i))
        if status == "paused":  # a paused job keeps its next run (the shard's rule)
            await pool.execute("UPDATE kjs_jobs SET status = 'paused' WHERE job_id = $1", job_id)
        jobs.append(job_id)
        for attempt, run in enumerate(("failed", "succeeded"), start=1):
            executions.append(
                await insert_execution(
                    pool,
                    job_id,
                    tenant,
                    attempt=attempt,
                    status=run,
                    created_at=t0 + timedelta(hours=i, minutes=attempt),
                )
            )
    return _Seed(
        tenant,
        await make_api_key(pool, tenant, ("admin",)),
        await make_api_key(pool, tenant, ("read",)),
        tuple(jobs),
        tuple(executions),
    )


@pytest.fixture(scope="module")
async def fuzz_topics(services: None) -> tuple[KafkaSettings, Catalog]:
    """Topics of the fuzzing's own: no scheduler of the session consumes its commands, so the
    seeded jobs keep the statuses each operation needs (a fuzzed cancel stays unapplied)."""
    kafka = KafkaSettings(namespace=f"t{RUN_ID}fuzz.", command_partitions=3, due_partitions=3)
    cat = catalog(kafka)
    await create_topics(kafka, cat)
    return kafka, cat


@pytest.fixture(scope="module")
def live_api(
    seed: _Seed, database_url: str, fuzz_topics: tuple[KafkaSettings, Catalog]
) -> Iterator[LiveApi]:
    """The real app on a free port, served from a thread that owns its event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-api", daemon=True)
    thread.start()

    kafka_settings, topic_catalog = fuzz_topics

    async def start() -> tuple[web.AppRunner, asyncpg.Pool, CommandPublisher, int]:
        db = await create_pool(DatabaseSettings(), dsn=database_url)
        publisher = CommandPublisher(kafka_settings, timeout_s=10.0)
        app = build_app(ApiDeps(db, publisher, topic_catalog, timedelta(seconds=60)))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return runner, db, publisher, port

    runner, db, publisher, port = asyncio.run_coroutine_threadsafe(start(), loop).result(60)

    async def stop() -> None:
        await runner.cleanup()
        await publisher.close()
        await db.close()

    try:
        api = LiveApi(**vars(seed), base_url=f"http://127.0.0.1:{port}")
        _AIM["api"] = api
        yield api
    finally:
        _AIM.clear()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _config(mode: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "generation": {
                "mode": mode,
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
            },
            "checks": {
                # Only refusals: a forbidden input must not be served, nor crash the server.
                "negative_data_rejection": {
                    "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "422"]
                },
            },
        }
    )


def _is_tenant(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128 and set(value) <= _TENANT_CHARS


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# What the hooks aim generated requests at; set by ``live_api`` before the fuzzing phase.
_AIM: dict[str, LiveApi] = {}


def _steer(schema: schemathesis.BaseSchema) -> schemathesis.BaseSchema:
    """Aim part of the generated requests at the fuzzing tenant's own jobs.

    A generated ``user_id`` is replaced only when it is a valid one, and an id only when it
    is a UUID, so a negative case stays negative (its mutation is never undone here).
    """

    @schema.hook
    def flatmap_path_parameters(
        context: schemathesis.HookContext, path_parameters: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        api = _AIM.get("api")
        if api is None or not path_parameters:  # examples are drawn before the API runs
            return st.just(path_parameters)
        pools = {"job_id": api.job_ids, "execution_id": api.execution_ids}
        options: dict[str, st.SearchStrategy[Any]] = {}
        for name, value in path_parameters.items():
            known = pools.get(name)
            if known and _is_uuid(value):
                options[name] = st.sampled_from([value, *(str(i) for i in known)])
            else:
                options[name] = st.just(value)
        return st.fixed_dictionaries(options)

    @schema.hook
    def map_query(context: schemathesis.HookContext, query: dict[str, Any]) -> dict[str, Any]:
        if "api" in _AIM and query and _is_tenant(query.get("user_id")):
            query["user_id"] = _AIM["api"].tenant
        return query

    @schema.hook
    def map_body(context: schemathesis.HookContext, body: Any) -> Any:
        if "api" in _AIM and isinstance(body, dict) and _is_tenant(body.get("user_id")):
            body["user_id"] = _AIM["api"].tenant
        return body

    return schema


# The document the app serves (api.app.build_app sets it from the same routes); the first test
# checks that the running API serves exactly this, so what is fuzzed is what is published.
DOCUMENT = build_openapi(ROUTES)
positive = _steer(schemathesis.openapi.from_dict(DOCUMENT, config=_config("positive")))
# Operations without parameters or a body (/healthz, /metrics, ...) have no forbidden input
# to send: they are left out of the negative run instead of showing up as skipped.
INPUTLESS = sorted(
    path
    for path, operations in DOCUMENT["paths"].items()
    if all(not op.get("parameters") and not op.get("requestBody") for op in operations.values())
)
negative = _steer(
    schemathesis.openapi.from_dict(DOCUMENT, config=_config("negative")).exclude(path=INPUTLESS)
)


def test_the_running_api_serves_the_fuzzed_document(live_api: LiveApi) -> None:
    served = requests.get(f"{live_api.base_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(DOCUMENT))


@positive.parametrize()
def test_valid_requests_get_declared_answers_and_no_5xx(
    case: schemathesis.Case, live_api: LiveApi
) -> None:
    case.call_and_validate(
        base_url=live_api.base_url, headers=bearer(live_api.admin_key), checks=POSITIVE_CHECKS
    )


@negative.parametrize()
def test_requests_the_contract_forbids_are_refused_with_4xx(
    case: schemathesis.Case, live_api: LiveApi
) -> None:
    case.call_and_validate(
        base_url=live_api.base_url, headers=bearer(live_api.admin_key), checks=NEGATIVE_CHECKS
    )


READ_ONLY_POSTS = {"/v1/schedules/preview"}


@positive.parametrize()
def test_no_key_a_bad_key_or_a_read_only_key_is_refused_never_a_5xx(
    case: schemathesis.Case, live_api: LiveApi
) -> None:
    """401 without a valid key, 403 for a write with a read-only key; never a 5xx, never more."""
    v1 = case.path.startswith("/v1/")
    writes = case.method.upper() != "GET" and case.path not in READ_ONLY_POSTS
    credentials = {
        "no key": {},
        "unknown key": bearer(new_key()),
        "empty bearer": {"Authorization": "Bearer "},
        "other scheme": {"Authorization": "Basic a2pzOmtqcw=="},
        "not a key": bearer("x" * 4096),
        "read-only key": bearer(live_api.read_key),
    }
    for label, headers in credentials.items():
        if case.headers:
            case.headers.pop("Authorization", None)
        response = case.call(base_url=live_api.base_url, headers=headers)
        case.validate_response(response, checks=POSITIVE_CHECKS, headers=headers)
        status = response.status_code
        if not v1:
            assert status == 200, (label, status)
        elif label != "read-only key":
            assert status == 401, (label, status, response.text)
        elif writes:
            assert status == 403, (label, status, response.text)
        else:
            assert status < 500, (label, status, response.text)


def test_the_fuzzing_reached_the_handlers(live_api: LiveApi) -> None:
    """Guard against fuzzing that only ever meets 401s or 404s: the positive cases, generated
    as for the fuzz tests above (the same document, steered the same way to the seeded
    tenant, bounded and derandomized alike), reach a 2xx for every operation.

    Self-contained: it generates and sends its own cases (an operation's once it answered a
    2xx), so it checks the same thing run alone, first or last.
    """
    answered: dict[str, Counter[int]] = defaultdict(Counter)

    def reached(label: str) -> bool:
        return any(200 <= status < 300 for status in answered[label])

    def fuzz(operation: Any) -> None:
        label = operation.label

        @hypothesis.settings(
            # More draws than the fuzz tests take, stopping at the first 2xx: a job's body has
            # so many ways to be refused (a time out of range, a past one, the operator's
            # target policy, an exclusion) that a fixed draw of MAX_EXAMPLES may find none.
            max_examples=3 * MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def send(case: schemathesis.Case) -> None:
            if reached(label):
                return
            response = case.call(base_url=live_api.base_url, headers=bearer(live_api.admin_key))
            answered[label][response.status_code] += 1

        send()

    for result in positive.get_all_operations():
        fuzz(result.ok())
    expected = {f"{r.method} {r.path}" for r in ROUTES}
    missed = sorted(label for label in expected if not reached(label))
    assert not missed, {label: dict(answered[label]) for label in missed}


def _job(tenant: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": tenant,
        "name": "fuzz",
        "schedule": {"type": "interval", "every_seconds": 60},
        "target": {"type": "http", "url": "http://example.test/hook"},
    }
    body.update(changes)
    return body


def _spliced(tenant: str, field: str, raw_json: str) -> str:
    """A valid job's JSON with ``field`` (the name, or the target's body) set to raw JSON."""
    job = _job(tenant, name="SPLICE") if field == "name" else _job(tenant)
    if field == "body":
        job["target"]["body"] = "SPLICE"
    return json.dumps(job).replace('"SPLICE"', raw_json)


def _cursor(payload: Any) -> str:
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# (what, method, path (formatted with the tenant and a stored job), raw body or JSON, status).
# Each one a crash or an acceptance that fuzzing (or reading its findings) turned up.
EDGES: list[tuple[str, str, str, Any, int]] = [
    ("JSON nested past the recursion limit", "POST", "/v1/jobs", _deep(100_000), 422),
    ("deep nesting in an update", "PATCH", "/v1/jobs/{job}", _deep(100_000), 422),
    ("deep nesting in a preview", "POST", "/v1/schedules/preview", _deep(100_000), 422),
    (
        "NaN, which is not JSON, as a target body",
        "POST",
        "/v1/jobs",
        lambda t: _spliced(t, "body", "NaN"),
        422,
    ),
    (
        "Infinity inside a target body",
        "POST",
        "/v1/jobs",
        lambda t: json.dumps(
            _job(t, target={"type": "http", "url": "http://e.test", "body": 1})
        ).replace('"body": 1', '"body": Infinity'),
        422,
    ),
    (
        "a target body nested 100 levels",
        "POST",
        "/v1/jobs",
        lambda t: json.dumps(
            _job(t, target={"type": "http", "url": "http://e.test", "body": json.loads(_deep(100))})
        ),
        422,
    ),
    (
        "a once time in year 0 UTC",
        "POST",
        "/v1/jobs",
        lambda t: _job(t, schedule={"type": "once", "at": "0001-01-01T00:00:00+14:00"}),
        422,
    ),
    (
        "a once time in year 10000 UTC",
        "POST",
        "/v1/jobs",
        lambda t: _job(t, schedule={"type": "once", "at": "9999-12-31T23:59:59-14:00"}),
        422,
    ),
    (
        "a start at the end of time",
        "POST",
        "/v1/jobs",
        lambda t: _job(
            t,
            schedule={"type": "interval", "every_seconds": 60, "start_at": "9999-12-31T23:00Z"},
        ),
        422,
    ),
    (
        "a number as a string",
        "POST",
        "/v1/jobs",
        lambda t: _job(t, schedule={"type": "interval", "every_seconds": "60"}),
        422,
    ),
    (
        "a boolean as an integer",
        "POST",
        "/v1/jobs",
        lambda t: _job(t, retry={"max_attempts": True}),
        422,
    ),
    (
        "a Unix timestamp as a date-time",
        "POST",
        "/v1/jobs",
        lambda t: _job(t, schedule={"type": "once", "at": 4102444800}),
        422,
    ),
    (
        "a Unix timestamp as the preview start",
        "POST",
        "/v1/schedules/preview",
        {"schedule": {"type": "interval", "every_seconds": 60}, "from": 0},
        422,
    ),
    (
        "3.0 is an integer (JSON Schema)",
        "POST",
        "/v1/jobs",
        lambda t: _job(t, retry={"max_attempts": 3.0}),
        202,
    ),
    (
        "invalid UTF-8 in a name",
        "POST",
        "/v1/jobs",
        lambda t: _spliced(t, "name", '"a\udcff"').encode("utf-8", "surrogateescape"),
        422,
    ),
    (
        "a lone surrogate in a name",
        "POST",
        "/v1/jobs",
        lambda t: _spliced(t, "name", '"\\ud800"'),
        422,
    ),
    ("a control valid job", "POST", "/v1/jobs", lambda t: _spliced(t, "name", '"ok"'), 202),
    ("a body over the size limit", "POST", "/v1/jobs", " " * (300 * 1024), 413),
    (
        "a cursor at the start of time",
        "GET",
        "/v1/jobs?user_id={tenant}&cursor="
        + _cursor({"t": "0001-01-01T00:00:00+14:00", "id": str(uuid.UUID(int=0))}),
        None,
        422,
    ),
    (
        "a cursor at the end of time",
        "GET",
        "/v1/jobs/{job}/executions?cursor="
        + _cursor({"t": "9999-12-31T23:59:59-14:00", "id": str(uuid.UUID(int=0))}),
        None,
        422,
    ),
    (
        "a cursor that is a JSON list",
        "GET",
        "/v1/jobs?user_id={tenant}&cursor=" + _cursor([1]),
        None,
        422,
    ),
]


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "status"), EDGES, ids=[e[0] for e in EDGES]
)
def test_hostile_inputs_found_by_fuzzing_are_refused(
    live_api: LiveApi, what: str, method: str, path: str, body: Any, status: int
) -> None:
    if callable(body):
        body = body(live_api.tenant)
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    url = live_api.base_url + path.format(tenant=live_api.tenant, job=live_api.job_ids[0])
    headers = {**bearer(live_api.admin_key), "Content-Type": "application/json"}
    response = requests.request(method, url, data=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text[:500]


def test_a_preview_from_the_end_of_time_is_refused(live_api: LiveApi) -> None:
    body = {
        "schedule": {"type": "interval", "every_seconds": 60},
        "from": "9999-12-31T23:59:59-14:00",
    }
    response = requests.post(
        f"{live_api.base_url}/v1/schedules/preview",
        json=body,
        headers=bearer(live_api.admin_key),
        timeout=30,
    )
    assert response.status_code == 422, response.text[:500]


def test_a_preview_under_the_python_field_name_is_refused(live_api: LiveApi) -> None:
    body = {"schedule": {"type": "interval", "every_seconds": 60}, "from_": "2030-01-01T00:00:00Z"}
    response = requests.post(
        f"{live_api.base_url}/v1/schedules/preview",
        json=body,
        headers=bearer(live_api.admin_key),
        timeout=30,
    )
    assert response.status_code == 422, response.text[:500]
