"""detector.alerting.book: lifecycle events → the alerts on-call reads (labels, words, links)."""

import dataclasses
import json
from datetime import datetime
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest

from detector.alerting import wording
from detector.alerting.book import AlertBook, Links, Reading, render_template
from detector.alerting.state import AlertEvent, EventKind
from detector.config import AlertRule

NOW = 1_717_243_200_000  # 2024-06-01T12:00:00Z, a Saturday
MIN = 60_000
SINCE = NOW - 6 * MIN
RESEND_S = 30.0
EXTERNAL = "http://vigil.example:9420"
PROM = "http://prom.example:9090"
GRAFANA = "https://grafana.example"
LATENCY = "http_request_duration_seconds"
SETTINGS = {"alpha_fast": 0.005, "season_bins": 48}

CHECKOUT = [
    ("__name__", LATENCY),
    ("instance", "10.1.2.3:8080"),
    ("job", "api"),
    ("namespace", "shop"),
    ("pod", "checkout-1"),
    ("service", "checkout"),
]
CHECKOUT_SELECTOR = (
    f'{LATENCY}{{instance="10.1.2.3:8080",job="api",namespace="shop",'
    'pod="checkout-1",service="checkout"}'
)
CHECKOUT_WHAT = f"{LATENCY} (namespace=shop, service=checkout, pod=checkout-1)"


class FakeInfo:
    """SeriesInfo from plain dicts, filled by the test."""

    def __init__(self):
        self.labels = {}
        self.rates = {}
        self.detectors = {}
        self.readings = {}
        self.weeklies = {}

    def add(self, slot, labels, *, rate=False, weekly=None, detector=("ensemble", SETTINGS)):
        self.labels[slot] = list(labels)
        self.rates[slot] = rate
        self.weeklies[slot] = weekly
        self.detectors[slot] = detector

    def labels_of(self, slot):
        return list(self.labels[slot])

    def is_rate(self, slot):
        return self.rates[slot]

    def detector_of(self, slot):
        return self.detectors[slot]

    def reading(self, slot):
        return self.readings[slot]

    def weekly(self, slot):
        return self.weeklies[slot]


def event(
    slot,
    kind=EventKind.FIRE,
    *,
    level=1,
    ts=NOW,
    since=SINCE,
    score=0.99995,
    value=2.3,
    expected=0.28,
    lower=0.21,
    upper=0.35,
    peak=None,
):
    return AlertEvent(
        slot=slot,
        kind=kind,
        level=level,
        ts_ms=ts,
        since_ms=since,
        score=score,
        value=value,
        expected=expected,
        lower=lower,
        upper=upper,
        peak=score if peak is None else peak,
    )


def first_rule(slot):
    return 0


def make_book(info, *rules, links=None, **kwargs):
    return AlertBook(
        rules or (AlertRule(),),
        info=info,
        links=links or Links(EXTERNAL, prometheus_url=PROM),
        **kwargs,
    )


def apply(book, *events, now=NOW):
    return book.apply(events, first_rule, now)


def render_one(book, alert, now=NOW):
    (body,) = book.render(alert, now_ms=now, resend_s=RESEND_S)
    return body


def when(text):
    return datetime.fromisoformat(text)


@pytest.fixture
def info():
    info = FakeInfo()
    info.add(1, CHECKOUT)
    return info


def test_fire_gives_one_alert_labelled_with_the_sanitised_series_and_the_rule(info):
    info.add(
        7,
        [
            ("9lives", "yes"),
            ("__meta_kubernetes_pod_uid", "u-1"),
            ("__name__", LATENCY),
            ("code.class", "5xx"),
            ("empty", ""),
            ("job", "api"),
            ("namespace", "shop"),
            ("team", "web"),
        ],
    )
    book = make_book(info, AlertRule(labels={"team": "payments", "page": "yes"}))
    (alert,) = apply(book, event(7))
    assert book.firing() == [alert]
    body = render_one(book, alert)
    assert body["labels"] == {
        "_9lives": "yes",
        "metric_name": LATENCY,
        "code_class": "5xx",
        "job": "api",
        "namespace": "shop",
        "team": "payments",
        "page": "yes",
        "alertname": "VigilAnomaly",
        "severity": "warning",
    }
    assert body["startsAt"] == "2024-06-01T11:54:00.000Z"
    assert body["endsAt"] == wording.iso(NOW + int(4 * RESEND_S * 1000))


