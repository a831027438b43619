"""Building the real API app for in-process tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from api.deps import ApiDeps
from api.publisher import CommandPublisher
from core.settings import SecuritySettings
from topics.catalog import Catalog


def api_deps(
    pool: asyncpg.Pool, publisher: CommandPublisher, catalog: Catalog, **security: Any
) -> ApiDeps:
    """The API's dependencies with these security settings (``auth_disabled=True``, ...)."""
    return ApiDeps(
        pool, publisher, catalog, timedelta(seconds=60), security=SecuritySettings(**security)
    )
