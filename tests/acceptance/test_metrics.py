"""Every process exports metrics that move when a job runs, and answers health checks."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.test_walking_skeleton import once_job
from tests.support.stack import Stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually

pytestmark = pytest.mark.services


async def scrape(stack: Stack, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with stack.http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


async def test_metrics_move_after_a_job_runs(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    scheduler, worker = stack.metrics_urls["scheduler"], stack.metrics_urls["worker-normal"]
    before_s, before_w = await scrape(stack, scheduler), await scrape(stack, worker)

    job_id = (await stack.submit(once_job(user_id, target.url(user_id), 1)))["job_id"]
    await stack.wait_status(job_id, "succeeded")

    async def moved() -> bool:
        after_s, after_w = await scrape(stack, scheduler), await scrape(stack, worker)
        return (
            total(after_s, "kjs_jobs_fired_total", lane="normal")
            > total(before_s, "kjs_jobs_fired_total", lane="normal")
            and total(after_w, "kjs_executions_total", status="succeeded", lane="normal")
            > total(before_w, "kjs_executions_total", status="succeeded", lane="normal")
            and total(after_w, "kjs_schedule_lateness_seconds_count", lane="normal")
            > total(before_w, "kjs_schedule_lateness_seconds_count", lane="normal")
            and total(after_s, "kjs_commands_total", type="create", outcome="created")
            > total(before_s, "kjs_commands_total", type="create", outcome="created")
        )

    await eventually(moved, what="the fired, executed and lateness metrics to move")
    samples = await scrape(stack, scheduler)
    assert total(samples, "kjs_shards_owned") == stack.catalog.commands.partitions
    assert total(samples, "kjs_build_info", process="scheduler") == 1
    for name, url in stack.metrics_urls.items():
        async with stack.http.get(f"{url}/readyz") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["ready"], (name, body)
        async with stack.http.get(f"{url}/healthz") as resp:
            assert resp.status == 200
