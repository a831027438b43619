"""The words of the state machines are spelled once (schemas/v1/statuses.py): the CHECK
constraints of a migrated database list exactly them, and the named SQL uses no other."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from scheduler.store.lifecycle import CHANGEABLE
from schemas.v1.statuses import (
    ALLOWED_FROM,
    EXECUTION_STATUSES,
    FINISHED_EXECUTION_STATUSES,
    JOB_STATUSES,
    LANES,
    RESIZE_STEPS,
    SHOWN_JOB_STATUSES,
)

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
QUOTED = re.compile(r"'([^']*)'::text")


async def _checks(database_url: str) -> dict[str, list[str]]:
    """Each CHECK constraint of the kjs tables: the quoted words of its definition, in order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
            " WHERE contype = 'c' AND connamespace = 'public'::regnamespace"
        )
    finally:
        await conn.close()
    return {r["conname"]: QUOTED.findall(r["def"]) for r in rows}


async def test_the_check_constraints_list_exactly_the_statuses_and_lanes(
    database_url: str,
) -> None:
    checks = await _checks(database_url)
    assert checks["kjs_jobs_status_check"] == list(JOB_STATUSES)
    assert checks["kjs_executions_status_check"] == list(EXECUTION_STATUSES)
    assert checks["kjs_executions_finished"] == list(FINISHED_EXECUTION_STATUSES)
    assert checks["kjs_jobs_priority_check"] == list(LANES)
    assert checks["kjs_executions_lane_check"] == list(LANES)
    assert checks["kjs_resizes_step_check"] == list(RESIZE_STEPS)
    # The other state-machine checks name only known statuses.
    for name in ("kjs_jobs_next_run_iff_scheduled",):
        assert set(checks[name]) <= set(JOB_STATUSES)
    for name in ("kjs_executions_started", "kjs_executions_worker", "kjs_executions_pending_due"):
        assert set(checks[name]) <= set(EXECUTION_STATUSES)


def test_the_named_sql_uses_no_other_word() -> None:
    """Every one-word literal of queries.sql is a status, a lane or a column change_job may
    set: a misspelt status ('canceled') would match no row, silently. (A JSON key read with
    ``->>'key'`` is not a value.)"""
    sql = (ROOT / "schemas" / "sql" / "queries.sql").read_text()
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    body = re.sub(r"->>?\s*'[a-z_]+'", "", body)
    words = set(re.findall(r"'([a-z_]+)'", body))
    known = {*SHOWN_JOB_STATUSES, *EXECUTION_STATUSES, *LANES, *CHANGEABLE, *RESIZE_STEPS}
    assert words - known == set()
    assert {"queued", "pending", "skipped"} <= words  # the pattern does see them


def test_the_lifecycle_rules_start_from_stored_statuses() -> None:
    for statuses in ALLOWED_FROM.values():
        assert set(statuses) <= set(JOB_STATUSES)
    # Cancel: anything not finished; trigger: anything but a cancelled job.
    assert set(ALLOWED_FROM["trigger"]) == set(JOB_STATUSES) - {"cancelled"}