def test_annotations_give_values_with_units_and_plain_words(info):
    book = make_book(info)
    (alert,) = apply(book, event(1))
    ann = render_one(book, alert)["annotations"]
    expected = {
        "value": "2.3 s",
        "expected": "280 ms",
        "lower": "210 ms",
        "upper": "350 ms",
        "direction": "above",
        "score": "0.999950",
        "anomalous_since": "2024-06-01T11:54:00.000Z",
        "detector": "ensemble",
        "detector_settings": '{"alpha_fast":0.005,"season_bins":48}',
        "series": CHECKOUT_SELECTOR,
        "summary": f"{CHECKOUT_WHAT} is 2.3 s, expected 210 ms–350 ms, anomalous for 6 min",
        "description": (
            f"{CHECKOUT_WHAT} is 2.3 s, above the expected band 210 ms–350 ms (expected "
            "280 ms). Anomaly score 0.999950 (one normal sample in 20,000 scores as high); "
            "anomalous since 2024-06-01T11:54:00.000Z (6 min), detector ensemble."
        ),
        "runbook_url": f"{EXTERNAL}/runbooks/VigilAnomaly",
    }
    assert {k: ann.get(k) for k in expected} == expected
    assert set(ann) == {*expected, "dashboard_url"}  # nothing related, no enrichment
    assert json.loads(ann["detector_settings"]) == SETTINGS


def test_summary_names_the_time_of_week_of_a_seasonal_series_below_its_band(info):
    info.add(2, [*CHECKOUT[:-1], ("service", "cart")], weekly=True)
    book = make_book(info)
    (alert,) = apply(book, event(2, value=0.1))
    ann = render_one(book, alert)["annotations"]
    assert ann["direction"] == "below"
    assert ann["summary"] == (
        f"{LATENCY} (namespace=shop, service=cart, pod=checkout-1) is 100 ms, expected "
        "210 ms–350 ms for a Saturday 12:00 UTC, anomalous for 6 min"
    )
    assert (
        ", below the expected band 210 ms–350 ms for a Saturday 12:00 UTC (" in ann["description"]
    )


def test_rate_series_are_worded_as_rates(info):
    info.add(3, [("__name__", "http_requests_total"), ("job", "api")], rate=True)
    book = make_book(info)
    (alert,) = apply(book, event(3, value=3400.0, expected=1200.0, lower=900.0, upper=1500.0))
    ann = render_one(book, alert)["annotations"]
    assert ann["summary"] == (
        "rate of http_requests_total (job=api) is 3.4k/s, expected "
        "900/s–1.5k/s, anomalous for 6 min"
    )


def test_runbook_url_and_annotations_are_templates_of_fields_and_labels(info):
    rule = AlertRule(
        runbook_url="https://wiki.example/{labels.namespace}/{alertname}",
        annotations={
            "owner": "team of {labels.namespace}: {value} vs {band}{labels.container}",
            "summary": "{labels.service} is slow: {value} ({severity})",
        },
    )
    book = make_book(info, rule)
    (alert,) = apply(book, event(1))
    ann = render_one(book, alert)["annotations"]
    assert ann["runbook_url"] == "https://wiki.example/shop/VigilAnomaly"
    assert ann["owner"] == "team of shop: 2.3 s vs 210 ms–350 ms"  # no container: ""
    assert ann["summary"] == "checkout is slow: 2.3 s (warning)"


def test_render_template_gives_nothing_for_an_unknown_label_or_field():
    fields = {"value": "2.3 s"}
    labels = {"namespace": "shop"}
    assert (
        render_template("{labels.nope}|{value}|{nope}|{labels.namespace}", fields, labels)
        == "|2.3 s||shop"
    )


def test_generator_url_is_a_prometheus_graph_of_the_exact_series(info):
    book = make_book(info)
    (alert,) = apply(book, event(1))
    url = render_one(book, alert)["generatorURL"]
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "prom.example:9090", "/graph")
    assert "g0.expr=" + quote_plus(CHECKOUT_SELECTOR) in url
    assert "{" not in url and '"' not in url
    assert parse_qs(parts.query) == {
        "g0.expr": [CHECKOUT_SELECTOR],
        "g0.tab": ["0"],
        "g0.range_input": ["66m"],
    }  # 6 min anomaly + 1 h


