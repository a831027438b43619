"""Settings for every kjs process, read once at each entry point.

Every setting is an environment variable with the ``KJS_`` prefix. Each process reads only
the sections it needs, but an unknown ``KJS_*`` variable is refused by all of them: a typo
such as ``KJS_KAFKA_BOOTSTRAPS`` must fail loudly instead of silently using the default.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "KJS_"


class _Section(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)


class KafkaSettings(_Section):
    # A validation error must not echo the input: it holds the SASL password.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Prefix for every topic and consumer group name: lets tests and several installations
    # share one cluster without seeing each other's records.
    namespace: str = ""
    command_partitions: int = Field(default=6, ge=1, le=1024)
    due_partitions: int = Field(default=6, ge=1, le=1024)
    events_partitions: int = Field(default=6, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)
    # Transport security of every Kafka client kjs opens (librdkafka, aiokafka, faust), mapped
    # in topics/security.py. SASL_* needs a mechanism, a username and a password; the SSL
    # files are PEM (the CA file verifies the broker; cert + key are for mutual TLS).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    # Off only for a broker whose certificate does not name the host it is reached by.
    kafka_ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _transport_security(self) -> KafkaSettings:
        problems = kafka_security_problems(self)
        if problems:
            raise ValueError("Kafka transport security: " + "; ".join(problems))
        return self


def kafka_security_problems(kafka: KafkaSettings) -> list[str]:
    """What is wrong with the KJS_KAFKA_SECURITY_PROTOCOL/SASL/SSL combination, if anything."""
    protocol = kafka.kafka_security_protocol
    sasl = protocol.startswith("SASL_")
    tls = protocol in ("SSL", "SASL_SSL")
    problems = []
    given = {
        "KJS_KAFKA_SASL_MECHANISM": kafka.kafka_sasl_mechanism is not None,
        "KJS_KAFKA_SASL_USERNAME": kafka.kafka_sasl_username is not None,
        "KJS_KAFKA_SASL_PASSWORD": kafka.kafka_sasl_password is not None,
    }
    if sasl:
        missing = [name for name, is_set in given.items() if not is_set]
        if missing:
            problems.append(f"{protocol} needs {', '.join(missing)}")
    elif any(given.values()):
        named = ", ".join(name for name, is_set in given.items() if is_set)
        problems.append(f"{named} set but KJS_KAFKA_SECURITY_PROTOCOL={protocol} is not SASL_*")
    files = {
        "KJS_KAFKA_SSL_CAFILE": kafka.kafka_ssl_cafile,
        "KJS_KAFKA_SSL_CERTFILE": kafka.kafka_ssl_certfile,
        "KJS_KAFKA_SSL_KEYFILE": kafka.kafka_ssl_keyfile,
    }
    if not tls:
        names = [name for name, path in files.items() if path is not None]
        if kafka.kafka_ssl_key_password is not None:
            names.append("KJS_KAFKA_SSL_KEY_PASSWORD")
        if names:
            problems.append(
                f"{', '.join(names)} set but KJS_KAFKA_SECURITY_PROTOCOL={protocol} is not "
                "SSL or SASL_SSL"
            )
        return problems
    for name, path in files.items():
        if path is not None and not path.is_file():
            problems.append(f"{name}={path} is not a file")
    if (kafka.kafka_ssl_certfile is None) != (kafka.kafka_ssl_keyfile is None):
        problems.append("KJS_KAFKA_SSL_CERTFILE and KJS_KAFKA_SSL_KEYFILE go together")
    if kafka.kafka_ssl_key_password is not None and kafka.kafka_ssl_keyfile is None:
        problems.append("KJS_KAFKA_SSL_KEY_PASSWORD needs KJS_KAFKA_SSL_KEYFILE")
    return problems


class DatabaseSettings(_Section):
    database_url: SecretStr = SecretStr("postgresql://kjs@127.0.0.1:54329/kjs")
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=8, ge=1)


class SchedulerSettings(_Section):
    # A due event is produced this long before the occurrence's time; the worker holds it
    # and starts on the instant, so the Kafka and poll hops do not add to lateness, a burst
    # is written and sent before its instant, and the jobs due within the lead after a
    # scheduler crash are already with the workers (failover hides behind it). A change to
    # a job inside its occurrence's lead applies from the next one; a cancel still wins
    # until the worker's claim (workers.execution.CLAIM_AHEAD_S before the instant).
    lead_ms: int = Field(default=3000, ge=0, le=10_000)
    # Only jobs due within this window are held in a shard's memory (invariant 4).
    window_s: float = Field(default=30.0, gt=1.0, le=3600.0)
    # A `once` job whose time is further in the past than this is refused.
    past_grace_s: float = Field(default=60.0, ge=0.0)
    scheduler_id: str = ""
    # How long the group waits for a silent scheduler before its shards move (failover time
    # after a hard crash); a clean shutdown leaves the group at once. 6 s is the brokers'
    # default group.min.session.timeout.ms; the shards fire again 6-7 s after a crash, and
    # with the 3 s lead a job due just after it fires about 4 s late at worst (a shorter
    # session would make a busy scheduler's GC pause a rebalance, which the epoch fence
    # makes safe but not free).
    session_timeout_s: float = Field(default=6.0, ge=6.0, le=300.0)
    # Fair sharing of a lane (scheduler/fair_dispatch.py): a shard sends its due events
    # round-robin by tenant, with at most dispatch_window per lane sent and neither finished
    # nor older than dispatch_window_s. Off: first come, first served, unpaced.
    # The window is as large as what one worker holds ahead (worker_max_held): a window of
    # 1,000 held a 10,000-job burst's tail back until the head's results were recorded (a
    # second later), which doubled the burst's drain (1.76 s against 0.92 s, bench-peers).
    fair_dispatch: bool = True
    dispatch_window: int = Field(default=10_000, ge=1, le=1_000_000)
    dispatch_window_s: float = Field(default=1.0, gt=0.0, le=3600.0)


class EventsSettings(_Section):
    """``jobs.events``, every state change as an event (docs/events.md). Per installation:
    the schedulers and the workers read it, off costs the firing path nothing but this
    check, and a value other than on/off is refused at start-up."""

    events: Literal["on", "off"] = "off"

    @property
    def on(self) -> bool:
        return self.events == "on"


class WorkerSettings(_Section):
    worker_concurrency: int = Field(default=64, ge=1, le=10_000)
    worker_id: str = ""
    http_excerpt_bytes: int = Field(default=2048, ge=0, le=1_000_000)
    # On SIGTERM, in-flight executions get this long to finish before the worker exits.
    worker_drain_s: float = Field(default=30.0, ge=0, le=3600)
    # Fetched due events held for their instant, beyond the running ones, before pausing.
    worker_max_held: int = Field(default=10_000, ge=1, le=1_000_000)
    # Finished executions older than this many days are pruned by the workers; 0 keeps all.
    execution_retention_days: float = Field(default=30.0, ge=0, le=36_500)


class TargetSettings(_Section):
    """What an operator lets jobs do. Read by the API (422), the scheduler (DLQ for Kafka
    submissions) and the workers (the last line of defence); a job body cannot widen it."""

    script_enabled: bool = False
    # Executables a script job may run (absolute paths or bare names), e.g. ["/bin/echo"].
    script_allowlist: list[str] = Field(default_factory=list)
    # Named SQL connections: {"reporting": "postgresql://..."}; jobs name them, never a DSN.
    sql_connections: dict[str, SecretStr] = Field(default_factory=dict)
    # Topics a kafka job may produce to; empty means any topic outside kjs's own.
    kafka_topic_allowlist: list[str] = Field(default_factory=list)
    # HTTP targets may not reach loopback, link-local (metadata), private or reserved
    # addresses, unless listed here: CIDRs or addresses ("10.1.0.0/16", "127.0.0.1"), host
    # names ("localhost") or domain suffixes (".corp.example"). Empty by default.
    http_allowlist: list[str] = Field(default_factory=list)
    # The largest timeout_s any job may ask for.
    max_timeout_s: float = Field(default=3600.0, gt=0, le=7 * 86400)


class QuotaLimits(BaseModel):
    """One tier's per-tenant limits; 0 means unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Jobs that are scheduled, paused or queued at once.
    active_jobs: int = Field(default=0, ge=0)
    # Sustained create commands per second, and the burst above it (a token bucket).
    submissions_per_s: float = Field(default=0.0, ge=0)
    burst: int = Field(default=0, ge=0)
    # Occurrences fired and runs triggered per UTC day (retries of a run are not counted).
    executions_per_day: int = Field(default=0, ge=0)
    # The largest job target, as JSON: its body, arguments, statement and parameters.
    payload_bytes: int = Field(default=0, ge=0)
    # Executions of the tenant in flight (queued or running) at once; the shard holds the
    # others back as 'pending' until one finishes (scheduler/concurrency.py).
    max_running: int = Field(default=0, ge=0)


