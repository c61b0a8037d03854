"""servicekit.metrics: process metrics and the service's own, on the registry given only."""

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from servicekit import metrics


def test_process_metrics_and_the_services_own_land_on_the_registry_given():
    registry = CollectorRegistry()
    make = metrics.with_process_metrics(registry)
    make.counter("vigil_things", "Things.", ("kind",)).labels("a").inc(2)
    make.gauge("vigil_level", "Level.").set(3)
    make.histogram("vigil_wait_seconds", "Wait.", buckets=(0.1, 1.0)).observe(0.5)
    text = generate_latest(registry).decode()
    assert 'vigil_things_total{kind="a"} 2.0' in text
    assert "vigil_level 3.0" in text
    assert 'vigil_wait_seconds_bucket{le="1.0"} 1.0' in text
    assert "python_info{" in text
    assert "process_resident_memory_bytes " in text  # Linux: read from /proc/self
    assert REGISTRY.get_sample_value("vigil_level") is None  # never the default registry
