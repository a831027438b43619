"""The console's session: an encrypted cookie that holds the credential the user logged in with.

Why a cookie that carries the credential (encrypted), and not a session id in a server table:
the API keeps no state of its own (it reads Postgres and produces to Kafka), runs as any
number of instances, and already verifies credentials on every request with a short cache.
A session that holds the credential is verified the same way on every console request, so a
revoked API key ends its sessions within ``KJS_AUTH_CACHE_S``, an expired JWT ends its session
when it expires, and any API instance that has the session keys serves any session. The raw
credential never reaches the browser's script or disk in clear: the cookie is Fernet
(AES-128-CBC + HMAC-SHA256) over JSON, HttpOnly, SameSite=Strict, scoped to ``/ui/``, and
Secure over https. What this gives up: a logout clears the cookie in that browser but cannot
revoke a copy of it made before (it lapses after ``KJS_CONSOLE_SESSION_S``, or with its key).

The session also holds a random CSRF token (``console.guard``) and, for a service credential,
the tenant the user chose to act for.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

COOKIE = "kjs_console"
PATH = "/ui/"


@dataclass(frozen=True)
class Session:
    # The API key or JWT, as given at login; verified again on every request.
    credential: str
    # Compared with the token every POST carries (``console.guard``).
    csrf: str
    # Unix time of the login; the session ends ``KJS_CONSOLE_SESSION_S`` later.
    issued_at: float
    # The tenant a service credential acts for, once chosen; None for a tenant's own key.
    tenant: str | None = None

    @classmethod
    def start(cls, credential: str, now: float | None = None) -> Session:
        return cls(credential, secrets.token_urlsafe(24), time.time() if now is None else now)

    def acting_for(self, tenant: str) -> Session:
        return replace(self, tenant=tenant)


class SessionCodec:
    """Seals sessions into cookie values and opens them; the first key seals, every key opens.

    Without keys, a random one is made: sessions then last as long as this process.
    """

    def __init__(
        self, keys: Sequence[SecretStr], lifetime_s: float, always_secure: bool = False
    ) -> None:
        raw = [k.get_secret_value().encode() for k in keys] or [Fernet.generate_key()]
        self._fernet = MultiFernet([Fernet(k) for k in raw])
        self.lifetime_s = lifetime_s
        # The cookie is Secure even over http (KJS_CONSOLE_COOKIE_SECURE, behind TLS proxies).
        self.always_secure = always_secure
        self.ephemeral = not keys

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(json.dumps(asdict(session)).encode()).decode()

    def open(self, value: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie value; None when absent, forged, made with another key,
        malformed or older than the lifetime."""
        if not value:
            return None
        try:
            data = json.loads(self._fernet.decrypt(value.encode()))
            session = Session(
                credential=_text(data["credential"]),
                csrf=_text(data["csrf"]),
                issued_at=float(data["issued_at"]),
                tenant=None if data.get("tenant") is None else _text(data["tenant"]),
            )
        except (InvalidToken, ValueError, TypeError, KeyError):
            return None
        age = (time.time() if now is None else now) - session.issued_at
        if not 0 <= age < self.lifetime_s:
            return None
        return session


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("not a non-empty string")
    return value


def tokens_match(sent: str | None, session: Session) -> bool:
    """The CSRF token a request carries equals its session's (in constant time)."""
    if not sent:
        return False
    return secrets.compare_digest(sent.encode(), session.csrf.encode())