class SecuritySettings(_Section):
    """Authentication, quotas and secrets (README "Security")."""

    # A validation error must not echo the input: it holds the secret keys (and perhaps a
    # private key pasted into KJS_JWT_PUBLIC_KEYS by mistake).
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    # Auth is on everywhere, `kjs dev` included; only this explicit switch turns it off,
    # and every process that reads it logs a loud warning.
    auth_disabled: bool = False
    # A verified API key is trusted for this long without a lookup (a revocation takes
    # effect within it), and for auth_stale_s while Postgres is unavailable.
    auth_cache_s: float = Field(default=5.0, ge=0, le=3600)
    auth_stale_s: float = Field(default=300.0, ge=0, le=86400)
    # Per-tenant quotas, enforced by the API (429) and by the shard that owns the tenant
    # (dead letter "quota: ..."). Every tenant gets quota_default unless quota_tenant_tiers
    # names a tier of quota_tiers for it. Unlimited by default.
    quota_default: QuotaLimits = Field(default_factory=QuotaLimits)
    quota_tiers: dict[str, QuotaLimits] = Field(default_factory=dict)
    quota_tenant_tiers: dict[str, str] = Field(default_factory=dict)
    # Fernet keys (JSON list) sealing secrets in job targets at rest; the first seals, all
    # open (rotation). Empty: stored as given (still redacted in API responses).
    secret_keys: list[SecretStr] = Field(default_factory=list)
    # JWT bearer tokens from an identity provider (README "JWT authentication"): off unless
    # jwt_issuer is set. Verified against the issuer's JWKS (jwt_jwks_url: https, or http on
    # loopback) and/or PEM public keys (a JSON list), with asymmetric jwt_algorithms only.
    jwt_issuer: str | None = None
    # The token's aud must include this; unset, a token of the issuer for any audience passes.
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    jwt_public_keys: list[str] = Field(default_factory=list)
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    # The claim naming the tenant (the same shape as an API key's user id), and the claim
    # holding the scopes ("read write" or a list; "kjs:read" too; other scopes are ignored).
    jwt_user_claim: str = "sub"
    jwt_scope_claim: str = "scope"
    # A service token (a backend acting for many tenants) carries this claim instead: a list
    # of tenants, or "*" for all; its requests then name the tenant, as a service key's do.
    jwt_tenants_claim: str = "kjs_tenants"
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)
    # Fetched signing keys are reused this long; a token with an unknown kid refetches sooner.
    jwt_jwks_cache_s: float = Field(default=300.0, ge=1, le=86400)

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_issuer)

    @model_validator(mode="after")
    def _tiers_exist(self) -> SecuritySettings:
        # A misspelt tier would silently give the tenant the default limits.
        unknown = sorted(
            f"{user}: {tier!r}"
            for user, tier in self.quota_tenant_tiers.items()
            if tier not in self.quota_tiers
        )
        if unknown:
            raise ValueError(
                "KJS_QUOTA_TENANT_TIERS names tiers that KJS_QUOTA_TIERS lacks "
                f"({', '.join(unknown)}); known: {', '.join(sorted(self.quota_tiers)) or 'none'}"
            )
        return self

    @model_validator(mode="after")
    def _jwt_settings(self) -> SecuritySettings:
        problems = self.jwt_problems()
        if problems:
            raise ValueError("JWT authentication: " + "; ".join(problems))
        return self

    def jwt_problems(self) -> list[str]:
        """What is wrong with the KJS_JWT_* settings, if anything."""
        from ipaddress import ip_address
        from urllib.parse import urlsplit

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

        # Asymmetric only: "none" is unsigned, and HS* would let anyone holding the issuer's
        # public key (it is public) forge tokens (algorithm confusion).
        asymmetric = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA".split()
        problems = []
        if not self.jwt_algorithms:
            problems.append("KJS_JWT_ALGORITHMS is empty")
        for alg in self.jwt_algorithms:
            if alg.lower() == "none":
                problems.append("KJS_JWT_ALGORITHMS: 'none' (unsigned tokens) is never accepted")
            elif alg.upper().startswith("HS"):
                problems.append(
                    f"KJS_JWT_ALGORITHMS: {alg!r} is refused: a symmetric algorithm lets "
                    "anyone who has the issuer's public key forge tokens"
                )
            elif alg not in asymmetric:
                problems.append(
                    f"KJS_JWT_ALGORITHMS: unknown algorithm {alg!r}; known: {', '.join(asymmetric)}"
                )
        if not self.jwt_issuer:
            named = [
                name
                for name, is_set in (
                    ("KJS_JWT_AUDIENCE", self.jwt_audience),
                    ("KJS_JWT_JWKS_URL", self.jwt_jwks_url),
                    ("KJS_JWT_PUBLIC_KEYS", self.jwt_public_keys),
                )
                if is_set
            ]
            if named:
                problems.append(
                    f"{', '.join(named)} set but KJS_JWT_ISSUER is not (JWT authentication is "
                    "off without an issuer)"
                )
            return problems
        if not self.jwt_jwks_url and not self.jwt_public_keys:
            problems.append("KJS_JWT_ISSUER needs KJS_JWT_JWKS_URL or KJS_JWT_PUBLIC_KEYS")
        if self.jwt_jwks_url:
            url = urlsplit(self.jwt_jwks_url)
            host = url.hostname or ""
            try:
                loopback = host == "localhost" or ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not host or not (url.scheme == "https" or (url.scheme == "http" and loopback)):
                problems.append(
                    f"KJS_JWT_JWKS_URL={self.jwt_jwks_url!r} must be an https URL (http only "
                    "on a loopback address)"
                )
        for i, pem in enumerate(self.jwt_public_keys):
            where = f"KJS_JWT_PUBLIC_KEYS[{i}]"
            if "PRIVATE KEY" in pem:
                problems.append(f"{where} is a private key; give the issuer's public key")
                continue
            try:
                key = serialization.load_pem_public_key(pem.encode())
            except ValueError:
                problems.append(f"{where} is not a PEM public key (-----BEGIN PUBLIC KEY-----)")
                continue
            if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
                problems.append(f"{where} is an RSA key of {key.key_size} bits (2048 at least)")
            elif not isinstance(
                key,
                rsa.RSAPublicKey
                | ec.EllipticCurvePublicKey
                | ed25519.Ed25519PublicKey
                | ed448.Ed448PublicKey,
            ):
                problems.append(f"{where} is not an RSA, EC or Ed25519/Ed448 public key")
        for name, claim in (
            ("KJS_JWT_USER_CLAIM", self.jwt_user_claim),
            ("KJS_JWT_SCOPE_CLAIM", self.jwt_scope_claim),
            ("KJS_JWT_TENANTS_CLAIM", self.jwt_tenants_claim),
        ):
            if not claim:
                problems.append(f"{name} is empty")
        return problems


