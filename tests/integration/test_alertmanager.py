"""Vigil's alerts through the real Alertmanager 0.25: one alert per anomaly, delivered to a
webhook, resolved on recovery; nothing lost across an Alertmanager outage; one
notification from an HA pair; the write-back read by a real Prometheus."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.integration.procs import (
    free_port,
    process,
    require,
    vigil_detector_argv,
    wait_until,
)
from tests.integration.stack import (
    Webhook,
    alertmanager,
    am_alerts,
    am_config,
    get_json,
    ms,
    shifted,
    write,
)

pytestmark = pytest.mark.integration

VIGIL_CONFIG = """
alerting:
  resend_s: 5
  retry_initial_s: 0.2
  retry_max_s: 2
  timeout_s: 2
  stale_min_s: 600  # the test sends no samples for minutes; that is not silence here
alerts:
  - name: VigilAnomaly
    labels: {team: shop}
    for_s: 3       # shifted() samples every second (ONE_SECOND_RULE)
    resolve_s: 5
"""


def _vigil(
    tmp_path: Path,
    port: int,
    *alertmanagers: str,
    config: str = VIGIL_CONFIG,
    extra: tuple[str, ...] = (),
):
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(config)
    argv = vigil_detector_argv(port, "--config", str(cfg), *extra)
    for url in alertmanagers:
        argv += ["--alertmanager", url]
    return process(
        "vigil", argv, tmp_path, ready_url=f"http://127.0.0.1:{port}/readyz", timeout_s=180
    )


def _ours(metric: str):
    return lambda a: a["labels"].get("metric_name") == metric


def _notified(metric: str, status: str):
    return lambda n: (
        n["status"] == status and any(a["labels"].get("metric_name") == metric for a in n["alerts"])
    )


def test_level_shift_gives_one_alert_delivered_and_resolved(tmp_path: Path):
    vigil_port = free_port()
    now = int(time.time() * 1000)
    with (
        Webhook() as hook,
        alertmanager("am", tmp_path, am_config(tmp_path / "am.yml", hook.url)) as (am, _),
        _vigil(tmp_path, vigil_port, am),
    ):
        write(
            vigil_port,
            [
                shifted(
                    "checkout_latency_seconds",
                    end_ms=now - 60_000,
                    namespace="shop",
                    service="checkout",
                )
            ],
        )
        wait_until(
            "alert in Alertmanager",
            lambda: any(map(_ours("checkout_latency_seconds"), am_alerts(am))),
            timeout_s=30,
        )
        [alert] = [a for a in am_alerts(am) if _ours("checkout_latency_seconds")(a)]
        assert alert["status"]["state"] == "active"
        labels, ann = alert["labels"], alert["annotations"]
        assert labels["alertname"] == "VigilAnomaly" and labels["team"] == "shop"
        assert labels["namespace"] == "shop" and labels["service"] == "checkout"
        for field in (
            "value",
            "expected",
            "lower",
            "upper",
            "direction",
            "score",
            "anomalous_since",
            "detector",
            "detector_settings",
            "summary",
            "description",
            "runbook_url",
            "series",
        ):
            assert ann.get(field), f"annotation {field} missing: {ann}"
        assert ann["direction"] == "above"
        assert ann["runbook_url"] == f"http://127.0.0.1:{vigil_port}/runbooks/VigilAnomaly"
        assert "anomalous for" in ann["summary"]
        assert alert["generatorURL"].startswith(f"http://127.0.0.1:{vigil_port}/")

        [note] = hook.wait_for(_notified("checkout_latency_seconds", "firing"), 30)
        assert note["version"] == "4"
        assert (
            note["alerts"][0]["annotations"]["summary"] == ann["summary"]
            or note["alerts"][0]["annotations"]["series"] == ann["series"]
        )

        write(
            vigil_port,
            [
                shifted(
                    "checkout_latency_seconds",
                    end_ms=now,
                    n_normal=60,
                    n_shift=0,
                    seed=9,
                    namespace="shop",
                    service="checkout",
                )
            ],
        )
        resolved = hook.wait_for(_notified("checkout_latency_seconds", "resolved"), 30)
        assert resolved, "the resolve never reached the webhook"
        firing = [
            n for n in hook.notifications if _notified("checkout_latency_seconds", "firing")(n)
        ]
        assert len(firing) == 1, firing


def test_alerts_survive_an_alertmanager_outage(tmp_path: Path):
    vigil_port, am_port = free_port(), free_port()
    cfg = am_config(tmp_path / "am.yml", "http://127.0.0.1:1/unused")
    am = f"http://127.0.0.1:{am_port}"
    now = int(time.time() * 1000)
    with _vigil(tmp_path, vigil_port, am):
        with alertmanager("am1", tmp_path, cfg, port=am_port):
            write(vigil_port, [shifted("queue_depth", end_ms=now - 120_000, job="a")])
            wait_until(
                "first alert delivered",
                lambda: any(map(_ours("queue_depth"), am_alerts(am))),
                timeout_s=30,
            )
        # Alertmanager is down (its alerts lived in memory); a second anomaly happens now
        write(vigil_port, [shifted("error_ratio", end_ms=now - 60_000, job="b")])

        def failures() -> float:
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{vigil_port}/metrics", timeout=5)
                .read()
                .decode()
            )
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("vigil_alert_send_failures_total{")
            )

        # a minute of outage: the client backs off to 2 s, so ~25 failed tries take ~60 s
        wait_until(
            "a minute of failed deliveries", lambda: failures() >= 25, timeout_s=120, interval_s=1
        )
        with alertmanager("am2", tmp_path, cfg, port=am_port):

            def both() -> bool:
                alerts = am_alerts(am)
                return any(map(_ours("queue_depth"), alerts)) and any(
                    map(_ours("error_ratio"), alerts)
                )

            wait_until("both alerts in the restarted Alertmanager", both, timeout_s=30)
            [err] = [a for a in am_alerts(am) if _ours("error_ratio")(a)]
            assert ms(err["startsAt"]) < now - 60_000  # when the anomaly began, not now


def test_an_ha_pair_notifies_once(tmp_path: Path):
    vigil_port = free_port()
    c1, c2 = free_port(), free_port()
    now = int(time.time() * 1000)
    with Webhook() as hook:
        cfg = am_config(tmp_path / "am.yml", hook.url)
        with (
            alertmanager("am-a", tmp_path, cfg, cluster_port=c1, peers=(c2,)) as (am1, _),
            alertmanager("am-b", tmp_path, cfg, cluster_port=c2, peers=(c1,)) as (am2, _),
        ):
            wait_until(
                "the pair formed a cluster",
                lambda: all(
                    len(get_json(f"{u}/api/v2/status")["cluster"].get("peers") or []) == 2
                    for u in (am1, am2)
                ),
                timeout_s=30,
            )
            with _vigil(tmp_path, vigil_port, am1, am2):
                write(vigil_port, [shifted("disk_io_seconds", end_ms=now, node="n1")])
                first = hook.wait_for(_notified("disk_io_seconds", "firing"), 30)
                assert len(first) == 1
                # the second peer waits peer-timeout (3 s) for the first's log entry;
                # a duplicate would arrive within a few of those
                more = hook.wait_for(
                    lambda n: (
                        len(
                            [
                                x
                                for x in hook.notifications
                                if _notified("disk_io_seconds", "firing")(x)
                            ]
                        )
                        > 1
                    ),
                    12,
                )
                assert more == [], f"{len(more) + 1} notifications for one alert"
                assert all(any(map(_ours("disk_io_seconds"), am_alerts(u))) for u in (am1, am2))


def test_writeback_is_queryable_in_prometheus(tmp_path: Path):
    vigil_port, prom_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    config = (
        VIGIL_CONFIG
        + f"""
writeback:
  url: http://127.0.0.1:{prom_port}/api/v1/write
  interval_s: 1
"""
    )
    now = int(time.time() * 1000)
    with (
        process(
            "prometheus",
            [
                require("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--web.enable-remote-write-receiver",
            ],
            tmp_path,
            ready_url=f"http://127.0.0.1:{prom_port}/-/ready",
        ),
        _vigil(tmp_path, vigil_port, config=config),
    ):
        write(vigil_port, [shifted("api_requests_inflight", end_ms=now, n_shift=0, job="api")])
        query = urllib.parse.quote('vigil_anomaly_upper{metric_name="api_requests_inflight"}')

        def band() -> list:
            doc = get_json(
                f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}&time={now / 1000}"
            )
            return doc["data"]["result"]

        wait_until("the band series in Prometheus", lambda: bool(band()), timeout_s=30)
        [series] = band()
        assert series["metric"]["job"] == "api" and series["metric"]["detector"] == "ensemble"
        assert 1.0 < float(series["value"][1]) < 2.0  # noise around 1.0 with sigma 0.1
