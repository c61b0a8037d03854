"""Shared test settings: the hypothesis profile and the path to the carried samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent


FIXTURES = ROOT / "tests" / "fixtures"
SAMPLES = FIXTURES / "samples"  # real Prometheus/Alertmanager payloads (see its PROVENANCE.md)


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture(autouse=True)
async def _no_leaked_tasks():
    """Fail a test that leaves asyncio tasks of its own running (kopf's habit)."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        yield
        return
    before = asyncio.all_tasks(loop)
    yield
    leaked = [
        t
        for t in asyncio.all_tasks(loop) - before
        if not t.done() and t is not asyncio.current_task()
    ]
    assert not leaked, f"test left tasks running: {leaked}"


@pytest.fixture
def spans():
    """(provider, exporter): a tracer provider whose spans end up in memory, at once."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()
