"""The detector's JSON API: /api/v1/series, /api/v1/entities, /api/v1/anomalies and
POST /api/v1/verify.

This module owns these handlers and the JSON shape of their answers. Values of the series
listing are strings formatted the way Prometheus's HTTP API formats them ("NaN", "+Inf"),
since JSON has no NaN. The handlers reach the app's objects through ``RUNTIME``; the
verdict itself is ``detector.verify``'s.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from detector.alerting import wording
from detector.alerting.book import AlertBook
from detector.config import PresenceConfig
from detector.errors import SelectorError, UpstreamError
from detector.pipeline import presence
from detector.pipeline.entities import EntityTracker
from detector.pipeline.worker import REPORT_THRESHOLD as ANOMALOUS
from detector.pipeline.worker import Pipeline
from detector.runtime import RUNTIME
from detector.series.registry import SeriesRegistry
from detector.series.selector import parse_selector
from detector.verify import prometheus, verdict
from servicekit import bearer, mediatype

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000


def format_value(value: float) -> str:
    """A float as Prometheus's API writes it: shortest round-trip text, NaN, +Inf, -Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


STATES = ("all", "anomalous", "stuck", "absent")


def list_series(
    request: web.Request,
    registry: SeriesRegistry,
    pipeline: Pipeline,
    *,
    presence_rules: PresenceConfig,
    now_ms: int,
) -> web.Response:
    """``match[]`` selectors, ``limit``, and ``state``: all, anomalous (latest score at or
    above 0.999), stuck or absent."""
    state = request.query.get("state", "all")
    if state not in STATES:
        return web.json_response(
            {"status": "error", "error": f"state must be one of {', '.join(STATES)}"}, status=400
        )
    try:
        selectors = [parse_selector(text) for text in request.query.getall("match[]", [])]
        limit = int(request.query.get("limit", DEFAULT_LIMIT))
    except SelectorError as exc:
        return web.json_response({"status": "error", "error": str(exc)}, status=400)
    except ValueError:
        return web.json_response(
            {"status": "error", "error": "limit must be a whole number"}, status=400
        )
    if not 1 <= limit <= MAX_LIMIT:
        return web.json_response(
            {"status": "error", "error": f"limit must be between 1 and {MAX_LIMIT}"}, status=400
        )
    data: list[dict[str, Any]] = []
    total = 0
    p = pipeline
    n = min(registry.n_tracked, p.capacity)
    stuck = presence.stuck(p, n, presence_rules)
    absent = presence.absent(p, n, now_ms, presence_rules)
    wanted = {
        "all": None,
        "stuck": stuck,
        "absent": absent,
        "anomalous": p.last_score[:n] >= ANOMALOUS,
    }[state]
    for slot in registry.select(selectors):
        if slot >= n or (wanted is not None and not wanted[slot]):
            continue
        total += 1
        if len(data) >= limit:
            continue
        seen = int(p.n_samples[slot]) + int(p.stale[slot]) > 0
        data.append(
            {
                "labels": dict(registry.labels_of(slot)),
                "rule": registry.rule_of(slot).name,
                # for a counter, score, expected value and band are about its per-second rate
                "detected_as": "rate" if registry.is_counter(slot) else "value",
                "last_timestamp_ms": int(p.last_ts[slot]) if seen else None,
                "last_value": format_value(float(p.last_value[slot])) if seen else None,
                "samples": int(p.n_samples[slot]) if seen else 0,
                "stale": bool(p.stale[slot]) if seen else False,
                "score": _number(float(p.last_score[slot])) if seen else None,
                "expected": _number(float(p.last_expected[slot])) if seen else None,
                "lower": _number(float(p.last_lower[slot])) if seen else None,
                "upper": _number(float(p.last_upper[slot])) if seen else None,
                "interval_s": float(p.interval_ms[slot]) / 1000.0 if seen else None,
                "unchanged_samples": int(p.run_same[slot]),
                "stuck": bool(stuck[slot]),
                "absent": bool(absent[slot]),
            }
        )
    return web.json_response(
        {"status": "success", "total": total, "truncated": total > limit, "data": data}
    )


