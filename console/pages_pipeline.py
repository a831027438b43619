"""The pipeline: every kjs consumer group's lag, status and workers needed, with the last hour
of its lag as a chart, and who owns each shard.

The figures are ``kjs lag``'s (``console.lag_history`` samples with the same monitor); the
shards are ``kjs_shards``. Both are the installation's, not a tenant's: every signed-in
user sees the same page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from api.deps import DEPS
from console.chart import lag_chart
from console.lag_history import LagHistory
from console.render import render
from core.db import is_unavailable
from core.queries import QUERIES
from lag.monitor import GroupReport
from schemas.v1.statuses import LANES
from timetable.words import span
from topics.catalog import Catalog

HISTORY: web.AppKey[LagHistory] = web.AppKey("kjs_console_lag", LagHistory)
CATALOG: web.AppKey[Catalog] = web.AppKey("kjs_console_catalog", Catalog)


@dataclass(frozen=True)
class GroupRow:
    report: GroupReport
    role: str
    chart: str


def role_of(group: str, cat: Catalog) -> str:
    if group == cat.scheduler_group:
        return "scheduler (commands, results)"
    for lane in LANES:
        if group == cat.worker_group(lane):
            return f"workers, lane {lane}"
    return "other"


async def pipeline_page(request: web.Request) -> web.Response:
    history = request.app[HISTORY]
    cat = request.app[CATALOG]
    report = history.latest
    rows = []
    span_s = 0.0
    if report is not None:
        # The last hour, or as much of it as this process has seen (a fresh API shows its
        # first minutes across the whole chart, not squeezed into its right edge).
        start = max(report.at - history.keep_s, history.first_at() or report.at)
        span_s = report.at - start
        for g in report.groups:
            points = [(p.at, float(p.lag)) for p in history.points(g.group)]
            label = f"lag of {g.group} over the last {span(span_s)}, in messages"
            rows.append(
                GroupRow(g, role_of(g.group, cat), lag_chart(points, start, report.at, label))
            )
    shards, shards_error = await _shards(request.app[DEPS].pool)
    return render(
        request,
        "pipeline.html",
        report=report,
        sampled_at=datetime.fromtimestamp(report.at, UTC) if report else None,
        interval_s=history.interval_s,
        rows=rows,
        span=span(span_s) if span_s >= 1 else "first sample",
        shards=shards,
        shards_error=shards_error,
    )


async def _shards(pool: asyncpg.Pool) -> tuple[list[asyncpg.Record], str | None]:
    """The shards' owners and epochs; the rest of the page shows while Postgres is down."""
    try:
        return list(await pool.fetch(QUERIES["list_shards"])), None
    except Exception as exc:
        if not (is_unavailable(exc) or isinstance(exc, TimeoutError)):
            raise
        return [], "Postgres is unavailable: the shards cannot be read"