def test_without_prometheus_the_generator_is_the_detectors_anomaly_list(info):
    book = make_book(info, links=Links(EXTERNAL + "/"))
    (alert,) = apply(book, event(1))
    body = render_one(book, alert)
    assert body["generatorURL"] == f"{EXTERNAL}/api/v1/anomalies"
    assert "dashboard_url" not in body["annotations"]


def test_dashboard_url_is_the_grafana_dashboard_when_grafana_is_configured(info):
    links = Links(EXTERNAL, prometheus_url=PROM, grafana_url=GRAFANA + "/")
    book = make_book(info, links=links)
    (alert,) = apply(book, event(1))
    parts = urlsplit(render_one(book, alert)["annotations"]["dashboard_url"])
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "grafana.example",
        "/d/vigil-anomaly/vigil-anomaly",
    )
    assert parse_qs(parts.query) == {
        "orgId": ["1"],
        "var-metric": [LATENCY],
        "var-selector": [
            'instance="10.1.2.3:8080",job="api",namespace="shop",'
            'pod="checkout-1",service="checkout"'
        ],
        "from": [str(SINCE - 3600_000)],
        "to": [str(NOW + 600_000)],
    }


def test_dashboard_url_is_a_prometheus_graph_of_series_and_band_without_grafana(info):
    book = make_book(info)
    (alert,) = apply(book, event(1))
    parts = urlsplit(render_one(book, alert)["annotations"]["dashboard_url"])
    assert (parts.netloc, parts.path) == ("prom.example:9090", "/graph")
    query = parse_qs(parts.query)
    matchers = '{metric_name="' + LATENCY + '",' + CHECKOUT_SELECTOR.removeprefix(LATENCY)[1:]
    assert [query[f"g{i}.expr"] for i in range(4)] == [
        [CHECKOUT_SELECTOR],
        [f"vigil_anomaly_expected{matchers}"],
        [f"vigil_anomaly_lower{matchers}"],
        [f"vigil_anomaly_upper{matchers}"],
    ]
    for i in range(4):
        assert query[f"g{i}.range_input"] == ["76m"]  # 1 h before, 6 min, 10 min after
        assert query[f"g{i}.end_input"] == ["2024-06-01 12:10:00"]


def test_escalation_resolves_the_warning_and_fires_the_critical(info):
    book = make_book(info)
    (alert,) = apply(book, event(1))
    render_one(book, alert)
    later = NOW + MIN
    (same,) = apply(
        book, event(1, EventKind.ESCALATE, level=2, ts=later, score=0.9999991), now=later
    )
    assert same is alert
    old, new = book.render(alert, now_ms=later, resend_s=RESEND_S)
    assert old["labels"] == {**new["labels"], "severity": "warning"}
    assert new["labels"]["severity"] == "critical"
    assert old["startsAt"] == new["startsAt"] == "2024-06-01T11:54:00.000Z"
    assert old["endsAt"] == wording.iso(later)
    assert new["endsAt"] == wording.iso(later + int(4 * RESEND_S * 1000))
    assert new["annotations"]["score"] == "0.9999991"
    (again,) = book.render(alert, now_ms=later, resend_s=RESEND_S)  # retired once only
    assert again["labels"]["severity"] == "critical"


@pytest.mark.parametrize(
    ("kind", "why"),
    [(EventKind.RESOLVE, "back inside its band"), (EventKind.STALE, "series went stale")],
)
def test_the_only_member_leaving_resolves_the_alert_now(info, kind, why):
    book = make_book(info)
    (alert,) = apply(book, event(1))
    later = NOW + MIN
    (resolved,) = apply(book, event(1, kind, ts=later, value=0.3, score=0.5), now=later)
    assert resolved is alert and not alert.is_firing
    assert book.firing() == [] and list(book.recent) == [alert]
    body = render_one(book, alert, now=later)
    assert body["startsAt"] == "2024-06-01T11:54:00.000Z"
    assert body["endsAt"] == wording.iso(later)
    assert body["annotations"]["summary"] == (
        f"{CHECKOUT_WHAT} was 300 ms, expected 210 ms–350 ms, anomalous for 7 min; resolved: {why}"
    )
    assert body["annotations"]["resolution"] == why
    assert body["annotations"]["direction"] == "within"


