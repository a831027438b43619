"""JWT bearer tokens of one configured issuer, verified with PyJWT (README "JWT authentication").

With ``KJS_JWT_ISSUER`` set, a bearer credential without the ``kjs_`` prefix is taken for a JWT.
It is accepted when its signature verifies against one of the issuer's keys (the JWKS at
``KJS_JWT_JWKS_URL`` and/or the PEM keys of ``KJS_JWT_PUBLIC_KEYS``) with one of the
configured asymmetric algorithms (never ``none`` nor HS*: the algorithm comes from the
settings, the token's ``alg`` only picks among them, and each key is bound to the algorithms
that fit its type), and when it carries ``exp`` (not passed), ``iss`` (the issuer), ``sub`` (and
the user claim, when that is another), and ``aud`` naming ``KJS_JWT_AUDIENCE`` when one is set.
The user claim is the tenant and must have the shape of an API key's user id; the scope claim
("read write", or a list; ``kjs:read`` counts as ``read``) gives the scopes, others are ignored.

Every refusal is a 401 that says why. The JWKS is fetched with aiohttp (a timeout, a size
limit, no redirects), reused for ``KJS_JWT_JWKS_CACHE_S`` and fetched again sooner, at most
every few seconds, for a ``kid`` it lacks (key rotation). While the endpoint fails, the keys
fetched before stay in use. With no keys at all because the endpoint cannot be reached, the
answer is 503 with Retry-After, as for API keys while Postgres is down: the token may well be
valid, a 401 would send the client for a new token that cannot help, a 503 says to retry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import asyncpg
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.types import Options

from api.errors import ServiceUnavailable, Unauthorized
from api.keys import SCOPES, Authenticator, Principal, is_user_id
from core.settings import SecuritySettings

log = logging.getLogger(__name__)

# The algorithms a token may name (the settings refuse every other) -> the key type (kty) and
# curve (crv; None: any of its type) a key needs for it.
ALGORITHM_KEYS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "ES256K": ("EC", "secp256k1"),
    "EdDSA": ("OKP", None),
}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
# Far above any real token (aiohttp refuses headers over 8 KiB anyway).
MAX_TOKEN_CHARS = 16 * 1024
MAX_JWKS_BYTES = 512 * 1024
SCOPE_PREFIX = "kjs:"

Fetch = Callable[[], Awaitable[bytes]]
Clock = Callable[[], float]
# Per algorithm, the keys that may verify it: (the key's kid, the key bound to the algorithm).
KeysByAlg = dict[str, list[tuple[str | None, jwt.PyJWK]]]


class TokenRejected(Unauthorized):
    """A token that is not accepted; the message says why."""


class SigningKeysUnavailable(ServiceUnavailable):
    """The issuer's keys cannot be fetched and none were fetched before."""


def fits(jwk: Mapping[str, Any], alg: str) -> bool:
    """Whether ``jwk`` may verify ``alg``: its type, its curve, and its own ``alg`` if any."""
    kty, crv = ALGORITHM_KEYS[alg]
    if jwk.get("kty") != kty:
        return False
    if crv is not None and jwk.get("crv") != crv:
        return False
    if kty == "OKP" and jwk.get("crv") not in _OKP_CURVES:
        return False
    declared = jwk.get("alg")
    return declared is None or declared == alg


def bind_keys(jwks: Iterable[Any], algorithms: Sequence[str], where: str) -> KeysByAlg:
    """Each usable public signing key, bound to each of ``algorithms`` it fits."""
    keys: KeysByAlg = {}
    for jwk in jwks:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
        if jwk.get("use", "sig") != "sig" or jwk.get("kty") == "oct":
            continue  # an encryption key, or a symmetric one: never for signatures
        if "d" in jwk:
            log.warning("%s: key %r is a private key; skipped", where, kid)
            continue
        for alg in algorithms:
            if not fits(jwk, alg):
                continue
            try:
                keys.setdefault(alg, []).append((kid, jwt.PyJWK(jwk, algorithm=alg)))
            except Exception as exc:
                log.warning("%s: key %r unusable for %s: %s", where, kid, alg, exc)
    return keys


def parse_jwks(body: bytes, algorithms: Sequence[str], where: str) -> KeysByAlg:
    """The signing keys of a JWKS document; ValueError for a body that is not one."""
    doc = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError('not a JWKS document (no "keys" list)')
    keys = bind_keys(doc["keys"], algorithms, where)
    if not keys:
        log.warning("%s has no key for %s", where, ", ".join(algorithms))
    return keys


