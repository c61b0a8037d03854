"""Hot reload of the detector's config (POST /-/reload; SIGHUP is the same call): refused
whole when bad, applied atomically when good, and only series whose detector changed
start learning afresh."""

import time
from datetime import datetime

import numpy as np
import yaml

from detector.config import DetectorConfig, load_config
from detector.remote_write import decode, encode
from detector.series.registry import SeriesRegistry
from tests.unit.detector.apphelpers import V1, FakeAlertmanager, body, level_shift, start

GOOD = """\
series:
  - name: api
    match: '{job="api"}'
    detector: {kind: robust, alpha: 0.02}
  - name: db
    match: '{job="db"}'
    detector: {kind: robust, alpha: 0.05}
alerts:
  - name: Fast
    for_s: 3
    resolve_s: 5
"""


def _series(name: str, job: str, t0: int, n: int) -> encode.Series:
    return encode.Series(
        labels=(("__name__", name), ("job", job)),
        samples=[(t0 + i * 1000, 1.0 + (i % 5) * 0.01) for i in range(n)],
    )


async def _series_state(client) -> dict[str, dict]:
    doc = await (await client.get("/api/v1/series")).json()
    return {s["labels"]["job"]: s for s in doc["data"]}


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


async def _started(aiohttp_client, tmp_path, text=GOOD, **kwargs):
    path = tmp_path / "detector.yaml"
    path.write_text(text)
    client, rt = await start(aiohttp_client, load_config(path), config_path=path, **kwargs)
    return client, rt, path


async def test_a_bad_config_is_refused_whole_and_the_running_one_stays(aiohttp_client, tmp_path):
    client, rt, path = await _started(aiohttp_client, tmp_path)
    running = rt.cfg
    path.write_text(
        GOOD.replace("alpha: 0.05", "alpha: 5").replace("for_s: 3", "for_s: 30m1h") + "bogus: 1\n"
    )
    resp = await client.post("/-/reload")
    assert resp.status == 422
    doc = await resp.json()
    assert doc["status"] == "error"
    assert doc["problems"] == [
        f"{path}:7: series[1].detector.alpha: Input should be less than 1",
        f"{path}:10: alerts[0].for_s: '30m1h': units must go from largest to smallest, "
        "each once (e.g. 1h30m, not 30m1h)",
        f"{path}:12: bogus: Extra inputs are not permitted",
    ]
    assert rt.cfg is running
    metrics = await (await client.get("/metrics")).text()
    assert "vigil_config_last_reload_successful 0.0" in metrics
    assert 'vigil_config_reloads_total{result="failure"} 1.0' in metrics

    path.write_text(GOOD.replace("for_s: 3", "for_s: 1h"))
    before = time.time()
    resp = await client.post("/-/reload")
    assert resp.status == 200 and (await resp.json())["status"] == "success"
    assert rt.cfg.alerts[0].for_s == 3600.0
    metrics = await (await client.get("/metrics")).text()
    assert "vigil_config_last_reload_successful 1.0" in metrics
    assert _metric(metrics, "vigil_config_last_reload_success_timestamp_seconds") >= before


async def test_only_series_whose_detector_changed_start_fresh(aiohttp_client, tmp_path):
    client, rt, path = await _started(aiohttp_client, tmp_path)
    t0 = int(time.time() * 1000) - 100_000
    await client.post(
        "/api/v1/write",
        data=body([_series("x", "api", t0, 40), _series("x", "db", t0, 40)]),
        headers=V1,
    )
    await rt.wait_idle()
    state = await _series_state(client)
    assert state["api"]["samples"] == state["db"]["samples"] == 40
    path.write_text(GOOD.replace("alpha: 0.05", "alpha: 0.1"))  # db's detector only
    doc = await (await client.post("/-/reload")).json()
    assert (doc["series_kept"], doc["series_reset"], doc["series_retired"]) == (1, 1, 0)
    await client.post(
        "/api/v1/write",
        data=body([_series("x", "api", t0 + 40_000, 5), _series("x", "db", t0 + 40_000, 5)]),
        headers=V1,
    )
    await rt.wait_idle()
    state = await _series_state(client)
    assert state["api"]["samples"] == 45  # kept what it learned
    assert state["db"]["samples"] == 5  # started over under alpha 0.1
    assert rt.pipeline.detectors.params[rt.pipeline.detectors.family_of[1]].alpha == 0.1
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_series_state_reset_total{reason="config_changed"} 1.0' in metrics


