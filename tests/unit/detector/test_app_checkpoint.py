"""Checkpoints while serving and at shutdown, through the app: periodic writes that hold
whole batches only, a crash that restarts from the last periodic checkpoint with its
firing alerts (same startsAt, no new page), and queued alert updates flushed at shutdown
within alerting.flush_timeout_s."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import datetime

import numpy as np
from aiohttp import web

from detector.config import AlertingConfig, CheckpointConfig, Limits
from detector.remote_write import encode
from tests.unit.detector.apphelpers import (
    V1,
    FakeAlertmanager,
    body,
    config,
    level_shift,
    series,
    start,
)

WAIT_S = 20.0


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _latency(alert) -> bool:
    return alert["labels"].get("metric_name") == "latency_seconds"


def _firing(alert) -> bool:
    return _latency(alert) and _ms(alert["endsAt"]) > time.time() * 1000 + 1000


def _resolved(alert) -> bool:
    return _latency(alert) and _ms(alert["endsAt"]) <= time.time() * 1000 + 1000


def _current(state_dir):
    return state_dir / "checkpoints" / (state_dir / "CURRENT").read_text()


async def test_checkpoints_are_written_every_interval_while_serving(aiohttp_client, tmp_path):
    cfg = config(checkpoint=CheckpointConfig(interval_s=0.05))
    client, rt = await start(aiohttp_client, cfg, state_dir=tmp_path)
    data = body([series("x", 1000, 1.0), series("y", 1000, 2.0)])
    assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt.wait_idle()
    assert rt.checkpoints is not None
    for _ in range(2):  # the second one was certainly taken after the batch was applied
        rt.checkpoints.written.clear()
        async with asyncio.timeout(WAIT_S):
            await rt.checkpoints.written.wait()
    manifest = json.loads((_current(tmp_path) / "manifest.json").read_text())
    assert manifest["series"] == 2
    assert len([p for p in (tmp_path / "checkpoints").iterdir()]) <= 2
    text = await (await client.get("/metrics")).text()
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert metrics['vigil_checkpoints_written_total{reason="periodic"}'] >= 2
    assert metrics['vigil_checkpoints_written_total{reason="shutdown"}'] == 0
    assert metrics["vigil_checkpoint_series"] == 2
    assert metrics["vigil_checkpoint_failures_total"] == 0
    assert 0.0 <= metrics["vigil_checkpoint_age_seconds"] < WAIT_S
    assert metrics["vigil_checkpoint_interval_seconds"] == 0.05  # VigilCheckpointStale's base


async def test_a_checkpoint_taken_under_load_holds_whole_batches(aiohttp_client, tmp_path):
    # ten requests at once keep the loop busy: that is the point, so no load shedding
    cfg = config(checkpoint=CheckpointConfig(interval_s=0), limits=Limits(max_loop_lag_s=60.0))
    client, rt = await start(aiohttp_client, cfg, state_dir=tmp_path)
    names = [f"s{i}" for i in range(1000)]
    bodies: dict[int, bytes] = {}

    async def post(t: int) -> None:
        data = bodies.get(t) or body([series(name, t * 1000, float(t)) for name in names])
        assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204

    await post(1)
    await rt.wait_idle()
    bodies.update(
        {t: body([series(name, t * 1000, float(t)) for name in names]) for t in range(20, 90)}
    )
    seen = []
    for t in range(2, 9):
        writes = asyncio.gather(*(post(t * 10 + k) for k in range(10)))
        assert await rt.write_checkpoint("periodic")  # while those batches are applied
        await writes
        with np.load(_current(tmp_path) / "tables.npz") as npz:
            n_samples, value, seen_value = npz["n_samples"], npz["last_value"], npz["last_input"]
        # each request updates every series: a batch half-applied would show two counts,
        # or a value the detectors have not seen yet
        assert n_samples.shape == (1000,) and len(set(n_samples.tolist())) == 1, sorted(
            set(n_samples.tolist())
        )
        assert np.array_equal(value, seen_value)
        seen.append(int(n_samples[0]))
    assert seen == sorted(seen) and seen[-1] > seen[0]
    await rt.wait_idle()


async def test_after_a_crash_firing_alerts_come_back_from_the_periodic_checkpoint(
    aiohttp_client, aiohttp_server, tmp_path
):
    am = FakeAlertmanager()
    url = str((await aiohttp_server(am.app())).make_url(""))
    cfg = config(
        checkpoint=CheckpointConfig(interval_s=0), alerting=AlertingConfig(stale_min_s=3600)
    )
    client, rt = await start(aiohttp_client, cfg, alertmanagers=[url], state_dir=tmp_path)
    now = int(time.time() * 1000)
    calm = [
        series(f"calm_{i}", now - 400_000 + k * 1000, 1.0 + 0.01 * (k % 7))
        for i in range(5)
        for k in range(0, 300, 60)
    ]
    shifted = level_shift("latency_seconds", start_ms=now - 400_000, n_normal=300, n_shift=8)
    await client.post("/api/v1/write", data=body(shifted + calm), headers=V1)
    [first] = await am.wait_for(_firing)
    assert await rt.write_checkpoint("periodic")
    crashed = tmp_path / "crashed"  # what kill -9 would leave: the state dir as it is now
    shutil.copytree(tmp_path, crashed, ignore=shutil.ignore_patterns("crashed"))
    am.posts.clear()

    client2, rt2 = await start(aiohttp_client, cfg, alertmanagers=[url], state_dir=crashed)
    [again] = await am.wait_for(_firing)
    assert rt2.registry.n_tracked == rt.registry.n_tracked == 6
    assert again["labels"] == first["labels"]
    assert again["startsAt"] == first["startsAt"]
    metrics = await (await client2.get("/metrics")).text()
    assert 'vigil_alert_events_total{kind="restored"} 1.0' in metrics
    assert 'vigil_alert_events_total{kind="fire"}' not in metrics
    assert all(_latency(a) for post in am.posts for a in post)  # nothing else pages
    await client2.close()
    await client.close()


class FlakyAlertmanager(FakeAlertmanager):
    """Answers 503 to the first ``refusals`` POSTs carrying a resolve (``refused`` is set
    at the first)."""

    def __init__(self, refusals: float) -> None:
        super().__init__()
        self.refused = asyncio.Event()
        self.refusals = refusals

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            alerts = await request.json()
            if self.refusals > 0 and any(map(_resolved, alerts)):
                self.refusals -= 1
                self.refused.set()
                return web.Response(status=503)
            self.posts.append(alerts)
            self.received.set()
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/api/v2/alerts", handle)
        return app


async def _fire_then_resolve(client, rt, am) -> None:
    now = int(time.time() * 1000)
    shifted = level_shift("latency_seconds", start_ms=now - 400_000, n_normal=300, n_shift=8)
    await client.post("/api/v1/write", data=body(shifted), headers=V1)
    await am.wait_for(_firing)
    calm = encode.Series(
        labels=(("__name__", "latency_seconds"),),
        samples=[(now - 400_000 + (308 + k) * 1000, 1.0) for k in range(60)],
    )
    assert (await client.post("/api/v1/write", data=body([calm]), headers=V1)).status == 204
    async with asyncio.timeout(WAIT_S):
        await am.refused.wait()  # the resolve is queued for a retry


async def test_a_queued_resolve_is_flushed_at_shutdown(aiohttp_client, aiohttp_server, tmp_path):
    am = FlakyAlertmanager(refusals=1)
    url = str((await aiohttp_server(am.app())).make_url(""))
    # the retry comes 1 s later: without the flush the client would be stopped before it
    cfg = config(alerting=AlertingConfig(retry_initial_s=1.0, flush_timeout_s=10))
    client, rt = await start(aiohttp_client, cfg, alertmanagers=[url], state_dir=tmp_path)
    await _fire_then_resolve(client, rt, am)
    await client.close()  # SIGTERM: the last checkpoint, then the flush
    assert [a for post in am.posts for a in post if _resolved(a)]
    assert (tmp_path / "CURRENT").exists()


async def test_the_flush_gives_up_after_flush_timeout(
    aiohttp_client, aiohttp_server, tmp_path, caplog
):
    am = FlakyAlertmanager(refusals=float("inf"))
    url = str((await aiohttp_server(am.app())).make_url(""))
    cfg = config(
        alerting=AlertingConfig(retry_initial_s=0.05, retry_max_s=0.05, flush_timeout_s=0.3)
    )
    client, rt = await start(aiohttp_client, cfg, alertmanagers=[url], state_dir=tmp_path)
    await _fire_then_resolve(client, rt, am)
    async with asyncio.timeout(WAIT_S):
        await client.close()
    assert not [a for post in am.posts for a in post if _resolved(a)]
    assert "not delivered within alerting.flush_timeout_s" in caplog.text
    assert (tmp_path / "CURRENT").exists()  # the checkpoint came first
