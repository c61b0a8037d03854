"""servicekit.telemetry: the OTEL_* settings that turn traces on, the sampler they pick,
the W3C traceparent values, and the JSON log lines with trace ids and context fields."""

from __future__ import annotations

import io
import json
import logging

import pytest

from servicekit import telemetry


def test_traces_are_off_unless_an_endpoint_is_set():
    assert telemetry.tracer_provider_from_env({}, service_name="x") is None
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert (
        telemetry.tracer_provider_from_env({**on, "OTEL_SDK_DISABLED": "true"}, service_name="x")
        is None
    )
    assert (
        telemetry.tracer_provider_from_env({**on, "OTEL_TRACES_EXPORTER": "none"}, service_name="x")
        is None
    )
    provider = telemetry.tracer_provider_from_env(
        {**on, "OTEL_SERVICE_NAME": "vigil-detector-7"}, service_name="x"
    )
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "vigil-detector-7"
    assert "ParentBased" in provider.sampler.get_description()
    assert "TraceIdRatioBased{1.0}" in provider.sampler.get_description()
    provider.shutdown()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG='half'"),
        ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "expected a ratio in [0, 1]"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes': one of"),
    ],
)
def test_bad_sampler_settings_are_named(env, message):
    with pytest.raises(telemetry.TelemetryError, match=message.replace("[", r"\[")):
        telemetry.sampler_from_env(env)


def test_sampler_ratio_is_read():
    sampler = telemetry.sampler_from_env({"OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert "TraceIdRatioBased{0.25}" in sampler.get_description()


def test_json_log_lines_carry_the_trace_and_the_context_fields(spans):
    provider, _ = spans
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(telemetry.JsonFormatter())
    log = logging.getLogger("test.telemetry")
    log.addHandler(handler)
    log.propagate = False
    try:
        with provider.get_tracer("t").start_as_current_span("s") as span:
            log.warning("alert %s fired", "X", extra={"fingerprint": "abc", "series": "up"})
        log.warning("no span")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    trace_id, span_id = telemetry.hex_ids(span.get_span_context())
    assert first == {
        "ts": first["ts"],
        "level": "WARNING",
        "logger": "test.telemetry",
        "msg": "alert X fired",
        "trace_id": trace_id,
        "span_id": span_id,
        "fingerprint": "abc",
        "series": "up",
    }
    assert "trace_id" not in second


def test_traceparent_values_are_read_and_malformed_ones_refused():
    assert telemetry.context_from_traceparent(f"00-{'0' * 32}-{'1' * 16}-01") is None
    assert telemetry.context_from_traceparent(f"00-xyz-{'1' * 16}-01") is None
    assert telemetry.context_from_traceparent("") is None
    ctx = telemetry.context_from_traceparent(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    assert ctx is not None and ctx.is_remote
    assert telemetry.traceparent(ctx) == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