async def test_rules_decide_again_who_is_tracked(aiohttp_client, tmp_path):
    client, rt, path = await _started(aiohttp_client, tmp_path)
    t0 = int(time.time() * 1000) - 100_000
    await client.post(
        "/api/v1/write",
        data=body(
            [_series("x", "api", t0, 10), _series("x", "db", t0, 10), _series("x", "cache", t0, 10)]
        ),
        headers=V1,
    )
    await rt.wait_idle()
    assert set(await _series_state(client)) == {"api", "db"}  # cache matched no rule
    path.write_text(GOOD.replace("match: '{job=\"db\"}'", "match: '{job=\"cache\"}'"))
    doc = await (await client.post("/-/reload")).json()
    assert (doc["series_kept"], doc["series_reset"], doc["series_retired"]) == (1, 0, 1)
    resp = await client.post(
        "/api/v1/write",
        data=body(
            [
                _series("x", "api", t0 + 10_000, 3),
                _series("x", "db", t0 + 10_000, 3),
                _series("x", "cache", t0 + 10_000, 3),
            ]
        ),
        headers=V1,
    )
    assert resp.status == 204
    await rt.wait_idle()
    state = await _series_state(client)
    assert set(state) == {"api", "cache"}  # db retired, cache tracked now
    assert state["api"]["samples"] == 13 and state["cache"]["samples"] == 3
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_samples_dropped_total{reason="untracked"} 13.0' in metrics  # 10 + db's 3


async def test_a_changed_alert_rule_resolves_what_it_fired(
    aiohttp_client, aiohttp_server, tmp_path
):
    am = FakeAlertmanager()
    server = await aiohttp_server(am.app())
    text = GOOD + "    match: '{job=\"api\"}'\n"
    client, rt, path = await _started(
        aiohttp_client, tmp_path, text, alertmanagers=[str(server.make_url(""))]
    )
    start_ms = int(time.time() * 1000) - 400_000
    shifted = level_shift("latency_seconds", start_ms=start_ms, n_normal=300, n_shift=8, job="api")
    await client.post("/api/v1/write", data=body(shifted), headers=V1)

    def firing(alert) -> bool:
        return alert["labels"]["alertname"] == "Fast" and _ms(alert["endsAt"]) > time.time() * 1000

    [alert] = await am.wait_for(firing)
    path.write_text(text.replace("name: Fast", "name: Renamed"))
    resp = await client.post("/-/reload")
    assert resp.status == 200
    resolved = await am.wait_for(
        lambda a: a["labels"] == alert["labels"] and _ms(a["endsAt"]) <= time.time() * 1000
    )
    assert resolved[-1]["annotations"]["resolution"] == "its alert rule changed in a config reload"
    assert rt.book is not None and rt.book.rules[0].name == "Renamed"
    assert rt.book.firing() == []


async def test_an_unchanged_alert_keeps_firing_across_a_reload(
    aiohttp_client, aiohttp_server, tmp_path
):
    am = FakeAlertmanager()
    server = await aiohttp_server(am.app())
    client, rt, path = await _started(
        aiohttp_client, tmp_path, alertmanagers=[str(server.make_url(""))]
    )
    start_ms = int(time.time() * 1000) - 400_000
    shifted = level_shift("latency_seconds", start_ms=start_ms, n_normal=300, n_shift=8, job="api")
    await client.post("/api/v1/write", data=body(shifted), headers=V1)
    await am.wait_for(lambda a: a["labels"]["alertname"] == "Fast")
    # a rule inserted before it moves it to index 1; it is the same rule, so it stays
    path.write_text(
        GOOD.replace("alerts:\n", "alerts:\n  - name: Other\n    match: '{job=\"nothing\"}'\n")
    )
    assert (await client.post("/-/reload")).status == 200
    await rt.wait_idle()
    [alert] = rt.book.firing()
    assert alert.rule.name == "Fast" and alert.rule_index == 1
    assert rt.registry.alert_rule_of(0) == 1


