"""What detector and remediator share on the wire: the alert JSON (the detector's alerts,
as Alertmanager delivers them, are what the remediator reads) and the verify request."""

import json

from detector.alerting.book import AlertBook, Links, Reading
from detector.alerting.state import AlertEvent, EventKind
from detector.config import AlertRule
from remediator.webhook import parse_notification
from tests.conftest import ROOT


class _Info:
    def labels_of(self, slot):
        return [
            ("__name__", "http_request_duration_seconds"),
            ("namespace", "shop"),
            ("pod", "checkout-7d9f-x2"),
            ("service", "checkout"),
        ]

    def is_rate(self, slot):
        return False

    def detector_of(self, slot):
        return "ensemble", {"alpha_fast": 0.005}

    def reading(self, slot):
        return Reading(1_795_734_000_000, 2.3, 0.28, 0.21, 0.35, 0.99999)

    def weekly(self, slot):
        return None


def test_a_detector_alert_as_alertmanager_delivers_it_is_a_valid_webhook():
    book = AlertBook([AlertRule()], info=_Info(), links=Links("http://vigil:9420"))
    now = 1_795_734_060_000
    event = AlertEvent(
        slot=0,
        kind=EventKind.FIRE,
        level=2,
        ts_ms=now - 60_000,
        since_ms=now - 360_000,
        score=0.99999,
        value=2.3,
        expected=0.28,
        lower=0.21,
        upper=0.35,
        peak=0.99999,
    )
    [alert] = book.apply([event], lambda slot: 0, now)
    [posted] = book.render(alert, now_ms=now, resend_s=30)
    # what Alertmanager 0.25 adds when it notifies a webhook (samples/webhook_01.json)
    delivered = {
        **posted,
        "status": "firing",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "3b1c4f2a9d8e7f60",
    }
    body = {
        "version": "4",
        "receiver": "vigil-remediator",
        "status": "firing",
        "alerts": [delivered],
        "groupLabels": {"alertname": "VigilAnomaly"},
        "commonLabels": posted["labels"],
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "groupKey": '{}:{alertname="VigilAnomaly"}',
        "truncatedAlerts": 0,
    }
    note = parse_notification(json.dumps(body).encode())
    [got] = note.alerts
    assert got.labels["alertname"] == "VigilAnomaly"
    assert got.labels["namespace"] == "shop" and got.labels["pod"] == "checkout-7d9f-x2"
    assert got.annotations["direction"] == "above"
    assert got.starts_ms == now - 360_000


def test_the_verify_step_sends_what_the_detector_accepts():
    """rollback-bad-rollout's vigil.verify step, rendered for a VigilAnomaly alert, posts
    a body the detector's POST /api/v1/verify validates, with the same meaning."""
    from detector.verify.verdict import VerifyRequest, plan
    from remediator.app import build_registry
    from remediator.catalog.loader import load_catalog
    from remediator.runs.plan import build_plan
    from remediator.webhook import alert_from_json

    registry = build_registry()
    catalog = load_catalog([ROOT / "playbooks" / "rollback-bad-rollout.yaml"], registry)
    alert = alert_from_json(
        {
            "status": "firing",
            "startsAt": "2026-11-27T10:00:00Z",
            "fingerprint": "f00d",
            "labels": {
                "alertname": "VigilAnomaly",
                "metric_name": "http_request_errors_ratio",
                "namespace": "shop",
                "pod": "checkout-1",
            },
            "annotations": {},
        }
    )
    gate = tuple(s for s in catalog.entries[0].playbook.spec.steps if s.action == "vigil.verify")
    (confirm,) = build_plan(gate, alert, registry, run_id="r", run_url="http://vigil/r")
    body = confirm.params.body()  # type: ignore[attr-defined]
    req = VerifyRequest.model_validate_json(json.dumps(body))
    assert req.change_time == 1795773600.0 and req.mode == "before_after"
    ((_q, base, seen),) = plan(req, now_s=1795773600.0 + 900)
    assert (
        base.query == seen.query == 'max({__name__="http_request_errors_ratio", namespace="shop"})'
    )
    assert (base.start_s, seen.end_s) == (1795773600.0 - 1800, 1795773600.0 + 900)
