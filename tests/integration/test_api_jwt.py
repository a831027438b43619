"""JWT bearer tokens against the real API, Postgres and Kafka (issue 7).

The issuer's JWKS is served by a local aiohttp server on 127.0.0.1; tokens are signed with
keys generated here. A JWT acts for its ``sub`` exactly as an API key acts for its user id:
the same scopes, the same 403 for another tenant named in a request, the same 404 for another
tenant's job. API keys keep working beside JWTs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from api.app import build_app
from api.deps import ApiDeps
from api.jwt_auth import JwksSource, JwtVerifier, build_authenticator
from api.keys import Authenticator
from api.publisher import CommandPublisher
from core.settings import KafkaSettings, SecuritySettings
from schemas.v1.commands import CreateCommand
from tests.conftest import bearer, make_api_key
from tests.integration.test_api_auth import BY_ID, request_for, same_answer, stored
from tests.integration.test_api_submit import commands_for, job_body
from topics.catalog import Catalog

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]

ISSUER = "https://idp.test/"
AUDIENCE = "kjs-api"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rotated_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


class Idp:
    """The issuer's JWKS endpoint: what it answers, and how often it was asked."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.status = 200
        self.fetches = 0
        self.server = TestServer(self._app(), host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("/jwks"))

    def _app(self) -> web.Application:
        async def jwks(request: web.Request) -> web.Response:
            self.fetches += 1
            if self.status == 302:
                raise web.HTTPFound("https://elsewhere.test/jwks")
            if self.status != 200:
                return web.Response(status=self.status, text="upstream trouble")
            return web.json_response({"keys": self.keys})

        app = web.Application()
        app.router.add_get("/jwks", jwks)
        return app


@pytest.fixture
async def idp(signing_key: rsa.RSAPrivateKey) -> AsyncIterator[Idp]:
    server = Idp(jwk_of(signing_key, "k1"))
    await server.server.start_server()
    yield server
    await server.server.close()


def jwt_security(idp: Idp) -> SecuritySettings:
    return SecuritySettings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks_url=idp.url)


@pytest.fixture
async def client(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, idp: Idp
) -> AsyncIterator[Client]:
    security = jwt_security(idp)
    deps = ApiDeps(
        pool,
        publisher,
        topic_catalog,
        timedelta(seconds=60),
        security=security,
        authenticator=build_authenticator(pool, security),
    )
    async with TestClient(TestServer(build_app(deps))) as c:
        yield c


async def eager_client(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, url: str
) -> Client:
    """An API whose verifier refetches the JWKS whenever it needs to (no minimum interval)."""
    security = SecuritySettings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks_url=url)
    jwks = JwksSource(url, security.jwt_algorithms, cache_s=300.0, min_refresh_s=0.0)
    authenticator = Authenticator(pool, tokens=JwtVerifier(security, jwks=jwks))
    deps = ApiDeps(
        pool,
        publisher,
        topic_catalog,
        timedelta(seconds=60),
        security=security,
        authenticator=authenticator,
    )
    return TestClient(TestServer(build_app(deps)))