def pem_jwk(pem: str) -> dict[str, Any]:
    """A PEM public key (checked by the settings) as a JWK."""
    key = serialization.load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        return RSAAlgorithm.to_jwk(key, as_dict=True)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(key, as_dict=True)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return OKPAlgorithm.to_jwk(key, as_dict=True)
    raise ValueError(f"unsupported public key type {type(key).__name__}")


class JwksSource:
    """The issuer's JWKS, fetched when first needed, cached, refetched for rotation."""

    def __init__(
        self,
        url: str,
        algorithms: Sequence[str],
        cache_s: float = 300.0,
        *,
        timeout_s: float = 5.0,
        min_refresh_s: float = 5.0,
        fetch: Fetch | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.url = url
        self._algorithms = tuple(algorithms)
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        # At most one fetch this often, however many tokens name an unknown kid.
        self._min_refresh_s = min_refresh_s
        self._fetch = fetch or self._get
        self._clock = clock
        self._keys: KeysByAlg | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._error = ""
        self._lock = asyncio.Lock()

    async def candidates(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        """The keys that may have signed a token with this ``kid`` (None: any) and ``alg``."""
        if self._clock() - self._fetched_at >= self._cache_s:
            await self._refresh()
        found = self._match(kid, alg)
        if not found and kid is not None and self._keys is not None:
            await self._refresh()  # the issuer may have published a new key
            found = self._match(kid, alg)
        if self._keys is None:
            # Why is logged (with the URL); the caller, not yet authenticated, is not told.
            raise SigningKeysUnavailable("the token issuer's signing keys cannot be fetched")
        return found

    def _match(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        keys = (self._keys or {}).get(alg, [])
        return [key for key_kid, key in keys if kid is None or key_kid == kid]

    async def _refresh(self) -> None:
        async with self._lock:  # one fetch at a time; who waited uses its result
            if self._clock() - self._attempted_at < self._min_refresh_s:
                return
            self._attempted_at = self._clock()
            try:
                keys = parse_jwks(await self._fetch(), self._algorithms, f"JWKS {self.url}")
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, RecursionError) as exc:
                self._error = f"JWKS {self.url}: {str(exc) or type(exc).__name__}"
                kept = "; the keys fetched before stay in use" if self._keys is not None else ""
                log.warning("%s%s", self._error, kept)
                return
            self._keys, self._fetched_at, self._error = keys, self._clock(), ""

    async def _get(self) -> bytes:
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(
                self.url, allow_redirects=False, headers={"Accept": "application/json"}
            ) as resp,
        ):
            if resp.status != 200:
                raise ValueError(f"answered HTTP {resp.status}")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
            return bytes(body)


class JwtVerifier:
    """Verifies a JWT of the configured issuer; the ``TokenVerifier`` of ``Authenticator``."""

    def __init__(self, security: SecuritySettings, *, jwks: JwksSource | None = None) -> None:
        if not security.jwt_issuer:
            raise ValueError("JWT authentication needs KJS_JWT_ISSUER")
        self.issuer = security.jwt_issuer
        self.audience = security.jwt_audience or None
        self._algorithms = tuple(security.jwt_algorithms)
        self._user_claim = security.jwt_user_claim
        self._scope_claim = security.jwt_scope_claim
        self._tenants_claim = security.jwt_tenants_claim
        self._leeway = security.jwt_leeway_s
        # The user claim is checked in _principal: a service token carries the tenants claim
        # instead.
        required = dict.fromkeys(["exp", "iss", "sub"])
        if self.audience is not None:
            required["aud"] = None
        self._options: Options = {
            "require": list(required),
            "verify_aud": self.audience is not None,
            "enforce_minimum_key_length": True,
        }
        self._static: KeysByAlg = {}
        for i, pem in enumerate(security.jwt_public_keys):
            where = f"KJS_JWT_PUBLIC_KEYS[{i}]"
            bound = bind_keys([pem_jwk(pem)], self._algorithms, where)
            if not bound:
                raise ValueError(f"{where} fits none of KJS_JWT_ALGORITHMS {self._algorithms}")
            for alg, keys in bound.items():
                self._static.setdefault(alg, []).extend(keys)
        if jwks is None and security.jwt_jwks_url:
            jwks = JwksSource(security.jwt_jwks_url, self._algorithms, security.jwt_jwks_cache_s)
        self.jwks = jwks

    async def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRejected("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected(
                "malformed bearer credential: neither an API key nor a JWT"
            ) from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenRejected(
                f"token algorithm {alg!r} is not accepted (accepted: {', '.join(self._algorithms)})"
            )
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("token kid must be a string")
        keys = [key for _, key in self._static.get(alg, [])]
        if self.jwks is not None:
            keys += await self.jwks.candidates(kid, alg)
        if not keys:
            raise TokenRejected(
                f"no key of the token issuer matches the token (alg {alg}, kid {kid!r})"
            )
        return self._principal(self._decode(token, alg, keys))

    def _decode(self, token: str, alg: str, keys: list[jwt.PyJWK]) -> dict[str, Any]:
        for key in keys:
            try:
                return jwt.decode(
                    token,
                    key=key,
                    algorithms=[alg],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self._leeway,
                    options=self._options,
                )
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
                continue  # another key of the issuer may have signed it
            except jwt.PyJWTError as exc:
                raise TokenRejected(self._reason(exc)) from None
            except (ValueError, TypeError, RecursionError):
                raise TokenRejected("malformed token") from None
        raise TokenRejected("token signature does not verify with the token issuer's keys")

    def _reason(self, exc: jwt.PyJWTError) -> str:
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "token expired"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return "token not yet valid"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"token issuer is not {self.issuer!r}"
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"token audience does not include {self.audience!r}"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"token lacks the {exc.claim!r} claim"
        if isinstance(exc, jwt.InvalidAlgorithmError):
            return "token algorithm not accepted"
        return f"invalid token: {exc}"

    def _principal(self, claims: dict[str, Any]) -> Principal:
        scopes = self._scopes(claims)
        if claims.get(self._tenants_claim) is not None:
            return self._service_principal(claims[self._tenants_claim], scopes)
        if self._user_claim not in claims:
            raise TokenRejected(f"token lacks the {self._user_claim!r} claim")
        user_id = claims.get(self._user_claim)
        if not is_user_id(user_id):
            raise TokenRejected(
                f"token claim {self._user_claim!r} is not a kjs user id "
                "(1 to 128 of A-Z a-z 0-9 . _ : @ -)"
            )
        return Principal(None, user_id, scopes, "jwt")

    def _scopes(self, claims: dict[str, Any]) -> frozenset[str]:
        raw = claims.get(self._scope_claim, [])
        if isinstance(raw, str):
            raw = raw.split()
        if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise TokenRejected(
                f"token claim {self._scope_claim!r} must be a space-separated string or a list "
                "of strings"
            )
        named = {s.removeprefix(SCOPE_PREFIX) for s in raw}
        return frozenset(s for s in SCOPES if s in named)

    def _service_principal(self, tenants: object, scopes: frozenset[str]) -> Principal:
        """A service token: its tenants claim is "*" (every tenant) or a list of user ids."""
        if tenants == "*":
            return Principal(None, None, scopes, "jwt", all_tenants=True)
        if not isinstance(tenants, list) or not tenants or not all(map(is_user_id, tenants)):
            raise TokenRejected(
                f'token claim {self._tenants_claim!r} must be "*" or a non-empty list of kjs '
                "user ids"
            )
        return Principal(None, None, scopes, "jwt", tenants=frozenset(tenants))


def build_authenticator(pool: asyncpg.Pool, security: SecuritySettings) -> Authenticator:
    """The API's ``Authenticator``: API keys, and the configured issuer's JWTs when there is one."""
    tokens = None
    if security.jwt_enabled:
        tokens = JwtVerifier(security)
        log.info(
            "JWT authentication on: issuer %s, audience %s, keys %s %s",
            tokens.issuer,
            tokens.audience,
            security.jwt_jwks_url or "",
            f"and {len(security.jwt_public_keys)} PEM key(s)" if security.jwt_public_keys else "",
        )
        if tokens.audience is None:
            log.warning(
                "KJS_JWT_AUDIENCE is not set: every token of %s is accepted, whatever service "
                "it was issued for",
                tokens.issuer,
            )
    return Authenticator(pool, security.auth_cache_s, security.auth_stale_s, tokens)
