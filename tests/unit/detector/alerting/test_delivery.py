"""detector.alerting.delivery: delivery to an in-process Alertmanager (aiohttp on loopback), and
the dispatcher's re-sends and enrichment. Back-off goes through an injected sleep that
records its delays, so no test waits for real."""

import asyncio
import contextlib
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from detector.alerting import wording
from detector.alerting.book import AlertBook, Links, Reading
from detector.alerting.delivery import AlertDispatcher, AlertmanagerClient
from detector.alerting.state import AlertEvent, EventKind
from detector.config import AlertingConfig, AlertRule
from detector.errors import EnrichmentError
from detector.metrics import build_alert_metrics

WAIT_S = 5.0  # the most any test waits for an event that must come
NOW = 1_717_243_200_000  # 2024-06-01T12:00:00Z
MIN = 60_000


class FakeAlertmanager:
    """POST /api/v2/alerts: answers the scripted statuses, then 200; refuses (400) any
    body holding an alert labelled ``poison``; records every POST with its answer."""

    def __init__(self):
        self.posts = []  # (status, body)
        self.script = []
        self.gate = None  # when set, each POST waits for it before answering
        self.arrived = asyncio.Event()
        self.server = None

    def app(self):
        app = web.Application()
        app.router.add_post("/api/v2/alerts", self.alerts)
        return app

    async def alerts(self, request):
        body = await request.json()
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        status = self.script.pop(0) if self.script else 200
        if status == 200 and any("poison" in a["labels"] for a in body):
            status = 400
        self.posts.append((status, body))
        if status == 200:
            return web.json_response({"status": "success"})
        return web.json_response({"error": "no"}, status=status)

    def accepted(self):
        return [a for status, body in self.posts if status == 200 for a in body]


class Sleeps:
    """The client's sleep: records each delay; returns at once unless held."""

    def __init__(self):
        self.delays = []
        self.asleep = asyncio.Event()
        self.hold = None

    async def __call__(self, delay):
        self.delays.append(delay)
        self.asleep.set()
        if self.hold is not None:
            await self.hold.wait()


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
async def am(aiohttp_server):
    fake = FakeAlertmanager()
    fake.server = await aiohttp_server(fake.app())
    return fake


@pytest.fixture
async def make_client(am, registry):
    async with aiohttp.ClientSession() as session:

        def make(**cfg):
            sleeps = Sleeps()
            client = AlertmanagerClient(
                session,
                url=str(am.server.make_url("/")),
                cfg=AlertingConfig(**cfg),
                metrics=build_alert_metrics(registry),
                sleep=sleeps,
            )
            return client, sleeps

        yield make


@contextlib.asynccontextmanager
async def running(client):
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def drained(client):
    """Wait until nothing is pending (the client sets ``delivered`` after each batch)."""
    async with asyncio.timeout(WAIT_S):
        while client.n_pending:
            client.delivered.clear()
            await client.delivered.wait()


def alert(name, version=1, **labels):
    return {
        "labels": {"alertname": "VigilAnomaly", "series": name, **labels},
        "annotations": {"version": str(version)},
        "startsAt": "2024-06-01T11:54:00.000Z",
        "endsAt": "2024-06-01T12:02:00.000Z",
    }


def metric(registry, name, client):
    return registry.get_sample_value(name, {"alertmanager": client.name})


async def test_offers_are_posted_in_batches_of_at_most_max_batch(am, make_client, registry):
    client, sleeps = make_client(max_batch=3)
    alerts = [alert(f"s{i}") for i in range(7)]
    for a in alerts:
        client.offer([a], created=0.0)
    assert client.n_pending == 7
    assert metric(registry, "vigil_alerts_pending", client) == 7
    assert not client.delivered.is_set()
    async with running(client):
        await drained(client)
    assert [(status, len(body)) for status, body in am.posts] == [(200, 3), (200, 3), (200, 1)]
    assert am.accepted() == alerts
    assert sleeps.delays == []
    assert metric(registry, "vigil_alerts_sent_total", client) == 7
    assert metric(registry, "vigil_alerts_pending", client) == 0
    assert metric(registry, "vigil_alert_delivery_seconds_count", client) == 7
    assert metric(registry, "vigil_alert_post_seconds_count", client) == 3
    assert metric(registry, "vigil_alert_send_failures_total", client) == 0  # 0 from start


