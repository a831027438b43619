"""What the app needs from outside, handed in whole so tests build the real app.

Whoever creates these resources (``api.main.run`` or a test fixture) also closes them; the
app only uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from api.keys import Authenticator
from api.publisher import CommandPublisher
from api.tenancy import TenantResolver, credential_tenant
from core.quotas import Quotas
from core.settings import SecuritySettings, TargetSettings
from topics.catalog import Catalog


@dataclass(frozen=True)
class ApiDeps:
    pool: asyncpg.Pool
    publisher: CommandPublisher
    catalog: Catalog
    # SchedulerSettings.past_grace_s: the scheduler would refuse an older `once` job later,
    # asynchronously; the API refuses it first, where the client can still be told.
    past_grace: timedelta
    # The tenant comes from the request's API key; ``security.auth_disabled`` trusts the claim.
    tenants: TenantResolver = credential_tenant
    # A fresh registry per app keeps tests independent; production passes the global one.
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # What the operator lets targets do: a submission that breaks it gets 422, not a job
    # that would be refused when it runs.
    targets: TargetSettings = field(default_factory=TargetSettings)
    # Auth (on unless explicitly disabled), quotas and secrets.
    security: SecuritySettings = field(default_factory=SecuritySettings)
    # Verifies API keys; by default against ``pool``.
    authenticator: Authenticator | None = None

    @property
    def reserved_topics(self) -> frozenset[str]:
        """kjs's own topics, which a kafka target may not write to by default."""
        return frozenset(spec.name for spec in self.catalog.all())


DEPS = web.AppKey("kjs_api_deps", ApiDeps)
# The submission buckets of this API instance (core.quotas).
QUOTAS = web.AppKey("kjs_api_quotas", Quotas)
