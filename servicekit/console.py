"""The console's static files: the page and assets of each service's console, and the ones
both consoles share.

This module owns the two asset routes, ``/`` (the service's ``index.html``) and
``/console/<asset>``, the Content-Security-Policy and other headers every console
response carries, the shared assets in ``servicekit/console/`` (``console.css``,
``dom.js``, ``favicon.svg``) and the page around a service's markup (``Page``: the
document head every console page has, with the service's title and module script). A
service names the directory of its own assets; the files are read once, when the routes
are added. The service's JSON endpoints stay in the service; like all of servicekit this
imports neither.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

SHARED_ASSETS = Path(__file__).parent / "console"
CONTENT_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Page:
    """The head of a service's console page; its ``index.html`` holds only the markup
    that goes inside ``<body>``."""

    title: str  # after "Vigil · " in the browser's tab
    script: str  # the page's module script: one of the service's own assets

    def render(self, body: str) -> str:
        return (
            "<!doctype html>\n"
            '<html lang="en">\n'
            "<head>\n"
            '<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Vigil · {html.escape(self.title)}</title>\n"
            '<link rel="icon" href="/console/favicon.svg" type="image/svg+xml">\n'
            '<link rel="stylesheet" href="/console/console.css">\n'
            f'<script type="module" src="/console/{html.escape(self.script)}"></script>\n'
            "</head>\n"
            "<body>\n"
            f"{body}"
            "</body>\n"
            "</html>\n"
        )


def load_assets(own: Path, page: Page | None = None) -> dict[str, tuple[bytes, str]]:
    """Each asset's name -> (bytes, content type): the shared ones and those in ``own``;
    with ``page``, ``index.html`` is ``own``'s markup inside that page.

    A service's file may not shadow a shared one: that would be a fork of it again.
    """
    assets: dict[str, tuple[bytes, str]] = {}
    for directory in (SHARED_ASSETS, own):
        for path in sorted(directory.iterdir()):
            if path.suffix not in CONTENT_TYPES:
                continue
            if path.name in assets:
                raise ValueError(
                    f"{path}: a console asset of that name is shared "
                    f"({SHARED_ASSETS / path.name}); rename one of them"
                )
            assets[path.name] = (path.read_bytes(), CONTENT_TYPES[path.suffix])
    if page is not None:
        if page.script not in assets:
            raise ValueError(f"{own}: the page's script {page.script!r} is not among its assets")
        body = (own / "index.html").read_text(encoding="utf-8")
        assets["index.html"] = (page.render(body).encode("utf-8"), CONTENT_TYPES[".html"])
    return assets


def add_asset_routes(app: web.Application, *, own: Path, page: Page | None = None) -> None:
    """Serve ``own``'s ``index.html`` (inside ``page``, when given) at ``/`` and every
    asset at ``/console/<name>``."""
    assets = load_assets(own, page)  # a few kB, read once: the package's files do not change

    def asset(name: str) -> web.Response:
        found = assets.get(name)
        if found is None:
            raise web.HTTPNotFound(text=f"no console asset {name!r}\n")
        body, content_type = found
        charset = None if content_type.startswith("image/") else "utf-8"
        return web.Response(
            body=body, content_type=content_type, charset=charset, headers=SECURITY_HEADERS
        )

    async def handle_index(request: web.Request) -> web.Response:
        return asset("index.html")

    async def handle_asset(request: web.Request) -> web.Response:
        return asset(request.match_info["name"])

    app.router.add_get("/", handle_index)
    app.router.add_get("/console/{name}", handle_asset)
