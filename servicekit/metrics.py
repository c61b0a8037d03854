"""The Prometheus metric pieces every Vigil service builds its registry with.

This module owns the process metrics both services export (``process_*``: CPU, resident
memory, open files; and ``python_info``, as every Prometheus client exports them: the
dashboards and VigilDown's runbook read them) and ``Maker``, which makes counters, gauges
and histograms on one registry. Metric names, help texts and units stay with each
service's ``metrics`` module. It registers only on the registry it is given, never on
prometheus_client's default one; like all of servicekit it imports neither service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)


@dataclass(frozen=True, slots=True)
class Maker:
    """Counters, gauges and histograms registered on ``registry``."""

    registry: CollectorRegistry

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry)

    def histogram(
        self, name: str, doc: str, *, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)


def with_process_metrics(registry: CollectorRegistry) -> Maker:
    """Register ``process_*`` and ``python_info`` on ``registry``; a ``Maker`` for the
    service's own metrics on it."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return Maker(registry)
