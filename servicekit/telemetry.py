"""A service's own telemetry: traces (OpenTelemetry) and structured log lines.

Both services set up their traces and logs through it; the service name is a parameter
(``service_name``), and it imports neither service.

* **Traces** are off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is not ``true``,
  ``OTEL_TRACES_EXPORTER`` not ``none``). Then spans go over OTLP/HTTP (the exporter
  reads the other standard ``OTEL_EXPORTER_OTLP_*`` variables: headers, certificate,
  timeout, compression) through a batching processor; the service name is
  ``OTEL_SERVICE_NAME`` or the program's; ``OTEL_RESOURCE_ATTRIBUTES`` is honoured.
  Sampling is parent-based with a trace-id ratio (``OTEL_TRACES_SAMPLER``:
  ``parentbased_traceidratio`` by default, also ``parentbased_always_on``,
  ``parentbased_always_off``, ``traceidratio``, ``always_on``, ``always_off``;
  ``OTEL_TRACES_SAMPLER_ARG`` the ratio, 1.0 by default). Off means no provider at all:
  callers hold ``None`` and skip every tracing call, so the hot path pays one ``is None``.
* **Logs**: one JSON object per line (``ts``, ``level``, ``logger``, ``msg``, the current
  ``trace_id``/``span_id`` when a span is recording, and the context fields a
  ``LoggerAdapter`` or ``extra=`` put on the record: ``series``, ``fingerprint``,
  ``alertname``, ``playbook``, ``run_id``, ``step``), the format deploy/'s Alloy parses
  for Loki; human-readable lines when stderr is a terminal.

Nothing here runs at import; the environment is passed in, never read here.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

CONTEXT_FIELDS = ("series", "fingerprint", "alertname", "playbook", "run_id", "step")
_PROPAGATOR = TraceContextTextMapPropagator()


class TelemetryError(ValueError):
    """An OTEL_* setting that cannot be used (the message names it)."""


def sampler_from_env(environ: Mapping[str, str]) -> Sampler:
    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_traceidratio").strip().lower()
    arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0").strip() or "1.0"
    try:
        ratio = float(arg)
    except ValueError:
        raise TelemetryError(
            f"OTEL_TRACES_SAMPLER_ARG={arg!r}: expected a ratio in [0, 1]"
        ) from None
    if not 0.0 <= ratio <= 1.0:
        raise TelemetryError(f"OTEL_TRACES_SAMPLER_ARG={arg!r}: expected a ratio in [0, 1]")
    samplers: dict[str, Sampler] = {
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "traceidratio": TraceIdRatioBased(ratio),
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
    }
    if name not in samplers:
        raise TelemetryError(f"OTEL_TRACES_SAMPLER={name!r}: one of {', '.join(samplers)}")
    return samplers[name]


def build_tracer_provider(
    *,
    service_name: str,
    exporter: SpanExporter,
    sampler: Sampler | None = None,
    attributes: Mapping[str, str] | None = None,
) -> TracerProvider:
    """A provider exporting through ``exporter`` in batches (tests pass an in-memory one
    with their own processor instead: see ``add_processor`` on the result)."""
    resource = Resource.create({"service.name": service_name, **(attributes or {})})
    provider = TracerProvider(
        resource=resource, sampler=sampler or ParentBased(TraceIdRatioBased(1.0))
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer_provider_from_env(
    environ: Mapping[str, str], *, service_name: str
) -> TracerProvider | None:
    """The OTLP-exporting provider the OTEL_* variables ask for, or None (traces off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    if not (
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    detected = OTELResourceDetector().detect().attributes  # OTEL_RESOURCE_ATTRIBUTES
    name = environ.get("OTEL_SERVICE_NAME") or str(detected.get("service.name") or service_name)
    extra = {k: str(v) for k, v in detected.items() if k != "service.name"}
    return build_tracer_provider(
        service_name=name,
        exporter=OTLPSpanExporter(),
        sampler=sampler_from_env(environ),
        attributes=extra,
    )


def remote_parent(headers: Mapping[str, str]) -> Any:
    """The context a request's W3C ``traceparent`` header carries (empty if none)."""
    return _PROPAGATOR.extract(headers)


def parent_of(ctx: SpanContext | None) -> Any:
    """A context whose current span is ``ctx`` (for starting a child elsewhere)."""
    if ctx is None:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(ctx))


def links_to(contexts: list[SpanContext]) -> list[Link]:
    return [Link(c) for c in contexts if c.is_valid]


def hex_ids(ctx: SpanContext) -> tuple[str, str]:
    """(trace id, span id) as the 32 and 16 hex digits Tempo and W3C use."""
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def traceparent(ctx: SpanContext) -> str:
    """The W3C ``traceparent`` value naming ``ctx`` (for an alert annotation)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=parent_of(ctx))
    return carrier["traceparent"]


def context_from_traceparent(value: str) -> SpanContext | None:
    """The remote span context a ``traceparent`` value names, or None if malformed."""
    ctx = trace.get_current_span(remote_parent({"traceparent": value})).get_span_context()
    return ctx if ctx.is_valid else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the current trace and the record's context."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event["trace_id"], event["span_id"] = hex_ids(ctx)
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                event[name] = value if isinstance(value, (int, float)) else str(value)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event)


def setup_logging(level: str, stream: TextIO | None = None) -> None:
    """JSON lines on stderr, or readable lines when it is a terminal."""
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    if out.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