class ApiSettings(_Section):
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    kafka_timeout_s: float = Field(default=10.0, gt=0)


class ConsoleSettings(_Section):
    """The web console that ``kjs api`` serves under ``/ui/`` (docs/console.md)."""

    # A validation error must not echo the input: it holds the session keys.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    # Fernet keys (JSON list) encrypting the console's session cookies; the first encrypts,
    # all decrypt (rotation). Empty: a random key per API process, so sessions end when it
    # restarts and only work with one API instance (the API logs this at start-up).
    console_session_keys: list[SecretStr] = Field(default_factory=list)
    # How long a login lasts, whatever happens in between (the key is also re-checked on
    # every request, so a revoked key ends its sessions within KJS_AUTH_CACHE_S).
    console_session_s: float = Field(default=12 * 3600.0, gt=0, le=30 * 86400)
    # Mark the session cookie Secure even when the request reached the API over http: set it
    # behind a proxy that terminates TLS (the API does not trust X-Forwarded-Proto).
    console_cookie_secure: bool = False
    # How often the API process samples consumer lag for the pipeline page (its last hour
    # is kept in memory for the charts).
    console_lag_interval_s: float = Field(default=10.0, ge=0.5, le=600)


class ClientSettings(_Section):
    """What the client commands (``kjs jobs``) and ``kjs.client`` read. Server processes accept
    these in the environment without using them, so a shell that exported the key ``kjs dev``
    printed can still run every ``kjs`` command."""

    api_url: str = "http://127.0.0.1:8080"
    api_key: SecretStr | None = None