def list_entities(request: web.Request, tracker: EntityTracker | None) -> web.Response:
    """Entities scored together, most anomalous first: ``limit`` and ``min_score``."""
    try:
        limit = int(request.query.get("limit", DEFAULT_LIMIT))
        min_score = float(request.query.get("min_score", "0"))
    except ValueError:
        return web.json_response(
            {"status": "error", "error": "limit must be a whole number, min_score a number"},
            status=400,
        )
    if not 1 <= limit <= MAX_LIMIT:
        return web.json_response(
            {"status": "error", "error": f"limit must be between 1 and {MAX_LIMIT}"}, status=400
        )
    views = [] if tracker is None else [v for v in tracker.snapshot if v.score >= min_score]
    views.sort(key=lambda v: v.score, reverse=True)
    data = [
        {
            "rule": v.rule,
            "labels": v.labels,
            "members": list(v.members),
            "score": v.score,
            "raw": v.raw,
            "top": v.top,
            "evaluations": v.evaluations,
            "evaluated_ms": v.evaluated_ms,
        }
        for v in views[:limit]
    ]
    return web.json_response({"status": "success", "total": len(views), "data": data})


def list_anomalies(request: web.Request, book: AlertBook, *, now_ms: int) -> web.Response:
    """GET /api/v1/anomalies: the alerts firing now, with the fields the alert carries."""
    out = []
    for alert in sorted(book.firing(), key=lambda a: a.starts_ms):
        book.refresh(alert)
        out.append(
            {
                "labels": book.labels(alert),
                "annotations": book.annotations(alert, now_ms),
                "startsAt": wording.iso(min(alert.starts_ms, now_ms)),
                "members": [
                    {
                        "series": wording.selector(m.labels),
                        "since": wording.iso(m.since_ms),
                        "score": _number(m.reading.score),
                        "peak": _number(m.peak),
                        "value": _number(m.reading.value),
                        "expected": _number(m.reading.expected),
                        "lower": _number(m.reading.lower),
                        "upper": _number(m.reading.upper),
                    }
                    for m in alert.worst()
                ],
            }
        )
    return web.json_response({"status": "success", "data": out})


def unauthorized(request: web.Request) -> web.Response | None:
    """A 401 when the request lacks the bearer token the remote-write endpoint takes;
    None: authorized (or no token configured)."""
    if request.app[RUNTIME].writer.authorized(request):
        return None
    return web.json_response(
        {"error": "missing or wrong bearer token"},
        status=401,
        headers={"WWW-Authenticate": bearer.CHALLENGE},
    )


async def handle_series(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    # a thread: with a million series the listing takes seconds of Python, which must
    # not hold up remote-write requests
    return await asyncio.to_thread(
        list_series,
        request,
        rt.registry,
        rt.pipeline,
        presence_rules=rt.cfg.presence,
        now_ms=rt.now_ms(),
    )


async def handle_entities(request: web.Request) -> web.Response:
    return list_entities(request, request.app[RUNTIME].entities)


async def handle_anomalies(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    return list_anomalies(request, rt.book, now_ms=rt.now_ms())


def _problems(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in exc.errors()]


async def handle_verify(request: web.Request) -> web.Response:
    """POST /api/v1/verify: did a remediation work? Range queries on --prometheus."""
    rt = request.app[RUNTIME]
    if (refused := unauthorized(request)) is not None:
        return refused
    if (problem := mediatype.json_problem(request.headers.get("Content-Type"))) is not None:
        return web.json_response({"error": problem}, status=415)
    if rt.prometheus_url is None:
        return web.json_response(
            {
                "error": "this detector runs without --prometheus; "
                "verification reads its range queries there"
            },
            status=503,
        )
    try:
        req = verdict.VerifyRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        return web.json_response(
            {"error": "invalid verification request", "problems": _problems(exc)}, status=400
        )
    try:
        doc = await prometheus.run(
            req,
            prometheus_url=rt.prometheus_url,
            now_s=rt.clock(),
            outgoing_tls=rt.cfg.outgoing_tls,
        )
    except UpstreamError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response(doc)


def add_routes(app: web.Application) -> None:
    """Register the remote-write endpoint and the JSON API on ``app``."""
    app.router.add_post("/api/v1/write", app[RUNTIME].writer.handle_write)
    app.router.add_get("/api/v1/series", handle_series)
    app.router.add_get("/api/v1/entities", handle_entities)
    app.router.add_get("/api/v1/anomalies", handle_anomalies)
    app.router.add_post("/api/v1/verify", handle_verify)
