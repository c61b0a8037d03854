"""servicekit.console: a service's page and assets and the shared ones, under one set of
routes and headers; a service's file may not shadow a shared one."""

import pytest
from aiohttp import web

from servicekit import console


def _own(tmp_path, **files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


async def test_the_page_its_assets_and_the_shared_ones_are_served(aiohttp_client, tmp_path):
    app = web.Application()
    console.add_asset_routes(
        app, own=_own(tmp_path, **{"index.html": "<p>hi</p>", "page.js": "export {};"})
    )
    client = await aiohttp_client(app)
    index = await client.get("/")
    assert index.status == 200 and await index.text() == "<p>hi</p>"
    assert index.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert (await client.get("/console/page.js")).content_type == "text/javascript"
    shared = await client.get("/console/dom.js")
    assert await shared.read() == (console.SHARED_ASSETS / "dom.js").read_bytes()
    icon = await client.get("/console/favicon.svg")
    assert icon.content_type == "image/svg+xml" and icon.charset is None
    assert (await client.get("/console/nope.js")).status == 404


def test_a_service_asset_may_not_shadow_a_shared_one(tmp_path):
    with pytest.raises(ValueError, match=r"dom\.js: a console asset of that name is shared"):
        console.load_assets(_own(tmp_path, **{"dom.js": "// a fork"}))


async def test_with_a_page_the_index_is_the_markup_inside_the_shared_head(aiohttp_client, tmp_path):
    own = _own(tmp_path, **{"index.html": "<main>hi</main>\n", "page.js": "export {};"})
    app = web.Application()
    console.add_asset_routes(app, own=own, page=console.Page(title="A & B", script="page.js"))
    text = await (await (await aiohttp_client(app)).get("/")).text()
    assert text.startswith('<!doctype html>\n<html lang="en">\n<head>\n')
    assert "<title>Vigil · A &amp; B</title>\n" in text
    assert '<link rel="stylesheet" href="/console/console.css">\n' in text
    assert '<script type="module" src="/console/page.js"></script>\n</head>\n' in text
    assert text.endswith("<body>\n<main>hi</main>\n</body>\n</html>\n")


def test_a_page_whose_script_is_not_an_asset_is_refused(tmp_path):
    own = _own(tmp_path, **{"index.html": "<main></main>\n"})
    with pytest.raises(ValueError, match=r"the page's script 'page\.js' is not among its assets"):
        console.load_assets(own, console.Page(title="x", script="page.js"))
