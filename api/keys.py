"""API keys: created, listed and revoked by ``kjs keys``; verified by the API on every request.

A bearer credential without the ``kjs_`` prefix is a JWT: with ``KJS_JWT_ISSUER`` set the
``Authenticator`` hands it to its token verifier (``api.jwt_auth``), otherwise it is refused.

A key is ``kjs_`` followed by 32 random bytes (urlsafe base64). Only its sha256 is stored
(``kjs_api_keys.key_hash``): the key is high-entropy, so a slow password hash buys nothing,
and a leaked table holds no usable credential. The key is shown once, when it is created.

The ``Authenticator`` caches a verified key for ``cache_s`` seconds (a revocation takes effect
within that time), and keeps accepting a key it verified within ``stale_s`` while Postgres is
unavailable, so that submissions still reach Kafka during a database outage.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeAlias, TypeGuard, cast

import asyncpg

from core.db import StoreUnavailable, is_unavailable
from core.queries import QUERIES

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
KEY_PREFIX = "kjs_"
_USER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_KEY_SHAPE = re.compile(r"^kjs_[A-Za-z0-9_-]{20,100}$")


class KeyError_(ValueError):
    """A key request that cannot be honoured (bad user id or scope)."""


def is_user_id(value: object) -> TypeGuard[str]:
    """The shape every tenant id has, whichever credential names it."""
    return isinstance(value, str) and _USER_ID.match(value) is not None


@dataclass(frozen=True)
class Principal:
    """Who a verified credential acts for.

    A tenant credential acts for one tenant (``user_id``), which requests may leave unnamed. A
    service credential (a platform backend submitting for many tenants) acts for the tenants in
    ``tenants``, or for every tenant when ``all_tenants``; its requests name the tenant.
    """

    # The API key's id; None for a JWT.
    key_id: uuid.UUID | None
    # The one tenant of a tenant credential; None for a service credential.
    user_id: str | None
    scopes: frozenset[str]
    source: Literal["api_key", "jwt"] = "api_key"
    tenants: frozenset[str] = frozenset()
    all_tenants: bool = False

    def allows(self, scope: Scope) -> bool:
        # admin covers read and write; read and write are independent of each other.
        return scope in self.scopes or "admin" in self.scopes

    def covers(self, tenant: str) -> bool:
        return self.all_tenants or tenant == self.user_id or tenant in self.tenants

    def acts_for(self) -> str:
        """The tenants, as an error message names them."""
        if self.user_id is not None:
            return f"the tenant {self.user_id!r}"
        if self.all_tenants:
            return "every tenant"
        return "the tenants " + ", ".join(repr(t) for t in sorted(self.tenants))


@dataclass(frozen=True)
class ActsFor:
    """What a new key acts for: one tenant, a list of tenants, or all (exactly one is set)."""

    user_id: str | None = None
    tenants: tuple[str, ...] = ()
    all_tenants: bool = False

    def __post_init__(self) -> None:
        given = (self.user_id is not None) + bool(self.tenants) + self.all_tenants
        if given != 1:
            raise KeyError_("a key acts for one tenant, a list of tenants, or all tenants")
        for tenant in (self.user_id,) if self.user_id is not None else self.tenants:
            if not is_user_id(tenant):
                raise KeyError_(f"invalid user id {tenant!r}")

    def describe(self) -> str:
        if self.user_id is not None:
            return self.user_id
        return "all tenants" if self.all_tenants else "tenants " + ",".join(self.tenants)


@dataclass(frozen=True)
class KeyInfo:
    key_id: uuid.UUID
    acts_for: ActsFor
    scopes: tuple[str, ...]
    name: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _check(scopes: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(scopes))
    if not wanted:
        raise KeyError_("a key needs at least one scope")
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise KeyError_(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    return wanted


Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def create_key(
    db: Executor, acts_for: ActsFor | str, scopes: Iterable[str], name: str = ""
) -> tuple[uuid.UUID, str]:
    """Store a new key's hash; return its id and the key (shown once, never stored).

    ``acts_for`` is a tenant's user id, or an ``ActsFor`` for a service key."""
    who = ActsFor(user_id=acts_for) if isinstance(acts_for, str) else acts_for
    wanted = _check(scopes)
    key_id, key = uuid.uuid4(), new_key()
    await db.execute(
        QUERIES["insert_api_key"],
        key_id,
        who.user_id,
        list(who.tenants) or None,
        who.all_tenants,
        hash_key(key),
        list(wanted),
        name,
    )
    return key_id, key


async def list_keys(db: Executor, user_id: str | None = None) -> list[KeyInfo]:
    """Every key, or those that act for ``user_id`` (service keys covering it included)."""
    rows = await db.fetch(QUERIES["list_api_keys"], user_id)
    return [
        KeyInfo(
            r["key_id"],
            ActsFor(r["user_id"], tuple(r["tenants"] or ()), r["all_tenants"]),
            tuple(r["scopes"]),
            r["name"],
            r["created_at"],
            r["revoked_at"],
        )
        for r in rows
    ]


async def revoke_key(db: Executor, key_id: uuid.UUID) -> bool:
    """Revoke a key; False when no live key has this id."""
    status = await db.execute(QUERIES["revoke_api_key"], key_id)
    return cast(str, status).endswith(" 1")


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal:
        """The token's principal; raises ``api.errors`` Unauthorized (or ServiceUnavailable)."""
        ...


class Authenticator:
    def __init__(
        self,
        pool: asyncpg.Pool,
        cache_s: float = 5.0,
        stale_s: float = 300.0,
        tokens: TokenVerifier | None = None,
    ) -> None:
        self.pool = pool
        # Verifies the bearer credentials that are not API keys (JWTs); None refuses them.
        self.tokens = tokens
        self._cache_s = cache_s
        self._stale_s = stale_s
        # key hash -> (principal, monotonic time it was verified)
        self._cache: dict[bytes, tuple[Principal, float]] = {}

    async def authenticate(self, key: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown or revoked key.

        A credential without the ``kjs_`` prefix goes to the token verifier, when there is one,
        which raises with the reason a token is refused.
        """
        if self.tokens is not None and not key.startswith(KEY_PREFIX):
            return await self.tokens.verify(key)
        if not _KEY_SHAPE.match(key):
            return None
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self._cache_s:
            return cached[0]
        try:
            row = await self.pool.fetchrow(QUERIES["find_api_key"], digest)
        except Exception as exc:
            if not (is_unavailable(exc) or isinstance(exc, TimeoutError | StoreUnavailable)):
                raise
            if cached is not None and now - cached[1] < self._stale_s:
                return cached[0]
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        if (
            row is None
            or row["revoked_at"] is not None
            or not hmac.compare_digest(bytes(row["key_hash"]), digest)
        ):
            self._cache.pop(digest, None)
            return None
        principal = Principal(
            row["key_id"],
            row["user_id"],
            frozenset(row["scopes"]),
            tenants=frozenset(row["tenants"] or ()),
            all_tenants=row["all_tenants"],
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (principal, now)
        return principal