async def test_a_newer_version_of_an_alert_replaces_the_unsent_older_one(am, make_client, registry):
    client, _ = make_client()
    client.offer([alert("a", 1), alert("b", 1)], created=0.0)
    client.offer([alert("a", 2)], created=0.0)
    assert client.n_pending == 2
    async with running(client):
        await drained(client)
    assert am.posts == [(200, [alert("b", 1), alert("a", 2)])]
    assert metric(registry, "vigil_alerts_sent_total", client) == 2


async def test_an_update_made_while_the_older_version_is_in_flight_follows_it(am, make_client):
    client, _ = make_client()
    am.gate = asyncio.Event()
    client.offer([alert("a", 1)], created=0.0)
    async with running(client):
        async with asyncio.timeout(WAIT_S):
            await am.arrived.wait()
        client.offer([alert("a", 2)], created=0.0)
        assert client.n_pending == 1
        am.gate.set()
        await drained(client)
    assert am.posts == [(200, [alert("a", 1)]), (200, [alert("a", 2)])]


@pytest.mark.parametrize("status", [503, 500, 429])
async def test_a_failing_alertmanager_is_retried_with_doubling_backoff(
    am, make_client, registry, status
):
    client, sleeps = make_client(retry_initial_s=0.5, retry_max_s=1.5)
    am.script = [status] * 4
    client.offer([alert("a")], created=0.0)
    async with running(client):
        await drained(client)
        assert sleeps.delays == [0.5, 1.0, 1.5, 1.5]
        assert [s for s, _ in am.posts] == [status] * 4 + [200]
        assert am.accepted() == [alert("a")]
        assert metric(registry, "vigil_alert_send_failures_total", client) == 4
        assert metric(registry, "vigil_alerts_sent_total", client) == 1

        am.script = [status]  # a success reset the back-off
        client.offer([alert("b")], created=0.0)
        await drained(client)
    assert sleeps.delays == [0.5, 1.0, 1.5, 1.5, 0.5]
    assert am.accepted() == [alert("a"), alert("b")]


async def test_a_refused_connection_is_retried_until_the_alertmanager_is_back(
    am, make_client, registry, aiohttp_server
):
    client, sleeps = make_client()
    sleeps.hold = asyncio.Event()
    port = am.server.port
    await am.server.close()
    client.offer([alert("a")], created=0.0)
    async with running(client):
        async with asyncio.timeout(WAIT_S):
            await sleeps.asleep.wait()
        assert sleeps.delays == [0.5]
        assert metric(registry, "vigil_alert_send_failures_total", client) == 1
        assert client.n_pending == 1
        am.server = await aiohttp_server(am.app(), port=port)
        sleeps.hold.set()
        await drained(client)
    assert am.posts == [(200, [alert("a")])]
    assert sleeps.delays == [0.5]
    assert metric(registry, "vigil_alerts_sent_total", client) == 1


async def test_a_refused_alert_is_picked_out_of_its_batch_counted_and_not_retried(
    am, make_client, registry
):
    client, sleeps = make_client(max_batch=10)
    good, bad, other = alert("a"), alert("b", poison="yes"), alert("c")
    client.offer([good, bad, other], created=0.0)
    async with running(client):
        await drained(client)
        assert am.posts == [(400, [good, bad, other]), (200, [good]), (400, [bad]), (200, [other])]
        assert metric(registry, "vigil_alerts_rejected_total", client) == 1
        assert metric(registry, "vigil_alerts_sent_total", client) == 2
        assert metric(registry, "vigil_alert_delivery_seconds_count", client) == 2
        assert metric(registry, "vigil_alerts_pending", client) == 0
        assert sleeps.delays == []

        client.offer([alert("d")], created=0.0)  # the next POST carries only the new one
        await drained(client)
    assert am.posts[4:] == [(200, [alert("d")])]
    assert metric(registry, "vigil_alerts_rejected_total", client) == 1


async def test_a_full_queue_drops_the_oldest_updates_and_counts_them(am, make_client, registry):
    client, _ = make_client(max_pending=3)
    client.offer([alert("a"), alert("b")], created=0.0)
    client.offer([alert("c"), alert("d"), alert("e")], created=0.0)
    client.offer([alert("e", 2)], created=0.0)  # an update takes no extra room
    assert client.n_pending == 3
    assert metric(registry, "vigil_alerts_dropped_total", client) == 2
    assert metric(registry, "vigil_alerts_pending", client) == 3
    async with running(client):
        await drained(client)
    assert am.accepted() == [alert("c"), alert("d"), alert("e", 2)]
    assert metric(registry, "vigil_alerts_sent_total", client) == 3


