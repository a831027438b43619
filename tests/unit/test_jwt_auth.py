"""JWT verification (api/jwt_auth.py) and its settings, without services.

Keys are generated here with cryptography and tokens signed with PyJWT; the JWKS endpoint is a
fake fetch with a fake clock, so caching, rotation and an endpoint that is down are exact.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any, cast

import aiohttp
import asyncpg
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from api.errors import ServiceUnavailable
from api.jwt_auth import (
    ALGORITHM_KEYS,
    JwksSource,
    JwtVerifier,
    SigningKeysUnavailable,
    TokenRejected,
    build_authenticator,
)
from api.keys import Principal, new_key
from core.settings import SecuritySettings

ISSUER = "https://idp.example/"
AUDIENCE = "kjs-api"
JWKS_URL = "https://idp.example/.well-known/jwks.json"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims; a change to None drops the claim."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "scope": "read write",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def sign(key: PrivateKey, body: dict[str, Any], alg: str = "RS256", kid: str | None = None) -> str:
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], body: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT refuses to make: HS256 keyed with a public key, or alg none."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = b""
    if secret is not None:
        digest = {"HS384": hashlib.sha384, "HS512": hashlib.sha512}.get(header["alg"])
        signature = hmac.new(secret, signing_input.encode(), digest or hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def security(*keys: PrivateKey, **changes: Any) -> SecuritySettings:
    settings: dict[str, Any] = {
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_public_keys": [public_pem(k) for k in keys],
    }
    settings.update(changes)
    return SecuritySettings(**settings)


async def rejected(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as caught:
        await verifier.verify(token)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    return caught.value.message


# --- accepted tokens -------------------------------------------------------------------------


async def test_a_valid_rs256_token_gives_its_subject_and_scopes(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))

    principal = await verifier.verify(sign(rsa_key, claims()))

    assert principal == Principal(None, "alice", frozenset({"read", "write"}), "jwt")
    assert principal.allows("read") and principal.allows("write")


async def test_a_valid_es256_token_is_accepted(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = JwtVerifier(security(rsa_key, ec_key))

    principal = await verifier.verify(sign(ec_key, claims(sub="bob"), alg="ES256"))

    assert principal.user_id == "bob"


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("read", {"read"}),
        ("read write admin", {"read", "write", "admin"}),
        (["write"], {"write"}),
        ("kjs:admin openid profile", {"admin"}),
        (["kjs:read", "email", "Write", "kjs:nope"], {"read"}),
        ("openid", set()),
        (None, set()),
    ],
)
async def test_scopes_map_to_read_write_admin_and_others_are_ignored(
    rsa_key: rsa.RSAPrivateKey, scope: Any, expected: set[str]
) -> None:
    verifier = JwtVerifier(security(rsa_key))

    principal = await verifier.verify(sign(rsa_key, claims(scope=scope)))

    assert principal.scopes == frozenset(expected)


async def test_the_user_and_scope_claims_can_be_other_claims(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(
        security(rsa_key, jwt_user_claim="preferred_username", jwt_scope_claim="scp")
    )
    token = sign(rsa_key, claims(preferred_username="carol@corp", scp=["admin"], scope="read"))

    principal = await verifier.verify(token)

    assert (principal.user_id, principal.scopes) == ("carol@corp", frozenset({"admin"}))
    message = await rejected(verifier, sign(rsa_key, claims(scp=["admin"])))
    assert message == "token lacks the 'preferred_username' claim"


async def test_a_service_token_acts_for_the_tenants_it_lists(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))

    listed = await verifier.verify(sign(rsa_key, claims(kjs_tenants=["acme", "globex"])))
    every = await verifier.verify(sign(rsa_key, claims(kjs_tenants="*")))

    assert listed.user_id is None and listed.tenants == frozenset({"acme", "globex"})
    assert listed.covers("acme") and not listed.covers("alice")
    assert every.all_tenants and every.covers("anyone")
    assert listed.scopes == every.scopes == frozenset({"read", "write"})


async def test_a_service_token_needs_no_user_claim(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key, jwt_user_claim="preferred_username"))

    principal = await verifier.verify(sign(rsa_key, claims(kjs_tenants=["acme"])))

    assert principal.tenants == frozenset({"acme"}) and principal.user_id is None


@pytest.mark.parametrize("tenants", [[], "acme", ["ok", "not a tenant"], [1], {"a": 1}])
async def test_a_malformed_tenants_claim_is_refused(
    rsa_key: rsa.RSAPrivateKey, tenants: Any
) -> None:
    verifier = JwtVerifier(security(rsa_key, jwt_tenants_claim="tenants"))

    message = await rejected(verifier, sign(rsa_key, claims(tenants=tenants)))

    assert message.startswith("token claim 'tenants' must be")


async def test_an_audience_list_naming_ours_passes(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))

    principal = await verifier.verify(sign(rsa_key, claims(aud=["other", AUDIENCE])))

    assert principal.user_id == "alice"


async def test_without_a_configured_audience_any_audience_passes(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    verifier = JwtVerifier(security(rsa_key, jwt_audience=None))

    for body in (claims(aud="anything"), claims(aud=None)):
        assert (await verifier.verify(sign(rsa_key, body))).user_id == "alice"


async def test_expiry_within_the_leeway_passes(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key, jwt_leeway_s=30))
    now = int(time.time())

    assert await verifier.verify(sign(rsa_key, claims(exp=now - 10)))
    assert await rejected(verifier, sign(rsa_key, claims(exp=now - 60))) == "token expired"


# --- refused tokens --------------------------------------------------------------------------


async def test_an_expired_token_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key, jwt_leeway_s=0))

    message = await rejected(verifier, sign(rsa_key, claims(exp=int(time.time()) - 1)))

    assert message == "token expired"


async def test_a_token_not_yet_valid_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(rsa_key, claims(nbf=int(time.time()) + 600)))

    assert message == "token not yet valid"


async def test_a_wrong_issuer_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(rsa_key, claims(iss="https://evil.example/")))

    assert message == f"token issuer is not {ISSUER!r}"


@pytest.mark.parametrize("aud", ["other-api", ["other-api", "more"]])
async def test_a_wrong_audience_is_refused(rsa_key: rsa.RSAPrivateKey, aud: Any) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(rsa_key, claims(aud=aud)))

    assert message == f"token audience does not include {AUDIENCE!r}"


@pytest.mark.parametrize("claim", ["exp", "iss", "sub", "aud"])
async def test_a_missing_required_claim_is_refused(rsa_key: rsa.RSAPrivateKey, claim: str) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(rsa_key, claims(**{claim: None})))

    assert message == f"token lacks the {claim!r} claim"


async def test_a_token_signed_by_another_key_is_refused(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(other_rsa_key, claims()))

    assert message == "token signature does not verify with the token issuer's keys"


async def test_a_tampered_payload_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))
    header, _, signature = sign(rsa_key, claims()).split(".")
    forged = b64(json.dumps(claims(sub="mallory", scope="admin")).encode())

    message = await rejected(verifier, f"{header}.{forged}.{signature}")

    assert message == "token signature does not verify with the token issuer's keys"


async def test_alg_none_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))

    for token in (
        jwt.encode(claims(), None, algorithm="none"),
        hand_made({"alg": "none", "typ": "JWT"}, claims(), None),
        hand_made({"alg": "None"}, claims(), None),
    ):
        message = await rejected(verifier, token)
        assert message.startswith("token algorithm"), message
        assert "is not accepted (accepted: RS256, ES256)" in message


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hs_signed_with_the_public_key_is_refused(
    rsa_key: rsa.RSAPrivateKey, alg: str
) -> None:
    """Algorithm confusion: the public key (public!) used as an HMAC secret."""
    verifier = JwtVerifier(security(rsa_key))
    token = hand_made(
        {"alg": alg, "typ": "JWT"}, claims(scope="admin"), public_pem(rsa_key).encode()
    )

    message = await rejected(verifier, token)

    assert message == f"token algorithm {alg!r} is not accepted (accepted: RS256, ES256)"


async def test_an_algorithm_outside_the_configured_ones_is_refused(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    verifier = JwtVerifier(security(rsa_key))  # RS256 and ES256 only

    message = await rejected(verifier, sign(rsa_key, claims(), alg="PS256"))

    assert message == "token algorithm 'PS256' is not accepted (accepted: RS256, ES256)"


async def test_an_algorithm_that_fits_none_of_the_keys_is_refused(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """ES256 is allowed but the only key is RSA: no key, whatever the header says."""
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(ec_key, claims(), alg="ES256"))

    assert message == "no key of the token issuer matches the token (alg ES256, kid None)"


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "", "....", "eyJhbGciOiJSUzI1NiJ9.e30", "eyJ.eyJ.sig"],
)
async def test_a_malformed_token_is_refused(rsa_key: rsa.RSAPrivateKey, token: str) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, token)

    assert message.startswith(("malformed", "token algorithm", "invalid token")), message


async def test_a_payload_that_is_not_an_object_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))
    token = jwt.api_jws.encode(b"[1, 2]", rsa_key, algorithm="RS256")

    message = await rejected(verifier, token)

    assert message.startswith("invalid token"), message


async def test_a_huge_token_is_refused_unparsed(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(rsa_key, claims(pad="x" * 20_000)))

    assert message == "token too large"


@pytest.mark.parametrize("sub", ["alice bob", "x" * 129, "", "al/ice", "émile"])
async def test_a_subject_that_is_not_a_user_id_is_refused(
    rsa_key: rsa.RSAPrivateKey, sub: str
) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(rsa_key, claims(sub=sub)))

    assert message.startswith(("token claim 'sub' is not a kjs user id", "token lacks")), message


async def test_a_subject_that_is_not_a_string_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(rsa_key, claims(sub=42)))

    assert message.startswith("invalid token"), message


@pytest.mark.parametrize("scope", [42, {"read": True}, ["read", 1]])
async def test_a_scope_claim_of_the_wrong_shape_is_refused(
    rsa_key: rsa.RSAPrivateKey, scope: Any
) -> None:
    verifier = JwtVerifier(security(rsa_key))

    message = await rejected(verifier, sign(rsa_key, claims(scope=scope)))

    assert message == ("token claim 'scope' must be a space-separated string or a list of strings")


# --- the Authenticator dispatches on the kjs_ prefix -----------------------------------------


class NoRows:
    """A pool stand-in: every key lookup finds nothing."""

    def __init__(self) -> None:
        self.lookups = 0

    async def fetchrow(self, query: str, *args: Any) -> None:
        self.lookups += 1
        return None


async def test_the_authenticator_sends_jwts_to_the_verifier_and_keys_to_the_store(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    store = NoRows()
    authenticator = build_authenticator(cast(asyncpg.Pool, store), security(rsa_key))

    principal = await authenticator.authenticate(sign(rsa_key, claims()))
    unknown_key = await authenticator.authenticate(new_key())

    assert principal is not None and principal.source == "jwt"
    assert unknown_key is None
    assert store.lookups == 1  # only the API key was looked up


async def test_without_an_issuer_a_jwt_is_just_an_invalid_key(rsa_key: rsa.RSAPrivateKey) -> None:
    store = NoRows()
    authenticator = build_authenticator(cast(asyncpg.Pool, store), SecuritySettings())

    assert authenticator.tokens is None
    assert await authenticator.authenticate(sign(rsa_key, claims())) is None
    assert store.lookups == 0


def test_no_audience_is_warned_about(
    rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        build_authenticator(cast(asyncpg.Pool, NoRows()), security(rsa_key, jwt_audience=None))

    assert "KJS_JWT_AUDIENCE is not set" in caplog.text


# --- the issuer's JWKS -----------------------------------------------------------------------


def jwk_of(key: PrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(cast(ec.EllipticCurvePublicKey, public), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", **extra}


class FakeIdp:
    """The JWKS endpoint: a document, or a failure, and a count of fetches."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.document: Any = {"keys": list(keys)}
        self.failure: Exception | None = None
        self.fetches = 0
        self.now = 1000.0

    async def fetch(self) -> bytes:
        self.fetches += 1
        await asyncio.sleep(0)  # a real fetch yields; concurrent callers must share it
        if self.failure is not None:
            raise self.failure
        return json.dumps(self.document).encode()

    def clock(self) -> float:
        return self.now