async def test_reload_needs_the_token_and_a_config_file(aiohttp_client, tmp_path):
    client, _rt, _path = await _started(aiohttp_client, tmp_path, token="s3cret")
    assert (await client.post("/-/reload")).status == 401
    resp = await client.post("/-/reload", headers={"Authorization": "Bearer s3cret"})
    assert resp.status == 200
    bare, _ = await start(aiohttp_client)
    resp = await bare.post("/-/reload")
    assert resp.status == 422
    assert "started without --config" in (await resp.json())["problems"][0]


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def test_a_failure_inside_the_reload_is_reported_and_serving_goes_on(
    aiohttp_client, tmp_path, monkeypatch
):
    client, rt, _path = await _started(aiohttp_client, tmp_path)

    def broken(cfg, draft=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(rt.registry, "reconfigure", broken)
    resp = await client.post("/-/reload")
    assert resp.status == 422
    [problem] = (await resp.json())["problems"]
    assert problem.startswith("(root): the reload failed inside the detector (RuntimeError")
    metrics = await (await client.get("/metrics")).text()
    assert "vigil_config_last_reload_successful 0.0" in metrics
    t0 = int(time.time() * 1000) - 10_000
    resp = await client.post("/api/v1/write", data=body([_series("x", "api", t0, 3)]), headers=V1)
    assert resp.status == 204


def test_series_created_after_the_draft_are_decided_when_it_is_applied():
    def resolve(registry, *jobs):
        raw = encode.encode_v1(
            [encode.Series(labels=(("__name__", "x"), ("job", j))) for j in jobs]
        )
        registry.resolve(decode.decode_request(np.frombuffer(raw, np.uint8), 1))

    old = DetectorConfig.model_validate(
        yaml.safe_load(GOOD.replace("match: '{job=\"db\"}'", "match: '{job=~\"db.*\"}'"))
    )
    new = DetectorConfig.model_validate(yaml.safe_load(GOOD.replace("alpha: 0.05", "alpha: 0.1")))
    registry = SeriesRegistry(old)
    resolve(registry, "api", "db")
    draft = registry.draft_reconfigure(new)  # decides slots 0 and 1, changes nothing
    assert registry.rules == old.series
    resolve(registry, "db3")  # slot 2, under the old rules
    assert registry.n_tracked == 3
    plan = registry.reconfigure(new, draft)
    assert plan.reset == (1,) and plan.retired == (2,)  # db3 matches no new rule
    assert list(plan.slot_rule) == [0, 1, -1]
    assert registry.rules == new.series


async def test_a_retired_series_is_untracked_also_when_the_index_is_kept_in_place(
    aiohttp_client, tmp_path
):
    client, rt, path = await _started(aiohttp_client, tmp_path)
    t0 = int(time.time() * 1000) - 100_000
    await client.post(
        "/api/v1/write",
        data=body([_series("x", "api", t0, 5), _series("x", "db", t0, 5)]),
        headers=V1,
    )
    await rt.wait_idle()
    entries = rt.registry.canonical.n_entries
    path.write_text(GOOD.replace("match: '{job=\"db\"}'", "match: '{job=\"nothing\"}'"))
    doc = await (await client.post("/-/reload")).json()
    assert (doc["series_kept"], doc["series_retired"]) == (1, 1)
    assert rt.registry.canonical.n_entries == entries  # nothing to forget: kept in place
    await client.post(
        "/api/v1/write",
        data=body([_series("x", "api", t0 + 5000, 2), _series("x", "db", t0 + 5000, 2)]),
        headers=V1,
    )
    await rt.wait_idle()
    assert set(await _series_state(client)) == {"api"}
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_samples_dropped_total{reason="untracked"} 2.0' in metrics


async def test_a_series_a_reload_stopped_tracking_is_tracked_again_by_a_later_one(
    aiohttp_client, tmp_path
):
    client, rt, path = await _started(aiohttp_client, tmp_path)
    t0 = int(time.time() * 1000) - 100_000
    await client.post("/api/v1/write", data=body([_series("x", "api", t0, 10)]), headers=V1)
    await rt.wait_idle()
    path.write_text(GOOD.replace('job="api"', 'job="nope"'))  # a mistaken edit
    doc = await (await client.post("/-/reload")).json()
    assert (doc["series_retired"], doc["series_tracked_again"]) == (1, 0)
    await client.post("/api/v1/write", data=body([_series("x", "api", t0 + 10_000, 5)]), headers=V1)
    await rt.wait_idle()
    assert "api" not in await _series_state(client)
    path.write_text(GOOD)  # undone
    doc = await (await client.post("/-/reload")).json()
    assert (
        doc["series_kept"],
        doc["series_reset"],
        doc["series_retired"],
        doc["series_tracked_again"],
    ) == (0, 0, 0, 1)
    await client.post("/api/v1/write", data=body([_series("x", "api", t0 + 20_000, 5)]), headers=V1)
    await rt.wait_idle()
    state = await _series_state(client)
    assert state["api"]["rule"] == "api"
    assert state["api"]["samples"] == 5  # fresh: what it learned stopped when it was retired
    assert rt.pipeline.detectors.params[rt.pipeline.detectors.family_of[0]].alpha == 0.02
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_samples_dropped_total{reason="untracked"} 5.0' in metrics  # only while retired
    assert 'vigil_series_state_reset_total{reason="tracked_again"} 1.0' in metrics
    assert 'vigil_series_state_reset_total{reason="config_changed"} 0.0' in metrics


def _registry_cfg(text: str) -> DetectorConfig:
    return DetectorConfig.model_validate(yaml.safe_load(text))


def _resolve(registry: SeriesRegistry, *jobs: str) -> list[int]:
    raw = encode.encode_v1([encode.Series(labels=(("__name__", "x"), ("job", j))) for j in jobs])
    return registry.resolve(decode.decode_request(np.frombuffer(raw, np.uint8), 1)).values.tolist()


def test_a_retired_series_comes_back_only_where_live_series_leave_room():
    limits = "limits: {max_series: 2}\n"
    registry = SeriesRegistry(
        _registry_cfg(
            limits
            + """series:
  - {name: one, match: '{job="api1"}'}
  - {name: two, match: '{job="api2"}'}
"""
        )
    )
    assert _resolve(registry, "api1", "api2") == [0, 1]
    registry.reconfigure(
        _registry_cfg(limits + "series: [{name: two, match: '{job=~\"api[23]\"}'}]")
    )
    assert registry.is_retired(0)
    # a retired series keeps its slot: the global max_series is still full
    assert _resolve(registry, "api1", "api3") == [-2, -3]
    # both match a rule with room for one: the live series keeps it, the retired one waits
    shared = limits + "series: [{name: api, match: '{job=~\"api.*\"}', max_series: %d}]"
    plan = registry.reconfigure(_registry_cfg(shared % 1))
    assert (plan.retracked, plan.retired, plan.kept) == ((), (), 1)
    assert list(plan.slot_rule) == [-1, 0]
    assert _resolve(registry, "api1", "api2") == [-2, 1]
    plan = registry.reconfigure(_registry_cfg(shared % 2))
    assert (plan.retracked, plan.retired, plan.kept) == ((0,), (), 1)
    assert list(plan.slot_rule) == [0, 0] and registry.rule_series == [2]
    assert registry.n_tracked == 2  # the same slot again: nothing new counts towards the limit
    assert _resolve(registry, "api1", "api2", "api3") == [0, 1, -3]


def test_a_retired_series_without_a_rule_limit_comes_back_in_the_draft():
    registry = SeriesRegistry(_registry_cfg(GOOD))
    assert _resolve(registry, "api", "db") == [0, 1]
    registry.reconfigure(_registry_cfg(GOOD.replace('job="api"', 'job="nope"')))
    new = _registry_cfg(GOOD.replace("alpha: 0.05", "alpha: 0.1"))
    draft = registry.draft_reconfigure(new)
    assert draft.retracked == [0] and draft.reset == [1]
    plan = registry.reconfigure(new, draft)
    assert (plan.retracked, plan.reset, plan.kept) == ((0,), (1,), 0)
    assert _resolve(registry, "api", "db") == [0, 1]


async def test_a_restart_only_change_is_reported_until_a_restart_applies_it(
    aiohttp_client, tmp_path
):
    client, rt, path = await _started(aiohttp_client, tmp_path)
    running = rt.cfg.checkpoint.interval_s
    path.write_text(GOOD.replace("alpha: 0.05", "alpha: 0.1") + "checkpoint: {interval_s: 123}\n")
    for _ in range(2):  # the running checkpoint task keeps its interval: said every time
        doc = await (await client.post("/-/reload")).json()
        assert doc["status"] == "success" and doc["restart_needed"] == ["checkpoint"]
        assert rt.cfg.checkpoint.interval_s == running  # what is in effect
        assert rt.cfg.series[1].detector.alpha == 0.1  # the rest is applied
    path.write_text(GOOD)
    doc = await (await client.post("/-/reload")).json()
    assert doc["restart_needed"] == [] and rt.cfg.checkpoint.interval_s == running


async def test_entity_interval_is_applied_by_a_reload(aiohttp_client, tmp_path):
    client, rt, path = await _started(aiohttp_client, tmp_path)
    path.write_text(GOOD + "entity_interval_s: 30\n")
    doc = await (await client.post("/-/reload")).json()
    assert doc["restart_needed"] == []
    assert rt.cfg.entity_interval_s == 30.0  # the entity loop reads it before each round


def test_the_effective_config_keeps_restart_only_values_and_takes_the_rest():
    from detector.reconfig import effective

    running = _registry_cfg(GOOD + "limits: {max_body_bytes: 2048, max_series: 10}\n")
    loaded = _registry_cfg(
        GOOD + "limits: {max_body_bytes: 4096, max_series: 20}\n"
        "console: {history_series: 5}\nentity_interval_s: 30\n"
    )
    cfg, pending = effective(running, loaded)
    assert pending == ("console", "limits.max_body_bytes")
    assert cfg.limits.max_body_bytes == 2048 and cfg.console == running.console
    assert cfg.limits.max_series == 20 and cfg.entity_interval_s == 30.0
    assert effective(cfg, loaded)[1] == pending  # still pending at the next reload
    assert effective(running, running) == (running, ())