# --- AlertDispatcher ---------------------------------------------------------------

CHECKOUT = [
    ("__name__", "http_request_duration_seconds"),
    ("job", "api"),
    ("namespace", "shop"),
    ("pod", "checkout-1"),
]
CART = [
    ("__name__", "http_request_duration_seconds"),
    ("job", "api"),
    ("namespace", "shop"),
    ("pod", "cart-1"),
]


class FakeInfo:
    """SeriesInfo from plain dicts."""

    def __init__(self):
        self.labels = {1: CHECKOUT, 2: CART}
        self.readings = {}

    def labels_of(self, slot):
        return list(self.labels[slot])

    def is_rate(self, slot):
        return False

    def detector_of(self, slot):
        return "ensemble", {}

    def reading(self, slot):
        return self.readings[slot]

    def weekly(self, slot):
        return None


class RecordingClient:
    """Stands in for an AlertmanagerClient: each offer lands in a queue."""

    def __init__(self):
        self.offers: asyncio.Queue[Any] = asyncio.Queue()

    def offer(self, payloads, created, traces=()):
        self.offers.put_nowait(list(payloads))


class Clock:
    def __init__(self, ms):
        self.t = ms / 1000

    def __call__(self):
        return self.t


class FakeEnricher:
    """Returns ``result``, raises ``error``, or (``hang``) waits until cancelled."""

    def __init__(self, name, *, result=None, error=None, hang=False, budget_s=WAIT_S):
        self.name = name
        self.budget_s = budget_s
        self.result = result or {}
        self.error = error
        self.hang = hang
        self.calls = 0
        self.cancelled = asyncio.Event()

    async def __call__(self, alert):
        self.calls += 1
        if self.hang:
            try:
                await asyncio.Event().wait()  # longer than any budget
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if self.error is not None:
            raise self.error
        return dict(self.result)


def event(slot, kind=EventKind.FIRE, *, level=1, ts=NOW, value=2.3, score=0.99995):
    return AlertEvent(
        slot=slot,
        kind=kind,
        level=level,
        ts_ms=ts,
        since_ms=NOW - 6 * MIN,
        score=score,
        value=value,
        expected=0.28,
        lower=0.21,
        upper=0.35,
        peak=score,
    )


@pytest.fixture
def dispatch(registry):
    def make(*enrichers, clock=None):
        info = FakeInfo()
        book = AlertBook([AlertRule()], info=info, links=Links("http://vigil.example:9420"))
        client = RecordingClient()
        dispatcher = AlertDispatcher(
            book=book,
            clients=[cast(AlertmanagerClient, client)],  # stands in for one
            cfg=AlertingConfig(resend_s=30.0),
            metrics=build_alert_metrics(registry),
            rule_of=lambda slot: 0,
            clock=clock or Clock(NOW),
            enrichers=enrichers,
        )
        return dispatcher, client, info

    return make


async def enrichment_done(dispatcher):
    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(*dispatcher._tasks)
    assert not dispatcher._tasks


def failures(registry, enricher):
    return registry.get_sample_value(
        "vigil_alert_enrichment_failures_total", {"enricher": enricher}
    )


async def test_a_slow_enricher_never_delays_the_alert_and_runs_out_of_its_budget(
    dispatch, registry, caplog
):
    slow = FakeEnricher(
        "rollouts", result={"rollouts": "checkout 3 min before"}, hang=True, budget_s=0.05
    )
    dispatcher, client, _ = dispatch(slow)
    dispatcher.handle_events([event(1)])
    (body,) = client.offers.get_nowait()  # offered at once, before any enrichment
    assert body["labels"]["pod"] == "checkout-1"
    assert "rollouts" not in body["annotations"]
    await enrichment_done(dispatcher)
    assert slow.cancelled.is_set()
    assert client.offers.empty()  # nothing came, so nothing is sent again
    assert failures(registry, "rollouts") == 1
    assert (
        registry.get_sample_value("vigil_alert_enrichment_seconds_count", {"enricher": "rollouts"})
        == 1
    )
    assert "enrichment rollouts of alert VigilAnomaly failed (out of time)" in caplog.text