def test_a_resolve_after_adoption_says_the_new_level_was_adopted(info):
    book = make_book(info)
    (alert,) = apply(book, event(1))
    resolve = dataclasses.replace(event(1, EventKind.RESOLVE, ts=NOW + MIN), adopted_after_s=3600.0)
    apply(book, resolve, now=NOW + MIN)
    annotations = render_one(book, alert, now=NOW + MIN)["annotations"]
    assert annotations["resolution"] == "new level adopted after 1 h"
    assert annotations["description"].endswith(" Resolved: new level adopted after 1 h.")


def test_resolved_alerts_are_forgotten_after_the_related_window(info):
    book = make_book(info, related_window_s=900.0)
    apply(book, event(1))
    apply(book, event(1, EventKind.RESOLVE), now=NOW)
    assert len(book.recent) == 1
    apply(book, now=NOW + 15 * MIN)
    assert len(book.recent) == 1
    apply(book, now=NOW + 15 * MIN + 1)
    assert list(book.recent) == []


def test_start_never_follows_end_when_samples_are_in_the_future(info):
    book = make_book(info)
    ahead = NOW + 5 * MIN  # the sender's clock runs ahead of ours
    (alert,) = apply(book, event(1, ts=ahead, since=ahead))
    firing = render_one(book, alert)
    assert when(firing["startsAt"]) <= when(wording.iso(NOW)) < when(firing["endsAt"])
    apply(book, event(1, EventKind.RESOLVE, ts=ahead + MIN, since=ahead), now=NOW)
    body = render_one(book, alert)
    assert when(body["startsAt"]) <= when(body["endsAt"])
    assert (when(body["endsAt"]) - when(wording.iso(NOW))).total_seconds() <= 0.001


def pod(slot, name, service="checkout"):
    return slot, [
        ("__name__", LATENCY),
        ("instance", f"10.1.2.{slot}:8080"),
        ("job", "api"),
        ("namespace", "shop"),
        ("pod", name),
        ("service", service),
    ]


def pod_selector(slot, name, service="checkout"):
    return wording.selector(pod(slot, name, service)[1])


@pytest.fixture
def grouped():
    info = FakeInfo()
    for slot, name in ((1, "p-1"), (2, "p-2"), (3, "p-3")):
        info.add(*pod(slot, name))
    info.add(*pod(4, "cart-1", service="cart"))
    rule = AlertRule(by=("namespace", "service"), max_listed=2, labels={"team": "payments"})
    return make_book(info, rule)


def fire_group(book):
    return apply(
        book,
        event(1, score=0.99991, value=1.9),
        event(2, score=0.99999, value=3.1),
        event(3, score=0.99995, value=2.6),
        event(4),
    )


def test_aggregated_rule_gives_one_alert_per_group_listing_its_worst_series(grouped):
    checkout, cart = fire_group(grouped)
    assert len(checkout.members) == 3 and len(cart.members) == 1
    body = render_one(grouped, checkout)
    assert body["labels"] == {
        "namespace": "shop",
        "service": "checkout",
        "team": "payments",
        "alertname": "VigilAnomaly",
        "severity": "warning",
    }
    ann = body["annotations"]
    assert ann["members"] == (
        f"{pod_selector(2, 'p-2')}: 3.1 s (expected 210 ms–350 ms), score 0.999990\n"
        f"{pod_selector(3, 'p-3')}: 2.6 s (expected 210 ms–350 ms), score 0.999950"
    )
    assert ann["summary"] == (
        f"3 anomalous series in namespace=shop, service=checkout; worst: {LATENCY} "
        "(namespace=shop, service=checkout, pod=p-2) is 3.1 s, expected 210 ms–350 ms"
    )
    assert ann["description"] == ann["summary"] + ", anomalous for 6 min."
    assert ann["series"] == pod_selector(2, "p-2")
    assert render_one(grouped, cart)["labels"]["service"] == "cart"


