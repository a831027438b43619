"""Settings for every kjs process, read once at each entry point.

Every setting is an environment variable with the ``KJS_`` prefix. Each process reads only
the sections it needs, but an unknown ``KJS_*`` variable is refused by all of them: a typo
such as ``KJS_KAFKA_BOOTSTRAPS`` must fail loudly instead of silently using the default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "KJS_"

Lane = Literal["critical", "normal", "low"]
LANES: tuple[Lane, ...] = ("critical", "normal", "low")


class _Section(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)


class KafkaSettings(_Section):
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Prefix for every topic and consumer group name: lets tests and several installations
    # share one cluster without seeing each other's records.
    namespace: str = ""
    command_partitions: int = Field(default=6, ge=1, le=1024)
    due_partitions: int = Field(default=6, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)


class DatabaseSettings(_Section):
    database_url: SecretStr = SecretStr("postgresql://kjs@127.0.0.1:54329/kjs")
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=8, ge=1)


class SchedulerSettings(_Section):
    # A due event is produced this long before the occurrence's time; the worker holds it
    # and starts on the instant, so the Kafka and poll hops do not add to lateness.
    lead_ms: int = Field(default=250, ge=0, le=10_000)
    # Only jobs due within this window are held in a shard's memory (invariant 4).
    window_s: float = Field(default=30.0, gt=1.0, le=3600.0)
    # A `once` job whose time is further in the past than this is refused.
    past_grace_s: float = Field(default=60.0, ge=0.0)
    scheduler_id: str = ""
    # How long the group waits for a silent scheduler before its shards move (failover time
    # after a hard crash); a clean shutdown leaves the group at once.
    session_timeout_s: float = Field(default=10.0, ge=6.0, le=300.0)


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


class SecuritySettings(_Section):
    """Authentication, quotas and secrets (README "Security")."""

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


class ApiSettings(_Section):
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    kafka_timeout_s: float = Field(default=10.0, gt=0)


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
    WorkerSettings,
    TargetSettings,
    SecuritySettings,
    ApiSettings,
    ObservabilitySettings,
    InfraSettings,
)


class UnknownSettingError(ValueError):
    pass


def known_env_names() -> set[str]:
    return {ENV_PREFIX + name.upper() for section in SECTIONS for name in section.model_fields}


def check_environment(environ: dict[str, str] | None = None) -> None:
    """Refuse any ``KJS_*`` variable that no section declares."""
    env = os.environ if environ is None else environ
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known_env_names())
    if unknown:
        raise UnknownSettingError(
            f"unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known_env_names()))}"
        )


S = TypeVar("S", bound=_Section)


def load(section: type[S]) -> S:
    check_environment()
    return section()