async def test_an_enriched_alert_is_offered_again_with_its_context(dispatch, registry):
    fast = FakeEnricher("rollouts", result={"rollouts": "checkout rolled out 3 min before"})
    failing = FakeEnricher("logs", error=EnrichmentError("loki answered 502"))
    dispatcher, client, _ = dispatch(fast, failing)
    dispatcher.handle_events([event(1)])
    (first,) = client.offers.get_nowait()
    assert "rollouts" not in first["annotations"]
    async with asyncio.timeout(WAIT_S):
        (second,) = await client.offers.get()
    assert second["labels"] == first["labels"]
    assert second["annotations"] == {
        **first["annotations"],
        "rollouts": "checkout rolled out 3 min before",
    }
    await enrichment_done(dispatcher)
    assert failures(registry, "logs") == 1
    assert failures(registry, "rollouts") is None

    # an update of the alert is not enriched again, and keeps its context
    dispatcher.handle_events([event(1, EventKind.ESCALATE, level=2, score=0.9999991)])
    assert not dispatcher._tasks
    old, new = client.offers.get_nowait()
    assert (old["labels"]["severity"], new["labels"]["severity"]) == ("warning", "critical")
    assert new["annotations"]["rollouts"] == "checkout rolled out 3 min before"
    assert fast.calls == failing.calls == 1


@pytest.mark.parametrize(
    "error", [EnrichmentError("kubernetes answered 403"), ValueError("enricher bug")]
)
async def test_a_failing_enricher_is_counted_and_the_alert_goes_without(dispatch, registry, error):
    failing = FakeEnricher("rollouts", error=error)
    dispatcher, client, _ = dispatch(failing)
    dispatcher.handle_events([event(1)])
    (body,) = client.offers.get_nowait()
    await enrichment_done(dispatcher)
    assert failures(registry, "rollouts") == 1
    assert client.offers.empty()
    (alert,) = dispatcher.book.firing()
    assert alert.extra == {}
    assert dispatcher.book.render(alert, now_ms=NOW, resend_s=30.0) == [body]


async def test_resend_offers_firing_alerts_with_fresh_values_and_ends_ahead(dispatch, registry):
    clock = Clock(NOW)
    dispatcher, client, info = dispatch(clock=clock)
    dispatcher.handle_events([event(1), event(2)])
    dispatcher.handle_events([event(2, EventKind.RESOLVE, value=0.3, score=0.5)])
    assert registry.get_sample_value("vigil_alert_events_total", {"kind": "fire"}) == 2
    assert registry.get_sample_value("vigil_alert_events_total", {"kind": "resolve"}) == 1
    assert registry.get_sample_value("vigil_alerts_firing") == 1
    fired = client.offers.get_nowait()
    assert [b["endsAt"] for b in fired] == [wording.iso(NOW + 120_000)] * 2
    (resolved,) = client.offers.get_nowait()
    assert resolved["endsAt"] == wording.iso(NOW)

    clock.t += 30.0
    info.readings[1] = Reading(
        ts_ms=NOW + 30_000, value=4.2, expected=0.28, lower=0.21, upper=0.35, score=0.9999
    )
    dispatcher.resend()
    (body,) = client.offers.get_nowait()
    assert body["labels"]["pod"] == "checkout-1"
    assert body["startsAt"] == wording.iso(NOW - 6 * MIN)
    assert body["endsAt"] == wording.iso(NOW + 30_000 + 4 * 30_000)
    assert body["annotations"]["value"] == "4.2 s"

    dispatcher.handle_events([event(1, EventKind.STALE)])
    client.offers.get_nowait()
    dispatcher.resend()
    assert client.offers.empty()  # nothing firing, nothing sent


async def test_dispatched_alerts_reach_the_alertmanager(am, make_client, registry):
    client, _ = make_client()
    book = AlertBook([AlertRule()], info=FakeInfo(), links=Links("http://vigil.example:9420"))
    dispatcher = AlertDispatcher(
        book=book,
        clients=[client],
        cfg=client.cfg,
        metrics=client.metrics,
        rule_of=lambda slot: 0,
        clock=Clock(NOW),
    )
    dispatcher.handle_events([event(1)])
    async with running(client):
        await drained(client)
    ((status, (body,)),) = am.posts
    assert status == 200
    assert body["labels"] == {
        "metric_name": "http_request_duration_seconds",
        "job": "api",
        "namespace": "shop",
        "pod": "checkout-1",
        "alertname": "VigilAnomaly",
        "severity": "warning",
    }
    assert body["endsAt"] == wording.iso(NOW + 120_000)
    assert metric(registry, "vigil_alerts_sent_total", client) == 1
    await dispatcher.close()