def test_aggregated_alert_fires_until_its_last_member_resolves(grouped):
    checkout, _ = fire_group(grouped)
    later = NOW + MIN
    (changed,) = apply(grouped, event(2, EventKind.RESOLVE, ts=later, value=0.3), now=later)
    assert changed is checkout and checkout.is_firing
    body = render_one(grouped, checkout, now=later)
    assert body["endsAt"] == wording.iso(later + int(4 * RESEND_S * 1000))
    assert body["annotations"]["summary"].startswith(
        "2 anomalous series in namespace=shop, service=checkout; worst: "
        f"{LATENCY} (namespace=shop, service=checkout, pod=p-3) is 2.6 s"
    )
    (changed,) = apply(
        grouped,
        event(1, EventKind.RESOLVE, ts=later),
        event(3, EventKind.STALE, ts=later),
        now=later,
    )
    assert changed is checkout and not checkout.is_firing
    body = render_one(grouped, checkout, now=later)
    assert body["endsAt"] == wording.iso(later)
    assert body["labels"]["service"] == "checkout"
    assert [a.group for a in grouped.firing()] == [[("namespace", "shop"), ("service", "cart")]]


def test_related_anomalies_are_ranked_by_shared_labels_within_the_window():
    info = FakeInfo()
    info.add(1, CHECKOUT)  # the alert we read
    memory = [
        ("__name__", "container_memory_working_set_bytes"),
        ("container", "app"),
        ("instance", "10.0.0.5:10250"),
        ("job", "kubelet"),
        ("namespace", "shop"),
        ("node", "n-1"),
        ("pod", "checkout-1"),
    ]  # namespace, pod
    cart = [
        ("__name__", "http_requests_total"),
        ("instance", "10.1.9.9:8080"),
        ("job", "cart"),
        ("namespace", "shop"),
        ("pod", "cart-1"),
        ("service", "cart"),
    ]  # namespace
    old = [
        ("__name__", "up"),
        ("job", "api"),
        ("namespace", "shop"),
        ("pod", "checkout-1"),
    ]  # close in labels, two hours earlier
    elsewhere = [
        ("__name__", "up"),
        ("instance", "10.9.9.9:8080"),
        ("job", "ledger"),
        ("namespace", "billing"),
        ("pod", "ledger-1"),
        ("service", "ledger"),
    ]
    errors = [
        ("__name__", "http_errors_total"),
        ("instance", "10.1.2.4:8080"),
        ("job", "api"),
        ("namespace", "shop"),
        ("pod", "checkout-2"),
        ("service", "checkout"),
    ]  # job, namespace, service; resolved
    for slot, labels in ((2, memory), (3, cart), (4, old), (5, elsewhere), (6, errors)):
        info.add(slot, labels)
    book = make_book(info, related_window_s=900.0)
    mine, *_ = apply(
        book,
        event(1),
        event(2, since=SINCE + 2 * MIN, peak=0.99999),
        event(3, since=SINCE - 10 * MIN, peak=0.999999),
        event(4, since=SINCE - 120 * MIN),
        event(5),
        event(6, since=SINCE + MIN),
    )
    apply(book, event(6, EventKind.RESOLVE))
    lines = {
        "errors": f"{wording.selector(errors)} score 0.999950 since 2024-06-01T11:55:00.000Z "
        "(resolved)",
        "memory": f"{wording.selector(memory)} score 0.999990 since 2024-06-01T11:56:00.000Z "
        "(firing)",
        "cart": f"{wording.selector(cart)} score 0.999999 since 2024-06-01T11:44:00.000Z (firing)",
    }
    ann = render_one(book, mine)["annotations"]
    assert ann["related"].split("\n") == [lines["errors"], lines["memory"], lines["cart"]]
    assert book.related(book.alerts[(0, tuple(elsewhere))], NOW) == []

    later = NOW + 15 * MIN + 1  # the resolved one leaves the window
    apply(book, now=later)
    assert book.related(mine, later) == [lines["memory"], lines["cart"]]
    book.max_related = 1
    assert book.related(mine, later) == [lines["memory"]]


def test_refresh_reads_the_latest_values_and_the_score_stays_the_runs_peak(info):
    book = make_book(info)
    (alert,) = apply(book, event(1))
    info.readings[1] = Reading(
        ts_ms=NOW + MIN, value=4.2, expected=0.28, lower=0.21, upper=0.35, score=0.9991
    )
    book.refresh(alert)
    ann = render_one(book, alert, now=NOW + MIN)["annotations"]
    assert (ann["value"], ann["score"]) == ("4.2 s", "0.999950")
    assert ann["summary"].endswith("anomalous for 7 min")
