"""The tenant comes from the credential, and service keys act for several tenants.

A tenant key's requests may leave ``user_id`` out: it means the key's tenant. A service key
(``kjs keys create --tenants a,b`` or ``--all-tenants``) acts for the tenants it names; its
requests name one, and a tenant outside its list gets 403 (or 404 for a stored job), exactly
as another tenant's key would. Everything runs on the real API app, Kafka and Postgres.
"""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from api.keys import ActsFor, KeyError_, create_key, list_keys
from api.publisher import CommandPublisher
from core.settings import KafkaSettings
from tests.conftest import bearer, make_api_key
from tests.integration.test_api_auth import stored
from tests.integration.test_api_submit import commands_for, job_body
from tests.support.api import api_deps
from topics.catalog import Catalog

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]


async def service_key(pool: asyncpg.Pool, acts_for: ActsFor) -> dict[str, str]:
    _, key = await create_key(pool, acts_for, ["read", "write"], name="service")
    return bearer(key)


def without_user_id(user_id: str) -> dict[str, object]:
    body = job_body(user_id)
    del body["user_id"]
    return body


async def test_a_submit_without_user_id_acts_for_the_keys_tenant(
    client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
) -> None:
    key = bearer(await make_api_key(pool, user_id))

    resp = await client.post("/v1/jobs", json=without_user_id(user_id), headers=key)

    assert resp.status == 202, await resp.text()
    job_id = (await resp.json())["job_id"]
    [command] = await commands_for(kafka_settings, topic_catalog, user_id)
    assert (command.job.user_id, str(command.job.job_id)) == (user_id, job_id)


async def test_a_listing_without_user_id_is_the_keys_tenants(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    mine, _ = await stored(pool, user_id)
    await stored(pool, f"{user_id}-other")
    key = bearer(await make_api_key(pool, user_id))

    resp = await client.get("/v1/jobs", headers=key)

    assert resp.status == 200, await resp.text()
    assert [j["job_id"] for j in (await resp.json())["jobs"]] == [str(mine)]


async def test_the_403_names_the_tenant_the_key_acts_for(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    key = bearer(await make_api_key(pool, "dev"))

    resp = await client.post("/v1/jobs", json=job_body(user_id), headers=key)

    assert resp.status == 403
    message = (await resp.json())["error"]
    assert repr(user_id) in message and "acts for the tenant 'dev'" in message


async def test_a_service_key_submits_and_lists_for_its_tenants_only(
    client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
) -> None:
    a, b, c = f"{user_id}-a", f"{user_id}-b", f"{user_id}-c"
    jobs = {tenant: (await stored(pool, tenant))[0] for tenant in (a, b, c)}
    key = await service_key(pool, ActsFor(tenants=(a, b)))

    for tenant in (a, b):
        submit = await client.post("/v1/jobs", json=job_body(tenant), headers=key)
        assert submit.status == 202, await submit.text()
        listing = await client.get("/v1/jobs", params={"user_id": tenant}, headers=key)
        assert [j["job_id"] for j in (await listing.json())["jobs"]] == [str(jobs[tenant])]
        read = await client.get(f"/v1/jobs/{jobs[tenant]}", headers=key)
        assert read.status == 200

    refused_submit = await client.post("/v1/jobs", json=job_body(c), headers=key)
    refused_listing = await client.get("/v1/jobs", params={"user_id": c}, headers=key)
    hidden = await client.get(f"/v1/jobs/{jobs[c]}", headers=key)
    hidden_cancel = await client.delete(f"/v1/jobs/{jobs[c]}", headers=key)

    for resp in (refused_submit, refused_listing):
        assert resp.status == 403, await resp.text()
        message = (await resp.json())["error"]
        assert f"acts for the tenants {a!r}, {b!r}" in message
    assert (hidden.status, hidden_cancel.status) == (404, 404)
    assert await commands_for(kafka_settings, topic_catalog, c) == []
    assert len(await commands_for(kafka_settings, topic_catalog, a)) == 1


async def test_a_service_key_must_name_the_tenant(
    client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
) -> None:
    key = await service_key(pool, ActsFor(tenants=(user_id, f"{user_id}-b")))

    submit = await client.post("/v1/jobs", json=without_user_id(user_id), headers=key)
    listing = await client.get("/v1/jobs", headers=key)

    for resp in (submit, listing):
        assert resp.status == 422, await resp.text()
        [error] = (await resp.json())["errors"]
        assert error["field"] == "user_id" and "service credential" in error["message"]
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


async def test_an_all_tenants_key_acts_for_any_tenant(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    key = await service_key(pool, ActsFor(all_tenants=True))
    job_id, _ = await stored(pool, user_id)

    submit = await client.post("/v1/jobs", json=job_body(user_id), headers=key)
    read = await client.get(f"/v1/jobs/{job_id}", headers=key)

    assert (submit.status, read.status) == (202, 200)


async def test_a_service_key_keeps_its_scopes(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    _, key = await create_key(pool, ActsFor(all_tenants=True), ["read"])

    resp = await client.post("/v1/jobs", json=job_body(user_id), headers=bearer(key))

    assert resp.status == 403
    assert (await resp.json())["error"] == "this API key lacks the write scope"


async def test_auth_disabled_needs_the_user_id(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, user_id: str
) -> None:
    deps = api_deps(pool, publisher, topic_catalog, auth_disabled=True)
    async with TestClient(TestServer(build_app(deps))) as open_client:
        resp = await open_client.post("/v1/jobs", json=without_user_id(user_id))
        body = await resp.json()

    assert resp.status == 422
    [error] = body["errors"]
    assert error["field"] == "user_id" and "authentication is disabled" in error["message"]


async def test_what_a_key_acts_for_is_one_of_three(pool: asyncpg.Pool, user_id: str) -> None:
    for wrong in (
        ActsFor,
        lambda: ActsFor(user_id=user_id, all_tenants=True),
        lambda: ActsFor(user_id=user_id, tenants=(user_id,)),
        lambda: ActsFor(tenants=("ok", "not a tenant")),
    ):
        with pytest.raises(KeyError_):
            wrong()
    # The table refuses it too, whatever code writes the row.
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "INSERT INTO kjs_api_keys (key_id, user_id, tenants, key_hash, scopes)"
            " VALUES (gen_random_uuid(), $1, ARRAY[$1], sha256($1::bytea), ARRAY['read'])",
            user_id,
        )


async def test_listing_keys_for_a_tenant_includes_the_service_keys_covering_it(
    pool: asyncpg.Pool, user_id: str
) -> None:
    own, _ = await create_key(pool, user_id, ["read"])
    covering, _ = await create_key(pool, ActsFor(tenants=(user_id, "zz")), ["read"])
    elsewhere, _ = await create_key(pool, ActsFor(tenants=(f"{user_id}-x",)), ["read"])

    found = {info.key_id for info in await list_keys(pool, user_id)}

    assert {own, covering} <= found
    assert elsewhere not in found
