"""Per-job cost of tracing: the tracing calls one job makes through every process, timed.

    .venv/bin/python -m bench.tracing --jobs 200000

One "job" is the sequence of ``core.tracing`` calls the code makes for one one-time job: the
API's (the middleware's check, the command's headers), the shard's (the apply span, the fire
span, the due event's headers, its end), the worker's (the due event's header, the claim
and run spans, the target's traceparent, the result's headers) and the shard's record span.
Everything else a job costs (Kafka, Postgres, the HTTP call) is left out, so the figures are
tracing's own share, to set against a job's whole CPU cost (docs/performance.md: about
2.3 ms across the processes). Three modes:

- ``off``: no OTEL_* exporter and no traceparent given, the default: what every job pays.
- ``off+traceparent``: tracing off, the submitter gave a traceparent, which is passed on.
- ``on``: an SDK tracer provider with a batch processor and an exporter that drops the
  spans (the OTLP exporter's own network cost is left out).

Also prints, per mode, the memory one job's tracing calls allocate (``tracemalloc``'s peak
during the job: 0 in the ``off`` mode, nothing is allocated) and the memory blocks still
allocated per job after the run (``sys.getallocatedblocks``: nothing is kept).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from core import tracing
from scheduler.firing import fire_trace
from scheduler.model import FiringJob

SUBMITTED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Dropping(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def job(traceparent: str | None) -> FiringJob:
    now = datetime.now(UTC)
    return FiringJob(
        job_id=uuid4(),
        user_id="u",
        schedule={"type": "once", "at": now.isoformat()},
        target={"type": "http", "url": "http://example.test/"},
        priority="normal",
        next_run_at=now,
        created_at=now - timedelta(seconds=1),
        run_count=0,
        busy=False,
        buffered_for=None,
        traceparent=traceparent,
    )


def one_job(submitted: str | None, firing: FiringJob) -> None:
    """The tracing calls of one job, in the order the processes make them."""
    # API (api/traces.py): the header, and the command's headers.
    parent = None if submitted is None else tracing.normalized(submitted)
    if parent is None and not tracing.enabled():
        command_headers = tracing.kafka_headers(None)
    else:
        with tracing.span("accept", parent, None, tracing.SERVER) as passed:
            command_headers = tracing.kafka_headers(passed)
    # Shard: apply (scheduler/commands.py), fire and dispatch (scheduler/firing.py).
    parent = tracing.from_headers(command_headers)
    apply = tracing.start("apply", parent, None, tracing.CONSUMER)
    tracing.passed_on(apply, parent)
    tracing.end(apply)
    span, traceparent = fire_trace(firing, firing.next_run_at, False)
    due_headers = tracing.kafka_headers(traceparent)
    tracing.end(span)
    # Worker (workers/execution.py): claim, run, the target's header, the result's headers.
    due = tracing.from_headers(due_headers)
    claim = tracing.start("claim", due, None, tracing.CONSUMER)
    tracing.end(claim)
    run = tracing.start("run", due, None, tracing.CLIENT)
    tracing.outgoing(run, due)
    result_headers = tracing.kafka_headers(tracing.passed_on(run, due))
    tracing.end(run)
    # Shard: record (scheduler/results.py).
    if tracing.enabled():
        tracing.end(
            tracing.start("record", tracing.from_headers(result_headers), None, tracing.CONSUMER)
        )


def timed(jobs: int, submitted: str | None) -> tuple[float, float]:
    """(ns per job, memory blocks left allocated per job)."""
    firing = job(submitted)
    for _ in range(1000):  # warm-up: caches, the SDK's first spans
        one_job(submitted, firing)
    gc.collect()
    blocks = sys.getallocatedblocks()
    t0 = time.perf_counter_ns()
    for _ in range(jobs):
        one_job(submitted, firing)
    elapsed = time.perf_counter_ns() - t0
    gc.collect()
    return elapsed / jobs, (sys.getallocatedblocks() - blocks) / jobs


def peak_bytes_per_job(submitted: str | None) -> int:
    """The memory one job's tracing calls hold at their peak (tracemalloc's peak over the
    job, less what was held before it): 0 means they allocated nothing. The least of 100
    jobs, since tracemalloc also counts what other threads allocate meanwhile."""
    firing = job(submitted)
    one_job(submitted, firing)
    tracemalloc.start()
    try:
        least = None
        for _ in range(100):
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            one_job(submitted, firing)
            _, peak = tracemalloc.get_traced_memory()
            least = peak - before if least is None else min(least, peak - before)
        return least or 0
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    args = parser.parse_args(argv)
    modes: list[tuple[str, str | None, Callable[[], None]]] = [
        ("off", None, lambda: tracing.install(None)),
        ("off+traceparent", SUBMITTED, lambda: tracing.install(None)),
    ]
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    modes.append(("on", SUBMITTED, lambda: tracing.install(provider)))
    print(
        f"tracing calls of one job, {args.jobs:,} jobs per mode (python {sys.version.split()[0]})"
    )
    for name, submitted, switch in modes:
        switch()
        ns, blocks = timed(args.jobs if name != "on" else max(1, args.jobs // 10), submitted)
        peak = peak_bytes_per_job(submitted)
        print(
            f"  {name:<16} {ns / 1000:8.2f} µs/job   {peak:6d} bytes allocated at peak/job"
            f"   {blocks:+.3f} blocks left/job"
        )
    tracing.install(None)
    provider.shutdown()


if __name__ == "__main__":
    main()