def jwks_verifier(idp: FakeIdp, algorithms: list[str] | None = None, **changes: Any) -> JwtVerifier:
    settings = security(
        jwt_jwks_url=JWKS_URL, jwt_algorithms=algorithms or ["RS256", "ES256"], **changes
    )
    source = JwksSource(
        JWKS_URL,
        settings.jwt_algorithms,
        cache_s=300.0,
        min_refresh_s=5.0,
        fetch=idp.fetch,
        clock=idp.clock,
    )
    return JwtVerifier(settings, jwks=source)


async def test_jwks_keys_verify_by_kid_and_are_fetched_once(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    idp = FakeIdp(jwk_of(rsa_key, "r1"), jwk_of(ec_key, "e1"))
    verifier = jwks_verifier(idp)

    for _ in range(3):
        assert (await verifier.verify(sign(rsa_key, claims(), kid="r1"))).user_id == "alice"
        assert await verifier.verify(sign(ec_key, claims(), alg="ES256", kid="e1"))
    assert await verifier.verify(sign(rsa_key, claims()))  # no kid: every RS256 key is tried

    assert idp.fetches == 1


async def test_concurrent_first_requests_share_one_fetch(rsa_key: rsa.RSAPrivateKey) -> None:
    idp = FakeIdp(jwk_of(rsa_key, "r1"))
    verifier = jwks_verifier(idp)
    token = sign(rsa_key, claims(), kid="r1")

    principals = await asyncio.gather(*(verifier.verify(token) for _ in range(20)))

    assert {p.user_id for p in principals} == {"alice"}
    assert idp.fetches == 1


async def test_the_jwks_is_fetched_again_after_the_cache_time(rsa_key: rsa.RSAPrivateKey) -> None:
    idp = FakeIdp(jwk_of(rsa_key, "r1"))
    verifier = jwks_verifier(idp)
    token = sign(rsa_key, claims(), kid="r1")
    await verifier.verify(token)

    idp.now += 299
    await verifier.verify(token)
    assert idp.fetches == 1
    idp.now += 2
    await verifier.verify(token)
    assert idp.fetches == 2


async def test_a_new_kid_is_fetched_at_once_and_unknown_kids_cannot_storm_the_idp(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    idp = FakeIdp(jwk_of(rsa_key, "r1"))
    verifier = jwks_verifier(idp)
    await verifier.verify(sign(rsa_key, claims(), kid="r1"))
    idp.now += 10

    # The issuer rotates: r2 is published, and the first token naming it refetches.
    idp.document = {"keys": [jwk_of(rsa_key, "r1"), jwk_of(other_rsa_key, "r2")]}
    assert await verifier.verify(sign(other_rsa_key, claims(), kid="r2"))
    assert idp.fetches == 2

    # Tokens naming kids that do not exist refetch at most once per min_refresh_s.
    for i in range(50):
        message = await rejected(verifier, sign(other_rsa_key, claims(), kid=f"nope-{i}"))
        assert message.startswith("no key of the token issuer matches the token")
    assert idp.fetches == 2
    idp.now += 6
    await rejected(verifier, sign(other_rsa_key, claims(), kid="nope-again"))
    assert idp.fetches == 3


@pytest.mark.parametrize(
    "failure",
    [
        aiohttp.ClientConnectionError("Cannot connect to host idp.example:443"),
        TimeoutError(),
        ValueError("answered HTTP 502"),
    ],
)
async def test_a_jwks_that_cannot_be_fetched_is_503_with_retry_after(
    rsa_key: rsa.RSAPrivateKey, failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    idp = FakeIdp(jwk_of(rsa_key, "r1"))
    idp.failure = failure
    verifier = jwks_verifier(idp)

    with pytest.raises(SigningKeysUnavailable) as caught:
        await verifier.verify(sign(rsa_key, claims(), kid="r1"))

    assert isinstance(caught.value, ServiceUnavailable)
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"]
    assert caught.value.message == "the token issuer's signing keys cannot be fetched"
    assert f"JWKS {JWKS_URL}: " in caplog.text  # the reason is logged, not told to the caller
    # Failing requests do not hammer the endpoint: one attempt per min_refresh_s.
    for _ in range(10):
        with pytest.raises(SigningKeysUnavailable):
            await verifier.verify(sign(rsa_key, claims(), kid="r1"))
    assert idp.fetches == 1


async def test_a_jwks_that_comes_back_is_used(rsa_key: rsa.RSAPrivateKey) -> None:
    idp = FakeIdp(jwk_of(rsa_key, "r1"))
    idp.failure = aiohttp.ClientConnectionError("down")
    verifier = jwks_verifier(idp)
    token = sign(rsa_key, claims(), kid="r1")
    with pytest.raises(SigningKeysUnavailable):
        await verifier.verify(token)

    idp.failure = None
    idp.now += 5

    assert (await verifier.verify(token)).user_id == "alice"


async def test_keys_fetched_before_stay_in_use_while_the_jwks_is_down(
    rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    idp = FakeIdp(jwk_of(rsa_key, "r1"))
    verifier = jwks_verifier(idp)
    token = sign(rsa_key, claims(), kid="r1")
    await verifier.verify(token)

    idp.failure = aiohttp.ClientConnectionError("down")
    idp.now += 1000
    with caplog.at_level(logging.WARNING):
        assert (await verifier.verify(token)).user_id == "alice"

    assert idp.fetches == 2
    assert "the keys fetched before stay in use" in caplog.text


@pytest.mark.parametrize("document", [b"<html>oops</html>", b"[]", b'{"keys": 3}', b"\xff"])
async def test_a_body_that_is_not_a_jwks_counts_as_unavailable(
    rsa_key: rsa.RSAPrivateKey, document: bytes
) -> None:
    idp = FakeIdp()

    async def fetch() -> bytes:
        return document

    idp.fetch = fetch  # type: ignore[method-assign]
    verifier = jwks_verifier(idp)

    with pytest.raises(SigningKeysUnavailable):
        await verifier.verify(sign(rsa_key, claims(), kid="r1"))


async def test_encryption_symmetric_private_and_foreign_keys_are_never_used(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    public = jwk_of(rsa_key, "r1")
    private = {**RSAAlgorithm.to_jwk(rsa_key, as_dict=True), "kid": "r1"}
    secret = {"kty": "oct", "kid": "r1", "k": b64(public_pem(rsa_key).encode())}
    idp = FakeIdp(
        {**public, "use": "enc"},
        private,
        secret,
        {**public, "alg": "PS256"},  # pinned to another algorithm
        {"kty": "RSA", "kid": "r1"},  # broken
        "not a key",
    )
    verifier = jwks_verifier(idp, algorithms=["RS256", "ES256"])

    message = await rejected(verifier, sign(rsa_key, claims(), kid="r1"))
    hs = hand_made({"alg": "HS256", "kid": "r1"}, claims(), public_pem(rsa_key).encode())

    assert message == "no key of the token issuer matches the token (alg RS256, kid 'r1')"
    assert (await rejected(verifier, hs)).startswith("token algorithm 'HS256' is not accepted")


async def test_a_key_pinned_to_its_alg_verifies_only_that_alg(rsa_key: rsa.RSAPrivateKey) -> None:
    idp = FakeIdp(jwk_of(rsa_key, "r1", alg="RS256"))
    verifier = jwks_verifier(idp, algorithms=["RS256", "PS256"])

    assert await verifier.verify(sign(rsa_key, claims(), kid="r1", alg="RS256"))
    message = await rejected(verifier, sign(rsa_key, claims(), kid="r1", alg="PS256"))

    assert message == "no key of the token issuer matches the token (alg PS256, kid 'r1')"


async def test_an_rsa_key_without_alg_serves_every_configured_rsa_algorithm(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    idp = FakeIdp(jwk_of(rsa_key, "r1"))
    verifier = jwks_verifier(idp, algorithms=["RS256", "PS256"])

    for alg in ("RS256", "PS256"):
        assert await verifier.verify(sign(rsa_key, claims(), kid="r1", alg=alg))


async def test_static_keys_and_the_jwks_work_together(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    idp = FakeIdp(jwk_of(ec_key, "e1"))
    settings = security(rsa_key, jwt_jwks_url=JWKS_URL)
    verifier = JwtVerifier(
        settings,
        jwks=JwksSource(JWKS_URL, settings.jwt_algorithms, fetch=idp.fetch, clock=idp.clock),
    )

    assert await verifier.verify(sign(rsa_key, claims()))
    assert await verifier.verify(sign(ec_key, claims(), alg="ES256", kid="e1"))


# --- settings --------------------------------------------------------------------------------


def settings_error(**values: Any) -> str:
    with pytest.raises(ValueError) as caught:
        SecuritySettings(**values)
    return str(caught.value)


def test_jwt_is_off_by_default() -> None:
    settings = SecuritySettings()

    assert not settings.jwt_enabled
    assert settings.jwt_algorithms == ["RS256", "ES256"]
    assert (settings.jwt_user_claim, settings.jwt_scope_claim) == ("sub", "scope")
    assert settings.jwt_leeway_s == 30


def test_the_settings_accept_exactly_the_verifiers_algorithms(rsa_key: rsa.RSAPrivateKey) -> None:
    settings = security(rsa_key, jwt_algorithms=list(ALGORITHM_KEYS))

    assert settings.jwt_algorithms == list(ALGORITHM_KEYS)


@pytest.mark.parametrize(
    ("algorithms", "expected"),
    [
        (["none"], "'none' (unsigned tokens) is never accepted"),
        (["RS256", "NONE"], "'none' (unsigned tokens) is never accepted"),
        (["HS256"], "'HS256' is refused: a symmetric algorithm"),
        (["RS256", "HS512"], "'HS512' is refused: a symmetric algorithm"),
        (["RS257"], "unknown algorithm 'RS257'"),
        ([], "KJS_JWT_ALGORITHMS is empty"),
    ],
)
def test_unsafe_or_unknown_algorithms_are_refused(
    rsa_key: rsa.RSAPrivateKey, algorithms: list[str], expected: str
) -> None:
    message = settings_error(
        jwt_issuer=ISSUER, jwt_public_keys=[public_pem(rsa_key)], jwt_algorithms=algorithms
    )

    assert expected in message


def test_jwt_settings_without_an_issuer_are_refused() -> None:
    message = settings_error(jwt_audience=AUDIENCE, jwt_jwks_url=JWKS_URL)

    assert "KJS_JWT_AUDIENCE, KJS_JWT_JWKS_URL set but KJS_JWT_ISSUER is not" in message


def test_an_issuer_needs_keys() -> None:
    assert "KJS_JWT_ISSUER needs KJS_JWT_JWKS_URL or KJS_JWT_PUBLIC_KEYS" in settings_error(
        jwt_issuer=ISSUER
    )


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://idp.example/jwks", True),
        ("http://127.0.0.1:8081/jwks", True),
        ("http://[::1]:8081/jwks", True),
        ("http://localhost/jwks", True),
        ("http://idp.example/jwks", False),
        ("http://10.0.0.1/jwks", False),
        ("ftp://idp.example/jwks", False),
        ("idp.example/jwks", False),
        ("https:///jwks", False),
    ],
)
def test_the_jwks_url_must_be_https_or_loopback_http(url: str, ok: bool) -> None:
    if ok:
        assert SecuritySettings(jwt_issuer=ISSUER, jwt_jwks_url=url).jwt_enabled
    else:
        assert "must be an https URL (http only on a loopback address)" in settings_error(
            jwt_issuer=ISSUER, jwt_jwks_url=url
        )


def test_public_keys_must_be_pem_public_keys(rsa_key: rsa.RSAPrivateKey) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    message = settings_error(
        jwt_issuer=ISSUER,
        jwt_public_keys=[public_pem(rsa_key), "junk", private_pem, public_pem(weak)],
    )

    assert "KJS_JWT_PUBLIC_KEYS[1] is not a PEM public key" in message
    assert "KJS_JWT_PUBLIC_KEYS[2] is a private key; give the issuer's public key" in message
    assert "KJS_JWT_PUBLIC_KEYS[3] is an RSA key of 1024 bits (2048 at least)" in message
    assert "KJS_JWT_PUBLIC_KEYS[0]" not in message
    assert "input_value" not in message  # the input (a private key here) is not echoed
    assert "BEGIN PRIVATE KEY" not in message


def test_a_public_key_that_fits_no_configured_algorithm_is_refused_at_start() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())

    with pytest.raises(ValueError, match=r"KJS_JWT_PUBLIC_KEYS\[0\] fits none of"):
        JwtVerifier(security(p384))


def test_jwt_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, rsa_key: rsa.RSAPrivateKey
) -> None:
    monkeypatch.setenv("KJS_JWT_ISSUER", ISSUER)
    monkeypatch.setenv("KJS_JWT_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("KJS_JWT_PUBLIC_KEYS", json.dumps([public_pem(rsa_key)]))
    monkeypatch.setenv("KJS_JWT_ALGORITHMS", '["RS256", "PS256"]')
    monkeypatch.setenv("KJS_JWT_LEEWAY_S", "5")

    settings = SecuritySettings()

    assert settings.jwt_enabled and settings.jwt_audience == AUDIENCE
    assert settings.jwt_algorithms == ["RS256", "PS256"]
    assert settings.jwt_leeway_s == 5
