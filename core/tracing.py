"""Traces: the W3C ``traceparent`` that follows a job, and the spans each process emits.

A job's trace context is one string, the W3C ``traceparent``
(``00-<trace id>-<parent span id>-<flags>``), passed on as a ``traceparent`` header: on the
HTTP request that submits it, on its command record, its due event and its result, and on the
request to an HTTP target. The scheduler keeps it in ``kjs_jobs.traceparent`` and
``kjs_executions.traceparent`` so that a restart, the outbox and a retry keep the trace.

Off (the default: no ``OTEL_*`` exporter configured) no span is made: a traceparent the
submitter gave is passed on as it is (the target's gets a fresh span id of the same trace), and
a job without one costs nothing (every helper returns ``None`` or a shared no-op at once).
On (:func:`configure` found an exporter), each step is a span of the job's trace: ``accept``
(API), ``apply``, ``fire`` and ``record`` (scheduler), ``claim`` and ``run`` (worker), each a
child of the context the step before it passed on.

A malformed traceparent is ignored, never refused: the job is accepted and, with tracing on,
its ``accept`` span starts a new trace. Only ``traceparent`` is carried, not ``tracestate``.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    TracerProvider,
    set_span_in_context,
)

TRACEPARENT = "traceparent"
TRACEPARENT_BYTES = TRACEPARENT.encode()
# version-traceid-parentid-flags, lowercase hex (W3C Trace Context, level 1). A later version
# may append fields after a '-', which are dropped: kjs passes on version 00.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# The variables that mean "export traces" (OpenTelemetry's own names); any one turns it on.
EXPORT_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)

# The kinds of kjs's spans, as module constants: reading ``SpanKind.CONSUMER`` allocates
# (an enum member lookup), and a step without a trace must allocate nothing.
SERVER, CONSUMER, PRODUCER, CLIENT = (
    SpanKind.SERVER,
    SpanKind.CONSUMER,
    SpanKind.PRODUCER,
    SpanKind.CLIENT,
)
_NO_SPAN: AbstractContextManager[None] = nullcontext()
# Ids as OpenTelemetry's own generator makes them (random.getrandbits): unique, not secret.
_random = random.Random()


class TracingConfigError(ValueError):
    """An ``OTEL_*`` combination kjs cannot honour (said at start-up, not at the first job)."""


class _State:
    """The process's tracer, or None when tracing is off (the default)."""

    tracer: Tracer | None = None
    # The SDK provider ``configure`` made, shut down (its export thread ended) when replaced.
    configured: Any = None


STATE = _State()


def enabled() -> bool:
    return STATE.tracer is not None


def normalized(value: str | bytes | None) -> str | None:
    """``value`` as a version-00 traceparent, or None when it is absent or malformed (an
    all-zero id, version ff, upper case, a version 00 with extra fields: W3C's rules)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE:
        return None
    if span_id == _ZERO_SPAN:
        return None
    return f"00-{trace_id}-{span_id}-{flags}"


def from_headers(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The valid traceparent among a Kafka record's headers, if any."""
    if not headers:
        return None
    for name, value in headers:
        if name == TRACEPARENT:
            return normalized(value)
    return None


def kafka_headers(traceparent: str | None) -> list[tuple[str, bytes]] | None:
    """The record headers that carry ``traceparent`` (None for none)."""
    return None if traceparent is None else [(TRACEPARENT, traceparent.encode())]


def formatted(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _span_context(traceparent: str) -> SpanContext:
    _, trace_id, span_id, flags = traceparent.split("-")
    return SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16))
    )


def _parent(traceparent: str | None) -> Context:
    if traceparent is None:
        return Context()  # a root span: a new trace
    return set_span_in_context(NonRecordingSpan(_span_context(traceparent)))


def child(traceparent: str) -> str:
    """The same trace, a new span id: what a step passes on when no span of its own exists
    (tracing off in this process)."""
    return f"{traceparent[:36]}{_random.getrandbits(64) or 1:016x}{traceparent[52:]}"