class ObservabilitySettings(_Section):
    # /metrics, /healthz, /readyz of a scheduler or worker; unset = off, 0 = a free port.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class InfraSettings(_Section):
    data_dir: Path = Path(".kjs")
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    kafka_version: str = "4.1.1"
    kafka_heap: str = "512m"
    postgres_port: int = Field(default=54329, ge=1, le=65535)


SECTIONS: tuple[type[_Section], ...] = (
    KafkaSettings,
    DatabaseSettings,
    SchedulerSettings,
    EventsSettings,
    WorkerSettings,
    TargetSettings,
    SecuritySettings,
    ApiSettings,
    ConsoleSettings,
    ClientSettings,
    ObservabilitySettings,
    InfraSettings,
)


class UnknownSettingError(ValueError):
    pass


def known_env_names() -> set[str]:
    return {ENV_PREFIX + name.upper() for section in SECTIONS for name in section.model_fields}


def check_environment(environ: dict[str, str] | None = None) -> None:
    """Refuse any ``KJS_*`` variable that no section declares, naming the closest known one."""
    env = os.environ if environ is None else environ
    known = known_env_names()
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise UnknownSettingError("; ".join(_unknown(name, known) for name in unknown))


def _unknown(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown setting {name}{hint}"


def settings_error(exc: ValidationError) -> str:
    """One line for a settings section's validation error, naming each variable at fault."""
    parts = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        field = error["loc"][0] if error["loc"] else None
        parts.append(f"{ENV_PREFIX}{str(field).upper()}: {message}" if field else message)
    return f"invalid setting {'; '.join(parts)}"


S = TypeVar("S", bound=_Section)


def load(section: type[S]) -> S:
    check_environment()
    return section()
