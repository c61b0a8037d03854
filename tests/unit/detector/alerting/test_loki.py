"""detector.alerting.loki against a small in-process Loki (aiohttp on loopback)."""

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from detector.alerting.loki import LogFetcher, LogLine, build_query
from detector.errors import EnrichmentError

START_MS = 1_717_242_900_000
END_MS = 1_717_243_200_000
LABELS = {
    "__name__": "http_request_duration_seconds",
    "namespace": "shop",
    "pod": "checkout-7d9f8b6c5-x2x9q",
    "container": "app",
    "instance": "10.1.2.3:8080",
}
APP = {"namespace": "shop", "pod": "checkout-7d9f8b6c5-x2x9q", "container": "app"}
SIDECAR = {**APP, "container": "envoy"}


def streams(*result, status="success"):
    return {
        "status": status,
        "data": {
            "resultType": "streams",
            "result": list(result),
            "stats": {"summary": {"totalEntriesReturned": 3}},
        },
    }


def stream(labels, *values):
    return {"stream": labels, "values": [[str(ns), line] for ns, line in values]}


class FakeLoki:
    """Answers query_range with a canned body and records what it was asked."""

    def __init__(self):
        self.requests = []
        self.reply = (200, json.dumps(streams()))
        self.hang = False
        self.release = asyncio.Event()
        self.hung_done = asyncio.Event()

    async def query_range(self, request):
        self.requests.append(request)
        if self.hang:
            try:
                await self.release.wait()
            finally:
                self.hung_done.set()
        status, body = self.reply
        return web.Response(status=status, text=body, content_type="application/json")


@pytest.fixture
async def loki(aiohttp_server):
    fake = FakeLoki()
    app = web.Application()
    app.router.add_get("/loki/api/v1/query_range", fake.query_range)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        yield fake, lambda **kw: LogFetcher(session, url=str(server.make_url("/")), **kw)


async def test_query_selects_the_pod_escapes_values_and_asks_backward_in_ns(loki):
    fake, fetcher = loki
    labels = {**LABELS, "pod": 'we"ird\\pod'}
    assert await fetcher().error_lines(labels, start_ms=START_MS, end_ms=END_MS) == []
    (request,) = fake.requests
    assert request.query["query"] == (
        '{namespace="shop", pod="we\\"ird\\\\pod", container="app"} '
        '|~ "(?i)(error|exception|fatal|panic|traceback)"'
    )
    assert request.query["start"] == "1717242900000000000"
    assert request.query["end"] == "1717243200000000000"
    assert request.query["limit"] == "5"
    assert request.query["direction"] == "backward"
    assert "X-Scope-OrgID" not in request.headers


def test_query_escapes_the_line_filter_and_skips_empty_labels():
    labels = {"namespace": "shop", "pod": "p-1", "container": ""}
    assert (
        build_query(labels, line_filter=r"code=\d+")
        == '{namespace="shop", pod="p-1"} |~ "code=\\\\d+"'
    )
    assert build_query(labels, line_filter="") == '{namespace="shop", pod="p-1"}'


@pytest.mark.parametrize(
    "labels", [{"namespace": "shop"}, {"pod": "p-1"}, {"namespace": "", "pod": "p-1"}]
)
async def test_without_namespace_and_pod_nothing_is_asked(loki, labels):
    fake, fetcher = loki
    assert await fetcher().error_lines(labels, start_ms=START_MS, end_ms=END_MS) == []
    assert fake.requests == []


async def test_lines_from_all_streams_come_newest_first_up_to_the_limit(loki):
    fake, fetcher = loki
    fake.reply = (
        200,
        json.dumps(
            streams(
                stream(
                    APP,
                    (1717243190000000500, "ERROR payment declined"),
                    (1717243100123456789, "ERROR db timeout"),
                ),
                stream(
                    SIDECAR,
                    (1717243190000000900, "upstream error 503"),
                    (1717243150000000000, "upstream error 502"),
                ),
            )
        ),
    )
    lines = await fetcher(limit=3).error_lines(LABELS, start_ms=START_MS, end_ms=END_MS)
    assert [(entry.ts_ms, entry.line, entry.stream["container"]) for entry in lines] == [
        (1717243190000, "upstream error 503", "envoy"),
        (1717243190000, "ERROR payment declined", "app"),
        (1717243150000, "upstream error 502", "envoy"),
    ]
    assert fake.requests[0].query["limit"] == "3"