def outgoing(span: Span | None, parent: str | None) -> str | None:
    """The traceparent of a call this step makes (an HTTP target's request): ``span``'s
    context, or with tracing off a new span id in ``parent``'s trace; None for no trace."""
    if span is not None:
        return formatted(span.get_span_context())
    return None if parent is None else child(parent)


def new_trace(like: str) -> str:
    """A new trace (random ids), with the sampling flags of ``like``."""
    trace_id = _random.getrandbits(128) or 1
    return f"00-{trace_id:032x}-{_random.getrandbits(64) or 1:016x}{like[52:]}"


def start(
    name: str,
    parent: str | None,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    link: str | None = None,
) -> Span | None:
    """A span of this process, child of ``parent`` (a root when None), optionally linked to
    ``link``; None when tracing is off. The caller ends it (:func:`end`).

    The hot paths use this pair rather than :func:`span`: off, ``start`` and ``end`` allocate
    nothing, while a ``with`` statement allocates its bound ``__exit__`` on every job.
    """
    tracer = STATE.tracer
    if tracer is None:
        return None
    links = None if link is None else [Link(_span_context(link))]
    return tracer.start_span(
        name, context=_parent(parent), kind=kind, attributes=attributes, links=links
    )


def end(span: Span | None) -> None:
    if span is not None:
        span.end()


def passed_on(span: Span | None, parent: str | None) -> str | None:
    """The traceparent the next step gets: ``span``'s own, or ``parent`` when there is no
    span (tracing off)."""
    if span is None:
        return parent
    return formatted(span.get_span_context())


@contextmanager
def _span(
    name: str,
    parent: str | None,
    attributes: Mapping[str, Any] | None,
    kind: SpanKind,
) -> Iterator[str | None]:
    span = start(name, parent, attributes, kind)
    assert span is not None
    with _recording(span):
        yield formatted(span.get_span_context())


@contextmanager
def _passing(parent: str) -> Iterator[str | None]:
    yield parent


@contextmanager
def _recording(span: Span) -> Iterator[None]:
    """End the span, marking it failed when the step raised."""
    try:
        yield
    except BaseException as exc:
        span.record_exception(exc)
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()


def span(
    name: str,
    parent: str | None,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> AbstractContextManager[str | None]:
    """``with span("accept", parent) as passed:`` a span around a step, giving the
    traceparent to pass on. Off, it is ``parent`` itself, and a step without a trace gets a
    shared no-op."""
    if STATE.tracer is not None:
        return _span(name, parent, attributes, kind)
    if parent is None:
        return _NO_SPAN
    return _passing(parent)


def install(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` from now on (None: off). :func:`configure` calls it; tests
    call it with an SDK provider and an in-memory exporter."""
    STATE.tracer = None if provider is None else provider.get_tracer("kjs")


def requested(environ: Mapping[str, str]) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces: an exporter or endpoint is named (and
    not ``none``), and the SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return any(environ.get(name, "").strip() for name in EXPORT_VARIABLES)


def configure(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Set this process up from the standard ``OTEL_*`` variables; True when tracing is on.

    ``OTEL_TRACES_EXPORTER`` is ``otlp`` (the default; OTLP over HTTP/protobuf, to
    ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, by default http://localhost:4318) or
    ``console``; the SDK reads the rest itself (``OTEL_SERVICE_NAME``, defaulting to
    ``service``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``,
    headers and timeouts). Spans are exported in batches, in the background.
    """
    env = os.environ if environ is None else environ
    if STATE.configured is not None:
        STATE.configured.shutdown()
        STATE.configured = None
    if not requested(env):
        install(None)
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    chosen: list[SpanExporter] = []
    for name in exporters:
        if name == "console":
            chosen.append(ConsoleSpanExporter(service_name=service))
        elif name == "otlp":
            protocol = env.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
            )
            if protocol.strip() not in ("", "http/protobuf"):
                raise TracingConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: kjs exports OTLP over "
                    "http/protobuf only (port 4318)"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            chosen.append(OTLPSpanExporter())
        else:
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER={name!r}: kjs knows otlp, console and none"
            )
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for exporter in chosen:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    STATE.configured = provider
    return True
