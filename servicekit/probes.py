"""The health probes both services answer, under both names operators expect.

``/healthz`` and ``/readyz`` (Kubernetes' names) and ``/-/healthy`` and ``/-/ready``
(Prometheus's and Alertmanager's) are the same two handlers: alive, and ready to serve.
This module owns only the route table; each service decides what alive and ready mean.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEALTHY_PATHS = ("/healthz", "/-/healthy")
READY_PATHS = ("/readyz", "/-/ready")


def add_routes(router: web.UrlDispatcher, *, healthy: Handler, ready: Handler) -> None:
    """GET (and HEAD) of every HEALTHY_PATHS to ``healthy``, of every READY_PATHS to ``ready``."""
    for path in HEALTHY_PATHS:
        router.add_get(path, healthy)
    for path in READY_PATHS:
        router.add_get(path, ready)
