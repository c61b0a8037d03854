"""The detector's operational endpoints: probes, POST /-/reload and /runbooks/<name>.

This module owns these handlers: ``/healthz`` (the process answers), ``/readyz`` (kernels
warm and the detector worker alive), ``POST /-/reload`` (the config file read again, see
``Runtime.reload``) and the runbooks the alerts' ``runbook_url`` point at (the folder
given with --runbooks first, then the packaged ones in ``detector/web/runbooks/``).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from detector.runtime import RUNTIME
from detector.web import api
from servicekit import probes

RUNBOOKS = Path(__file__).parent / "runbooks"


async def handle_healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def handle_readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    if rt.ready.is_set() and rt.worker_running:
        return web.Response(text="ready\n")
    return web.Response(
        status=503, text="warming up\n" if rt.worker_running else "worker stopped\n"
    )


async def handle_reload(request: web.Request) -> web.Response:
    if (refused := api.unauthorized(request)) is not None:
        return refused
    result = await request.app[RUNTIME].reload("POST /-/reload")
    return web.json_response(result.as_json(), status=200 if result.ok else 422)


async def handle_runbook(request: web.Request) -> web.Response:
    """A runbook as Markdown; its name is letters, digits, ``-`` and ``_`` only."""
    name = request.match_info["name"].removesuffix(".md")
    if name.replace("_", "").replace("-", "").isalnum():
        extra = request.app[RUNTIME].runbooks_dir
        for folder in (*([extra] if extra else []), RUNBOOKS):
            path = folder / f"{name}.md"
            if path.is_file():
                return web.Response(
                    text=path.read_text(encoding="utf-8"), content_type="text/markdown"
                )
    raise web.HTTPNotFound(text=f"no runbook named {name!r}\n")


def add_routes(app: web.Application) -> None:
    """Register the reload, runbook and probe endpoints on ``app``."""
    app.router.add_post("/-/reload", handle_reload)
    app.router.add_get("/runbooks/{name}", handle_runbook)
    probes.add_routes(app.router, healthy=handle_healthz, ready=handle_readyz)