async def test_long_lines_are_cut_with_an_ellipsis(loki):
    fake, fetcher = loki
    body = streams(stream(APP, (2_000_000, "x" * 20), (1_000_000, "short")))
    fake.reply = (200, json.dumps(body))
    lines = await fetcher(max_line_chars=10).error_lines(LABELS, start_ms=0, end_ms=END_MS)
    assert [entry.line for entry in lines] == ["x" * 9 + "…", "short"]
    assert [entry.ts_ms for entry in lines] == [2, 1]


async def test_tenant_goes_in_the_org_id_header(loki):
    fake, fetcher = loki
    await fetcher(tenant="team-shop").error_lines(LABELS, start_ms=START_MS, end_ms=END_MS)
    assert fake.requests[0].headers["X-Scope-OrgID"] == "team-shop"


def test_log_lines_are_immutable_and_hashable():
    from types import MappingProxyType

    entry = LogLine(ts_ms=1, line="boom", stream=MappingProxyType({"pod": "p"}))
    assert hash(entry) == hash(LogLine(ts_ms=1, line="boom", stream=MappingProxyType({"pod": "p"})))
    with pytest.raises(TypeError):
        entry.stream["pod"] = "q"  # type: ignore[index]  # the point: it must raise


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, "too many outstanding requests", "HTTP 500 b'too many outstanding requests'"),
        (400, "parse error at line 1", "HTTP 400"),
        (200, "<html>gateway</html>", "not JSON"),
        (200, json.dumps(streams(status="error")), "status is 'error'"),
        (
            200,
            json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}),
            "resultType 'matrix'",
        ),
        (200, json.dumps(streams({"stream": {"pod": 1}, "values": []})), r"result\[0\]: stream"),
        (200, json.dumps(streams({"stream": APP, "values": {}})), r"result\[0\]: values"),
        (
            200,
            json.dumps(streams(stream(APP, (1, "ok")), {"stream": APP, "values": [["1.5", "x"]]})),
            r"result\[1\]\.values\[0\]: expected",
        ),
        (200, json.dumps([]), "status is 'list'"),
    ],
)
async def test_failures_and_unexpected_answers_are_enrichment_errors(loki, status, body, message):
    fake, fetcher = loki
    fake.reply = (status, body)
    with pytest.raises(EnrichmentError, match=message):
        await fetcher().error_lines(LABELS, start_ms=START_MS, end_ms=END_MS)


async def test_reversed_window_is_enrichment_error(loki):
    fake, fetcher = loki
    with pytest.raises(EnrichmentError, match="before start_ms"):
        await fetcher().error_lines(LABELS, start_ms=END_MS, end_ms=START_MS)
    assert fake.requests == []


async def test_refused_connection_is_enrichment_error(unused_tcp_port):
    async with aiohttp.ClientSession() as session:
        fetcher = LogFetcher(session, url=f"http://127.0.0.1:{unused_tcp_port}")
        with pytest.raises(EnrichmentError, match="request failed"):
            await fetcher.error_lines(LABELS, start_ms=START_MS, end_ms=END_MS)


async def test_loki_that_never_answers_fails_within_the_request_timeout(loki):
    fake, fetcher = loki
    fake.hang = True
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        with pytest.raises(EnrichmentError, match=r"no answer within 0\.2 s"):
            await fetcher(request_timeout_s=0.2).error_lines(
                LABELS, start_ms=START_MS, end_ms=END_MS
            )
        assert loop.time() - began < 1.0
    finally:
        fake.release.set()
        await asyncio.wait_for(fake.hung_done.wait(), timeout=5)