def token(
    key: rsa.RSAPrivateKey, sub: str, scope: str = "read write", kid: str = "k1", **changes: Any
) -> dict[str, str]:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + 300,
        "scope": scope,
    }
    body.update(changes)
    return bearer(jwt.encode(body, key, algorithm="RS256", headers={"kid": kid}))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(alg: str, sub: str, secret: bytes | None) -> dict[str, str]:
    """alg none, or HS256 keyed with the issuer's public key (algorithm confusion)."""
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now + 300, "scope": "admin"}
    header = {"alg": alg, "typ": "JWT", "kid": "k1"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = b""
    if secret is not None:
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return bearer(f"{signing_input}.{b64(signature)}")


async def test_a_write_token_submits_a_job_for_its_own_subject(
    client: Client,
    idp: Idp,
    signing_key: rsa.RSAPrivateKey,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
) -> None:
    headers = token(signing_key, user_id, scope="write read")

    resp = await client.post("/v1/jobs", json=job_body(user_id), headers=headers)
    listed = await client.get("/v1/jobs", params={"user_id": user_id}, headers=headers)

    assert resp.status == 202, await resp.text()
    job_id = uuid.UUID((await resp.json())["job_id"])
    commands = await commands_for(kafka_settings, topic_catalog, user_id)
    assert len(commands) == 1
    assert isinstance(commands[0], CreateCommand)
    assert (commands[0].job.job_id, commands[0].job.user_id) == (job_id, user_id)
    assert listed.status == 200, await listed.text()
    assert idp.fetches == 1  # the JWKS is cached across requests


async def test_a_token_naming_another_user_id_is_403(
    client: Client,
    signing_key: rsa.RSAPrivateKey,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
) -> None:
    intruder = token(signing_key, f"{user_id}-x", scope="admin")

    submit = await client.post("/v1/jobs", json=job_body(user_id), headers=intruder)
    listing = await client.get("/v1/jobs", params={"user_id": user_id}, headers=intruder)

    for resp in (submit, listing):
        assert resp.status == 403, await resp.text()
        assert await resp.json() == {
            "error": f"not allowed for user_id {user_id!r}: this token acts for the tenant "
            f"{user_id + '-x'!r}"
        }
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


@pytest.mark.parametrize(("method", "path"), BY_ID)
async def test_another_tenants_job_or_execution_is_404(
    client: Client,
    pool: asyncpg.Pool,
    signing_key: rsa.RSAPrivateKey,
    user_id: str,
    method: str,
    path: str,
) -> None:
    job_id, execution_id = await stored(pool, user_id)
    intruder = token(signing_key, f"{user_id}-x", scope="admin")

    resp = await client.request(
        **request_for(method, path, user_id, job_id, execution_id), headers=intruder
    )
    unknown_id = uuid.uuid4()
    unknown = await client.request(
        **request_for(method, path, user_id, unknown_id, uuid.uuid4()), headers=intruder
    )

    assert resp.status == 404, await resp.text()
    assert same_answer(await resp.json(), job_id, await unknown.json(), unknown_id)


async def test_a_read_only_token_reads_but_gets_403_on_post(
    client: Client, pool: asyncpg.Pool, signing_key: rsa.RSAPrivateKey, user_id: str
) -> None:
    job_id, _ = await stored(pool, user_id)
    reader = token(signing_key, user_id, scope="read")

    submit = await client.post("/v1/jobs", json=job_body(user_id), headers=reader)
    job = await client.get(f"/v1/jobs/{job_id}", headers=reader)

    assert submit.status == 403, await submit.text()
    assert await submit.json() == {"error": "this token lacks the write scope"}
    assert job.status == 200, await job.text()


async def test_a_token_without_kjs_scopes_gets_403(
    client: Client, signing_key: rsa.RSAPrivateKey, user_id: str
) -> None:
    resp = await client.get(
        "/v1/jobs", params={"user_id": user_id}, headers=token(signing_key, user_id, "openid")
    )

    assert resp.status == 403
    assert await resp.json() == {"error": "this token lacks the read scope"}


async def test_an_expired_token_is_401(
    client: Client, signing_key: rsa.RSAPrivateKey, user_id: str
) -> None:
    expired = token(signing_key, user_id, exp=int(time.time()) - 120)

    resp = await client.post("/v1/jobs", json=job_body(user_id), headers=expired)

    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert await resp.json() == {"error": "token expired"}


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("issuer", f"token issuer is not {ISSUER!r}"),
        ("audience", f"token audience does not include {AUDIENCE!r}"),
        ("other key", "token signature does not verify with the token issuer's keys"),
        ("unknown kid", "no key of the token issuer matches the token (alg RS256, kid 'k9')"),
        ("hs256", "token algorithm 'HS256' is not accepted (accepted: RS256, ES256)"),
        ("none", "token algorithm 'none' is not accepted (accepted: RS256, ES256)"),
        ("bad sub", "token claim 'sub' is not a kjs user id (1 to 128 of A-Z a-z 0-9 . _ : @ -)"),
        ("garbage", "malformed bearer credential: neither an API key nor a JWT"),
    ],
)
async def test_refused_tokens_are_401_with_the_reason(
    client: Client,
    signing_key: rsa.RSAPrivateKey,
    rotated_key: rsa.RSAPrivateKey,
    user_id: str,
    case: str,
    error: str,
) -> None:
    public = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    headers = {
        "issuer": lambda: token(signing_key, user_id, iss="https://evil.test/"),
        "audience": lambda: token(signing_key, user_id, aud="another-api"),
        "other key": lambda: token(rotated_key, user_id),
        "unknown kid": lambda: token(signing_key, user_id, kid="k9"),
        "hs256": lambda: forged("HS256", user_id, public),
        "none": lambda: forged("none", user_id, None),
        "bad sub": lambda: token(signing_key, "no spaces allowed"),
        "garbage": lambda: bearer("definitely.not.a-jwt"),
    }[case]()

    resp = await client.get("/v1/jobs", params={"user_id": user_id}, headers=headers)

    assert resp.status == 401, await resp.text()
    assert await resp.json() == {"error": error}


