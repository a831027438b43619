"""``core.tracing``: W3C traceparent rules, the OTEL_* set-up, and the trace of a fired run.

The end-to-end trace (API to HTTP target, one tree of spans) is
tests/integration/test_traces.py; these are the rules underneath it.
"""

# The ``spans`` fixture is imported by name, which pyflakes reads as an unused import and
# the tests' parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import tracing
from scheduler.firing import plan
from scheduler.model import FiringJob
from tests.support.spans import spans
from tests.unit.test_firing_plan import T, every_minute

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (VALID, VALID),
        (VALID.encode(), VALID),
        (f"  {VALID} ", VALID),
        (f"00-{TRACE}-{SPAN}-00", f"00-{TRACE}-{SPAN}-00"),  # not sampled: still carried
        # A later version may add fields; kjs passes on the version-00 part.
        (f"cc-{TRACE}-{SPAN}-01-what-comes-later", VALID),
    ],
)
def test_a_valid_traceparent_is_kept(given: str | bytes, kept: str) -> None:
    assert tracing.normalized(given) == kept


@pytest.mark.parametrize(
    "given",
    [
        None,
        "",
        "garbage",
        "00-not-a-trace-01",
        VALID.upper(),
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # the forbidden version
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE}-{SPAN}",
        "00-\u00e9" + VALID[4:],
        b"\xff\xfe",
    ],
)
def test_a_malformed_traceparent_is_none(given: str | bytes | None) -> None:
    assert tracing.normalized(given) is None


def test_the_header_is_found_among_a_records_headers() -> None:
    headers = [("kjs-other", b"x"), ("traceparent", VALID.encode())]
    assert tracing.from_headers(headers) == VALID
    assert tracing.from_headers([("traceparent", b"bad")]) is None
    assert tracing.from_headers([]) is None
    assert tracing.kafka_headers(None) is None
    assert tracing.kafka_headers(VALID) == [("traceparent", VALID.encode())]


def test_a_child_keeps_the_trace_and_flags_with_a_new_span() -> None:
    child = tracing.child(VALID)
    assert tracing.normalized(child) == child
    assert child[:36] == VALID[:36] and child[-3:] == "-01"
    assert child[36:52] != SPAN


def test_a_new_trace_keeps_only_the_flags() -> None:
    fresh = tracing.new_trace(f"00-{TRACE}-{SPAN}-00")
    assert tracing.normalized(fresh) == fresh
    assert TRACE not in fresh and fresh.endswith("-00")


def test_off_a_step_without_a_trace_makes_nothing() -> None:
    assert not tracing.enabled()
    assert tracing.start("run", None) is None
    # The same shared no-op every time: nothing allocated per job.
    assert tracing.span("apply", None) is tracing.span("apply", None)
    with tracing.span("apply", None) as passed:
        assert passed is None
    with tracing.span("apply", VALID) as passed:
        assert passed == VALID
    assert tracing.outgoing(None, None) is None


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_configured(
    environ: dict[str, str], on: bool
) -> None:
    assert tracing.requested(environ) is on


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "kjs knows otlp, console and none"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "http/protobuf only",
        ),
    ],
)
def test_an_exporter_kjs_cannot_use_is_refused_at_start(
    environ: dict[str, str], complaint: str
) -> None:
    with pytest.raises(tracing.TracingConfigError, match=complaint):
        tracing.configure("kjs-test", environ)
    assert not tracing.enabled()


def test_configure_turns_tracing_on_and_off() -> None:
    try:
        endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
        assert tracing.configure("kjs-test", endpoint) is True
        assert tracing.enabled()
    finally:
        assert tracing.configure("kjs-test", {}) is False
    assert not tracing.enabled()


def job(schedule: dict[str, object], traceparent: str | None) -> FiringJob:
    return every_minute({}, schedule=schedule, traceparent=traceparent)


ONCE = {"type": "once", "at": T.isoformat()}
EVERY_MINUTE = {"type": "interval", "every_seconds": 60, "start_at": T.isoformat()}


def test_off_a_one_time_run_continues_the_submitted_trace() -> None:
    [run] = plan(job(ONCE, VALID), now=T).occurrences
    assert run.traceparent == VALID and run.span is None


def test_off_each_occurrence_of_a_recurring_job_gets_a_trace_of_its_own() -> None:
    [run] = plan(job(EVERY_MINUTE, VALID), now=T).occurrences
    assert run.traceparent is not None and TRACE not in run.traceparent
    assert plan(job(EVERY_MINUTE, None), now=T).occurrences[0].traceparent is None


def test_on_a_one_time_run_is_fired_in_the_submitted_trace(
    spans: InMemorySpanExporter,
) -> None:
    [run] = plan(job(ONCE, VALID), now=T).occurrences
    tracing.end(run.span)
    [fire] = spans.get_finished_spans()
    assert fire.name == "fire"
    assert fire.parent is not None and f"{fire.parent.span_id:016x}" == SPAN
    assert run.traceparent == tracing.formatted(fire.get_span_context())
    assert run.traceparent is not None and run.traceparent[3:35] == TRACE


def test_on_a_recurring_occurrence_starts_a_trace_linked_to_the_submission(
    spans: InMemorySpanExporter,
) -> None:
    [run] = plan(job(EVERY_MINUTE, VALID), now=T).occurrences
    tracing.end(run.span)
    [fire] = spans.get_finished_spans()
    assert fire.parent is None, "a recurring occurrence's fire span is a root"
    [link] = fire.links
    assert f"{link.context.trace_id:032x}" == TRACE and f"{link.context.span_id:016x}" == SPAN
    assert run.traceparent == tracing.formatted(fire.get_span_context())


def test_off_a_job_without_a_trace_allocates_nothing() -> None:
    """The per-job calls of every step (bench/tracing.py times them) allocate no memory
    when tracing is off and the job has no traceparent: tracemalloc's peak over one job."""
    from bench.tracing import peak_bytes_per_job

    assert not tracing.enabled()
    assert peak_bytes_per_job(None) == 0
