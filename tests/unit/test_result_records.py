"""Reading a ``jobs.results`` record: one result, or a worker's batch of them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.v1.events import (
    KIND_HEADER,
    RESULT_BATCH_KIND,
    ResultBatch,
    ResultEvent,
    read_result_record,
)

AT = datetime(2030, 1, 7, 9, tzinfo=UTC)
GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def result() -> ResultEvent:
    return ResultEvent(
        execution_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        user_id="u",
        attempt=1,
        status="succeeded",
        started_at=AT,
        finished_at=AT,
        worker="w",
    )


def test_a_malformed_trace_context_in_a_batch_is_dropped_not_the_result() -> None:
    traced, broken = result(), result()
    batch = ResultBatch(
        results=[traced, broken],
        traceparents={traced.execution_id: GOOD, broken.execution_id: "x"},
    )
    read = read_result_record(batch.model_dump_json().encode(), [(KIND_HEADER, RESULT_BATCH_KIND)])
    assert read.results == [traced, broken]
    assert read.traceparents == {traced.execution_id: GOOD}


def test_a_single_result_carries_its_headers_trace_context() -> None:
    one = result()
    read = read_result_record(one.model_dump_json().encode(), [("traceparent", GOOD.encode())])
    assert (read.results, read.traceparents) == ([one], {one.execution_id: GOOD})
