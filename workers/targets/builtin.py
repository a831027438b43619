"""The runners this worker ships with: ``http``, ``kafka``, ``script`` and ``sql``.

All four are registered whatever the policy says; what a job may do with them is checked
before any runner is called (``workers.policy``), and the script and sql runners refuse on
their own too what they cannot run (not enabled, not allowlisted, no such connection).
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from core.settings import TargetSettings
from workers.targets import TargetRegistry
from workers.targets.http import HttpRunner
from workers.targets.http_client import HttpClient
from workers.targets.kafka import KafkaRunner
from workers.targets.script import ScriptRunner
from workers.targets.sql import SqlPools, SqlRunner


def builtin_registry(
    http: HttpClient,
    producer: AIOKafkaProducer,
    excerpt_bytes: int,
    policy: TargetSettings,
    sql_pools: SqlPools,
) -> TargetRegistry:
    """``excerpt_bytes`` bounds what each runner keeps of an output (per stream for scripts)."""
    registry = TargetRegistry()
    registry.register("http", HttpRunner(http, excerpt_bytes))
    registry.register("kafka", KafkaRunner(producer))
    registry.register("script", ScriptRunner(policy, excerpt_bytes))
    registry.register("sql", SqlRunner(sql_pools, excerpt_bytes))
    return registry
