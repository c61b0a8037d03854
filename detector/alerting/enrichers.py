"""The alert enrichers: recent rollouts of the series' workload, recent error log lines.

Each is a ``delivery.Enricher``: given an alert, it returns extra annotations or raises
``EnrichmentError``; the dispatcher bounds it by its ``budget_s``. This module only adapts
an alert to ``detector.alerting.rollouts`` (Kubernetes) and ``detector.alerting.loki`` (Loki).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from detector.alerting import loki, rollouts, wording
from detector.alerting.book import Alert
from detector.config import KubernetesEnrichment, LokiEnrichment

MAX_CHANGES = 3
LOG_LOOKBACK_MS = 5 * 60_000


class RolloutEnricher:
    """``recent_changes``: rollouts of the owning workload shortly before the anomaly."""

    name = "kubernetes"

    def __init__(self, api: Any, cfg: KubernetesEnrichment) -> None:
        self.finder = rollouts.ChangeFinder(api, window_s=cfg.window_s)
        self.budget_s = cfg.budget_s

    async def __call__(self, alert: Alert) -> dict[str, str]:
        labels = dict(alert.worst()[0].labels)
        found = await self.finder.recent_changes(labels, anomaly_start_ms=alert.starts_ms)
        if not found:
            return {}
        return {
            "recent_changes": "\n".join(
                rollouts.describe(c, anomaly_start_ms=alert.starts_ms) for c in found[:MAX_CHANGES]
            )
        }


class LogEnricher:
    """``logs``: the pod's most recent error lines around the start of the anomaly."""

    name = "loki"

    def __init__(self, session: aiohttp.ClientSession, cfg: LokiEnrichment) -> None:
        assert cfg.url is not None
        self.fetcher = loki.LogFetcher(
            session, url=cfg.url, limit=cfg.limit, line_filter=cfg.line_filter, tenant=cfg.tenant
        )
        self.budget_s = cfg.budget_s

    async def __call__(self, alert: Alert) -> dict[str, str]:
        member = alert.worst()[0]
        end_ms = max(alert.starts_ms, member.reading.ts_ms) + 60_000
        lines = await self.fetcher.error_lines(
            dict(member.labels), start_ms=alert.starts_ms - LOG_LOOKBACK_MS, end_ms=end_ms
        )
        if not lines:
            return {}
        return {"logs": "\n".join(f"{wording.iso(line.ts_ms)} {line.line}" for line in lines)}
