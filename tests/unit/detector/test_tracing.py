"""Traces of an alert's path: the remote-write request, the detection it fed, the alert it
raised and the POST that delivered it are one connected trace, whose id the alert
carries; with traces off nothing of it exists. The telemetry settings and the JSON log
lines are servicekit's (tests/unit/servicekit/test_telemetry.py)."""

from __future__ import annotations

import asyncio
import threading
import time

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from detector.config import WarmStartConfig
from servicekit import telemetry
from tests.unit.detector.apphelpers import V1, FakeAlertmanager, body, config, level_shift, start


def _firing(alert) -> bool:
    return alert["labels"].get("metric_name") == "latency_seconds"


def _ended(provider: TracerProvider, name: str) -> threading.Event:
    """An event set when a span called ``name`` ends (in whichever thread ends it)."""
    ended = threading.Event()

    class _Watch(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            if span.name == name:
                ended.set()

    provider.add_span_processor(_Watch())
    return ended


async def _raise_alert(aiohttp_client, aiohttp_server, tracer, headers=None):
    am = FakeAlertmanager()
    server = await aiohttp_server(am.app())
    cfg = config(warm_start=WarmStartConfig(enabled=False))
    client, rt = await start(
        aiohttp_client, cfg, alertmanagers=[str(server.make_url(""))], tracer=tracer
    )
    shifted = level_shift(
        "latency_seconds",
        start_ms=int(time.time() * 1000) - 400_000,
        n_normal=300,
        n_shift=8,
        namespace="shop",
        service="checkout",
    )
    resp = await client.post("/api/v1/write", data=body(shifted), headers={**V1, **(headers or {})})
    assert resp.status == 204
    [alert] = await am.wait_for(_firing)
    assert rt.dispatcher is not None  # the POST's span ends just after Alertmanager answers
    await asyncio.wait_for(rt.dispatcher.clients[0].delivered.wait(), 10)
    return alert


async def test_an_alert_path_is_one_trace_and_the_alert_names_it(
    aiohttp_client, aiohttp_server, spans
):
    provider, exporter = spans
    detected = _ended(provider, "detect")
    alert = await _raise_alert(
        aiohttp_client, aiohttp_server, provider.get_tracer("vigil.detector")
    )
    # the worker thread ends its detect span after the batch, which may be after the POST
    assert await asyncio.to_thread(detected.wait, 10)
    got = {s.name: s for s in exporter.get_finished_spans()}
    assert {"remote_write", "detect", "alert", "alertmanager.post"} <= set(got)
    request, detect, raised, post = (
        got[n] for n in ("remote_write", "detect", "alert", "alertmanager.post")
    )
    trace_id = request.context.trace_id
    assert {s.context.trace_id for s in (detect, raised, post)} == {trace_id}
    assert detect.parent.span_id == request.context.span_id
    assert raised.parent.span_id == detect.context.span_id
    assert post.parent.span_id == raised.context.span_id
    assert request.attributes["http.response.status_code"] == 204
    assert detect.attributes["vigil.samples"] == 308
    assert raised.attributes["vigil.alertname"] == "VigilAnomaly"
    assert raised.attributes["vigil.event"] == "fire"
    assert post.attributes["vigil.accepted"] == 1
    ann = alert["annotations"]
    assert ann["trace_id"] == format(trace_id, "032x")
    assert ann["traceparent"].startswith(
        f"00-{ann['trace_id']}-{format(detect.context.span_id, '016x')}-"
    )
    assert ann["traceparent"] == telemetry.traceparent(detect.context)  # its real flags


async def test_a_sampled_remote_parent_is_continued(aiohttp_client, aiohttp_server, spans):
    provider, exporter = spans
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    alert = await _raise_alert(
        aiohttp_client,
        aiohttp_server,
        provider.get_tracer("vigil.detector"),
        headers={"traceparent": parent},
    )
    request = next(s for s in exporter.get_finished_spans() if s.name == "remote_write")
    assert format(request.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert request.parent.span_id == 0xB7AD6B7169203331
    assert alert["annotations"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


async def test_unsampled_requests_leave_no_trace_on_the_alert(aiohttp_client, aiohttp_server):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    alert = await _raise_alert(
        aiohttp_client, aiohttp_server, provider.get_tracer("vigil.detector")
    )
    assert exporter.get_finished_spans() == ()
    assert "trace_id" not in alert["annotations"]
    provider.shutdown()


async def test_traces_off_means_no_trace_annotations(aiohttp_client, aiohttp_server):
    alert = await _raise_alert(aiohttp_client, aiohttp_server, None)
    assert "trace_id" not in alert["annotations"]
    assert "traceparent" not in alert["annotations"]