async def test_api_keys_keep_working_beside_jwts(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    key = bearer(await make_api_key(pool, user_id, ("read",)))

    ok = await client.get("/v1/jobs", params={"user_id": user_id}, headers=key)
    refused = await client.post("/v1/jobs", json=job_body(user_id), headers=key)

    assert ok.status == 200, await ok.text()
    assert await refused.json() == {"error": "this API key lacks the write scope"}


@pytest.mark.parametrize("status", [500, 404, 302])
async def test_a_jwks_endpoint_in_trouble_is_503_until_it_answers(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    idp: Idp,
    signing_key: rsa.RSAPrivateKey,
    user_id: str,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp.status = status
    headers = token(signing_key, user_id)
    async with await eager_client(pool, publisher, topic_catalog, idp.url) as c:
        down = await c.get("/v1/jobs", params={"user_id": user_id}, headers=headers)
        error = (await down.json())["error"]
        idp.status = 200
        up = await c.get("/v1/jobs", params={"user_id": user_id}, headers=headers)

    assert down.status == 503, error
    assert int(down.headers["Retry-After"]) >= 1
    assert error == "the token issuer's signing keys cannot be fetched"
    assert f"JWKS {idp.url}: answered HTTP {status}" in caplog.text  # no redirect followed
    assert up.status == 200


async def test_an_unreachable_jwks_endpoint_is_503(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    signing_key: rsa.RSAPrivateKey,
    user_id: str,
) -> None:
    closed = Idp()
    await closed.server.start_server()
    url = closed.url
    await closed.server.close()  # nothing listens there any more

    async with await eager_client(pool, publisher, topic_catalog, url) as c:
        resp = await c.get(
            "/v1/jobs", params={"user_id": user_id}, headers=token(signing_key, user_id)
        )
        error = (await resp.json())["error"]

    assert resp.status == 503, error
    assert error == "the token issuer's signing keys cannot be fetched"


async def test_a_rotated_key_is_picked_up_from_the_jwks(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    idp: Idp,
    signing_key: rsa.RSAPrivateKey,
    rotated_key: rsa.RSAPrivateKey,
    user_id: str,
) -> None:
    async with await eager_client(pool, publisher, topic_catalog, idp.url) as c:
        old = await c.get(
            "/v1/jobs", params={"user_id": user_id}, headers=token(signing_key, user_id)
        )
        idp.keys.append(jwk_of(rotated_key, "k2"))
        new = await c.get(
            "/v1/jobs", params={"user_id": user_id}, headers=token(rotated_key, user_id, kid="k2")
        )

    assert (old.status, new.status) == (200, 200)
    assert idp.fetches == 2
