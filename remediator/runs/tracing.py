"""The spans of a run's trace: the run, its guards, actions, verification, undo and
escalation, in the trace of the webhook that started it and linked to the detection.
Traces are off (every span a no-op) without a tracer."""

from __future__ import annotations

import contextlib
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from remediator.webhook import Alert
from servicekit import telemetry


class Spans:
    def __init__(self, tracer: Tracer | None) -> None:
        self.tracer = tracer

    def span(
        self, name: str, *, links: list[trace.Link] | None = None, **attributes: Any
    ) -> contextlib.AbstractContextManager[Span | None]:
        """A child span of the current one, or nothing when traces are off."""
        if self.tracer is None:
            return contextlib.nullcontext()
        return self.tracer.start_as_current_span(
            name,
            links=links,
            attributes={f"vigil.{k}": v for k, v in attributes.items() if v is not None},
        )


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return telemetry.hex_ids(ctx)[0] if ctx.is_valid and ctx.trace_flags.sampled else None


def detector_links(alert: Alert) -> list[trace.Link]:
    """A link to the trace that raised the alert (Vigil's detector writes it into the
    ``traceparent`` annotation), so the run's trace leads back to the detection."""
    ctx = telemetry.context_from_traceparent(str(alert.annotations.get("traceparent", "")))
    return [] if ctx is None else [trace.Link(ctx)]
