"""The alert-quality review's I/O shell: read the audit database (read-only, in a worker
thread) and Alertmanager's silences, then hand both to the pure ``report.build_report``.

Used by ``vigil-remediator report`` and ``GET /api/v1/report``. It opens its own read-only
connection instead of using the audit thread, so a long report never delays a webhook's
write; WAL lets it read while the service writes. Alertmanager being absent or down is not
an error: the report says so and goes on without silence counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from remediator import report, silences
from remediator.actions.registry import Services
from remediator.audit.store import AuditLog, EpisodeRecord, EventRecord, RunRecord
from remediator.errors import ActionError, AuditError, ConfigError
from remediator.services import LiveServices

log = logging.getLogger(__name__)
SILENCES_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class AuditRecords:
    episodes: list[EpisodeRecord]
    runs: list[RunRecord]
    events: list[EventRecord]


def read_audit(path: Path, *, since_ms: int) -> AuditRecords:
    """Blocking: call it in a thread. AuditError when the database cannot be read."""
    with AuditLog.open_readonly(path) as db:
        return AuditRecords(
            episodes=db.episodes_since(since_ms),
            runs=db.runs_since(since_ms),
            events=db.run_events_since(since_ms, report.EVENT_KINDS),
        )


async def fetch_silences(
    services: Services | None,
) -> tuple[tuple[silences.Silence, ...] | None, list[str]]:
    """Alertmanager's silences, or None and why not; never raises for Alertmanager."""
    if services is None:
        return None, ["Alertmanager: not configured (--alertmanager URL); silences are not counted"]
    try:
        async with asyncio.timeout(SILENCES_TIMEOUT_S):
            status, doc = await services.alertmanager("GET", "/api/v2/silences")
    except (ActionError, TimeoutError) as exc:
        why = str(exc) or f"no answer within {SILENCES_TIMEOUT_S:.0f} s"
        log.warning("report: cannot read Alertmanager's silences: %s", why)
        return None, [f"Alertmanager: cannot read its silences ({why}); silences are not counted"]
    if status != 200 or not isinstance(doc, list):
        return None, [
            f"Alertmanager: GET /api/v2/silences answered {status}; silences are not counted"
        ]
    found, skipped = silences.parse_silences(doc)
    notes = [
        "Alertmanager keeps expired silences only for its --data.retention (120h by "
        "default): older silences are not counted"
    ]
    if skipped:
        notes.append(f"Alertmanager: {skipped} silence(s) could not be read and are not counted")
    return found, notes


async def review(
    *,
    audit_path: Path,
    services: Services | None,
    now_ms: int,
    since_s: float,
    self_resolve_s: float = report.SELF_RESOLVE_S,
) -> report.Report:
    """The report of the last ``since_s`` seconds. AuditError when the audit cannot be read."""
    since_ms = now_ms - int(since_s * 1000)
    records = await asyncio.to_thread(read_audit, audit_path, since_ms=since_ms)
    found, notes = await fetch_silences(services)
    return report.build_report(
        episodes=records.episodes,
        runs=records.runs,
        events=records.events,
        silences=found,
        now_ms=now_ms,
        since_ms=since_ms,
        self_resolve_s=self_resolve_s,
        notes=notes,
    )


async def review_cli(
    *,
    audit_path: Path,
    alertmanager_url: str | None,
    now_ms: int,
    since_s: float,
    self_resolve_s: float,
    timeout_s: float = SILENCES_TIMEOUT_S,
) -> report.Report:
    """``review`` with its own HTTP session for the command line."""
    async with aiohttp.ClientSession() as session:
        services = (
            None
            if alertmanager_url is None
            else LiveServices(
                session,
                alertmanager_url=alertmanager_url,
                prometheus_url=None,
                secrets_dir=None,
                allowed_urls=(),
                timeout_s=timeout_s,
            )
        )
        return await review(
            audit_path=audit_path,
            services=services,
            now_ms=now_ms,
            since_s=since_s,
            self_resolve_s=self_resolve_s,
        )


async def respond(
    query: Mapping[str, str], *, audit_path: Path, services: Services | None, now_ms: int
) -> web.Response:
    """``GET /api/v1/report?since=30d&format=json|markdown&self_resolve_minutes=5``."""
    fmt = query.get("format", "json")
    try:
        since_s = report.parse_duration(query.get("since", "30d"))
        self_resolve_s = parse_minutes(query.get("self_resolve_minutes", "5"))
    except ConfigError as exc:
        return web.json_response({"error": f"bad query: {exc}"}, status=400)
    if fmt not in ("json", "markdown"):
        return web.json_response(
            {"error": f"bad query: format={fmt}: expected json or markdown"}, status=400
        )
    try:
        done = await review(
            audit_path=audit_path,
            services=services,
            now_ms=now_ms,
            since_s=since_s,
            self_resolve_s=self_resolve_s,
        )
    except AuditError as exc:
        return web.json_response({"error": str(exc)}, status=503)
    if fmt == "markdown":
        return web.Response(text=report.render_markdown(done), content_type="text/markdown")
    return web.Response(text=report.report_json(done), content_type="application/json")


def parse_minutes(text: str) -> float:
    """Minutes (> 0) → seconds; ConfigError otherwise."""
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not 0 < minutes < math.inf:
        raise ConfigError(f"{text}: expected a number of minutes greater than 0, like 5")
    return minutes * 60
